"""The inbox: the list of conversations and a thread beside it, the htmx fragments their polls
fetch, and what the thread's header changes (read state, name and note, done, snooze, opt-out)."""

import hashlib
from decimal import Decimal
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, url_for
from flask_login import current_user

from app import clock, contacts, hours, notifications, replies, team
from app.contacts import labels, optouts, owners, snooze
from app.inbox import list_polls, presence, queries, read_state, search
from app.inbox.list_views import OWNER_VIEWS, VIEWS, ListFilter, label_facets, owner_counts, view_facts
from app.replies import notes, reply_box, saved_replies
from app.team import currency
from app.web.htmx import is_htmx, render_varying_on_htmx
from app.web.request_args import LARGEST_ID, id_arg, parse_id

bp = Blueprint("inbox", __name__)
CONVERSATION = f"/conversations/<int(max={LARGEST_ID}):conversation_id>"
SEARCH_PAGE = 20  # conversations found by their messages' text, under the list's conversations


def wants_pane() -> bool:
    """htmx asks for the conversation pane alone (a row clicked, Esc, paging in a thread), or for
    earlier messages to put above the ones shown (it picks them out of the pane)."""
    return is_htmx() and request.headers.get("HX-Target") in ("conversation-pane", "messages")


# The list's state in the query string: kept in every conversation URL, so a link, a reload or
# the back button shows the same list beside the conversation. Cursors and polls are not state.
LIST_PARAMS = ("q", "view", "channel", "to", "assignee")


@bp.app_template_global()
def list_params() -> dict[str, str | list[str]]:
    params: dict[str, str | list[str]] = {
        name: request.args[name] for name in LIST_PARAMS if request.args.get(name, "").strip()
    }
    chosen = [name for name in request.args.getlist("label") if name.strip()]  # labels: one or more
    if chosen:
        params["label"] = chosen
    return params


@bp.app_template_global()
def outside_hours() -> bool:
    """The list's "Outside hours" marker: the away reply is on and the team is closed now."""
    return hours.outside_hours_now()


# Characters Werkzeug's url_for leaves unescaped in a query string (werkzeug.urls).
QUERY_SAFE = "!$'()*,/:;?@"


@bp.app_template_global()
def thread_url(conversation_id: int, **args) -> str:
    """A conversation's URL that keeps the list's search and filters beside it: what
    `url_for("inbox.thread", ...)` gives, from a path prefix built once per request. A list page
    makes 50 to 90 of these, and url_for costs more than the rest of a row."""
    if "thread_path" not in g:
        g.thread_path = url_for("inbox.thread", conversation_id=0)[:-1]
        g.thread_list_query = urlencode(list_params(), doseq=True, safe=QUERY_SAFE)
    query = "&".join(part for part in (g.thread_list_query, urlencode(args, safe=QUERY_SAFE)) if part)
    return f"{g.thread_path}{int(conversation_id)}" + (f"?{query}" if query else "")


def list_context(before: int | None = None, after: int | None = None) -> dict:
    q = request.args.get("q", "").strip()
    latest = queries.latest_change()
    list_filter = current_list_filter()
    page = queries.conversations(
        q, before=before, after=after, limit=current_app.config["PAGE_SIZE"], list_filter=list_filter
    )
    queries.with_labels(page.rows)
    found, found_older = search.search_conversations(q, limit=SEARCH_PAGE, before=id_arg("found_before"))
    return dict(
        q=q,
        rows=page.rows,
        list_page=page,
        latest=latest,
        live=page.live,
        list_filter=list_filter,
        views=VIEWS,
        view_facts=view_facts(list_filter, latest),
        owner_views=OWNER_VIEWS,
        owner_counts=owner_counts(list_filter, latest),
        label_facets=label_facets(list_filter, latest, all_labels()),
        unread=queries.unread_conversations(),
        callback_url=url_for("callback.inbound", _external=True),
        found=found,
        found_older=found_older,
        found_before=id_arg("found_before"),
        searchable=search.searchable(q),
    )


def current_list_filter() -> ListFilter:
    """The list's filters from the query string; `assignee=me` is the person asking."""
    return ListFilter.from_args(request.args, me=current_user.id)


