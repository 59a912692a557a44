"""The inbox pages, the htmx fragments they poll, and the CSV download."""
import logging
import re
import tempfile
from urllib.parse import urlencode

from flask import (Blueprint, Response, abort, current_app, g, redirect, render_template, request,
                   send_file, stream_with_context, url_for)
from markupsafe import Markup, escape

from flask_login import current_user
from sqlalchemy.exc import InterfaceError, OperationalError

from app import audit, clock, contacts, export, replies
from app.callbacks import routes as callback
from app.replies import delivery, saved_replies
from app.jobs import leases
from app.inbox import list_polls, queries, search
from app.db import numbers
from app.contacts import optouts
from app.privacy import retention
from app.inbox.list_views import VIEWS, ListFilter, view_facts
from app.web.request_args import LARGEST_ID, date_arg, id_arg, parse_id
from app.extensions import db, login_manager

bp = Blueprint("inbox", __name__)
log = logging.getLogger(__name__)
CONVERSATION = f"/conversations/<int(max={LARGEST_ID}):conversation_id>"
SEARCH_PAGE = 20  # conversations found by their messages' text, under the list's conversations


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def render_varying_on_htmx(template: str, **context) -> Response:
    """Render a page or a fragment of it: one URL answers both, so caches must tell them apart."""
    response = current_app.make_response(render_template(template, **context))
    response.vary.update(("HX-Request", "HX-Target"))
    return response


def wants_pane() -> bool:
    """htmx asks for the conversation pane alone (a row clicked, Esc, paging in a thread), or for
    earlier messages to put above the ones shown (it picks them out of the pane)."""
    return is_htmx() and request.headers.get("HX-Target") in ("conversation-pane", "messages")


# The list's state in the query string: kept in every conversation URL, so a link, a reload or
# the back button shows the same list beside the conversation. Cursors and polls are not state.
LIST_PARAMS = ("q", "view", "channel", "to")


@bp.app_template_global()
def list_params() -> dict[str, str]:
    return {name: request.args[name] for name in LIST_PARAMS if request.args.get(name, "").strip()}


# Characters Werkzeug's url_for leaves unescaped in a query string (werkzeug.urls).
QUERY_SAFE = "!$'()*,/:;?@"


@bp.app_template_global()
def thread_url(conversation_id: int, **args) -> str:
    """A conversation's URL that keeps the list's search and filters beside it: what
    `url_for("inbox.thread", ...)` gives, from a path prefix built once per request. A list page
    makes 50 to 90 of these, and url_for costs more than the rest of a row."""
    if "thread_path" not in g:
        g.thread_path = url_for("inbox.thread", conversation_id=0)[:-1]
        g.thread_list_query = urlencode(list_params(), safe=QUERY_SAFE)
    query = "&".join(part for part in (g.thread_list_query, urlencode(args, safe=QUERY_SAFE)) if part)
    return f"{g.thread_path}{int(conversation_id)}" + (f"?{query}" if query else "")


def list_context(before: int | None = None, after: int | None = None) -> dict:
    q = request.args.get("q", "").strip()
    latest = queries.latest_change()
    list_filter = ListFilter.from_args(request.args)
    page = queries.conversations(q, before=before, after=after, limit=current_app.config["PAGE_SIZE"],
                                 list_filter=list_filter)
    found, found_older = search.search_conversations(q, limit=SEARCH_PAGE, before=id_arg("found_before"))
    return dict(q=q, rows=page.rows, list_page=page, latest=latest, live=page.live,
                list_filter=list_filter, views=VIEWS, view_facts=view_facts(list_filter, latest),
                unread=queries.unread_conversations(), callback_url=url_for("callback.inbound", _external=True),
                found=found, found_older=found_older, found_before=id_arg("found_before"),
                searchable=search.searchable(q))


@bp.get("/")
def index():
    since = id_arg("since")
    latest = queries.latest_change() if since is not None else None
    if since is not None and latest <= since:
        return "", 204  # a poll when nothing changed: one indexed lookup, no body
    if wants_pane():  # back to the list: the pane says so
        return render_varying_on_htmx("inbox/_no_conversation.html", partial=True,
                                      unread=queries.unread_conversations())
    if since is not None and is_htmx():
        return list_poll(since, latest)
    context = list_context(before=id_arg("before"), after=id_arg("after"))
    if is_htmx():
        return render_varying_on_htmx("inbox/_conversations.html", partial=True, **context)
    return render_varying_on_htmx("inbox/index.html", chart=queries.daily_counts(), **context)


