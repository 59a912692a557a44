"""Snooze: a conversation leaves Open until a time, or until the customer writes again.

Stored on the conversation: `snoozed_until` (naive UTC) or `snoozed_until_reply`; its status stays
"open" (snoozing a done conversation opens it: it is to come back), and marking it done ends the
snooze. A snoozed conversation sits in the Snoozed view and does not count towards its owner's
auto-assignment cap.

It wakes, whichever comes first:

- at its time: `snooze` commits a job (`snooze_wake`) due then, with the snooze. The job wakes the
  conversation with one conditional UPDATE (still snoozed, due by now), so however many runners,
  jobs (a re-snooze to the same time) or attempts there are, it wakes once; a job whose snooze was
  changed or ended finds nothing to do. A job due while no runner ran runs when one starts.
- when the customer writes: ingest calls `wake_on_reply` in its own transaction.
- by hand: `unsnooze`.

Waking puts it back in Open, is audited ("woke", with why) and notifies its owner (a "woke"
notification), in the one transaction that wakes it; every write stamps the change number, so
open lists and threads follow at their next poll.
"""

from collections.abc import Iterable
from datetime import datetime
from functools import cache

import sqlalchemy as sa

from app import audit, clock, jobs, notifications, team, webhooks
from app.contacts import autoassign, owners
from app.db.models import Conversation
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db
from app.tallies import events as report_events

JOB = "snooze_wake"
UNTIL_REPLY = "reply"  # the choice "until the customer replies", in forms
# Why a conversation woke, in the audit trail.
AT_TIME, ON_REPLY, BY_HAND = "time", "customer wrote", "by hand"
LOOKUPS_PER_STATEMENT = 10_000  # SQLite binds at most 32,766 values in one statement


class SnoozeRefused(ValueError):
    """Why a conversation can't be snoozed so, for people."""


def is_snoozed(conversation: Conversation) -> bool:
    return conversation.snoozed_until is not None or bool(conversation.snoozed_until_reply)


def snoozed() -> sa.ColumnElement[bool]:
    """The condition, said as the Snoozed view's partial index says it (so the index serves it)."""
    return sa.or_(Conversation.snoozed_until.is_not(None), Conversation.snoozed_until_reply)


def awake() -> sa.ColumnElement[bool]:
    return sa.and_(Conversation.snoozed_until.is_(None), sa.not_(Conversation.snoozed_until_reply))


def until_for(choice: str, custom: str, now: datetime) -> datetime | None:
    """What a form's choice means: a preset's name (team.presets), "custom" with a wall time in
    the team's zone as a datetime-local input gives it (2026-12-09T14:30), or UNTIL_REPLY (None).
    SnoozeRefused for anything else, or a time not in the future."""
    if choice == UNTIL_REPLY:
        return None
    if choice == "custom":
        try:
            wall = datetime.fromisoformat(custom.strip())
        except ValueError:
            raise SnoozeRefused("Give a date and a time, such as 2026-12-09 14:30.") from None
        if wall.tzinfo is not None:
            raise SnoozeRefused("Give the time as the team's clocks show it, without a zone.")
        until = team.to_utc(wall)
    else:
        until = team.presets(now).get(choice) or _refuse("Choose one of the times offered, or your own.")
    if until <= now:
        raise SnoozeRefused("Choose a time in the future.")
    return until


def _refuse(reason: str) -> datetime:
    raise SnoozeRefused(reason)


