"""Delivery reports: Messente says how far a reply got, and what it cost; a reply's status only
ever moves forward.

Costs: a report's `price_info` prices one leg (channel) of one send. Reports repeat and come out
of order, so a leg's price is the one in its latest report (by the report's `timestamp`), never a
sum; the reply's `price` and `parts` are the sums over its legs (and over its sends, when a person
sent it again: each send is charged). Each change of a leg's price adds the difference to the
"cost" and "parts" tallies (app/tallies) in the same transaction, in the quarter hour the reply was
sent, so report totals equal the sum of the replies' prices and outlive their erasure.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa

from app import clock, jobs, tallies, webhooks
from app.db.models import (
    CHANNEL_LENGTH,
    DELIVERY_FAILURES,
    ID_LENGTH,
    NUMBER_LENGTH,
    Conversation,
    Message,
    UnmatchedDeliveryReport,
    better_delivery,
)
from app.db.unit_of_work import change_number, write_transaction
from app.tallies import events as report_events
from app.team.currency import SIX_PLACES, price_text

# What people read for each status and error code (Messente's delivery report documentation).
STATUS_WORDS = {
    "ACCEPTD": "Accepted",
    "ACK": "Accepted by the operator",
    "DELIVRD": "Delivered",
    "SEEN": "Seen",
    "UNDELIV": "Not delivered",
    "FAILED": "Failed",
    "UNKNOWN": "Status unknown",
    "REJECTD": "Rejected",
    "DELETED": "Deleted",
    "EXPIRED": "Expired",
    "NACK": "Not accepted",
}
ERROR_WORDS = {
    1: "delivery failure",
    2: "expired",
    3: "invalid number",
    4: "crediting error",
    5: "invalid format",
    6: "too many identical messages",
    7: "sender not allowed",
    8: "operator blacklisted",
    9: "unroutable",
    10: "seen",
    999: "temporary error",
}
KEEP_UNMATCHED = timedelta(days=1)
# A leg's price above this, or parts above these, is no price Messente sends: the price is ignored
# (the report's status still counts). Message.price holds 8 digits before the point.
MOST_PRICE = Decimal(1_000_000)
MOST_PARTS = 1_000


class InvalidReport(ValueError):
    pass


@dataclass(frozen=True)
class Report:
    omnimessage_id: str
    status: str
    problem: str | None  # the error code in words, with Messente's own text when it gives one
    channel: str | None = None  # the leg it is about, with fallback channels
    sender: str | None = None  # our sender on that leg, as Messente names it
    reported_at: datetime | None = None  # Messente's `timestamp` (naive UTC): which report is the latest
    price: Decimal | None = None  # price_info's total_price, when valid
    parts: int | None = None  # price_info's parts_count, with a valid price


def parse_report(raw_body: bytes) -> Report:
    try:
        payload = json.loads(raw_body)
    except (ValueError, RecursionError) as exc:
        raise InvalidReport("body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidReport("body must be a JSON object")
    omnimessage_id, status = payload.get("omnimessage_id"), payload.get("status")
    if not isinstance(omnimessage_id, str) or not omnimessage_id or len(omnimessage_id) > ID_LENGTH:
        raise InvalidReport("field 'omnimessage_id' is missing or not an id")
    if status not in STATUS_WORDS:
        raise InvalidReport(f"field 'status' must be one of {', '.join(STATUS_WORDS)}")
    err, error = payload.get("err"), payload.get("error")
    words = [ERROR_WORDS.get(err)] if isinstance(err, int) and err not in (0, 10) else []
    if isinstance(error, str) and error.strip():
        words.append(error.strip())
    channel = _short_text(payload.get("channel"), CHANNEL_LENGTH)
    price, parts = parse_price(payload.get("price_info"))
    return Report(
        omnimessage_id,
        status,
        ": ".join(word for word in words if word)[:500] or None,
        channel,
        _short_text(payload.get("sender"), NUMBER_LENGTH),
        _report_time(payload.get("timestamp")),
        price,
        parts,
    )


def parse_price(price_info) -> tuple[Decimal | None, int | None]:
    """(total price, parts) from a report's `price_info`; (None, None) when it has no valid price:
    not decimal, negative, or past MOST_PRICE. Without `total_price`, `part_price` times
    `parts_count`. Parts that are not a count are left out (the price stands)."""
    if not isinstance(price_info, dict):
        return None, None
    count = price_info.get("parts_count")
    parts = count if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MOST_PARTS else None
    total = _amount(price_info.get("total_price"))
    if total is None and parts is not None and "total_price" not in price_info:
        part_price = _amount(price_info.get("part_price"))
        total = _amount(part_price * parts) if part_price is not None else None
    return (total, parts) if total is not None else (None, None)


def _amount(value) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    if isinstance(value, str) and len(value) > 40:
        return None  # no price is written with that many digits
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite() or not 0 <= amount <= MOST_PRICE:
        return None
    return amount.quantize(SIX_PLACES)


def _short_text(value, length: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= length else None


def _report_time(value) -> datetime | None:
    """Messente's `timestamp`: ISO 8601 without a zone (UTC); one with a zone is converted."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def apply_report(report: Report) -> bool:
    """Record a report; False when no reply has its id yet (kept a day for the send to catch up)."""
    with write_transaction() as session:
        connection = session.connection()
        reply = connection.execute(REPLY.where(Message.omnimessage_id == report.omnimessage_id)).first()
        if reply is None:
            connection.execute(
                sa.insert(UnmatchedDeliveryReport).values(
                    omnimessage_id=report.omnimessage_id,
                    status=report.status,
                    problem=report.problem,
                    received_at=clock.now(),
                    channel=report.channel,
                    sender=report.sender,
                    reported_at=report.reported_at,
                    price=report.price,
                    parts=report.parts,
                )
            )
            return False
        _apply(connection, reply, [report])
    return True


