"""Recompute the reports' tallies and openings from what is stored (`flask --app app rebuild-reports`).

What it recomputes, from `since` on (default: the oldest stored message or event, so a past the
retention purge has deleted keeps its counts): every tally but "cost" and "parts" (replies'
prices, kept by the delivery reports), from messages ("in", "out", "dlv:*") and events
("started", "reopened", "done", "opted_out"); and the openings of conversations still stored,
from their opened/reopened and done events and their replies. Openings of erased or purged
conversations (no conversation id) stay as they are. An erasure deletes the erased person's
messages and events: a rebuild after one drops their counts from the tallies, which the running
totals had kept.
"""

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from app import tallies
from app.db.models import ConversationEvent, ConversationOpening, Message, Tally
from app.db.unit_of_work import write_transaction
from app.tallies import events

KEPT_METRICS = ("cost", "parts")
CHUNK = 5000


@dataclass
class Rebuilt:
    since: datetime | None = None
    tallies: int = 0
    openings: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def default_since(connection: sa.Connection) -> datetime | None:
    oldest = [
        connection.scalar(sa.select(sa.func.min(Message.received_at))),
        connection.scalar(sa.select(sa.func.min(ConversationEvent.at))),
    ]
    known = [moment for moment in oldest if moment is not None]
    return tallies.bucket_of(min(known)) if known else None


def rebuild(since: datetime | None = None) -> Rebuilt:
    """One write transaction: the recount replaces what was kept, or nothing changes."""
    result = Rebuilt()
    with write_transaction() as session:
        connection = session.connection()
        since = tallies.bucket_of(since) if since is not None else default_since(connection)
        result.since = since
        if since is None:
            return result
        connection.execute(sa.delete(Tally).where(Tally.bucket >= since, Tally.metric.not_in(KEPT_METRICS)))
        counts: dict[str, int] = defaultdict(int)
        # add_many sums as it reads, so the recount holds one value per bucket and key, not per row
        tallies.add_many(connection, _entries(connection, since, counts))
        result.tallies = connection.scalar(sa.select(sa.func.count()).select_from(Tally)) or 0
        result.openings = _rebuild_openings(connection, since)
        result.counts = dict(counts)
    return result


def _entries(connection: sa.Connection, since: datetime, counts: dict[str, int]) -> Iterator[tallies.Entry]:
    inbound = sa.select(Message.received_at, Message.channel, Message.recipient).where(
        Message.direction == "in", Message.received_at >= since
    )
    for row in connection.execute(inbound.execution_options(yield_per=CHUNK)):
        counts["in"] += 1
        yield tallies.Entry(row.received_at, "in", 1, row.channel, row.recipient or "")
    outbound = sa.select(
        Message.sent_at, Message.channel, Message.sender, Message.author_id, Message.status, Message.delivery
    ).where(
        Message.direction == "out",
        Message.sent_at >= since,
        sa.or_(Message.status.is_(None), Message.status.not_in(events.SCHEDULED_STATUSES)),
    )
    for reply in connection.execute(outbound.execution_options(yield_per=CHUNK)):
        author = reply.author_id or 0
        counts["out"] += 1
        yield tallies.Entry(reply.sent_at, "out", 1, reply.channel, reply.sender, author)
        outcome = events.outcome(reply.status, reply.delivery)
        if outcome is not None:
            yield tallies.Entry(reply.sent_at, outcome, 1, reply.channel, reply.sender, author)
    metric_of = {"opened": "started", "reopened": "reopened", "done": "done", "opted_out": "opted_out"}
    kinds = sa.select(
        ConversationEvent.kind,
        ConversationEvent.at,
        ConversationEvent.channel,
        ConversationEvent.our_number,
        ConversationEvent.user_id,
    ).where(ConversationEvent.at >= since, ConversationEvent.kind.in_(list(metric_of)))
    for event in connection.execute(kinds.execution_options(yield_per=CHUNK)):
        metric = metric_of[event.kind]
        counts[metric] += 1
        yield tallies.Entry(event.at, metric, 1, event.channel, event.our_number, event.user_id or 0)


def _rebuild_openings(connection: sa.Connection, since: datetime) -> int:
    connection.execute(
        sa.delete(ConversationOpening).where(
            ConversationOpening.conversation_id.is_not(None), ConversationOpening.opened_at >= since
        )
    )
    openings: dict[int, list[sa.Row]] = defaultdict(list)
    dones: dict[int, list[datetime]] = defaultdict(list)
    rows = connection.execute(
        sa.select(
            ConversationEvent.conversation_id,
            ConversationEvent.kind,
            ConversationEvent.at,
            ConversationEvent.channel,
            ConversationEvent.our_number,
        )
        .where(ConversationEvent.kind.in_(["opened", "reopened", "done"]))
        .order_by(ConversationEvent.conversation_id, ConversationEvent.id)
    )
    for row in rows:
        if row.kind == "done":
            dones[row.conversation_id].append(row.at)
        elif row.at >= since:
            openings[row.conversation_id].append(row)
    if not openings:
        return 0
    replies: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    person_replies = (
        sa.select(Message.conversation_id, Message.sent_at, Message.author_id)
        .where(
            Message.direction == "out",
            Message.author_id.is_not(None),
            Message.via.is_(None),
            Message.api_token_id.is_(None),
            Message.sent_at >= since,
            sa.or_(Message.status.is_(None), Message.status.not_in(events.SCHEDULED_STATUSES)),
        )
        .order_by(Message.conversation_id, Message.id)
    )
    for reply in connection.execute(person_replies.execution_options(yield_per=CHUNK)):
        if reply.conversation_id in openings:
            replies[reply.conversation_id].append((reply.sent_at, reply.author_id))
    new_rows = []
    for conversation_id, opened in openings.items():
        done_times = sorted(dones.get(conversation_id, []))
        answered = replies.get(conversation_id, [])
        for index, opening in enumerate(opened):
            until = opened[index + 1].at if index + 1 < len(opened) else None
            first = next(
                ((at, author) for at, author in answered if at >= opening.at and (until is None or at < until)), None
            )
            position = bisect_left(done_times, opening.at)
            done_at = done_times[position] if position < len(done_times) else None
            if done_at is not None and until is not None and done_at >= until:
                done_at = None
            new_rows.append(
                {
                    "conversation_id": conversation_id,
                    "opened_at": opening.at,
                    "reopened": opening.kind == "reopened",
                    "channel": opening.channel,
                    "our_number": opening.our_number,
                    "first_response_at": first[0] if first else None,
                    "responder_id": first[1] if first else None,
                    "done_at": done_at,
                }
            )
    for start in range(0, len(new_rows), CHUNK):
        connection.execute(sa.insert(ConversationOpening), new_rows[start : start + CHUNK])
    return len(new_rows)
