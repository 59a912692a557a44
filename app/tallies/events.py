"""What reports need besides sums, written in the transaction of each change: a row per
conversation opening (for first response and time-to-done medians) and the conversation's events
(opened, reopened, assigned, done, snoozed, opted_out) that the events export lists.

Definitions (docs/reports.md):
- An opening is a customer's message that starts a conversation (its first message) or comes to a
  done one (reopened). A conversation that we started (a new message to a number) opens when
  the customer writes to it after it was done.
- Its first response is the first reply a person sends after it (a reply with an author: away
  replies, the API's replies and notes don't count); its done time is the first "done" after it.
- A reply's delivery outcome ("dlv:<outcome>" tallies, bucketed at the reply's time): "dlv:" and
  the best delivery report (DELIVRD, SEEN, UNDELIV, FAILED, ...) or "sent" without one, for a
  reply Messente took; "dlv:failed" or "dlv:unconfirmed" for one it did not (or may not have).
  Queued, sending and retrying replies have no outcome yet. A change moves the reply's count from
  its old outcome to its new one.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import sqlalchemy as sa

from app import tallies
from app.db.models import Conversation, ConversationEvent, ConversationOpening, Message

SCHEDULED_STATUSES = ("scheduled", "held", "missed", "cancelled")  # waiting rows, not replies yet


@dataclass(frozen=True)
class Opening:
    conversation_id: int
    at: datetime
    reopened: bool
    channel: str
    our_number: str


def opened(connection: sa.Connection, openings: list[Opening]) -> list[tallies.Entry]:
    """Ingest's part: the openings and their events (two statements); returns the tallies to add
    (ingest adds them with its messages' in one statement)."""
    if not openings:
        return []
    connection.execute(
        _insert_openings(),
        [
            {
                "conversation_id": o.conversation_id,
                "opened_at": o.at,
                "reopened": o.reopened,
                "channel": o.channel,
                "our_number": o.our_number,
            }
            for o in openings
        ],
    )
    connection.execute(
        _insert_events(),
        [
            {
                "kind": "reopened" if o.reopened else "opened",
                "at": o.at,
                "conversation_id": o.conversation_id,
                "user_id": None,
                "channel": o.channel,
                "our_number": o.our_number,
            }
            for o in openings
        ],
    )
    return [tallies.Entry(o.at, "reopened" if o.reopened else "started", 1, o.channel, o.our_number) for o in openings]


def _latest_opening(connection: sa.Connection, conversation_id: int) -> sa.Row | None:
    return connection.execute(
        sa.select(ConversationOpening.id, ConversationOpening.channel, ConversationOpening.our_number)
        .where(ConversationOpening.conversation_id == conversation_id)
        .order_by(ConversationOpening.id.desc())
        .limit(1)
    ).first()


def _where(connection: sa.Connection, conversation_id: int) -> tuple[str, str]:
    """The channel and our number an event of this conversation counts under: its latest opening's,
    else the conversation's channel and no number."""
    latest = _latest_opening(connection, conversation_id)
    if latest is not None:
        return latest.channel, latest.our_number
    channel = connection.scalar(sa.select(Conversation.channel).where(Conversation.id == conversation_id))
    return channel or "", ""


def record(
    connection: sa.Connection, kind: str, conversation_id: int, at: datetime, user_id: int | None = None
) -> tuple[str, str]:
    """One event (not an opening), in the caller's transaction; its channel and number."""
    channel, our_number = _where(connection, conversation_id)
    connection.execute(
        _insert_events(),
        {
            "kind": kind,
            "at": at,
            "conversation_id": conversation_id,
            "user_id": user_id,
            "channel": channel,
            "our_number": our_number,
        },
    )
    return channel, our_number


def responded(connection: sa.Connection, conversation_id: int, at: datetime, user_id: int) -> None:
    """A person's reply: the first response of the conversation's latest opening, if it has none."""
    latest = sa.select(sa.func.max(ConversationOpening.id)).where(
        ConversationOpening.conversation_id == conversation_id
    )
    connection.execute(
        sa.update(ConversationOpening)
        .where(ConversationOpening.id == latest.scalar_subquery(), ConversationOpening.first_response_at.is_(None))
        .values(first_response_at=at, responder_id=user_id)
    )


def done(connection: sa.Connection, conversation_id: int, at: datetime, user_id: int | None) -> None:
    """Marked done: its event, the "done" tally (by who did it), the latest opening's done time."""
    channel, our_number = record(connection, "done", conversation_id, at, user_id)
    latest = sa.select(sa.func.max(ConversationOpening.id)).where(
        ConversationOpening.conversation_id == conversation_id
    )
    connection.execute(
        sa.update(ConversationOpening)
        .where(ConversationOpening.id == latest.scalar_subquery(), ConversationOpening.done_at.is_(None))
        .values(done_at=at)
    )
    tallies.add(connection, at, "done", 1, channel=channel, our_number=our_number, user_id=user_id)


def opted_out(connection: sa.Connection, conversation_id: int, at: datetime, user_id: int | None) -> None:
    channel, our_number = record(connection, "opted_out", conversation_id, at, user_id)
    tallies.add(connection, at, "opted_out", 1, channel=channel, our_number=our_number, user_id=user_id)


# --- replies' delivery outcomes -------------------------------------------------------------


def outcome(status: str | None, delivery: str | None) -> str | None:
    """A reply's delivery outcome as a tally metric (see the module's docstring)."""
    if status == "sent":
        return "dlv:" + (delivery or "sent")
    if status in ("failed", "unconfirmed"):
        return "dlv:" + status
    return None


@dataclass(frozen=True)
class ReplyState:
    id: int
    sent_at: datetime
    channel: str
    sender: str
    author_id: int | None
    outcome: str | None


def reply_state(connection: sa.Connection, reply_id: int) -> ReplyState | None:
    row = connection.execute(_reply_state(), {"id": reply_id}).first()
    if row is None or row.direction != "out" or row.status in SCHEDULED_STATUSES:
        return None
    return ReplyState(row.id, row.sent_at, row.channel, row.sender, row.author_id, outcome(row.status, row.delivery))


def reply_changed(connection: sa.Connection, before: ReplyState | None) -> None:
    """After a change to a reply's status or delivery: move its count to its new outcome."""
    if before is None:
        return
    after = reply_state(connection, before.id)
    if after is None or after.outcome == before.outcome:
        return
    entries = []
    for metric, value in ((before.outcome, -1), (after.outcome, 1)):
        if metric is not None:
            entries.append(
                tallies.Entry(after.sent_at, metric, value, after.channel, after.sender, after.author_id or 0)
            )
    tallies.add_many(connection, entries)


def replies_written(connection: sa.Connection, rows: Iterable[tuple[datetime, str, str, int | None]]) -> None:
    """The "out" tally for replies just stored: (time, channel, our sender, author)."""
    tallies.add_many(
        connection, (tallies.Entry(at, "out", 1, channel, sender, author or 0) for at, channel, sender, author in rows)
    )


@cache
def _insert_openings() -> sa.Insert:
    return sa.insert(ConversationOpening)


@cache
def _insert_events() -> sa.Insert:
    return sa.insert(ConversationEvent)


@cache
def _reply_state() -> sa.Select:
    return sa.select(
        Message.id,
        Message.sent_at,
        Message.channel,
        Message.sender,
        Message.author_id,
        Message.status,
        Message.delivery,
        Message.direction,
    ).where(Message.id == sa.bindparam("id"))
