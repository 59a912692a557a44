"""What the API's operations do, on the same services the web pages use (and so the same rules:
roles as scopes, opt-outs, erasure, the send guard). Each write runs in one write transaction
with its audit events, which name the token ("API: <name>": it stands in for the person)."""

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from app import audit, clock, contacts, replies
from app.accounts import users as accounts
from app.api import idempotency
from app.api.problems import Problem, invalid, missing_scope, not_found, refused
from app.api.tokens import Principal
from app.contacts import labels, optouts, outbound, owners, snooze
from app.db.models import AuditEvent, Conversation, Message, User
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.inbox import queries
from app.inbox.list_views import ListFilter, label_keys
from app.replies import notes, outreach, scheduled
from app.team import currency
from app.webhooks import endpoints

UNCHANGED = object()


def send_time(args: dict) -> datetime | None:
    """A `send_at`, if any, ahead by a minute to a year, as the web's send-later takes it (409 if not)."""
    moment = args.get("send_at")
    if moment is None:
        return None
    now = clock.now()
    if moment < now + scheduled.EARLIEST_AHEAD:
        raise refused("send_at", "That time has passed (or is less than a minute ahead): pick a later one.")
    if moment > now + scheduled.LONGEST_AHEAD:
        raise refused("send_at", "Messages can be scheduled up to a year ahead.")
    return moment


# --- conversations -----------------------------------------------------------------------


def conversation_page(args: dict) -> queries.ConversationPage:
    """A page of the list, as the inbox shows it: a view (status) and its filters, a search."""
    list_filter = ListFilter(
        view=args["status"],
        channel=args.get("channel"),
        recipient=args.get("to"),
        assignee=args.get("assignee"),
        labels=label_keys(args.get("label", [])),
    )
    return queries.conversations(
        (args.get("q") or "").strip(),
        before=args.get("before"),
        after=args.get("after"),
        limit=args["limit"],
        list_filter=list_filter,
    )


def conversation(conversation_id: int) -> Conversation:
    """A conversation with its owner's name; 404 when there is none (never was, or erased)."""
    found = contacts.conversation(conversation_id)
    if found is None:
        raise not_found("conversation")
    return queries.with_owners([found])[0]


def change_conversation(conversation_id: int, principal: Principal, changes: dict) -> Conversation:
    """Status, owner and snooze, together or any: all or none are stored, each audited as the token."""
    conversation(conversation_id)
    if changes.get("snoozed_until_reply") and "snoozed_until" in changes:
        raise refused("snoozed_until", "Snooze until a time, or until the customer replies: not both.")
    if changes.get("status") == "done" and (changes.get("snoozed_until") or changes.get("snoozed_until_reply")):
        raise refused("status", "A snoozed conversation is open: snooze it, or mark it done.")
    if changes.get("snoozed_until") is not None and changes["snoozed_until"] <= clock.now():
        raise refused("snoozed_until", "Choose a time in the future.")
    with write_transaction():
        if "status" in changes and contacts.set_status(conversation_id, changes["status"]):
            audit.record("status_changed", {"conversation": conversation_id, "status": changes["status"]})
        if "assignee_id" in changes:
            try:
                owners.assign(conversation_id, changes["assignee_id"], None, by_name=principal.username)
            except owners.AssignRefused as exc:
                raise refused("assignee_id", str(exc)) from None
        try:
            if "snoozed_until" in changes and changes["snoozed_until"] is None:
                snooze.unsnooze(conversation_id, None)
            elif "snoozed_until" in changes:
                snooze.snooze(conversation_id, changes["snoozed_until"], False, None)
            elif changes.get("snoozed_until_reply"):
                snooze.snooze(conversation_id, None, True, None)
        except snooze.SnoozeRefused as exc:
            raise refused("snoozed_until", str(exc)) from None
    db.session.expire_all()
    return conversation(conversation_id)


# --- messages ----------------------------------------------------------------------------


@dataclass
class MessagePage:
    messages: list[dict]
    older: int | None
    newer: int | None