def list_poll(since: int, latest: int) -> Response:
    """A poll that found changes: the list as everyone watching it shares it, and how many
    messages arrived since this page last looked, for its live region."""
    def render() -> tuple[int, str]:
        context = list_context(before=id_arg("before"), after=id_arg("after"))
        return context["latest"], render_template("inbox/_conversations.html", partial=True, **context)

    list_key = (request.host, *sorted((name, value) for name, value in request.args.items(multi=True)
                                      if name != "since"))
    body, arrived = list_polls.shared(list_key, since, latest, render, queries.arrived_since)
    announcer = render_template("inbox/_announcer.html", arrived=arrived)
    response = current_app.make_response(announcer + body)
    response.vary.update(("HX-Request", "HX-Target"))
    return response


def conversation_or_404(conversation_id: int):
    return queries.conversation(conversation_id) or abort(404)


@bp.get(CONVERSATION)
def thread(conversation_id: int):
    conversation = queries.conversation(conversation_id)
    if conversation is None:
        # /conversations/37255512345: a sender's digits without the `+`, from an old link.
        by_sender = queries.conversation_by_sender(str(conversation_id))
        return redirect(url_for("inbox.thread", conversation_id=by_sender.id)) if by_sender else abort(404)

    since = id_arg("since")
    if since is not None:
        page = queries.poll_thread(conversation, since, id_arg("since_id") or 0, id_arg("shown") or 0)
        if page is None:
            return "", 204
        # The reply box changes only when the opt-out does: otherwise it keeps what is typed.
        opted = "1" if conversation.opted_out else "0"
        composer = replies.composer(conversation) if request.args.get("opted") != opted else None
        # The header's buttons are swapped only when what they show changed: a button replaced
        # for nothing would lose a click landing as the poll does.
        stale = {name for name, shown in header_states(conversation).items()
                 if request.args.get("showing_" + name) != shown}
        return render_template("inbox/_thread_update.html", page=page, composer=composer, stale=stale)

    page = queries.open_thread(conversation, before=id_arg("before"), after=id_arg("after"),
                               around=id_arg("around"))
    # A saved reply picked from the menu without JavaScript: the reply box opens with its text.
    text = saved_replies.text_for(conversation, id_arg("saved_reply"))
    if wants_pane():
        return render_varying_on_htmx("inbox/_conversation.html", page=page, partial=True,
                                      unread=queries.unread_conversations(),
                                      composer=replies.composer(conversation), text=text)
    return thread_page(page, text=text)


@bp.app_template_global()
def header_states(conversation) -> dict[str, str]:
    """What the thread header's buttons show. Each one carries its state in a hidden `showing_...`
    input, which the thread's poll sends back."""
    return {"unread": "1" if conversation.unread_count else "0",
            "status": conversation.status,
            "opt_out": ("out" if conversation.opted_out else "in") + ("-retrying" if conversation.blacklist_problem else "")}


def thread_page(page: queries.ThreadPage, error: str | None = None, text: str | None = None, status: int = 200,
                **extra):
    """The whole page: the list beside the conversation."""
    response = render_varying_on_htmx("inbox/thread.html", page=page, composer=replies.composer(page.conversation),
                                      error=error, text=text, chart=queries.daily_counts(), **list_context(), **extra)
    return response, status


@bp.post(CONVERSATION + "/replies")
def reply(conversation_id: int):
    conversation = conversation_or_404(conversation_id)
    form = request.form
    try:
        reply_id = replies.queue_reply(conversation, form.get("text", ""), form.get("route", ""),
                                       form.get("sms_sender"), current_user.id, form.get("key", ""))
    except replies.ReplyRefused as refused:
        if is_htmx():  # the box again, with what was typed and why it was not sent
            return render_template("inbox/_composer.html", conversation=conversation, error=str(refused),
                                   text=form.get("text"), composer=replies.composer(conversation))
        return thread_page(queries.open_thread(conversation), str(refused), form.get("text"), 400)
    if is_htmx():
        response = current_app.make_response(render_template(
            "inbox/_composer.html", conversation=conversation, composer=replies.composer(conversation)))
        response.headers["HX-Trigger"] = "poll-now"  # the thread's poller brings the new bubble
        return response
    return redirect(url_for("inbox.thread", conversation_id=conversation.id), 303)


