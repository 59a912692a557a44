"""Retention by age: `purge` deletes what arrived more than the configured days ago (messages both
ways, their delivery reports, dead letters, stale login rows and sessions, and audit events past
their own limit) in small batches, each its own write transaction: callbacks wait at most one
batch, and an interrupted purge resumes by simply running again. Deleted with SQLite's
`secure_delete` on and the files scrubbed after (app/privacy/scrubbing.py); see docs/privacy.md.

The app purges by itself once a day (the periodic `daily_purge` job, app/jobs/; a lease,
app/jobs/leases.py, lets one process at a time purge); `flask --app app purge` runs it by hand.
"""

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from app import audit, clock, jobs
from app.db.models import (
    AuditEvent,
    Conversation,
    ConversationEvent,
    DeadLetter,
    LoginSession,
    LoginThrottle,
    Message,
    Suppression,
    UnmatchedDeliveryReport,
)
from app.db.unit_of_work import LOCK_POLL_MOST, change_number, rows_matched, write_transaction
from app.extensions import db
from app.jobs import leases
from app.privacy import settings
from app.privacy.cascade import delete_rows_referring_to, referring_columns
from app.privacy.scrubbing import is_sqlite, scrub_files, secure_delete

PURGE_LEASE = "retention_purge"  # the lease's name (app/jobs/leases.py): one purge at a time
PURGE_INTERVAL = timedelta(days=1)
LEASE = timedelta(minutes=10)  # renewed after every batch; a crashed holder's lease runs out
CHECK_SECONDS = 15 * 60
# Messages per purge transaction: each holds the write lock while it deletes, so callbacks
# arriving meanwhile wait up to one batch (see docs/performance.md for what it costs them).
BATCH_SIZE = 50


@dataclass
class PurgeResult:
    messages: int = 0
    conversations_removed: int = 0
    delivery_reports: int = 0
    dead_letters: int = 0
    login_rows: int = 0
    sessions: int = 0
    audit_events: int = 0
    conversation_events: int = 0  # reports' events (app/tallies/events.py); tallies and openings stay
    dry_run: bool = False
    cutoff: datetime | None = None
    audit_cutoff: datetime | None = None

    def as_dict(self) -> dict:
        return {
            name: value for name, value in self.__dict__.items() if name not in ("dry_run", "cutoff", "audit_cutoff")
        }


def old_messages(cutoff: datetime) -> sa.Select:
    return sa.select(Message.id).where(*is_old(cutoff))