@bp.get("/")
def index():
    since = id_arg("since")
    latest = queries.latest_change() if since is not None else 0
    if since is not None and latest <= since:
        return "", 204  # a poll when nothing changed: one indexed lookup, no body
    if wants_pane():  # back to the list: the pane says so
        return render_varying_on_htmx(
            "inbox/_no_conversation.html", partial=True, unread=queries.unread_conversations()
        )
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
        return context["latest"], render_template("inbox/_conversations.html", partial=True, shared=True, **context)

    list_filter = current_list_filter()
    list_key = (
        request.host,
        *sorted((name, value) for name, value in request.args.items(multi=True) if name not in NOT_THE_LIST),
        # `assignee=me` is a different list for each person: never one person's for another.
        *([("me", list_filter.me)] if list_filter.assignee == "me" or list_filter.view == "mentions" else []),
    )
    body, arrived = list_polls.shared(list_key, since, latest, render, queries.arrived_since)
    announcer = render_template("inbox/_announcer.html", arrived=arrived)
    # The views count the person's own mentions: rendered for each poll too.
    view_tabs = render_template(
        "inbox/_views.html",
        oob=True,
        q=request.args.get("q", "").strip(),
        list_filter=list_filter,
        views=VIEWS,
        view_facts=view_facts(list_filter, latest),
    )
    # The owner tabs count the person's own (Mine): rendered for each poll, outside what is shared.
    owner_tabs = render_template(
        "inbox/_owner_views.html",
        oob=True,
        q=request.args.get("q", "").strip(),
        list_filter=list_filter,
        owner_views=OWNER_VIEWS,
        owner_counts=owner_counts(list_filter, latest),
    )
    # The person's bell comes after everything shared: nobody else's count is ever in `body`.
    response = current_app.make_response(announcer + view_tabs + owner_tabs + body + bell_if_changed())
    response.vary.update(("HX-Request", "HX-Target"))
    return response


# A list poll's arguments that are not the list: where the poller is, what its page's bell shows.
NOT_THE_LIST = ("since", "showing_bell")


def bell_if_changed(marked: bool | None = None) -> str:
    """The person's bell, out of band, where its count is not what their page shows: the page
    sends that (`showing_bell`) with its polls; `marked` says instead whether this request read
    some of theirs (False: the bell is as it was)."""
    if marked is False:
        return ""
    count = notifications.unread_count(current_user.id)
    if marked is None and request.args.get("showing_bell") == str(count):
        return ""
    return render_template("notifications/_bell.html", oob=True, bell_count=count)


def conversation_or_404(conversation_id: int):
    return contacts.conversation(conversation_id) or abort(404)


@bp.get(CONVERSATION)
def thread(conversation_id: int):
    conversation = contacts.conversation(conversation_id)
    if conversation is None:
        # /conversations/37255512345: a sender's digits without the `+`, from an old link.
        by_sender = queries.conversation_by_sender(str(conversation_id))
        return redirect(url_for("inbox.thread", conversation_id=by_sender.id)) if by_sender else abort(404)

    since = id_arg("since")
    if since is not None:
        # A visible page says it is here, and whether its reply box is being typed in (presence.js).
        if request.args.get("viewing") == "1":
            presence.touch(conversation.id, current_user.id, request.args.get("typing") == "1", clock.now())
        # The presence line the page shows, by its version: not a change number, so it is compared apart.
        shown_presence = request.args.get("presence")
        presence_stale = shown_presence is not None and presence.version(present_others(conversation)) != shown_presence
        page = queries.poll_thread(conversation, since, id_arg("since_id") or 0, id_arg("shown") or 0)
        if page is None:
            if presence_stale:  # only who is here changed: the line alone, swapped by id
                return render_template("inbox/_presence.html", conversation=conversation, oob=True)
            return "", 204
        # The reply box changes only when the opt-out does: otherwise it keeps what is typed.
        opted = "1" if conversation.opted_out else "0"
        composer = reply_box.for_conversation(conversation) if request.args.get("opted") != opted else None
        # The header's buttons are swapped only when what they show changed: a button replaced
        # for nothing would lose a click landing as the poll does.
        stale = {
            name for name, shown in header_states(conversation).items() if request.args.get("showing_" + name) != shown
        }
        if presence_stale:
            stale.add("presence")
        update = render_template("inbox/_thread_update.html", page=page, composer=composer, stale=stale)
        if request.args.get("viewing") == "1" and any(m.direction == notes.NOTE for m in page.messages):
            # A note that mentions the person, shown on their screen: read (so is its notification).
            if notes.mark_mentions_read(current_user.id, conversation.id):
                notifications.mark_conversation_read(current_user.id, conversation.id)
        return update + bell_if_changed()

    presence.touch(conversation.id, current_user.id, False, clock.now())  # others see who opened it at once
    # Opening a conversation reads the person's notifications about it (the page's bell counts
    # after this; a pane swapped in sends the bell along).
    marked = notifications.mark_conversation_read(current_user.id, conversation.id)
    notes.mark_mentions_read(current_user.id, conversation.id)  # ... and takes it out of their Mentions view
    page = queries.open_thread(conversation, before=id_arg("before"), after=id_arg("after"), around=id_arg("around"))
    # A saved reply picked from the menu without JavaScript: the reply box opens with its text.
    text = saved_replies.text_for(conversation, id_arg("saved_reply"))
    if wants_pane():
        response = render_varying_on_htmx(
            "inbox/_conversation.html",
            page=page,
            partial=True,
            unread=queries.unread_conversations(),
            composer=reply_box.for_conversation(conversation),
            text=text,
        )
        response.set_data(response.get_data(as_text=True) + bell_if_changed(marked))
        return response
    return thread_page(page, text=text)


