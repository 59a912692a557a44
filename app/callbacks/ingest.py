"""Filing inbound messages: validate a signed body, insert it once, keep the conversation current.

Each store is one write transaction (joined if the caller already holds one): a message, its
conversation, its owner's notification, a snoozed conversation's wake and the day's count commit
together, before anyone answers 200. With auto-assignment on, a batch that starts or reopens
conversations also commits one job for it (never does it here).
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import sqlalchemy as sa

from app import clock, hours, notifications, tallies, webhooks
from app.contacts import autoassign, optouts, snooze
from app.db import folding, numbers
from app.db.folding import clean_text, search_key
from app.db.models import (
    CHANNEL_LENGTH,
    ID_LENGTH,
    NUMBER_LENGTH,
    PREVIEW_LENGTH,
    Conversation,
    ConversationRecipient,
    DailyCount,
    DeadLetter,
    Message,
)
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import dialect_insert
from app.tallies import events

REQUIRED = ("msg_id", "sender", "text", "time")
OPTIONAL = ("sub_msg_id", "channel", "recipient")
MAX_LENGTH = {
    "msg_id": ID_LENGTH,
    "sub_msg_id": ID_LENGTH,
    "sender": NUMBER_LENGTH,
    "recipient": NUMBER_LENGTH,
    "channel": CHANNEL_LENGTH,
}
LOOKUPS_PER_STATEMENT = 10_000


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


def parse_time(value: str) -> datetime:
    """An ISO 8601 time as naive UTC; ValueError for anything else, out-of-range included."""
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError as exc:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(str(exc)) from exc
    return parsed


def parse_payload(raw_body: bytes) -> Inbound:
    """The message a signed body holds; InvalidPayload naming the field if it holds none."""
    try:
        payload = json.loads(raw_body)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 is a ValueError too
        raise InvalidPayload("body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidPayload("body must be a JSON object")

    # A string each, or None for an optional field left out: checked by name, so typed loosely.
    fields: dict[str, Any] = {}
    for name in REQUIRED + OPTIONAL:
        value = payload.get(name)
        if value is None:
            if name in REQUIRED:
                raise InvalidPayload(f"field '{name}' is missing")
            fields[name] = None
        elif not isinstance(value, str):
            raise InvalidPayload(f"field '{name}' must be a string")
        else:
            fields[name] = clean_text(value)
    # Normalised before the checks: lowercasing can lengthen a text ("İ" becomes two characters).
    fields["channel"] = (fields["channel"] or "sms").lower()
    for name, limit in MAX_LENGTH.items():
        if fields[name] is not None and len(fields[name]) > limit:
            raise InvalidPayload(f"field '{name}' is longer than {limit} characters")
    for name in ("msg_id", "sender"):
        if not fields[name].strip():
            raise InvalidPayload(f"field '{name}' is empty")
    try:
        sent_at = parse_time(fields["time"])
    except ValueError as exc:
        raise InvalidPayload("field 'time' is not an ISO 8601 timestamp between years 1 and 9999") from exc

    return Inbound(
        msg_id=fields["msg_id"],
        sub_msg_id=fields["sub_msg_id"],
        channel=fields["channel"],
        recipient=fields["recipient"],
        sender=fields["sender"],
        text=fields["text"],
        sent_at=sent_at,
        raw_body=raw_body,
    )


def store_messages(messages: list[Inbound], received_at: datetime | None = None) -> list[bool]:
    """Insert each message unless its msg_id is already stored; True where it was new.

    A few statements for the whole batch (group commit hands over many messages), all in one
    write transaction, joined if the caller holds one.
    """
    received_at = received_at or clock.now()
    with write_transaction() as session:
        connection = session.connection()
        # Under the write lock nobody else can insert in between: check, then insert.
        known = set(connection.scalars(_known_msg_ids(), {"msg_ids": list({m.msg_id for m in messages})}))
        new = []
        for message in messages:
            if message.msg_id not in known:
                known.add(message.msg_id)  # a repeat within the batch is a duplicate too
                new.append(message)
        if not new:
            return [False] * len(messages)

        change = change_number()
        # One conversation per person: `+44 7700 900123` and `+447700900123` are one number.
        # Each message keeps the sender as it came.
        keys = [numbers.normalise(message.sender) for message in new]
        conversation_of = conversation_ids(connection, dict(zip(keys, (m.channel for m in new), strict=True)), change)
        ids = (
            connection.execute(
                _insert_messages(),
                [
                    {
                        "conversation_id": conversation_of[key],
                        "msg_id": message.msg_id,
                        "sub_msg_id": message.sub_msg_id,
                        "channel": message.channel,
                        "sender": message.sender,
                        "recipient": message.recipient,
                        "text": message.text,
                        "folded_text": folding.fold(message.text),
                        "sent_at": message.sent_at,
                        "received_at": received_at,
                        "raw_body": message.raw_body,
                        "change_seq": change,
                    }
                    for key, message in zip(keys, new, strict=True)
                ],
            )
            .scalars()
            .all()
        )

        # Before the conversations move on: the ones this batch starts or reopens, for reports.
        report_entries = events.opened(connection, _openings(connection, conversation_of, keys, new, received_at))
        # Before the conversations move on: which are new or reopened (only while it is on).
        autoassign.after_ingest(connection, set(conversation_of.values()))
        # The customer wrote: snoozed conversations wake (audited, their owners told), in this transaction.
        snooze.wake_on_reply(sorted(set(conversation_of.values())))
        webhooks.inbound(set(conversation_of.values()), ids)  # their events, when subscribed

        totals: dict[int, ConversationTotals] = {}
        for message_id, key, message in zip(ids, keys, new, strict=True):
            conversation_id = conversation_of[key]
            totals.setdefault(conversation_id, ConversationTotals(message.channel)).add(
                message_id, message.channel, message.sent_at, received_at, message.text, unread=True
            )
        add_to_conversations(connection, totals, change)
        notifications.add_for_new_messages(connection, list(totals), received_at)
        add_recipients(
            connection,
            {
                (conversation_of[key], message.recipient)
                for key, message in zip(keys, new, strict=True)
                if message.recipient
            },
        )
        optouts.record_keywords(
            connection,
            [
                (conversation_of[key], message_id, message.text)
                for message_id, key, message in zip(ids, keys, new, strict=True)
            ],
            received_at,
            change,
        )
        # After the opt-outs: a STOP in this batch is no one to send the away reply to.
        hours.after_ingest(
            connection,
            [
                hours.Arrived(conversation_of[key], message_id, message.sender, message.recipient, message.text)
                for message_id, key, message in zip(ids, keys, new, strict=True)
            ],
            received_at,
        )
        add_to_daily_counts(connection, {received_at.date(): len(new)})
        tallies.add_many(
            connection,
            report_entries
            + [tallies.Entry(received_at, "in", 1, message.channel, message.recipient or "") for message in new],
        )
    stored = {id(message) for message in new}
    return [id(message) in stored for message in messages]


def _openings(
    connection: sa.Connection,
    conversation_of: dict[str, int],
    keys: list[str],
    new: list[Inbound],
    received_at: datetime,
) -> list[events.Opening]:
    """The conversations whose first message this is, or that were done: opened by the batch's
    first message to each (one statement)."""
    ids = sorted(set(conversation_of.values()))
    states = {
        row.id: row
        for start in range(0, len(ids), LOOKUPS_PER_STATEMENT)
        for row in connection.execute(_opening_states(), {"ids": ids[start : start + LOOKUPS_PER_STATEMENT]}).all()
    }
    openings: dict[int, events.Opening] = {}
    for key, message in zip(keys, new, strict=True):
        conversation_id = conversation_of[key]
        state = states.get(conversation_id)
        if state is None or conversation_id in openings:
            continue
        if state.last_message_id is None or state.status == "done":
            openings[conversation_id] = events.Opening(
                conversation_id,
                received_at,
                state.last_message_id is not None,
                message.channel,
                message.recipient or "",
            )
    return list(openings.values())


@dataclass
class ConversationTotals:
    """What one conversation gains from a transaction's messages."""

    channel: str
    message_count: int = 0
    unread_count: int = 0
    last_message_id: int = 0
    last_sent_at: datetime | None = None
    last_text: str = ""
    last_inbound_at: datetime | None = None

    def add(
        self, message_id: int, channel: str, sent_at: datetime, received_at: datetime, text: str, unread: bool
    ) -> None:
        """Count an inbound message; they are added in id order, so the last is the newest."""
        self.message_count += 1
        self.unread_count += unread
        self.channel, self.last_message_id, self.last_sent_at, self.last_text, self.last_inbound_at = (
            channel,
            message_id,
            sent_at,
            text[:PREVIEW_LENGTH],
            received_at,
        )