def snooze(conversation_id: int, until: datetime | None, until_reply: bool, by_user_id: int | None) -> bool:
    """Snooze a conversation until a time (naive UTC, in the future) or, with `until_reply`, until
    the customer writes; audited. A new snooze replaces the one before. False when there is no
    such conversation."""
    if (until is None) == (not until_reply):
        raise SnoozeRefused("Snooze until a time, or until the customer replies.")
    now = clock.now()
    if until is not None and until <= now:
        raise SnoozeRefused("Choose a time in the future.")
    with write_transaction() as session:
        changed = session.execute(
            sa.update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(
                snoozed_until=until,
                snoozed_until_reply=until is None,
                status="open",
                change_seq=change_number(),
            )
            .returning(Conversation.assignee_id)
        ).first()
        if changed is None:
            return False
        if until is not None:
            jobs.enqueue(JOB, {"conversation": conversation_id}, due_at=until)
        report_events.record(session.connection(), "snoozed", conversation_id, now, by_user_id)
        audit.record(
            "snoozed",
            {
                "conversation": conversation_id,
                "until": clock.utc_iso(until) if until is not None else "the customer replies",
                "by": owners.username_of(by_user_id),
            },
        )
        webhooks.conversation_event("conversation.updated", conversation_id, ["snooze"])
        if changed.assignee_id is not None:
            autoassign.sweep_soon()  # its owner has room for one more
    return True


def unsnooze(conversation_id: int, by_user_id: int | None) -> bool:
    """Wake a conversation by hand; False when it was not snoozed."""
    with write_transaction():
        return bool(_wake([conversation_id], BY_HAND, by_user_id))


def wake_due(now: datetime, conversation_ids: Iterable[int]) -> list[int]:
    """Wake those of these conversations whose time has come (the job's part); the ids woken."""
    with write_transaction():
        return _wake(list(conversation_ids), AT_TIME, None, due_by=now)


def wake_on_reply(conversation_ids: Iterable[int]) -> list[int]:
    """The customer wrote: those of these conversations that are snoozed (until a time or until
    a reply) wake. In ingest's transaction, before it moves the conversations on."""
    with write_transaction():
        return _wake(list(conversation_ids), ON_REPLY, None)


def _wake(
    conversation_ids: list[int], reason: str, by_user_id: int | None, due_by: datetime | None = None
) -> list[int]:
    """One conditional UPDATE: only conversations still snoozed (and due, for a wake by time)
    change, so each wakes once however many callers race."""
    if not conversation_ids:
        return []
    connection = db.session().connection()
    statement, change = _wake_statement(due_by is not None), change_number()
    woken: list[sa.Row] = []
    for start in range(0, len(conversation_ids), LOOKUPS_PER_STATEMENT):
        ids = conversation_ids[start : start + LOOKUPS_PER_STATEMENT]
        woken += connection.execute(statement, {"ids": ids, "change": change, "now": due_by}).all()
    by = owners.username_of(by_user_id)
    for row in sorted(woken):
        if by:
            audit.record("woke", {"conversation": row.id, "reason": reason, "by": by})
        else:  # the app did it: nobody's name, and not the callback's address
            audit.record("woke", {"conversation": row.id, "reason": reason}, username=None, address=None)
        if row.assignee_id is not None and row.assignee_id != by_user_id:
            notifications.add_woke(row.id, row.assignee_id)
        webhooks.conversation_event("conversation.updated", row.id, ["snooze"])
    if any(row.assignee_id is None for row in woken):
        autoassign.sweep_soon()  # back in Open with nobody on it: auto-assignment (when on) gives it out
    return sorted(row.id for row in woken)


@cache
def _wake_statement(by_time: bool) -> sa.Update:
    """Built once: ingest runs it in every batch."""
    table = Conversation.__table__
    condition = table.c.snoozed_until <= sa.bindparam("now", type_=sa.DateTime()) if by_time else snoozed()
    return (
        sa.update(table)
        .where(table.c.id.in_(sa.bindparam("ids", expanding=True)), condition)
        .values(snoozed_until=None, snoozed_until_reply=False, change_seq=sa.bindparam("change", type_=sa.BigInteger))
        .returning(table.c.id, table.c.assignee_id)
    )


@jobs.kind(JOB)
def wake_job(payload: dict, attempt: jobs.Attempt) -> None:
    """Due at the snooze's time; a snooze changed or ended meanwhile leaves it nothing to do."""
    wake_due(attempt.now, [payload["conversation"]])