def header_states(conversation) -> dict[str, str]:
    """What the thread header's buttons show. Each one carries its state in a hidden `showing_...`
    input, which the thread's poll sends back."""
    return {name: header_state(conversation, name) for name in HEADER_STATES}


HEADER_STATES = ("unread", "status", "opt_out", "owner", "snooze", "labels")


@bp.app_template_global()
def header_state(conversation, name: str) -> str:
    """One of header_states: each control's template asks for its own alone."""
    if name == "unread":
        return "1" if conversation.unread_count else "0"
    if name == "status":
        return conversation.status
    if name == "opt_out":
        return ("out" if conversation.opted_out else "in") + ("-retrying" if conversation.blacklist_problem else "")
    if name == "owner":
        return str(conversation.assignee_id or "")
    if name == "snooze":
        return snooze_state(conversation)
    if name == "labels":
        return labels_state(conversation_labels(conversation))
    raise ValueError(f"no header state {name!r}")


def snooze_state(conversation) -> str:
    if conversation.snoozed_until is not None:
        return clock.utc_iso(conversation.snoozed_until)
    return snooze.UNTIL_REPLY if conversation.snoozed_until_reply else ""


def labels_state(chips: list[labels.Chip]) -> str:
    """The header's labels, short: a hash of what they show ("" for none)."""
    shown = repr([(chip.id, chip.name, chip.colour) for chip in chips])
    return hashlib.sha256(shown.encode()).hexdigest()[:12] if chips else ""


@bp.app_template_global()
def conversation_labels(conversation) -> list[labels.Chip]:
    """The conversation's labels, by name (once per request: the header and its state read them)."""
    known = g.setdefault("conversation_labels", {})
    if conversation.id not in known:
        known[conversation.id] = labels.of_conversation(conversation.id)
    return known[conversation.id]


@bp.app_template_global()
def all_labels() -> list:
    """Every label, read once a request: the list's label filter and the header's menu show them."""
    if "all_labels" not in g:
        g.all_labels = labels.all_labels()
    return g.all_labels


@bp.app_template_global()
def owner_of(conversation) -> str | None:
    """The name of the person who owns a conversation; None when unassigned."""
    return owners.username_of(conversation.assignee_id)


@bp.app_template_global()
def teammates() -> list:
    return owners.teammates()


@bp.app_template_global()
def present_others(conversation) -> list[presence.Present]:
    """Who else has this conversation open (once per request: the poll and its line read it)."""
    known = g.setdefault("present_others", {})
    if conversation.id not in known:
        known[conversation.id] = presence.others(conversation.id, current_user.id, clock.now())
    return known[conversation.id]


bp.add_app_template_global(presence.version, "presence_version")
bp.add_app_template_global(presence.lines, "presence_lines")


def thread_page(
    page: queries.ThreadPage, error: str | None = None, text: str | None = None, status: int = 200, **extra
):
    """The whole page: the list beside the conversation."""
    response = render_varying_on_htmx(
        "inbox/thread.html",
        page=page,
        composer=reply_box.for_conversation(page.conversation),
        error=error,
        text=text,
        chart=queries.daily_counts(),
        **list_context(),
        **extra,
    )
    return response, status


OPT_IN_REASON_LENGTH = 500


