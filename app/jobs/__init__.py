"""Background work, in one place: a durable job table (the transactional-outbox pattern) and the
runner that works through it.

A job is a row of the `job` table, added by `enqueue()` inside the caller's `write_transaction()`:
it commits with the change that causes it (a reply and its `send_reply` job) or not at all, so
work is never lost and never exists without its cause. Committing wakes this process's runner at
once; other processes' runners find it at their next look (within JOBS_POLL_SECONDS).

A runner (app/jobs/runner.py) finds due jobs with a read, claims one with a short committed
UPDATE through `write_transaction()` that sets its lease (state running, leased_until, holder),
holds no lock while the job runs, then records the result. Jobs sharing a `key` run one at a
time, in the order they were enqueued. Each kind registers its handler and its retry rules:

- idempotent kinds (a purge, a blacklist sync, a wake-up) are retried with exponential backoff
  when they fail, up to `max_attempts`, then stay `dead` until an admin retries them;
- `at_most_once` kinds (a send to Messente) are never run twice: a failure, or a runner that
  disappears while holding the lease, ends the job with the kind's `on_abandon` (the reply is
  shown unconfirmed). The handler itself may ask for another attempt (`Retry`) when it knows
  the work did not happen (no connection could be made);
- periodic kinds (`every=`) have one row each, due again one period after each run: whichever
  runner claims it runs it, so it runs once per period across all processes and instances.

`run_due(now)` runs everything due at `now` once and returns: the tests drive the same code the
runner threads run with it, with an injected clock (app/clock.py), and never sleep.

Why not RQ, Celery, Dramatiq, huey or procrastinate: RQ needs Redis; Celery and Dramatiq a broker
(Redis or RabbitMQ); huey Redis or its own SQLite file; procrastinate PostgreSQL only. None can
commit a job in the same transaction as the app's own change on SQLite (the default database),
so a crash between "reply stored" and "job queued" would lose or orphan work: exactly what the
outbox is for. The app already has one write path that serialises writers on both databases;
a table and a few threads on top of it need no new service to install, watch or back up.
"""

import json
import logging
import secrets
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session, aliased

from app import clock
from app.db.models import Job
from app.db.unit_of_work import rows_matched, write_transaction
from app.extensions import db

log = logging.getLogger(__name__)

BACKOFF_FIRST = timedelta(seconds=5)
BACKOFF_MOST = timedelta(minutes=10)
DEFAULT_LEASE = timedelta(minutes=5)
KEEP_DONE = timedelta(days=7)  # finished jobs are deleted after this (the periodic prune_jobs)
ERROR_CHARS = 500
KEYS_PER_STATEMENT = 1000  # in one IN (...) list


@dataclass(frozen=True)
class Retry:
    """A handler's answer: the work did not happen; try again after `delay`."""

    delay: timedelta
    reason: str


@dataclass(frozen=True)
class Attempt:
    """What a handler knows about its job."""

    job_id: int
    number: int  # 1 for the first run
    created_at: datetime
    now: datetime


@dataclass(frozen=True)
class Kind:
    name: str
    handler: Callable[[dict, Attempt], "Retry | None"]
    at_most_once: bool = False
    max_attempts: int = 8
    # How long a claim lasts: past it, the runner holding it is taken to be gone. A callable gets
    # the app's config (a send's lease follows the client's timeouts).
    lease: timedelta | Callable[[dict], timedelta] = DEFAULT_LEASE
    on_abandon: Callable[[dict, str], None] | None = None
    every: timedelta | None = None  # periodic
    # At most this many of the kind run at once in one runner (one process), or None for as many
    # as it has threads; a callable gets the app's config. Work that keeps its thread busy with
    # Python (webhook deliveries) then leaves the process's requests their share of the CPU.
    per_runner: int | Callable[[dict], int] | None = None

    def lease_for(self, config) -> timedelta:
        return self.lease(config) if callable(self.lease) else self.lease

    def per_runner_for(self, config) -> int | None:
        return self.per_runner(config) if callable(self.per_runner) else self.per_runner


KINDS: dict[str, Kind] = {}


def kind(name: str, **rules) -> Callable:
    """Register a handler, `handler(payload, attempt) -> Retry | None`, for jobs of `name`."""

    def register(handler):
        KINDS[name] = Kind(name, handler, **rules)
        return handler

    return register


