"""Replies from the thread (sent later by the job runner), their retries, and the saved replies
admins manage."""

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user

from app import contacts, replies
from app.replies import delivery, notes, reply_box, saved_replies, sms_length
from app.web.access import admin_required
from app.web.htmx import is_htmx
from app.web.request_args import LARGEST_ID, parse_id

bp = Blueprint("replies", __name__)
CONVERSATION = f"/conversations/<int(max={LARGEST_ID}):conversation_id>"


def conversation_or_404(conversation_id: int):
    return contacts.conversation(conversation_id) or abort(404)


@bp.post(CONVERSATION + "/replies")
def reply(conversation_id: int):
    conversation = conversation_or_404(conversation_id)
    form = request.form
    if form.get("mode") == notes.NOTE:  # the box in Note mode: stored for the team, never sent
        return add_note(conversation)
    # The newest message the writer had on screen (the send guard); missing: nothing is checked.
    seen = parse_id(form.get("seen_message_id", ""))
    try:
        reply_id = replies.queue_reply(
            conversation,
            form.get("text", ""),
            form.get("route", ""),
            form.get("sms_sender"),
            current_user.id,
            form.get("key", ""),
            seen_message_id=seen,
        )
    except replies.ReplyRefused as refused:
        held = refused if isinstance(refused, replies.ReplyHeld) else None
        if is_htmx():  # the box again, with what was typed and why it was not sent
            response = current_app.make_response(
                render_template(
                    "replies/_composer.html",
                    conversation=conversation,
                    error=None if held else str(refused),
                    held=held,
                    seen_message_id=held.through if held else seen,
                    text=form.get("text"),
                    composer=reply_box.for_conversation(conversation),
                )
            )
            if held:
                response.headers["HX-Trigger"] = "poll-now"  # the thread shows what is new too
            return response
        refused.conversation, refused.text = conversation, form.get("text")
        raise  # the inbox draws the thread page again (app/inbox/routes.py, reply_refused)
    if is_htmx():
        response = current_app.make_response(
            render_template(
                "replies/_composer.html",
                conversation=conversation,
                # Everything up to the reply just stored was seen (the guard checked) or is one's own.
                seen_message_id=reply_id if seen is not None else None,
                composer=reply_box.for_conversation(conversation),
            )
        )
        response.headers["HX-Trigger"] = "poll-now"  # the thread's poller brings the new bubble
        return response
    return redirect(url_for("inbox.thread", conversation_id=conversation.id), 303)


@bp.post(CONVERSATION + "/notes")
def note(conversation_id: int):
    """The box where nothing can be sent (opted out, no sender, no API key) writes notes only."""
    return add_note(conversation_or_404(conversation_id))


def add_note(conversation):
    """A private note from the box in Note mode (app/replies/notes.py): the box comes back in
    Note mode, with a new key, and the thread's poller brings the note."""
    form = request.form
    try:
        notes.add_note(conversation.id, form.get("text", ""), current_user.id, form.get("key", ""))
    except notes.NoteRefused as refused:
        if is_htmx():  # the box again, with what was typed and why it was not stored
            return render_template(
                "replies/_composer.html",
                conversation=conversation,
                error=str(refused),
                text=form.get("text"),
                mode=notes.NOTE,
                seen_message_id=parse_id(form.get("seen_message_id", "")),
                composer=reply_box.for_conversation(conversation),
            )
        refused.conversation, refused.text = conversation, form.get("text")
        raise  # the inbox draws the thread page again (app/inbox/routes.py, reply_refused)
    if is_htmx():
        response = current_app.make_response(
            render_template(
                "replies/_composer.html",
                conversation=conversation,
                mode=notes.NOTE,
                seen_message_id=parse_id(form.get("seen_message_id", "")),
                composer=reply_box.for_conversation(conversation),
            )
        )
        response.headers["HX-Trigger"] = "poll-now"  # the thread's poller brings the note
        return response
    return redirect(url_for("inbox.thread", conversation_id=conversation.id), 303)


@bp.app_template_global()
def mentionable_names() -> list[str]:
    """The usernames a note's `@` offers: active teammates, oneself aside."""
    return [person.username for person in notes.mentionable() if person.id != current_user.id]


@bp.post(CONVERSATION + f"/replies/<int(max={LARGEST_ID}):reply_id>/retry")
def retry_reply(conversation_id: int, reply_id: int):
    conversation = conversation_or_404(conversation_id)
    replies.retry(conversation.id, reply_id)
    if is_htmx():
        return "", 204, {"HX-Trigger": "poll-now"}
    return redirect(url_for("inbox.thread", conversation_id=conversation.id), 303)


# --- the page where admins manage them -------------------------------------------------------


@bp.get("/saved-replies")
@admin_required
def saved_replies_page():
    return render_template(
        "replies/saved_replies.html", saved=saved_replies.all_saved(), edit=request.args.get("edit", type=int)
    )


@bp.post("/saved-replies")
@admin_required
def create_saved_reply():
    return store_saved_reply(None)


@bp.post("/saved-replies/<int:saved_id>")
@admin_required
def update_saved_reply(saved_id: int):
    return store_saved_reply(saved_id)


@bp.post("/saved-replies/<int:saved_id>/delete")
@admin_required
def delete_saved_reply(saved_id: int):
    saved_replies.delete(saved_id)
    return redirect(url_for("replies.saved_replies_page"), 303)


def store_saved_reply(saved_id: int | None):
    form = request.form
    try:
        saved_replies.save(form.get("title", ""), form.get("text", ""), saved_id)
    except saved_replies.SavedReplyRefused as refused:
        # The page again with what was typed and why: nothing typed is lost.
        return render_template(
            "replies/saved_replies.html",
            saved=saved_replies.all_saved(),
            edit=saved_id,
            error=str(refused),
            typed={"title": form.get("title", ""), "text": form.get("text", "")},
        ), 400
    return redirect(url_for("replies.saved_replies_page"), 303)


bp.add_app_template_global(replies.can_send_again)


@bp.app_context_processor
def reply_limits() -> dict[str, int]:
    return {"max_reply_length": sms_length.MAX_TEXT}


@bp.app_template_global()
def reply_status(message) -> str:
    """A reply's state in words: delivery reports, once there are any, say the most."""
    if message.status == "sent" and message.delivery:
        return delivery.STATUS_WORDS[message.delivery]
    return {
        "queued": "Queued",
        "sending": "Sending…",
        "sent": "Sent",
        "failed": "Not sent",
        "unconfirmed": "Unconfirmed: it may or may not have been sent",
        "retrying": "Retrying",
    }.get(message.status, "")