def is_old(cutoff: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    """Arrived (or written) before the cutoff, and not a message still to be sent after it: a
    reply scheduled months ahead waits for its time, however long ago it was written."""
    return Message.received_at < cutoff, sa.or_(Message.send_at.is_(None), Message.send_at < cutoff)


def purge(
    now: datetime,
    days: int | None,
    audit_days: int | None,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
    progress=None,
    between_batches=None,
) -> PurgeResult:
    """Delete what arrived before now minus `days` (None: keep messages), and audit events
    older than `audit_days`. `progress(n)` is told each batch's messages; `between_batches()`
    is called after each batch (the daily purge renews its lease there)."""
    result = PurgeResult(dry_run=dry_run)
    result.cutoff = now - timedelta(days=days) if days else None
    result.audit_cutoff = now - timedelta(days=audit_days) if audit_days else None
    lifetime = timedelta(seconds=current_app.config["SESSION_LIFETIME_SECONDS"])
    if dry_run:

        def count(query: sa.Select) -> int:
            return db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0

        if result.cutoff:
            result.messages = count(old_messages(result.cutoff))
            result.dead_letters = count(sa.select(DeadLetter.id).where(DeadLetter.received_at < result.cutoff))
            result.conversation_events = count(
                sa.select(ConversationEvent.id).where(ConversationEvent.at < result.cutoff)
            )
        if result.audit_cutoff:
            result.audit_events = count(sa.select(AuditEvent.id).where(AuditEvent.at < result.audit_cutoff))
        return result

    if result.cutoff:
        while True:
            deleted = _purge_message_batch(result, batch_size)
            if progress:
                progress(deleted)
            if between_batches:
                between_batches()
            if deleted < batch_size:
                break
            let_waiting_writers_in()
        result.dead_letters = _delete_in_batches(DeadLetter, DeadLetter.received_at < result.cutoff, batch_size)
        result.conversation_events = _delete_in_batches(
            ConversationEvent, ConversationEvent.at < result.cutoff, batch_size
        )
    result.login_rows = _delete_in_batches(LoginThrottle, LoginThrottle.expires_at <= now, batch_size)
    result.sessions = _delete_in_batches(LoginSession, LoginSession.created_at < now - lifetime, batch_size)
    if result.audit_cutoff:
        result.audit_events = _delete_in_batches(AuditEvent, AuditEvent.at < result.audit_cutoff, batch_size)
    if any(result.as_dict().values()):  # a day with nothing to delete leaves no event
        audit.record(
            "retention_purge",
            {"older_than": clock.utc_iso(result.cutoff) if result.cutoff else "kept for ever", **result.as_dict()},
        )
        scrub_files()
    return result


def _purge_message_batch(result: PurgeResult, batch_size: int) -> int:
    """Delete one batch of old messages and bring their conversations up to date.

    The batch is found by a read before the write lock is taken (finding the last few can mean
    reading the whole table: no index on arrival time), then deleted holding it; a message is
    only deleted if it is still old, whatever happened between.
    """
    assert result.cutoff is not None  # purge() calls this only with days to keep
    old = is_old(result.cutoff)
    candidates = (
        db.session.execute(sa.select(Message.id).where(*old).order_by(Message.id).limit(batch_size)).scalars().all()
    )
    if not candidates:
        return 0
    with write_transaction() as session:
        secure_delete()
        rows = session.execute(
            sa.select(Message.id, Message.conversation_id, Message.omnimessage_id).where(
                Message.id.in_(candidates), *old
            )
        ).all()
        ids = [row.id for row in rows]
        omnimessage_ids = [row.omnimessage_id for row in rows if row.omnimessage_id]
        if omnimessage_ids:
            result.delivery_reports += rows_matched(
                session.execute(
                    sa.delete(UnmatchedDeliveryReport).where(
                        UnmatchedDeliveryReport.omnimessage_id.in_(omnimessage_ids)
                    )
                )
            )
        # Rows that point at a message lose the pointer when they can (an opt-out stays recorded
        # without its keyword message), else go with it.
        for column in referring_columns(Message.__table__):
            matching = column.in_(ids)
            session.execute(
                sa.update(column.table).where(matching).values({column.name: None})
                if column.nullable
                else sa.delete(column.table).where(matching)
            )
        session.execute(sa.delete(Message).where(Message.id.in_(ids)))
        result.messages += len(ids)
        deleted = Counter(row.conversation_id for row in rows)
        if deleted:
            result.conversations_removed += _recount(deleted, change_number())
    return len(candidates)


def _recount(deleted: Counter, change: int) -> int:
    """Conversations after some of their (oldest) messages went: the counts shrink (the newest
    messages are the ones kept, so previews stay); those left with none go, an opted-out one
    leaving a hashed suppression entry. Returns how many went. A few statements per batch,
    however many conversations it touched."""
    session = db.session
    table = Conversation.__table__  # Core, so the statement runs once per conversation (executemany)
    inbound_left = (
        sa.select(sa.func.count())
        .where(Message.conversation_id == table.c.id, Message.direction == "in")
        .scalar_subquery()
    )
    session.execute(
        sa.update(table)
        .where(table.c.id == sa.bindparam("conversation"))
        .values(
            message_count=table.c.message_count - sa.bindparam("gone"),
            unread_count=sa.case(
                (table.c.unread_count == 0, 0),
                (table.c.unread_count <= inbound_left, table.c.unread_count),
                else_=inbound_left,
            ),
            change_seq=change,
        ),
        [{"conversation": conversation_id, "gone": gone} for conversation_id, gone in deleted.items()],
    )
    # Left with no message, or only the team's notes about it (newer than its last message): gone,
    # notes and all.
    emptied = session.execute(
        sa.select(Conversation.id, Conversation.sender, Conversation.opted_out).where(
            Conversation.id.in_(list(deleted)),
            ~sa.exists().where(Message.conversation_id == Conversation.id, Message.direction != "note"),
        )
    ).all()
    for conversation_id, sender, opted_out in emptied:
        if opted_out:
            number_hash = audit.number_hash(sender)
            if session.get(Suppression, number_hash) is None:
                session.add(Suppression(number_hash=number_hash, created_at=clock.now()))
        delete_rows_referring_to(conversation_id)
        notes = sa.select(Message.id).where(Message.conversation_id == conversation_id).scalar_subquery()
        for column in referring_columns(Message.__table__):
            session.execute(sa.delete(column.table).where(column.in_(notes)))
        session.execute(sa.delete(Message).where(Message.conversation_id == conversation_id))
        session.execute(sa.delete(Conversation).where(Conversation.id == conversation_id))
    return len(emptied)


def let_waiting_writers_in() -> None:
    """A pause between batches on SQLite. Its write lock is not fair: a writer waiting for it (a
    callback) tries again every LOCK_POLL_MOST at most, and a purge that took its next batch at
    once would keep the lock from it for as long as the purge runs."""
    if is_sqlite():
        time.sleep(LOCK_POLL_MOST * 1.5)


def _delete_in_batches(model, condition, batch_size: int) -> int:
    total = 0
    key = sa.inspect(model).primary_key[0]
    while True:
        with write_transaction() as session:
            secure_delete()
            batch = sa.select(key).where(condition).limit(batch_size)
            deleted = rows_matched(
                session.execute(
                    sa.delete(model).where(key.in_(batch.scalar_subquery())),
                    execution_options={"synchronize_session": False},
                )
            )
        total += deleted
        if deleted < batch_size:
            return total
        let_waiting_writers_in()


# --- once a day, by itself ---------------------------------------------------------------


def run_scheduled(force: bool = False, **options) -> PurgeResult | None:
    """The purge with the configured days, unless another process is purging (the lease) or,
    without `force`, the last purge was less than a day ago; then None."""
    if not force and _purged_lately():
        return None
    lease = leases.take(PURGE_LEASE, LEASE.total_seconds())
    if lease is None:
        return None
    finished = None
    try:
        if not force and _purged_lately():  # by the process that held the lease a moment ago
            return None
        result = purge(clock.now(), settings.days(), settings.audit_days(), between_batches=lease.keep, **options)
        finished = clock.now()
        return result
    finally:
        with write_transaction():
            if finished is not None:
                settings.set_last_purge(finished)
            lease.release()


def _purged_lately() -> bool:
    last = settings.last_purge()
    db.session.rollback()  # the read ends here
    return last is not None and clock.now() - last < PURGE_INTERVAL


@jobs.kind("daily_purge", every=timedelta(seconds=CHECK_SECONDS))
def scheduled_purge(payload: dict, attempt: "jobs.Attempt") -> None:
    """A periodic job: whichever runner claims it checks whether a day has passed since the last
    purge, and if so purges (holding the purge lease, which `flask purge` respects too)."""
    run_scheduled()