def enqueue(
    kind_name: str, payload: dict | None = None, due_at: datetime | None = None, key: str | None = None
) -> None:
    """Add a job inside the caller's write transaction: it commits (and wakes the runner) or rolls
    back with the caller's change. The payload holds ids (integers, or lists of them) only,
    never personal data."""
    session = db.session()
    if not session.info.get("writing"):
        raise RuntimeError("jobs.enqueue() is only for use inside write_transaction()")
    session.execute(sa.insert(Job).values(**_new_job(kind_name, payload or {}, key, due_at)))
    session.info["wake_jobs"] = True


def _new_job(kind_name: str, payload: dict, key: str | None, due_at: datetime | None) -> dict:
    """A new job row's values, its kind and payload checked."""
    if kind_name not in KINDS:
        raise ValueError(f"no handler for jobs of kind {kind_name!r}")
    if not all(_is_id(value) or (isinstance(value, list) and all(map(_is_id, value))) for value in payload.values()):
        raise ValueError("a job's payload holds ids (integers, or lists of them) only")
    now = clock.now()
    return {
        "kind": kind_name,
        "payload": json.dumps(payload),
        "key": key,
        "state": "due",
        "due_at": due_at or now,
        "attempts": 0,
        "created_at": now,
    }


def enqueue_once(kind_name: str, payload: dict, key: str, due_at: datetime) -> None:
    """A job of `key` due by `due_at`, inside the caller's write transaction: the one already
    waiting (due) is moved earlier if need be; or, with none running, the key's last finished
    row is due again (a key that runs often keeps one row, not one per run); or one is added.
    One running is left to finish: the new one runs after it (jobs sharing a key run one at a
    time, in the order of their ids)."""
    enqueue_once_each(kind_name, {key: (payload, due_at)})


def enqueue_once_each(kind_name: str, wanted: dict[str, tuple[dict, datetime]]) -> None:
    """`enqueue_once` for many keys ({key: (payload, due_at)}) in a few statements whatever their
    number: one read of their rows, then one UPDATE or INSERT statement of each sort."""
    session = db.session()
    if not session.info.get("writing"):
        raise RuntimeError("jobs.enqueue_once() is only for use inside write_transaction()")
    by_key: dict[str, list[sa.Row]] = {}
    keys = list(wanted)
    for start in range(0, len(keys), KEYS_PER_STATEMENT):
        for row in session.execute(
            sa.select(Job.key, Job.id, Job.state, Job.due_at).where(
                Job.key.in_(keys[start : start + KEYS_PER_STATEMENT]), Job.state.in_(("due", "running", "done"))
            )
        ):
            by_key.setdefault(row.key, []).append(row)
    earlier, again, added = [], [], []
    now = clock.now()
    for key, (payload, due_at) in wanted.items():
        rows = by_key.get(key, [])
        waiting = min((row for row in rows if row.state == "due"), key=lambda row: row.id, default=None)
        if waiting is not None:
            if waiting.due_at > due_at:
                earlier.append({"job_id": waiting.id, "new_due_at": due_at})
            continue
        finished = max((row.id for row in rows if row.state == "done"), default=None)
        if finished is None or any(row.state == "running" for row in rows):
            added.append(_new_job(kind_name, payload, key, due_at))
            continue
        again.append(
            {
                "job_id": finished,
                "new_kind": kind_name,
                "new_payload": json.dumps(payload),
                "new_due_at": due_at,
                "new_created_at": now,
            }
        )
    connection = session.connection()
    if earlier:
        connection.execute(
            sa.update(Job.__table__)
            .where(Job.__table__.c.id == sa.bindparam("job_id"))
            .values(due_at=sa.bindparam("new_due_at")),
            earlier,
        )
    if again:
        connection.execute(
            sa.update(Job.__table__)
            .where(Job.__table__.c.id == sa.bindparam("job_id"))
            .values(
                kind=sa.bindparam("new_kind"),
                payload=sa.bindparam("new_payload"),
                state="due",
                due_at=sa.bindparam("new_due_at"),
                attempts=0,
                last_error=None,
                created_at=sa.bindparam("new_created_at"),
                finished_at=None,
            ),
            again,
        )
    if added:
        connection.execute(sa.insert(Job.__table__), added)
    if earlier or again or added:
        session.info["wake_jobs"] = True


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@sa.event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop("wake_jobs", False):
        from app.jobs.runner import wake_local_runners  # here: the runner module imports this one

        wake_local_runners()


@sa.event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("wake_jobs", None)


# --- finding and claiming -----------------------------------------------------------------------