@bp.post(CONVERSATION + "/opt-out")
def set_opt_out(conversation_id: int):
    """Opt out, or back in. A customer's own STOP is lifted only by an admin, with a reason
    (kept in the audit trail): messages they asked not to get are the business's risk."""
    conversation = conversation_or_404(conversation_id)
    opting_out = request.form.get("opted_out") == "yes"
    reason = " ".join(request.form.get("reason", "").split())[:OPT_IN_REASON_LENGTH]  # spaces only: none
    try:
        optouts.set_opted_out(conversation.id, opting_out, current_user.id, reason, may_lift_stop=current_user.is_admin)
    except optouts.LiftRefused:  # the customer's own STOP (or an erasure's block)
        if not current_user.is_admin:
            abort(403)
        return thread_page(
            queries.open_thread(conversation),
            status=400,
            opt_out_error="Say why the customer's STOP is lifted: the reason goes in the audit trail.",
        )
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
        conversation = contacts.conversation(conversation.id) or abort(404)
        return (
            render_template(
                "inbox/_contact_saved.html",
                conversation=conversation,
                page={"conversation": conversation},  # all the title and heading read
                unread=queries.unread_conversations(),
                composer=reply_box.for_conversation(conversation),
            ),
            {"HX-Trigger": "conversation-changed"},
        )
    return redirect(thread_url(conversation.id), 303)


@bp.post(CONVERSATION + "/status")
def set_status(conversation_id: int):
    """Done puts a conversation aside (it leaves the Open view); Reopen brings it back."""
    conversation = conversation_or_404(conversation_id)
    status = request.form.get("status", "")
    if status not in contacts.STATUSES:
        abort(400, "'status' must be 'open' or 'done'")
    contacts.set_status(conversation.id, status, current_user.id)
    if is_htmx():
        conversation = contacts.conversation(conversation.id) or abort(404)
        return (
            render_template("inbox/_status.html", conversation=conversation)
            # Done ends a snooze: the snooze control beside it follows.
            + render_template("inbox/_snooze.html", conversation=conversation, oob=True),
            {"HX-Trigger": "conversation-changed"},
        )
    return redirect(thread_url(conversation.id), 303)


@bp.post(CONVERSATION + "/assignee")
def set_assignee(conversation_id: int):
    """Assign to me, to a teammate (`assignee` is their id), or back to Unassigned (`none`)."""
    conversation = conversation_or_404(conversation_id)
    chosen = request.form.get("assignee", "")
    if chosen == "me":
        assignee = current_user.id
    elif chosen == "none":
        assignee = None
    else:
        assignee = parse_id(chosen)
        if assignee is None:
            abort(400, "'assignee' must be 'me', 'none' or a person's id")
    try:
        owners.assign(conversation.id, assignee, current_user.id)
    except owners.AssignRefused as refused:
        abort(400, str(refused))
    if is_htmx():
        return (
            render_template("inbox/_owner_update.html", conversation=contacts.conversation(conversation.id)),
            {"HX-Trigger": "conversation-changed"},
        )
    return redirect(thread_url(conversation.id), 303)


# --- snooze ----------------------------------------------------------------------------------

# The presets' names (team.presets) as the snooze menu says them.
SNOOZE_PRESETS = {
    "in an hour": "In an hour",
    "this evening": "This evening",
    "tomorrow": "Tomorrow",
    "next Monday": "Next Monday",
}


@bp.app_template_global()
def snooze_menu() -> dict:
    """What the snooze menu offers now: the presets (label and time), the team's zone, and the
    earliest custom time (now, as a datetime-local input in that zone takes it)."""
    now = clock.now()
    presets: dict = {}
    for name, moment in team.presets(now).items():  # on a Sunday, "next Monday" is tomorrow: once
        presets.setdefault(moment, (name, SNOOZE_PRESETS.get(name, name), moment))
    return {
        "presets": list(presets.values()),
        "zone": team.time_zone_name(),
        "min": team.local(now).strftime("%Y-%m-%dT%H:%M"),
    }


@bp.app_template_global()
def money(amount) -> str:
    """A price in the account's currency: €0.20, 0.20 SEK (the currency read once a request)."""
    if "currency" not in g:
        g.currency = currency.currency()
    return currency.money(amount, g.currency)


@bp.app_template_global()
def conversation_cost(conversation) -> Decimal | None:
    return queries.conversation_cost(conversation.id)


@bp.app_template_global()
def team_time(moment) -> str:
    """A stored time as the team's clocks show it (what a page without JavaScript says)."""
    return team.local(moment).strftime("%Y-%m-%d %H:%M")


