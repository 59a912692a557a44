"""Delivery reports: Messente says how far a reply got; a reply's status only ever moves forward."""

import json
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from app import clock, jobs, webhooks
from app.db.models import DELIVERY_FAILURES, ID_LENGTH, Conversation, Message, UnmatchedDeliveryReport, better_delivery
from app.db.unit_of_work import change_number, write_transaction
from app.tallies import events as report_events

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


class InvalidReport(ValueError):
    pass


@dataclass(frozen=True)
class Report:
    omnimessage_id: str
    status: str
    problem: str | None  # the error code in words, with Messente's own text when it gives one
    channel: str | None = None  # the leg it is about, with fallback channels


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
    channel = payload.get("channel") if isinstance(payload.get("channel"), str) else None
    return Report(omnimessage_id, status, ": ".join(word for word in words if word)[:500] or None, channel)


def apply_report(report: Report) -> bool:
    """Record a report; False when no reply has its id yet (kept a day for the send to catch up)."""
    with write_transaction() as session:
        connection = session.connection()
        reply = connection.execute(
            sa.select(Message.id, Message.conversation_id, Message.delivery, Message.legs).where(
                Message.omnimessage_id == report.omnimessage_id
            )
        ).first()
        if reply is None:
            connection.execute(
                sa.insert(UnmatchedDeliveryReport).values(
                    omnimessage_id=report.omnimessage_id,
                    status=report.status,
                    problem=report.problem,
                    received_at=clock.now(),
                )
            )
            return False
        _raise_delivery(connection, reply, [report])
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
        sa.select(UnmatchedDeliveryReport.status, UnmatchedDeliveryReport.problem).where(
            UnmatchedDeliveryReport.omnimessage_id == omnimessage_id
        )
    ).all()
    if not reports:
        return
    reply = connection.execute(
        sa.select(Message.id, Message.conversation_id, Message.delivery, Message.legs).where(Message.id == message_id)
    ).one()
    _raise_delivery(connection, reply, [Report(omnimessage_id, status, problem) for status, problem in reports])
    connection.execute(
        sa.delete(UnmatchedDeliveryReport).where(UnmatchedDeliveryReport.omnimessage_id == omnimessage_id)
    )


def _raise_delivery(connection: sa.Connection, reply, reports: list[Report]) -> None:
    legs = [leg["channel"] for leg in reply.legs or []]
    best, problem = reply.delivery, None
    for report in reports:
        if report.status in DELIVERY_FAILURES and report.channel in legs[:-1]:
            continue  # a leg with a fallback after it failed: Messente tries the next one
        if better_delivery(best, report.status):
            best, problem = report.status, report.problem
    if best == reply.delivery:
        return  # a repeat, or a late report of a step already passed
    change = change_number()
    before = report_events.reply_state(connection, reply.id)
    connection.execute(
        sa.update(Message).where(Message.id == reply.id).values(delivery=best, problem=problem, change_seq=change)
    )
    report_events.reply_changed(connection, before)
    connection.execute(
        sa.update(Conversation).where(Conversation.id == reply.conversation_id).values(change_seq=change)
    )
    webhooks.message_event("message.updated", reply.id)


@jobs.kind("drop_stale_delivery_reports", every=timedelta(hours=1))
def drop_stale_reports_job(payload: dict, attempt: "jobs.Attempt") -> None:
    drop_stale_reports(attempt.now)