def _claimable(now: datetime):
    """Due, and not behind an unfinished earlier job with the same key."""
    earlier = aliased(Job)
    blocked = (
        sa.select(earlier.id)
        .where(earlier.key == Job.key, earlier.id < Job.id, earlier.state.in_(("due", "running")))
        .exists()
    )
    return sa.and_(Job.state == "due", Job.due_at <= now, ~blocked)


def find_due(now: datetime, limit: int = 20, skip_kinds: Collection[str] = ()) -> Sequence[sa.Row]:
    """(id, kind) of jobs that may be claimed now, oldest due first, none of `skip_kinds`. A read:
    no lock taken."""
    query = sa.select(Job.id, Job.kind).where(_claimable(now))
    if skip_kinds:
        query = query.where(Job.kind.not_in(sorted(skip_kinds)))
    rows = db.session.execute(query.order_by(Job.due_at, Job.id).limit(limit)).all()
    db.session.rollback()  # the read ends here
    return rows


def next_due_at(after: datetime | None = None) -> datetime | None:
    """When the next job falls due (after `after`: one due by then and not yet taken is behind
    its key or its kind's limit, and whatever frees it wakes the runner)."""
    query = sa.select(sa.func.min(Job.due_at)).where(Job.state == "due")
    if after is not None:
        query = query.where(Job.due_at > after)
    due = db.session.scalar(query)
    db.session.rollback()
    return due


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    payload: dict
    attempts: int
    created_at: datetime
    holder: str


def _durable(found: Kind | None) -> bool:
    """Whether a claim or a result of this kind must be on disk before the runner goes on: not
    when it may run again after a crash (durable=False, write_transaction's docstring); an
    at-most-once kind's must (its send is never repeated)."""
    return found is None or found.at_most_once


def claim(job_id: int, kind_name: str, now: datetime, holder: str, config) -> Claimed | None:
    """Take a due job for `holder` with one conditional UPDATE: None if another runner got it first."""
    found = KINDS.get(kind_name)
    lease = found.lease_for(config) if found else DEFAULT_LEASE
    with write_transaction(durable=_durable(found)) as session:
        row = session.execute(
            sa.update(Job)
            .where(Job.id == job_id, _claimable(now))
            .values(state="running", holder=holder, leased_until=now + lease, attempts=Job.attempts + 1)
            .returning(Job.kind, Job.payload, Job.attempts, Job.created_at)
        ).first()
    if row is None:
        return None
    return Claimed(job_id, row.kind, json.loads(row.payload), row.attempts, row.created_at, holder)


# --- running and recording ----------------------------------------------------------------------


def log_failure(exc: Exception, message: str, *args) -> None:
    """A busy or unreachable database is expected now and then (a long seed-demo, a restart of
    PostgreSQL) and the work is tried again: one line for it; a traceback for anything else."""
    if isinstance(exc, sa.exc.OperationalError):
        log.warning(message + ": %s; trying again", *args, str(exc.orig).splitlines()[0])
    else:
        log.exception(message, *args)


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s ... at most 10 minutes."""
    return min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_MOST)


def run(job: Claimed, now: datetime) -> str:
    """Run a claimed job's handler and record what came of it; the job's new state."""
    found = KINDS.get(job.kind)
    if found is None:
        _finish(job, "dead", error=f"no handler for jobs of kind {job.kind!r}")
        return "dead"
    try:
        outcome = found.handler(job.payload, Attempt(job.id, job.attempts, job.created_at, now))
    except Exception as exc:
        db.session.rollback()
        error = f"{exc.__class__.__name__}: {exc}"
        log_failure(exc, "job %d (%s) failed", job.id, job.kind)
        if found.at_most_once:
            _abandon(job, found, error)
            return "dead"
        return _failed(job, found, error)
    if isinstance(outcome, Retry):
        _finish(job, "due", due_at=clock.now() + outcome.delay, error=outcome.reason)
        return "due"
    if found.every:
        _finish(job, "due", due_at=clock.now() + found.every, reset=True)
        return "due"
    _finish(job, "done")
    return "done"


def _abandon(job: Claimed, found: Kind, error: str) -> None:
    """An at-most-once job that may have half happened: ended for good, with its kind's say."""
    with write_transaction():  # one transaction: the job and what it was doing end together
        if _finish(job, "dead", error=error) and found.on_abandon:
            found.on_abandon(job.payload, error)