def message_page(conversation_id: int, before: int | None, after: int | None, limit: int) -> MessagePage:
    """A page of a thread, oldest first: the newest messages, or those before or after an id."""
    page = queries.open_thread(conversation(conversation_id), before=before, after=after, limit=limit)
    rows = [message_json(row, page.authors, conversation_id) for row in page.messages]
    older = rows[0]["id"] if page.has_older and rows else None
    newer = rows[-1]["id"] if page.has_newer and rows else None
    return MessagePage(rows, older, newer)


def message_json(row, authors: dict, conversation_id: int) -> dict:
    """A message (a thread row) with its author's name."""
    author = None
    if row.direction in ("out", "note"):
        author = authors.get(("api", row.api_token_id)) if row.api_token_id else authors.get(row.author_id)
    return {
        "id": row.id,
        "conversation_id": conversation_id,
        "direction": row.direction,
        "channel": row.channel,
        "sender": row.sender,
        "recipient": row.recipient,
        "text": row.text,
        "sent_at": row.sent_at,
        "received_at": row.received_at,
        "status": row.status,
        "delivery": row.delivery,
        "problem": row.problem,
        "author": author,
        "price": None if row.price is None else currency.price_text(row.price),
        "parts": row.parts,
    }


def stored_message(message_id: int) -> dict:
    """A message as stored: of the thread, or one scheduled (not the thread's until it is sent)."""
    row = db.session.execute(
        sa.select(*queries.THREAD_COLUMNS).add_columns(Message.conversation_id).where(Message.id == message_id)
    ).one()
    return message_json(row, queries.authors_of([row]), row.conversation_id)


def send_reply(
    conversation_id: int,
    principal: Principal,
    args: dict,
    key: str | None,
    request_hash: str,
    render: Callable[[dict], dict],
) -> tuple[int, dict, bool]:
    """Queue a reply as the token (it never becomes the owner); (status, body, replayed).
    With an Idempotency-Key, a retry answers what the first request did and sends nothing;
    with `seen_message_id`, a newer message from someone else holds it (409, nothing stored)."""
    found = conversation(conversation_id)
    # The reply's own one-time key: a retry is caught by its Idempotency-Key (checked again
    # holding the write lock, in app/api/idempotency.py), so each new request is a new reply.
    reply_key = secrets.token_urlsafe(24)

    if args["kind"] == "note" and "send_at" in args:
        raise refused("send_at", "A note is never sent: it takes no send_at.")
    send_at = send_time(args)

    def work() -> tuple[int, dict]:
        if args["kind"] == "note":
            try:
                note_id = notes.add_note(
                    conversation_id, args["text"], None, reply_key, api_token_id=principal.token_id
                )
            except notes.NoteRefused as refusal:
                raise refused("text", str(refusal)) from None
            return 201, render(stored_message(note_id))
        try:
            reply_id = replies.queue_reply(
                found,
                args["text"],
                "",
                None,
                None,
                reply_key,
                seen_message_id=args.get("seen_message_id"),
                send_at=send_at,
                api_token_id=principal.token_id,
            )
        except replies.ReplyHeld as held:
            raise Problem(
                409,
                "reply-held",
                "Reply held",
                "Messages came after seen_message_id: nothing was sent. Read them, then send again "
                "with the newest id as seen_message_id.",
                newer=[
                    {
                        "id": new.id,
                        "direction": new.direction,
                        "author": new.author,
                        "received_at": clock.utc_iso(new.received_at),
                        "preview": new.preview,
                    }
                    for new in held.newer
                ],
                more=held.more,
            ) from None
        except replies.ReplyRefused as refusal:
            raise refused("text", str(refusal)) from None
        return 201, render(stored_message(reply_id))

    return idempotency.once(principal.token_id, key, request_hash, work)


def cancel_scheduled(message_id: int) -> None:
    """Cancel a scheduled message (scheduled, held or missed): Problem 409 once it is on its way
    or sent (its id then gone: the reply that took its place has its own), 404 for none."""
    row = db.session.execute(
        sa.select(Message.conversation_id, Message.status, Message.send_at).where(Message.id == message_id)
    ).first()
    if row is None:
        if _sent_from_schedule(message_id):
            raise refused("id", "This scheduled message was sent: it can no longer be cancelled.")
        raise not_found("message")
    if row.send_at is None or row.status not in scheduled.WAITING:
        detail = "cancelled already" if row.status == "cancelled" else "not a scheduled message waiting to be sent"
        raise refused("id", f"This message is {detail}: nothing to cancel.")
    if not scheduled.cancel(row.conversation_id, message_id):
        raise refused("id", "This scheduled message is on its way: it can no longer be cancelled.")


