"""Replies from the thread (sent later by the job runner), their retries, and the saved replies
admins manage."""

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user

from app import clock, contacts, replies, team
from app.contacts import outbound
from app.replies import delivery, notes, outreach, reply_box, saved_replies, scheduled, sms_length
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
        send_at = send_later_time(form)
        reply_id = replies.queue_reply(
            conversation,
            form.get("text", ""),
            form.get("route", ""),
            form.get("sms_sender"),
            current_user.id,
            form.get("key", ""),
            seen_message_id=seen,
            send_at=send_at,
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


def send_later_time(form):
    """The time a form asks to send at: None to send now (no "schedule" button pressed)."""
    if not form.get("schedule"):
        return None
    try:
        return scheduled.parse_when(form.get("when", ""), form.get("send_at_local", ""))
    except scheduled.ScheduleRefused as refused:
        raise replies.ReplyRefused(str(refused)) from None


@bp.post(CONVERSATION + f"/replies/<int(max={LARGEST_ID}):reply_id>/retry")
def retry_reply(conversation_id: int, reply_id: int):
    conversation = conversation_or_404(conversation_id)
    replies.retry(conversation.id, reply_id)
    if is_htmx():
        return "", 204, {"HX-Trigger": "poll-now"}
    return redirect(url_for("inbox.thread", conversation_id=conversation.id), 303)


# --- scheduled messages: edit, cancel, send now ------------------------------------------------

SCHEDULED = CONVERSATION + f"/scheduled/<int(max={LARGEST_ID}):message_id>"
TOO_LATE = "Too late: it is already on its way (or sent, or cancelled)."


def scheduled_answer(conversation, done: bool, note: str):
    """After a change to a scheduled message: with htmx the thread's scheduled block, saying what
    happened; without, the thread (done) or the edit page saying why not."""
    if is_htmx():
        return render_template("replies/_scheduled.html", conversation=conversation, note=note if not done else None), {
            "HX-Trigger": "poll-now"
        }
    if done:
        return redirect(url_for("inbox.thread", conversation_id=conversation.id), 303)
    return render_template("replies/scheduled_gone.html", conversation=conversation, note=note), 409


@bp.get(SCHEDULED + "/edit")
def edit_scheduled(conversation_id: int, message_id: int):
    conversation = conversation_or_404(conversation_id)
    waiting = scheduled.one(conversation.id, message_id)
    if waiting is None:
        return render_template("replies/scheduled_gone.html", conversation=conversation, note=TOO_LATE), 404
    return render_template("replies/scheduled_edit.html", conversation=conversation, waiting=waiting)


@bp.post(SCHEDULED + "/edit")
def save_scheduled(conversation_id: int, message_id: int):
    conversation = conversation_or_404(conversation_id)
    form = request.form
    try:
        send_at = scheduled.parse_when(form.get("when", ""), form.get("send_at_local", ""))
        done = scheduled.edit(conversation.id, message_id, form.get("text", ""), send_at)
    except scheduled.ScheduleRefused as refused:
        waiting = scheduled.one(conversation.id, message_id)
        if waiting is None:
            return render_template("replies/scheduled_gone.html", conversation=conversation, note=TOO_LATE), 409
        return render_template(
            "replies/scheduled_edit.html",
            conversation=conversation,
            waiting=waiting,
            error=str(refused),
            typed=form,
        ), 400
    if not done:
        return render_template("replies/scheduled_gone.html", conversation=conversation, note=TOO_LATE), 409
    return redirect(url_for("inbox.thread", conversation_id=conversation.id), 303)


@bp.post(SCHEDULED + "/cancel")
def cancel_scheduled(conversation_id: int, message_id: int):
    conversation = conversation_or_404(conversation_id)
    done = scheduled.cancel(conversation.id, message_id)
    return scheduled_answer(conversation, done, "Too late to cancel: it is already on its way.")


@bp.post(SCHEDULED + "/send")
def send_scheduled_now(conversation_id: int, message_id: int):
    conversation = conversation_or_404(conversation_id)
    done = scheduled.send_now(conversation.id, message_id) is not None
    return scheduled_answer(conversation, done, TOO_LATE)


@bp.app_template_global()
def scheduled_waiting(conversation) -> list:
    """A thread's scheduled messages (none read while its count says there are none)."""
    return scheduled.waiting_in(conversation.id) if conversation.scheduled_count else []


@bp.app_template_global()
def send_later_choices() -> list[tuple[str, str, str]]:
    """(value, label, UTC ISO time) of the send-later presets, in the team's zone."""
    labels = {"in an hour": "In an hour", "tomorrow": "Tomorrow", "next Monday": "Next Monday"}
    return [
        (name, f"{labels[name]}, {team.local(moment).strftime('%a %d %b %H:%M')}", clock.utc_iso(moment))
        for name, moment in scheduled.presets().items()
    ]


@bp.app_template_global()
def team_time_zone_name() -> str:
    return team.time_zone_name()


@bp.app_template_filter("team_local")
def team_local(moment) -> str:
    """A stored time as the team reads it: Tue 09:00 this week, else with its date."""
    here, now = team.local(moment), team.local(clock.now())
    if abs((here.date() - now.date()).days) < 6:
        return here.strftime("%a %H:%M")
    return here.strftime("%a %d %b %Y %H:%M")


# --- new messages ------------------------------------------------------------------------------


@bp.get("/messages/new")
def new_message():
    return render_new_message()


@bp.post("/messages/new")
def send_new_message():
    form = request.form
    try:
        send_at = send_later_time(form)
        conversation_id, _ = outreach.send_new(
            form.get("to", ""),
            form.get("text", ""),
            form.get("route", ""),
            form.get("sms_sender"),
            current_user.id,
            form.get("key", ""),
            send_at=send_at,
        )
    except (outreach.NewMessageRefused, replies.ReplyRefused) as refused:
        return render_new_message(error=str(refused), typed=form), 400
    return redirect(url_for("inbox.thread", conversation_id=conversation_id), 303)


@bp.post("/messages/new/default-region")
@admin_required
def set_default_region():
    try:
        outbound.set_default_region(request.form.get("region", ""))
    except ValueError as refused:
        return render_new_message(region_error=str(refused)), 400
    return redirect(url_for("replies.new_message"), 303)


def render_new_message(**context):
    return render_template(
        "replies/new_message.html",
        composer=outreach.offer(),
        region=outbound.default_region(),
        regions=outbound.regions(),
        to=request.args.get("to", ""),
        **context,
    )


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
        "scheduled": "Scheduled",
        "held": "Held",
        "missed": "Missed",
        "cancelled": "Cancelled",
    }.get(message.status, "")