def conversation_ids(connection: sa.Connection, channels: dict[str, str], change: int) -> dict[str, int]:
    """The conversation id of each sender, starting a conversation for each new sender.

    A new conversation has no messages yet: `add_to_conversations` fills it in, in the same
    transaction. Call it holding the write lock (between the look-up and the insert).
    """
    senders = list(channels)
    found: dict[str, int] = {}
    for start in range(0, len(senders), LOOKUPS_PER_STATEMENT):  # SQLite binds at most 32,766
        found.update(
            connection.execute(_conversations_of(), {"senders": senders[start : start + LOOKUPS_PER_STATEMENT]}).all()
        )
    missing = [sender for sender in channels if sender not in found]
    if missing:
        created = connection.execute(
            sa.insert(Conversation).returning(Conversation.sender, Conversation.id, sort_by_parameter_order=True),
            [
                {
                    "sender": sender,
                    "sender_key": search_key(sender),
                    "channel": channels[sender],
                    "last_message_id": None,
                    "last_sent_at": datetime.min,
                    "last_text": "",
                    "message_count": 0,
                    "unread_count": 0,
                    "change_seq": change,
                }
                for sender in missing
            ],
        )
        found.update(created.all())
    return found


def add_to_conversations(connection: sa.Connection, totals: dict[int, ConversationTotals], change: int) -> None:
    """Move each conversation to its newest inbound message and add the new counts (one executemany)."""
    connection.execute(
        _move_conversations(),
        [
            {
                "conversation_id": conversation_id,
                "change": change,
                "new_channel": t.channel,
                "new_last_message_id": t.last_message_id,
                "new_last_sent_at": t.last_sent_at,
                "new_last_text": t.last_text,
                "added": t.message_count,
                "added_unread": t.unread_count,
                "new_last_inbound_at": t.last_inbound_at,
            }
            for conversation_id, t in totals.items()
        ],
    )


