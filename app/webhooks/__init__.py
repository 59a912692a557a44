"""Webhooks: admins subscribe URLs to events, and every change they name is delivered, signed.

`emit` adds one `webhook_event` row inside the caller's write transaction, so the event commits
with the change that caused it or not at all; when no enabled endpoint takes that type of event
it writes nothing (one small read per transaction). Committing also leaves one `webhooks_dispatch`
job due shortly (one however many events), which hands each endpoint with new events to its own
`webhooks_deliver` job: an endpoint's deliveries run one at a time in event order, so a slow or
dead receiver holds up only itself, never a callback, a page or another endpoint. See
delivery.py for the attempts, endpoints.py for subscribing, signing.py and addresses.py for the
signatures and where deliveries may go, and docs/webhooks.md for what receivers get.

The helpers below build an event's `data` from the rows as they are in the transaction: callers
name what changed in one line (`webhooks.message_event("message.updated", reply_id)`).
"""

import json
import secrets
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app import clock
from app.db.models import Conversation, Message, User, WebhookEndpoint, WebhookEvent
from app.extensions import db
from app.team.currency import price_text

# Every event type, with what it reports (the admin page's checkboxes say this).
EVENT_TYPES = {
    "message.created": "A message: one from a customer, a reply, or a team's note",
    "message.updated": "A reply's status or delivery report changed",
    "conversation.created": "A conversation began: a new customer wrote, or the team wrote first",
    "conversation.updated": "A conversation's status, owner, labels or snooze changed",
    "contact.opted_out": "A customer opted out (STOP), or a person opted them out",
    "contact.opted_in": "A customer opted back in",
}
DISPATCH = "webhooks_dispatch"
DELIVER = "webhooks_deliver"
DIRECTIONS = {"in": "inbound", "out": "outbound"}


def emit(event_type: str, data: dict, conversation_id: int | None = None, message_id: int | None = None) -> None:
    """Record one event in the caller's write transaction; nothing when no enabled endpoint takes
    this type. Its body is fixed now: every attempt sends the same bytes."""
    session = db.session()
    if not session.info.get("writing"):
        raise RuntimeError("webhooks.emit() is only for use inside write_transaction()")
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    if event_type not in subscribed_types(session):
        return
    now = clock.now()
    body = {"type": event_type, "timestamp": clock.utc_iso(now, "milliseconds"), "data": data}
    session.execute(
        sa.insert(WebhookEvent).values(
            uid=new_event_id(),
            type=event_type,
            conversation_id=conversation_id,
            message_id=message_id,
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            created_at=now,
        )
    )
    if not session.info.get("webhooks_dispatch"):
        session.info["webhooks_dispatch"] = True
        delivery.dispatch_soon(now)


def subscribed_types(session: Session) -> frozenset[str]:
    """The event types some enabled endpoint takes: read once per write transaction."""
    if "webhooks_types" not in session.info:
        rows = session.scalars(sa.select(WebhookEndpoint.events).where(WebhookEndpoint.enabled))
        session.info["webhooks_types"] = frozenset(word for events in rows for word in events.split())
    return session.info["webhooks_types"]


def new_event_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


@sa.event.listens_for(Session, "after_commit")
@sa.event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop("webhooks_types", None)
    session.info.pop("webhooks_dispatch", None)


# --- events' data, from the rows as the transaction has them -------------------------------------


def iso(moment) -> str | None:
    return None if moment is None else clock.utc_iso(moment)


def message_event(event_type: str, message_id: int) -> None:
    """message.created or message.updated for one message, as it is now."""
    if event_type in subscribed_types(db.session()):
        for data in messages_data([message_id]):
            emit(event_type, data, data["conversation_id"], data["id"])