@bp.post(CONVERSATION + "/snooze")
def snooze_conversation(conversation_id: int):
    """Snooze until a preset, a date and time in the team's zone, or the customer's reply."""
    conversation = conversation_or_404(conversation_id)
    try:
        until = snooze.until_for(request.form.get("until", ""), request.form.get("custom", ""), clock.now())
        snooze.snooze(conversation.id, until, until is None, current_user.id)
    except snooze.SnoozeRefused as refused:
        if is_htmx():  # the menu again, open, saying why
            return render_template("inbox/_snooze.html", conversation=conversation, snooze_error=str(refused))
        return thread_page(queries.open_thread(conversation), status=400, snooze_error=str(refused))
    return snooze_response(conversation.id)


@bp.post(CONVERSATION + "/unsnooze")
def unsnooze_conversation(conversation_id: int):
    conversation = conversation_or_404(conversation_id)
    snooze.unsnooze(conversation.id, current_user.id)
    return snooze_response(conversation.id)


def snooze_response(conversation_id: int):
    """htmx swaps the snooze control (and the status beside it) and the list polls at once; a plain
    form goes back to the thread."""
    if is_htmx():
        conversation = contacts.conversation(conversation_id) or abort(404)
        return (
            render_template("inbox/_snooze_update.html", conversation=conversation),
            {"HX-Trigger": "conversation-changed"},
        )
    return redirect(thread_url(conversation_id), 303)


# --- labels ----------------------------------------------------------------------------------


@bp.post(CONVERSATION + "/labels")
def set_label(conversation_id: int):
    """Put a label on the conversation (`on=1`) or take it off (`on=0`): the header's label menu."""
    conversation = conversation_or_404(conversation_id)
    label_id = parse_id(request.form.get("label", ""))
    if label_id is None or request.form.get("on") not in ("0", "1"):
        abort(400, "'label' must be a label's id and 'on' 1 or 0")
    try:
        if request.form["on"] == "1":
            labels.add_to(conversation.id, label_id)
        else:
            labels.remove_from(conversation.id, label_id)
    except labels.LabelRefused as refused:  # deleted meanwhile
        abort(409, str(refused))
    if is_htmx():
        return (
            render_template("inbox/_labels.html", conversation=conversation, menu_open=True),
            {"HX-Trigger": "conversation-changed"},
        )
    return redirect(thread_url(conversation.id), 303)


@bp.get("/conversations/<sender>")
def thread_by_sender(sender: str):
    """Links and bookmarks from before conversations had ids: `/conversations/+372...`."""
    conversation = queries.conversation_by_sender(sender) or abort(404)
    return redirect(url_for("inbox.thread", conversation_id=conversation.id), 301)


@bp.post(CONVERSATION + "/read")
def mark_read(conversation_id: int):
    conversation = conversation_or_404(conversation_id)
    read_state.mark_read(conversation.id, through_id=form_id("through"))
    # Read by this person (opened, or new messages seen while it was open): so are their
    # notifications about it.
    marked = notifications.mark_conversation_read(current_user.id, conversation.id)
    notes.mark_mentions_read(current_user.id, conversation.id)
    if is_htmx():
        return render_template(
            "inbox/_read_state.html", conversation=contacts.conversation(conversation.id)
        ) + bell_if_changed(marked)
    return read_state_response(conversation.id)


@bp.post(CONVERSATION + "/unread")
def mark_unread(conversation_id: int):
    conversation = conversation_or_404(conversation_id)
    read_state.mark_unread(conversation.id)
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
        return render_template("inbox/_read_state.html", conversation=contacts.conversation(conversation_id))
    return redirect(url_for("inbox.thread", conversation_id=conversation_id), 303)


bp.add_app_template_global(search.highlight)


@bp.app_errorhandler(replies.ReplyRefused)
def reply_refused(refused: replies.ReplyRefused):
    """A reply refused without JavaScript (app/replies/routes.py): the thread again, with what
    was typed and why; a held one (something new came meanwhile) with what is new."""
    if refused.conversation is None:  # refused before the route knew its conversation
        return str(refused), 400
    page = queries.open_thread(refused.conversation)
    if isinstance(refused, replies.ReplyHeld):  # the send guard: what is new, and "Send anyway"
        return thread_page(page, text=refused.text, status=409, held=refused, seen_message_id=refused.through)
    return thread_page(page, str(refused), refused.text, 400, mode=getattr(refused, "mode", None))