def add_recipients(connection: sa.Connection, pairs: set[tuple[int, str]]) -> None:
    """Remember which of our numbers each conversation's customer wrote to (pairs already known stay)."""
    if not pairs:
        return
    insert = dialect_insert(ConversationRecipient.__table__, connection.dialect.name)
    connection.execute(
        insert.on_conflict_do_nothing(index_elements=["recipient", "conversation_id"]),
        [{"conversation_id": conversation_id, "recipient": recipient} for conversation_id, recipient in pairs],
    )


def add_to_daily_counts(connection: sa.Connection, days: dict[date, int]) -> None:
    connection.execute(
        _add_daily_counts(connection.dialect.name), [{"day": day, "count": count} for day, count in days.items()]
    )


# Statements built once: building SQLAlchemy statements (and their cache keys) costs more
# than running them, for a batch of a few messages.
@cache
def _known_msg_ids() -> sa.Select:
    return sa.select(Message.msg_id).where(Message.msg_id.in_(sa.bindparam("msg_ids", expanding=True)))


@cache
def _conversations_of() -> sa.Select:
    return sa.select(Conversation.sender, Conversation.id).where(
        Conversation.sender.in_(sa.bindparam("senders", expanding=True))
    )


@cache
def _move_conversations() -> sa.Update:
    table = Conversation.__table__
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("conversation_id"))
        .values(
            channel=sa.bindparam("new_channel"),
            last_message_id=sa.bindparam("new_last_message_id"),
            last_sent_at=sa.bindparam("new_last_sent_at"),
            last_text=sa.bindparam("new_last_text"),
            message_count=table.c.message_count + sa.bindparam("added", type_=sa.Integer),
            unread_count=table.c.unread_count + sa.bindparam("added_unread", type_=sa.Integer),
            last_direction="in",
            last_inbound_at=sa.bindparam("new_last_inbound_at"),
            status="open",  # the customer wrote again: a conversation put aside comes back
            change_seq=sa.bindparam("change", type_=sa.BigInteger),
        )
    )


@cache
def _opening_states() -> sa.Select:
    return sa.select(Conversation.id, Conversation.status, Conversation.last_message_id).where(
        Conversation.id.in_(sa.bindparam("ids", expanding=True))
    )


@cache
def _add_daily_counts(dialect: str) -> sa.Insert:
    insert = dialect_insert(DailyCount.__table__, dialect)
    return insert.on_conflict_do_update(
        index_elements=["day"], set_={"count": DailyCount.count + insert.excluded.count}
    )


@cache
def _insert_messages() -> sa.Insert:
    """Built once: building SQLAlchemy statements costs more than running them."""
    return sa.insert(Message).returning(Message.id, sort_by_parameter_order=True)


def store_dead_letter(raw_body: bytes, reason: str) -> None:
    """Keep a signed body we cannot file, once however often the provider retries it."""
    insert = dialect_insert(DeadLetter.__table__).on_conflict_do_nothing(index_elements=["body_sha256"])
    with write_transaction() as session:
        session.execute(
            insert.values(
                received_at=clock.now(),
                reason=reason[:500],
                raw_body=raw_body,
                body_sha256=hashlib.sha256(raw_body).hexdigest(),
            )
        )