@bp.post(CONVERSATION + "/replies/<int(max=%d):reply_id>/retry" % LARGEST_ID)
def retry_reply(conversation_id: int, reply_id: int):
    conversation = conversation_or_404(conversation_id)
    replies.retry(conversation.id, reply_id)
    if is_htmx():
        return "", 204, {"HX-Trigger": "poll-now"}
    return redirect(url_for("inbox.thread", conversation_id=conversation.id), 303)


OPT_IN_REASON_LENGTH = 500


@bp.post(CONVERSATION + "/opt-out")
def set_opt_out(conversation_id: int):
    """Opt out, or back in. A customer's own STOP is lifted only by an admin, with a reason
    (kept in the audit trail): messages they asked not to get are the business's risk."""
    conversation = conversation_or_404(conversation_id)
    opting_out = request.form.get("opted_out") == "yes"
    reason = " ".join(request.form.get("reason", "").split())[:OPT_IN_REASON_LENGTH]  # spaces only: none
    try:
        optouts.set_opted_out(conversation.id, opting_out, current_user.id, reason,
                              may_lift_stop=current_user.is_admin)
    except optouts.LiftRefused:  # the customer's own STOP (or an erasure's block)
        if not current_user.is_admin:
            abort(403)
        return thread_page(queries.open_thread(conversation), status=400,
                           opt_out_error="Say why the customer's STOP is lifted: the reason goes in the audit trail.")
    return redirect(url_for("inbox.thread", conversation_id=conversation.id), 303)


@bp.app_template_global()
def opt_in_needs_admin(conversation) -> bool:
    return optouts.needs_admin(conversation)


@bp.post(CONVERSATION + "/contact")
def set_contact(conversation_id: int):
    """Name and note, edited in the conversation's header (htmx swaps it; a plain form reloads)."""
    conversation = conversation_or_404(conversation_id)
    name, note = request.form.get("contact_name", ""), request.form.get("contact_note", "")
    try:
        contacts.set_contact(conversation.id, name, note)
    except contacts.ContactRefused as refused:
        typed = {"contact_name": name, "contact_note": note, "error": str(refused)}
        if is_htmx():  # the form again, open, with what was typed and why it was not saved
            return render_template("inbox/_contact.html", conversation=conversation, contact_form=typed)
        return thread_page(queries.open_thread(conversation), status=400, contact_form=typed)
    if is_htmx():
        conversation = queries.conversation(conversation.id)
        return (render_template("inbox/_contact_saved.html", conversation=conversation,
                                page={"conversation": conversation},  # all the title and heading read
                                unread=queries.unread_conversations(), composer=replies.composer(conversation)),
                {"HX-Trigger": "conversation-changed"})
    return redirect(thread_url(conversation.id), 303)


@bp.post(CONVERSATION + "/status")
def set_status(conversation_id: int):
    """Done puts a conversation aside (it leaves the Open view); Reopen brings it back."""
    conversation = conversation_or_404(conversation_id)
    status = request.form.get("status", "")
    if status not in contacts.STATUSES:
        abort(400, "'status' must be 'open' or 'done'")
    contacts.set_status(conversation.id, status)
    if is_htmx():
        return (render_template("inbox/_status.html", conversation=queries.conversation(conversation.id)),
                {"HX-Trigger": "conversation-changed"})
    return redirect(thread_url(conversation.id), 303)


@bp.get("/conversations/<sender>")
def thread_by_sender(sender: str):
    """Links and bookmarks from before conversations had ids: `/conversations/+372...`."""
    conversation = queries.conversation_by_sender(sender) or abort(404)
    return redirect(url_for("inbox.thread", conversation_id=conversation.id), 301)


@bp.post(CONVERSATION + "/read")
def mark_read(conversation_id: int):
    conversation = conversation_or_404(conversation_id)
    queries.mark_read(conversation.id, through_id=form_id("through"))
    return read_state_response(conversation.id)


