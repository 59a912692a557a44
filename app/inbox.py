"""The inbox pages, the htmx fragments they poll, and the CSV download."""
from datetime import date, datetime

from flask import (Blueprint, Response, abort, current_app, redirect, render_template, request,
                   stream_with_context, url_for)

from . import export, queries
from .extensions import db
from .ingest import utcnow

bp = Blueprint("inbox", __name__)
LARGEST_ID = 2**62  # anything above is no id of ours (and would overflow a database integer)


def id_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() and int(value) < LARGEST_ID else None


def date_arg(name: str) -> date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        abort(400, f"'{name}' must be a date like 2024-06-01")


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def fragment(template: str, **context) -> Response:
    response = current_app.make_response(render_template(template, **context))
    response.vary.add("HX-Request")
    return response


@bp.get("/")
def index():
    q = request.args.get("q", "").strip()
    since = id_arg("since")
    newest = queries.newest_message_id()
    if since is not None and newest <= since:
        return "", 204  # a poll when nothing changed: one indexed lookup, no body

    rows, next_cursor = queries.conversations(q, before=id_arg("before"),
                                              limit=current_app.config["PAGE_SIZE"])
    context = dict(
        q=q, rows=rows, next_cursor=next_cursor, newest=newest, live=id_arg("before") is None,
        unread=queries.unread_conversations(), callback_url=url_for("callback.inbound", _external=True),
    )
    if is_htmx():
        return fragment("inbox/_conversations.html", partial=True, **context)
    return fragment("inbox/index.html", chart=queries.daily_counts(), **context)


@bp.get("/conversations/<sender>")
def thread(sender: str):
    conversation = queries.conversation(sender) or abort(404)
    sender = conversation.sender
    since = id_arg("since")
    if since is not None:
        messages, _ = queries.thread(sender, after=since)
        if not messages:
            return "", 204
        queries.mark_read(sender)  # they are on screen now
        db.session.commit()
        return fragment("inbox/_thread_update.html", conversation=conversation, messages=messages,
                        newest=messages[-1].id)

    # Marked read first, holding the write lock, so no message can arrive between what is
    # shown and what is marked read.
    queries.mark_read(sender)
    messages, has_older = queries.thread(sender, before=id_arg("before"))
    newest, unread = queries.newest_message_id(sender), queries.unread_conversations()
    db.session.commit()
    return render_template(
        "inbox/thread.html", conversation=conversation, messages=messages, has_older=has_older,
        newest=newest, unread=unread,
    )


@bp.post("/conversations/<sender>/unread")
def mark_unread(sender: str):
    conversation = queries.conversation(sender) or abort(404)
    queries.mark_unread(conversation.sender)
    db.session.commit()
    return redirect(url_for("inbox.index"))


@bp.get("/export.csv")
def export_csv():
    query = export.export_query(
        q=request.args.get("q", "").strip(), sender=request.args.get("sender") or None,
        first_day=date_arg("from"), last_day=date_arg("to"),
    )
    filename = f"sms-inbox-{utcnow():%Y-%m-%d}.csv"
    return Response(
        stream_with_context(export.csv_chunks(query)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                 "Cache-Control": "no-store"},
    )


@bp.app_template_filter("utc_iso")
def utc_iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds") + "Z"