def _failed(job: Claimed, found: Kind, error: str) -> str:
    if found.every:  # periodic work is never given up: it tries again, at the latest next period
        state, due_at = "due", clock.now() + min(backoff(job.attempts), found.every)
    elif job.attempts >= found.max_attempts:
        state, due_at = "dead", None
    else:
        state, due_at = "due", clock.now() + backoff(job.attempts)
    _finish(job, state, due_at=due_at, error=error)
    return state


def _finish(
    job: Claimed, state: str, due_at: datetime | None = None, error: str | None = None, reset: bool = False
) -> bool:
    """Record a result, if the job is still this holder's (a lease that ran out was recovered)."""
    values: dict[str, Any] = {
        "state": state,
        "holder": None,
        "leased_until": None,
        "last_error": error and error[:ERROR_CHARS],
    }
    if due_at is not None:
        values["due_at"] = due_at
    if reset:
        values["attempts"] = 0
    if state in ("done", "dead") or reset:
        values["finished_at"] = clock.now()
    with write_transaction(durable=_durable(KINDS.get(job.kind))) as session:
        updated = rows_matched(
            session.execute(
                sa.update(Job)
                .where(Job.id == job.id, Job.holder == job.holder, Job.state == "running")
                .values(**values)
            )
        )
        session.info["wake_jobs"] = True  # a job behind this one (same key) may be claimable now
    return bool(updated)


def recover(now: datetime, config) -> int:
    """Jobs whose runner is gone (lease run out): idempotent ones are due again (or dead after
    their last attempt); at-most-once ones are abandoned, never rerun. How many were found."""
    stale = db.session.execute(
        sa.select(Job.id, Job.kind, Job.payload, Job.attempts, Job.created_at, Job.holder).where(
            Job.state == "running", Job.leased_until < now
        )
    ).all()
    db.session.rollback()
    for row in stale:
        found = KINDS.get(row.kind)
        job = Claimed(row.id, row.kind, json.loads(row.payload), row.attempts, row.created_at, row.holder)
        error = "the runner stopped while running it"
        if found is not None and found.at_most_once:
            _abandon(job, found, error)
        elif found is not None:
            _failed(job, found, error)
        else:
            _finish(job, "dead", error=error)
    return len(stale)


def ensure_periodic(now: datetime) -> None:
    """Each periodic kind has its row (added once, by whichever runner looks first)."""
    periodic = [name for name, found in KINDS.items() if found.every]
    if not periodic:
        return
    present = set(
        db.session.scalars(sa.select(Job.kind).where(Job.kind.in_(periodic), Job.state.in_(("due", "running"))))
    )
    db.session.rollback()
    missing = [name for name in periodic if name not in present]
    if not missing:
        return
    with write_transaction() as session:  # again under the write lock: another runner may have added it
        present = set(
            session.scalars(sa.select(Job.kind).where(Job.kind.in_(missing), Job.state.in_(("due", "running"))))
        )
        for name in missing:
            if name not in present:
                enqueue(name, due_at=now)


def run_due(now: datetime | None = None, holder: str | None = None) -> int:
    """Run every job due at `now` once (the tests' step, and a runner's catch-up); how many ran."""
    now = now or clock.now()
    holder = holder or f"run_due-{secrets.token_hex(4)}"
    config = current_app.config
    recover(now, config)
    ensure_periodic(now)
    tried, ran = set(), 0
    while True:
        due = [row for row in find_due(now, limit=50) if row.id not in tried]
        if not due:
            return ran
        for row in due:
            tried.add(row.id)
            job = claim(row.id, row.kind, now, holder, config)
            if job is not None:
                run(job, now)
                ran += 1


def retry_dead(job_id: int) -> bool:
    """An admin's retry: a dead job is due again now, its attempts counted afresh."""
    with write_transaction() as session:
        updated = rows_matched(
            session.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.state == "dead")
                .values(state="due", due_at=clock.now(), attempts=0, finished_at=None)
            )
        )
        if updated:
            session.info["wake_jobs"] = True
    return bool(updated)


def listing(states=("due", "running", "dead"), limit: int = 200) -> list[Job]:
    return list(
        db.session.scalars(
            sa.select(Job).where(Job.state.in_(states)).order_by(Job.state, Job.due_at, Job.id).limit(limit)
        )
    )


@kind("prune_jobs", every=timedelta(days=1))
def prune_jobs(payload: dict, attempt: Attempt) -> None:
    """Finished jobs go after a week: the table holds what is pending and what failed."""
    with write_transaction() as session:
        session.execute(sa.delete(Job).where(Job.state == "done", Job.finished_at < attempt.now - KEEP_DONE))