def _sent_from_schedule(message_id: int) -> bool:
    """Whether a scheduled message of this id was sent (its row swapped for a reply): the audit
    trail's `scheduled_sent` event names it."""
    details = AuditEvent.details
    return (
        db.session.scalar(
            sa.select(AuditEvent.id)
            .where(
                AuditEvent.action == "scheduled_sent",
                sa.or_(details.like(f'%"scheduled": {message_id},%'), details.like(f'%"scheduled": {message_id}}}%')),
            )
            .limit(1)
        )
        is not None
    )


def send_new(
    principal: Principal, args: dict, key: str | None, request_hash: str, render: Callable[[dict], dict]
) -> tuple[int, dict, bool]:
    """A message to any number (or contact), starting or continuing its conversation, now or at
    `send_at`, as the token; (status, body, replayed), as send_reply. A number that is none (the
    number rules refuse it), opted out or suppressed, or a channel we can't send on: a 409."""
    try:
        outbound.recipient(args["to"])
    except outbound.RecipientRefused as refusal:  # shaped as a number (the schema's 422), but none
        raise refused("to", str(refusal)) from None
    offered = outreach.offer()
    if offered.can_reply and args["channel"] not in [route.value for route in offered.routes]:
        raise refused("channel", f"Nothing can be sent on {args['channel']}: no sender is set up for it.")
    send_at = send_time(args)
    message_key = secrets.token_urlsafe(24)

    def work() -> tuple[int, dict]:
        try:
            _, message_id = outreach.send_new(
                args["to"],
                args["text"],
                args["channel"],
                None,
                None,
                message_key,
                send_at=send_at,
                api_token_id=principal.token_id,
            )
        except outreach.NewMessageRefused as refusal:
            raise refused("to", str(refusal)) from None
        return 201, render(stored_message(message_id))

    return idempotency.once(principal.token_id, key, request_hash, work)


# --- contacts ----------------------------------------------------------------------------


def contact(conversation_id: int) -> dict:
    found = conversation(conversation_id)
    return {
        "id": found.id,
        "contact_name": found.contact_name,
        "contact_note": found.contact_note,
        "numbers": [found.sender],
        "opted_out": found.opted_out,
        "opt_in_needs_admin": optouts.needs_admin(found),
    }


def change_contact(conversation_id: int, changes: dict) -> dict:
    found = conversation(conversation_id)
    name = changes.get("name", found.contact_name) or ""
    note = changes.get("note", found.contact_note) or ""
    try:
        contacts.set_contact(conversation_id, name, note)
    except contacts.ContactRefused as exc:
        raise refused("name" if "name" in str(exc) else "note", str(exc)) from None
    db.session.expire_all()
    return contact(conversation_id)


def set_opted_out(conversation_id: int, principal: Principal, opted_out: bool, reason: str = "") -> dict:
    """Opt out, or back in. Lifting a customer's own STOP (or an erasure's block) takes the
    admin scope and a reason, as on the web it takes an admin and a reason. An opt-out made with
    a token counts as no person's: lifting it takes the admin scope and a reason too."""
    conversation(conversation_id)
    reason = " ".join(reason.split())
    try:
        optouts.set_opted_out(conversation_id, opted_out, None, reason, may_lift_stop=principal.is_admin)
    except optouts.LiftRefused:
        if not principal.is_admin:
            raise missing_scope("admin") from None
        raise refused("reason", "Say why the customer's STOP is lifted: the reason goes in the audit trail.") from None
    db.session.expire_all()
    return contact(conversation_id)


# --- labels ------------------------------------------------------------------------------


def all_labels() -> list:
    return labels.all_labels()


def label(label_id: int):
    found = labels.label(label_id)
    if found is None:
        raise not_found("label")
    return found


def create_label(name: str, colour: str):
    try:
        label_id = labels.create(name, colour)
    except labels.LabelRefused as exc:
        raise refused("name", str(exc)) from None
    return label(label_id)