def messages_data(message_ids: Iterable[int]) -> list[dict]:
    rows = db.session.execute(
        sa.select(
            Message.id,
            Message.conversation_id,
            Message.direction,
            Message.channel,
            Message.text,
            Message.sender,
            Message.recipient,
            Message.status,
            Message.delivery,
            Message.problem,
            Message.sent_at,
            Message.received_at,
            Message.price,
            Message.parts,
            User.username,
        )
        .outerjoin(User, User.id == Message.author_id)
        .where(Message.id.in_(list(message_ids)))
        .order_by(Message.id)
    ).all()
    return [
        {
            "id": row.id,
            "conversation_id": row.conversation_id,
            "direction": DIRECTIONS.get(row.direction, row.direction),
            "channel": row.channel,
            "text": row.text,
            "sender": row.sender,
            "recipient": row.recipient,
            "status": row.status,
            "delivery": row.delivery,
            "problem": row.problem,
            "author": row.username,
            "sent_at": iso(row.sent_at),
            "received_at": iso(row.received_at),
            "price": None if row.price is None else price_text(row.price),
            "parts": row.parts,
        }
        for row in rows
    ]


def conversation_event(event_type: str, conversation_id: int, changed: Iterable[str] = ()) -> None:
    """conversation.created or conversation.updated (naming what `changed`), as it is now."""
    if event_type in subscribed_types(db.session()):
        for data in conversations_data([conversation_id]):
            emit(event_type, data | ({"changed": sorted(changed)} if changed else {}), conversation_id)


def conversations_data(conversation_ids: Iterable[int]) -> list[dict]:
    rows = db.session.execute(
        sa.select(
            Conversation.id,
            Conversation.sender,
            Conversation.contact_name,
            Conversation.channel,
            Conversation.status,
            Conversation.opted_out,
            Conversation.last_inbound_at,
            Conversation.label_names,
            Conversation.snoozed_until,
            Conversation.snoozed_until_reply,
            User.username,
        )
        .outerjoin(User, User.id == Conversation.assignee_id)
        .where(Conversation.id.in_(list(conversation_ids)))
        .order_by(Conversation.id)
    ).all()
    return [
        {
            "id": row.id,
            "number": row.sender,
            "name": row.contact_name,
            "channel": row.channel,
            "status": row.status,
            "owner": row.username,
            "opted_out": row.opted_out,
            "last_inbound_at": iso(row.last_inbound_at),
            "labels": row.label_names.split(", ") if row.label_names else [],
            "snoozed_until": iso(row.snoozed_until),
            "snoozed_until_reply": row.snoozed_until_reply,
        }
        for row in rows
    ]


def contact_event(conversation_id: int, opted_out: bool, by: str, message_id: int | None = None) -> None:
    """contact.opted_out or contact.opted_in: `by` "customer" (a keyword message) or "user"."""
    event_type = "contact.opted_out" if opted_out else "contact.opted_in"
    if event_type in subscribed_types(db.session()):
        number = db.session.scalar(sa.select(Conversation.sender).where(Conversation.id == conversation_id))
        data = {"conversation_id": conversation_id, "number": number, "by": by, "message_id": message_id}
        emit(event_type, data, conversation_id)


def inbound(conversation_ids: Iterable[int], message_ids: Iterable[int]) -> None:
    """Ingest's events, before the conversations move on to the new messages: conversation.created
    for the conversations this batch started, message.created for each message, and
    conversation.updated for those a message opened again (they were done)."""
    types = subscribed_types(db.session())
    if not types & {"conversation.created", "message.created", "conversation.updated"}:
        return
    conversations = conversations_data(conversation_ids)
    new = set(
        db.session.scalars(
            sa.select(Conversation.id).where(
                Conversation.id.in_([data["id"] for data in conversations]), Conversation.last_message_id.is_(None)
            )
        )
    )
    for data in conversations:
        if data["id"] in new:
            emit("conversation.created", data | {"status": "open"}, data["id"])
    if "message.created" in types:
        for data in messages_data(message_ids):
            emit("message.created", data, data["conversation_id"], data["id"])
    for data in conversations:
        if data["status"] == "done" and data["id"] not in new:
            emit("conversation.updated", data | {"status": "open", "changed": ["status"]}, data["id"])


from app.webhooks import delivery  # noqa: E402 (registers the kinds of job; it imports this module)

__all__ = ["EVENT_TYPES", "delivery", "emit"]