@bp.post(CONVERSATION + "/unread")
def mark_unread(conversation_id: int):
    conversation = conversation_or_404(conversation_id)
    queries.mark_unread(conversation.id)
    response = read_state_response(conversation.id)  # stays on the page, htmx or not
    if is_htmx():  # the list's badge and the views' counts follow at once, as after Mark done
        response = current_app.make_response(response)
        response.headers["HX-Trigger"] = "conversation-changed"
    return response


def form_id(name: str) -> int:
    value = parse_id(request.form.get(name, ""))
    if value is None:
        abort(400, f"'{name}' must be a message id")
    return value


def read_state_response(conversation_id: int):
    """htmx swaps the read/unread control; a plain form goes back to the thread."""
    if is_htmx():
        return render_template("inbox/_read_state.html", conversation=queries.conversation(conversation_id))
    return redirect(url_for("inbox.thread", conversation_id=conversation_id), 303)


def export_filters() -> dict:
    """What an export holds, from its query string: the search, a conversation, UTC days from/to,
    a view with its channel and our `number` (the list calls that one `to`, the export's last day);
    with `match=text` the search picks messages by their text rather than conversations."""
    view, channel, number = (request.args.get(name, "").strip() for name in ("view", "channel", "number"))
    list_filter = None
    if view or channel or number:
        list_filter = ListFilter(view if view in VIEWS else "all", channel or None, number or None)
    q = request.args.get("q", "").strip()
    in_texts = request.args.get("match") == "text"  # the search in message texts, not numbers and names
    return dict(q="" if in_texts else q, text=q if in_texts else "", conversation_id=id_arg("conversation"),
                first_day=date_arg("from"), last_day=date_arg("to"), list_filter=list_filter)


@bp.get("/export")
def export_dialog():
    """The export's choices as a plain GET form, with how many messages they hold."""
    filters = export_filters()
    messages = export.count_messages(export.export_query(**filters))
    return render_template("inbox/export.html", messages=messages, filters=filters, views=VIEWS,
                           seconds=export.xlsx_seconds(messages), unread=queries.unread_conversations(),
                           conversation=queries.conversation(filters["conversation_id"])
                           if filters["conversation_id"] is not None else None)


@bp.get("/export/download")
def export_download():
    """The dialog's Download button: the chosen format, with the same choices."""
    return export_xlsx() if request.args.get("format") == "xlsx" else export_csv()


def audited_export_query(file_format: str):
    """The export's query, its filters and row count recorded in the audit trail first."""
    filters = export_filters()
    query = export.export_query(**filters)
    list_filter = filters.pop("list_filter")
    searched = filters["q"] or filters["text"]
    audit.record("export", {**filters, "format": file_format, "rows": export.count_messages(query),
                            **(vars(list_filter) if list_filter else {}),
                            # whom a search named, if few: an erasure finds it by them (retention.py)
                            **({retention.MATCHED: retention.search_subjects(filters["q"], filters["text"])}
                               if searched else {})})
    return query


# An export holds its person's lease while it runs (one at a time per person, across processes):
# renewed as rows go out, so a process that died frees it within this many seconds.
EXPORT_LEASE_SECONDS = 120


def export_lease_or_busy_page() -> tuple[leases.Lease | None, Response | None]:
    """The person's export lease, or the 429 page that says an export of theirs is running."""
    lease = leases.take(f"export:{current_user.id}", EXPORT_LEASE_SECONDS)
    if lease is not None:
        return lease, None
    choices = {name: value for name, value in request.args.items() if value}
    response = current_app.make_response((render_template("inbox/export_busy.html", choices=choices), 429))
    response.headers["Retry-After"] = "30"
    return None, response