def drop_stale_reports(now) -> None:
    """Reports no reply claimed within a day are for messages this app never sent (the outbox's sweep)."""
    with write_transaction() as session:
        session.execute(
            sa.delete(UnmatchedDeliveryReport).where(UnmatchedDeliveryReport.received_at < now - KEEP_UNMATCHED)
        )


def apply_unmatched(connection: sa.Connection, message_id: int, omnimessage_id: str) -> None:
    """Reports that arrived before the send call returned: applied once the reply has its id."""
    reports = connection.execute(
        sa.select(
            UnmatchedDeliveryReport.status,
            UnmatchedDeliveryReport.problem,
            UnmatchedDeliveryReport.channel,
            UnmatchedDeliveryReport.sender,
            UnmatchedDeliveryReport.reported_at,
            UnmatchedDeliveryReport.price,
            UnmatchedDeliveryReport.parts,
        )
        .where(UnmatchedDeliveryReport.omnimessage_id == omnimessage_id)
        .order_by(UnmatchedDeliveryReport.id)
    ).all()
    if not reports:
        return
    reply = connection.execute(REPLY.where(Message.id == message_id)).one()
    _apply(connection, reply, [Report(omnimessage_id, *row) for row in reports])
    connection.execute(
        sa.delete(UnmatchedDeliveryReport).where(UnmatchedDeliveryReport.omnimessage_id == omnimessage_id)
    )


# What applying a report reads of its reply.
REPLY = sa.select(
    Message.id,
    Message.conversation_id,
    Message.delivery,
    Message.legs,
    Message.sent_at,
    Message.author_id,
    Message.price_legs,
)


def _apply(connection: sa.Connection, reply, reports: list[Report]) -> None:
    """Reports of one reply: its delivery forward, its legs' prices to their latest reports."""
    legs = [leg["channel"] for leg in reply.legs or []]
    best, problem = reply.delivery, None
    for report in reports:
        if report.status in DELIVERY_FAILURES and report.channel in legs[:-1]:
            continue  # a leg with a fallback after it failed: Messente tries the next one
        if better_delivery(best, report.status):
            best, problem = report.status, report.problem
    values = _priced(connection, reply, [report for report in reports if report.price is not None])
    if best != reply.delivery:
        values.update(delivery=best, problem=problem)
    if not values:
        return  # a repeat, or a late report of a step already passed
    change = change_number()
    before = report_events.reply_state(connection, reply.id)
    connection.execute(sa.update(Message).where(Message.id == reply.id).values(change_seq=change, **values))
    report_events.reply_changed(connection, before)
    connection.execute(
        sa.update(Conversation).where(Conversation.id == reply.conversation_id).values(change_seq=change)
    )
    webhooks.message_event("message.updated", reply.id)


def _priced(connection: sa.Connection, reply, reports: list[Report]) -> dict:
    """The reply's new price, parts and legs' prices (empty when no report is newer than what it
    has), with the changes added to the tallies."""
    senders = {leg["channel"]: leg.get("sender") for leg in reply.legs or []}
    book = {send: dict(legs) for send, legs in (reply.price_legs or {}).items()}
    changed = False
    for report in reports:
        assert report.price is not None
        channel = report.channel or (next(iter(senders)) if len(senders) == 1 else "")
        previous = book.get(report.omnimessage_id, {}).get(channel)
        at = report.reported_at.isoformat(timespec="microseconds") if report.reported_at else None
        if previous is not None and (at is None or (previous["at"] is not None and at < previous["at"])):
            continue  # an older report of this leg (or one without a time), come late
        entry = {
            "at": at,
            "price": price_text(report.price),
            "parts": report.parts,
            "number": senders.get(channel) or report.sender or "",
        }
        if entry == previous:
            continue  # the same report again
        book.setdefault(report.omnimessage_id, {})[channel] = entry
        changed = True
        # The difference, where the leg is counted (its number only changes if Messente names
        # another sender for a leg sent without one: then out of the old place, into the new).
        if previous is not None and previous["number"] != entry["number"]:
            _tally(connection, reply, channel, previous, -1)
            previous = None
        _tally(connection, reply, channel, entry, 1, previous)
    if not changed:
        return {}
    entries = [entry for legs in book.values() for entry in legs.values()]
    counted_parts = [entry["parts"] for entry in entries if entry["parts"] is not None]
    return {
        "price": sum((Decimal(entry["price"]) for entry in entries), Decimal(0)),
        "parts": sum(counted_parts) if counted_parts else None,
        "price_legs": book,
    }


def _tally(
    connection: sa.Connection, reply, channel: str, entry: dict, sign: int, previous: dict | None = None
) -> None:
    """Add a leg's price and parts (less those it had) to the tallies, in the quarter hour the
    reply was sent, for its channel, our number and its author (0: the API, the away reply)."""
    where = {"channel": channel, "our_number": entry["number"], "user_id": reply.author_id}
    was_price, was_parts = (Decimal(previous["price"]), previous["parts"] or 0) if previous else (Decimal(0), 0)
    tallies.add(connection, reply.sent_at, "cost", sign * (Decimal(entry["price"]) - was_price), **where)
    tallies.add(connection, reply.sent_at, "parts", sign * ((entry["parts"] or 0) - was_parts), **where)


@jobs.kind("drop_stale_delivery_reports", every=timedelta(hours=1))
def drop_stale_reports_job(payload: dict, attempt: "jobs.Attempt") -> None:
    drop_stale_reports(attempt.now)
