"""Filing inbound messages: validate a signed body, insert it once, keep the conversation current.

These functions flush but never commit: the caller commits once, then acknowledges.
"""
import json
import re
from dataclasses import dataclass
from functools import cache
from datetime import UTC, datetime

import sqlalchemy as sa

from .extensions import begin_write, db, upsert
from .models import (
    CHANNEL_LENGTH, ID_LENGTH, NUMBER_LENGTH, PREVIEW_LENGTH,
    Conversation, DailyCount, DeadLetter, Message,
)

REQUIRED = ("msg_id", "sender", "text", "time")
OPTIONAL = ("sub_msg_id", "channel", "recipient")
MAX_LENGTH = {
    "msg_id": ID_LENGTH, "sub_msg_id": ID_LENGTH, "sender": NUMBER_LENGTH,
    "recipient": NUMBER_LENGTH, "channel": CHANNEL_LENGTH,
}
SEARCH_NOISE = re.compile(r"[+\s\-()]")


class InvalidPayload(ValueError):
    """A body we cannot file; the message names the field."""


@dataclass(frozen=True)
class Inbound:
    msg_id: str
    sub_msg_id: str | None
    channel: str
    recipient: str | None
    sender: str
    text: str
    sent_at: datetime
    raw_body: bytes


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def clean_text(value: str) -> str:
    """Make any decoded JSON string storable: lone surrogates and NUL become U+FFFD.

    PostgreSQL text cannot hold NUL and UTF-8 cannot hold a lone surrogate; the raw body
    keeps the exact bytes either way.
    """
    value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value.replace("\x00", "\ufffd")


def search_key(text: str) -> str:
    """What sender search compares: no +, spaces, dashes or parentheses, lowercased."""
    return SEARCH_NOISE.sub("", text).lower()


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def parse_payload(raw_body: bytes) -> Inbound:
    try:
        payload = json.loads(raw_body)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 is a ValueError too
        raise InvalidPayload("body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidPayload("body must be a JSON object")

    fields = {}
    for name in REQUIRED + OPTIONAL:
        value = payload.get(name)
        if value is None:
            if name in REQUIRED:
                raise InvalidPayload(f"field '{name}' is missing")
            fields[name] = None
            continue
        if not isinstance(value, str):
            raise InvalidPayload(f"field '{name}' must be a string")
        value = clean_text(value)
        if name in MAX_LENGTH and len(value) > MAX_LENGTH[name]:
            raise InvalidPayload(f"field '{name}' is longer than {MAX_LENGTH[name]} characters")
        fields[name] = value
    for name in ("msg_id", "sender"):
        if not fields[name].strip():
            raise InvalidPayload(f"field '{name}' is empty")
    try:
        sent_at = parse_time(fields["time"])
    except ValueError as exc:
        raise InvalidPayload("field 'time' is not an ISO 8601 timestamp") from exc

    return Inbound(
        msg_id=fields["msg_id"],
        sub_msg_id=fields["sub_msg_id"],
        channel=(fields["channel"] or "sms").lower(),
        recipient=fields["recipient"],
        sender=fields["sender"],
        text=fields["text"],
        sent_at=sent_at,
        raw_body=raw_body,
    )


def store_messages(messages: list[Inbound], received_at: datetime | None = None) -> list[bool]:
    """Insert each message unless its msg_id is already stored; True where it was new.

    One statement per table for the whole batch (group commit hands over many messages).
    Takes the write lock first, so this must open the session's transaction.
    """
    received_at = received_at or utcnow()
    begin_write()
    connection = db.session.connection()
    insert_messages, upsert_conversations, count_days = _statements(connection.dialect.name)

    # ON CONFLICT DO NOTHING returns only the rows it inserted: what it skips is a duplicate,
    # known by the unique msg_id, with no check-then-insert race.
    new_ids = dict(connection.execute(insert_messages, [{
        "msg_id": message.msg_id,
        "sub_msg_id": message.sub_msg_id,
        "channel": message.channel,
        "recipient": message.recipient,
        "sender": message.sender,
        "text": message.text,
        "sent_at": message.sent_at,
        "received_at": received_at,
        "raw_body": message.raw_body,
    } for message in messages]).all())
    stored = [new_ids.pop(message.msg_id, None) for message in messages]  # a repeat in the batch: None
    if not any(stored):
        return [False] * len(messages)

    conversations = {}  # per sender: the newest message and how many arrived
    for message, message_id in zip(messages, stored):
        if message_id is not None:
            previous = conversations.get(message.sender)
            conversations[message.sender] = (message_id, message, 1 + (previous[2] if previous else 0))
    connection.execute(upsert_conversations, [{
        "sender": message.sender,
        "sender_key": search_key(message.sender),
        "channel": message.channel,
        "last_message_id": message_id,
        "last_sent_at": message.sent_at,
        "last_text": message.text[:PREVIEW_LENGTH],
        "message_count": count,
        "unread_count": count,
    } for message_id, message, count in conversations.values()])
    new = sum(message_id is not None for message_id in stored)
    connection.execute(count_days, {"day": received_at.date(), "count": new})
    return [message_id is not None for message_id in stored]


@cache
def _statements(dialect: str) -> tuple[sa.Insert, sa.Insert, sa.Insert]:
    """Built once per dialect: building SQLAlchemy statements costs more than running them."""
    message = upsert(Message.__table__, dialect).on_conflict_do_nothing(index_elements=["msg_id"])
    conversation = upsert(Conversation.__table__, dialect)
    conversation = conversation.on_conflict_do_update(
        index_elements=["sender"],
        set_={
            "channel": conversation.excluded.channel,
            "last_message_id": conversation.excluded.last_message_id,
            "last_sent_at": conversation.excluded.last_sent_at,
            "last_text": conversation.excluded.last_text,
            "message_count": Conversation.message_count + conversation.excluded.message_count,
            "unread_count": Conversation.unread_count + conversation.excluded.unread_count,
        },
    )
    daily = upsert(DailyCount.__table__, dialect)
    daily = daily.on_conflict_do_update(index_elements=["day"],
                                        set_={"count": DailyCount.count + daily.excluded.count})
    return message.returning(Message.msg_id, Message.id), conversation, daily


def store_dead_letter(raw_body: bytes, reason: str) -> None:
    db.session.add(DeadLetter(received_at=utcnow(), reason=reason[:500], raw_body=raw_body))
    db.session.flush()