@bp.get("/export.csv")
def export_csv():
    lease, busy = export_lease_or_busy_page()
    if busy:
        return busy
    try:
        query = audited_export_query("csv")
    except BaseException:
        lease.release()
        raise
    filename = f"sms-inbox-{clock.now():%Y-%m-%d}.csv"

    def released_before_the_last_chunk():
        """The chunks, the lease released before the last one goes out: a download that has
        finished can be followed at once by the next, in any process."""
        chunks = export.csv_chunks(query, on_chunk=lease.keep)
        yield next(chunks)  # the header line, before the query runs
        previous = None
        for chunk in chunks:
            if previous is not None:
                yield previous
            previous = chunk
        lease.release()
        if previous is not None:
            yield previous

    response = Response(
        stream_with_context(released_before_the_last_chunk()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                 "Cache-Control": "no-store"},
    )
    # And when the download is cancelled (the server closes the response); releasing twice is harmless.
    app = current_app._get_current_object()

    def release():
        with app.app_context():
            lease.release()
    response.call_on_close(release)
    return response


@bp.get("/export.xlsx")
def export_xlsx():
    """Built whole on disk first (see export.xlsx_file), then sent with its length."""
    lease, busy = export_lease_or_busy_page()
    if busy:
        return busy
    output = tempfile.TemporaryFile()  # deleted when closed, once sent
    try:
        export.xlsx_file(audited_export_query("xlsx"), output, on_chunk=lease.keep)
    except BaseException:
        output.close()
        raise
    finally:
        lease.release()  # the work is the building: sending the file costs little
    output.seek(0)
    response = send_file(output, mimetype=export.XLSX_MIMETYPE, as_attachment=True,
                         download_name=f"sms-inbox-{clock.now():%Y-%m-%d}.xlsx", max_age=0)
    response.headers["Cache-Control"] = "no-store"
    return response


bp.add_app_template_filter(clock.utc_iso, "utc_iso")
bp.add_app_template_global(search.highlight)
bp.add_app_template_filter(numbers.readable, "phone")
bp.add_app_template_filter(numbers.region, "region")
bp.add_app_template_filter(numbers.flag, "flag")
bp.add_app_template_global(saved_replies.for_conversation, "saved_replies_for")
bp.add_app_template_global(replies.MAX_TEXT, "max_reply_length")
bp.add_app_template_global(replies.can_send_again)


@bp.app_template_global()
def reply_status(message) -> str:
    """A reply's state in words: delivery reports, once there are any, say the most."""
    if message.status == "sent" and message.delivery:
        return delivery.STATUS_WORDS[message.delivery]
    return {"queued": "Queued", "sending": "Sending…", "sent": "Sent", "failed": "Not sent",
            "unconfirmed": "Unconfirmed: it may or may not have been sent", "retrying": "Retrying"}.get(message.status, "")


# http(s) addresses in message texts; what may end a sentence after one is not part of it.
WEB_ADDRESS = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
TRAILING = ".,;:!?'\")]}"


@bp.app_template_filter()
def linkify(text: str | None) -> Markup:
    """A message's text, escaped, with its http and https addresses as links (nothing else is)."""
    text, parts, last = text or "", [], 0
    for match in WEB_ADDRESS.finditer(text):
        address = match.group(0)
        while address and address[-1] in TRAILING and not (address[-1] == ")" and address.count("(") >= address.count(")")):
            address = address[:-1]
        if len(address) <= len(match.group(0).split("://", 1)[0]) + 3:
            continue
        parts += [escape(text[last:match.start()]),
                  Markup('<a href="{0}" rel="noopener noreferrer nofollow" target="_blank">{0}</a>').format(address)]
        last = match.start() + len(address)
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


@bp.app_errorhandler(404)
@bp.app_errorhandler(500)
def error_page(exc):
    """People get a page with a way back; Messente's paths keep their JSON answers."""
    if request.path.startswith(callback.bp.url_prefix + "/"):
        return callback.json_errors_on_callback_paths(exc)
    return render_template(f"errors/{exc.code}.html"), exc.code


@bp.app_errorhandler(OperationalError)
@bp.app_errorhandler(InterfaceError)
def storage_unavailable(exc):
    """The database is away (restarting, full, locked too long): a page that retries, not a traceback.

    htmx polls get the bare status and simply poll again; the callback answers its own JSON 503.
    """
    db.session.rollback()
    g._login_user = login_manager.anonymous_user()  # the page must not ask the database who is asking
    log.error("%s: database unavailable: %s", request.path, getattr(exc, "orig", exc))
    if is_htmx():
        return "", 503, {"Retry-After": "5"}
    return render_template("errors/503.html"), 503, {"Retry-After": "5"}