def change_label(label_id: int, changes: dict):
    """Name and colour, together or either: both or neither are stored, each change audited."""
    found = label(label_id)
    try:
        with write_transaction():
            if "name" in changes:
                labels.rename(label_id, changes["name"])
            if "colour" in changes:
                labels.recolour(label_id, changes["colour"])
    except labels.LabelRefused as exc:
        raise refused("name", str(exc)) from None
    db.session.expire_all()
    return label(found.id)


def delete_label(label_id: int) -> None:
    label(label_id)
    try:
        labels.delete(label_id)
    except labels.LabelRefused:
        raise not_found("label") from None


def label_conversation(conversation_id: int, label_id: int, on: bool) -> None:
    """Put a label on a conversation, or take it off; either again changes nothing."""
    conversation(conversation_id)
    label(label_id)
    try:
        if on:
            labels.add_to(conversation_id, label_id)
        else:
            labels.remove_from(conversation_id, label_id)
    except labels.LabelRefused:
        raise not_found("label") from None


# --- users -------------------------------------------------------------------------------


def all_users() -> list[User]:
    return list(db.session.scalars(sa.select(User).order_by(User.username)))


def user(user_id: int) -> User:
    found = db.session.get(User, user_id)
    if found is None:
        raise not_found("user")
    return found


def create_user(username: str, role: str) -> tuple[User, str, datetime]:
    """A new account (audited) and its one-time link's token, and until when the link works."""
    try:
        account, token = accounts.invite(username, role)
    except ValueError as exc:
        raise refused("username", str(exc)) from None
    assert account.reset_expires_at is not None
    return account, token, account.reset_expires_at


def change_user(user_id: int, changes: dict) -> User:
    """Role and disabled, each audited; the last active admin stays one."""
    account = user(user_id)
    try:
        with write_transaction():
            if "role" in changes and changes["role"] != account.role:
                accounts.change_role(account, changes["role"])
            if "disabled" in changes and changes["disabled"] != account.disabled:
                (accounts.disable if changes["disabled"] else accounts.enable)(account)
    except ValueError as exc:
        raise refused("role" if "role" in changes else "disabled", str(exc)) from None
    return user(user_id)


# --- webhooks ----------------------------------------------------------------------------


def webhook_json(endpoint, secret: str | None = None) -> dict:
    shown = {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events.split(),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": endpoint.created_at,
    }
    return shown | ({"secret": secret} if secret is not None else {})


def all_webhooks() -> list[dict]:
    return [webhook_json(endpoint) for endpoint in endpoints.listing()]


def webhook(endpoint_id: int) -> dict:
    found = endpoints.get(endpoint_id)
    if found is None:
        raise not_found("webhook")
    return webhook_json(found)


def create_webhook(url: str, events: list[str]) -> dict:
    """Subscribe a URL (audited as the token): its secret is in this answer only."""
    try:
        endpoint, secret = endpoints.create_endpoint(url, events)
    except ValueError as exc:  # an address we don't deliver to (checked as resolved now)
        raise invalid("url", str(exc)) from None
    return webhook_json(endpoint, secret)


def change_webhook(endpoint_id: int, changes: dict) -> dict:
    webhook(endpoint_id)
    try:
        if "url" in changes or "events" in changes:
            endpoints.update_endpoint(endpoint_id, changes.get("url"), changes.get("events"))
        if "enabled" in changes:
            endpoints.set_enabled(endpoint_id, changes["enabled"])
    except ValueError as exc:
        raise invalid("url", str(exc)) from None
    db.session.expire_all()
    return webhook(endpoint_id)


def rotate_webhook_secret(endpoint_id: int) -> dict:
    """A new secret; the one before still signs deliveries for WEBHOOK_SECRET_OVERLAP_HOURS."""
    webhook(endpoint_id)
    secret = endpoints.rotate_secret(endpoint_id)
    db.session.expire_all()
    return webhook(endpoint_id) | {"secret": secret}


def delete_webhook(endpoint_id: int) -> None:
    webhook(endpoint_id)
    endpoints.delete_endpoint(endpoint_id)
