"""The one way code writes: `with write_transaction(): ...` takes the write lock, then commits
or rolls back. Views, the CLI and services never call `commit()` themselves.

Holding the database's single write lock from the first statement means writers queue
instead of failing half-way, ids are handed out in commit order, and so are change numbers:
"what changed after N" never misses a row that committed late. A writer waits for the lock at
most WRITE_LOCK_WAIT_SECONDS (a setting), then fails with "database is locked" (an
OperationalError: pages and callbacks answer 503, and the provider retries).

Service functions that write open `write_transaction()` themselves; nested, it joins the
transaction already open, so a caller can put several of them (an action and its audit event)
in one commit.

`write_transaction(durable=False)` is for bookkeeping that may be lost to a power failure and done
again: a job's claim and result, a webhook run's record. Its commit waits for no disk flush
(SQLite `synchronous=NORMAL` in WAL mode, PostgreSQL `synchronous_commit off`), so it holds the
write lock for its statements only, not an fsync of a few milliseconds: many of them at once no
longer keep callbacks waiting. A crash may lose the newest of them, never anything before a
durable commit (that flush writes every earlier transaction too), and never half of one.
A nested transaction has the outer one's durability.
"""

import fcntl
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import IO, cast

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from app.db.models import ChangeCounter
from app.extensions import WRITE_LOCK_WAIT_SECONDS, db

LOCK_POLL_FIRST, LOCK_POLL_MOST = 0.001, 0.01  # seconds between tries for the write lock file

# Any constant shared by every instance: PostgreSQL writers queue on this advisory lock, one per
# schema (advisory locks are database-wide; apps in other schemas of one database don't wait).
WRITE_LOCK_KEY = 0x5D5_1B0C


@contextmanager
def write_transaction(durable: bool = True) -> Iterator[Session]:
    """A transaction holding the write lock; commits at the end, rolls back on any error.

    Nested use joins the outer transaction, which commits. Reads made before it are ended
    first: a SQLite read snapshot cannot become a write once another writer has committed.
    `durable=False`: its commit is not flushed to disk before it returns (see above).
    """
    session = db.session()
    if session.info.get("writing"):
        yield session
        return
    if session.in_transaction():
        session.commit()  # only reads so far
    with _file_lock():
        try:
            _begin_holding_lock(session, durable=durable)  # may give up waiting: then rolled back too
            session.info["writing"] = True
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.info.pop("writing", None)
            session.info.pop("change", None)


def change_number() -> int:
    """This transaction's change number: every row it changes for a list or thread gets it.

    Taken from one counter on first use, so a transaction has one number and numbers follow
    commit order (the write lock is held). Pollers ask for rows changed after the last they saw.
    """
    session = db.session()
    if not session.info.get("writing"):
        raise RuntimeError("change_number() is only for use inside write_transaction()")
    if "change" not in session.info:
        session.info["change"] = session.connection().scalar(_next_change())
    return session.info["change"]


def rows_matched(result: sa.Result) -> int:
    """How many rows an UPDATE or DELETE run by `Session.execute` matched. The session types
    what it returns as a plain Result; for these statements it is a CursorResult, which counts."""
    return cast(sa.CursorResult, result).rowcount


@cache
def _next_change() -> sa.Update:
    """Built once, and run on the connection: the ORM's UPDATE path costs more than the update."""
    counter = ChangeCounter.__table__
    return sa.update(counter).values(value=counter.c.value + 1).returning(counter.c.value)


def lock_wait_seconds() -> float:
    """How long a writer waits for the write lock before giving up (the app's setting)."""
    return current_app.config.get("WRITE_LOCK_WAIT_SECONDS", WRITE_LOCK_WAIT_SECONDS)


def write_lock() -> sa.ColumnElement:
    """PostgreSQL: take the writers' advisory lock of this schema, until the transaction ends."""
    return sa.func.pg_advisory_xact_lock(WRITE_LOCK_KEY, sa.func.hashtext(sa.func.current_schema()))


def _begin_holding_lock(session: Session, queue_with_writers: bool = True, durable: bool = True) -> None:
    """Begin a write: SQLite's write lock (waiting busy_timeout); on PostgreSQL a lock timeout
    of `lock_wait_seconds()` and, with `queue_with_writers`, the writers' advisory lock.
    Not `durable`: its commit does not wait for the disk."""
    if session.get_bind().dialect.name == "sqlite":
        # synchronous is set before BEGIN (SQLite refuses to change it inside a transaction)
        options = {"sqlite_begin": "IMMEDIATE", "sqlite_synchronous": "FULL" if durable else "NORMAL"}
        session.connection(execution_options=options)  # waits busy_timeout
    else:
        if not durable:
            session.execute(sa.text("SET LOCAL synchronous_commit = off"))
        session.execute(sa.text(f"SET LOCAL lock_timeout = '{int(lock_wait_seconds() * 1000)}ms'"))
        if queue_with_writers:
            session.execute(sa.select(write_lock()))


@contextmanager
def _file_lock() -> Iterator[None]:
    """Lets the processes and threads writing one SQLite file take turns without SQLite's
    sleep-and-retry busy handler (a no-op on other databases).

    Each use opens the lock file anew: flock excludes every other open file, in this process
    or another, and nothing is inherited across a fork or left open. Gives up as SQLite's busy
    timeout does, after `lock_wait_seconds()`, with the same "database is locked" error.
    """
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    lock_file = _locked_file(Path(url.database).with_suffix(".write-lock"), lock_wait_seconds())
    try:
        yield
    finally:
        lock_file.close()  # releases the lock


def _locked_file(path: Path, wait_seconds: float) -> IO:
    """The lock file, opened and locked for this writer; "database is locked" after `wait_seconds`.

    flock has no timeout: like SQLite's own busy handler, try without blocking and again after
    short sleeps (1 ms, doubling to 10 ms), so a freed lock is taken within 10 ms.
    """
    lock_file = open(path, "a")
    deadline, pause = time.monotonic() + wait_seconds, LOCK_POLL_FIRST
    try:
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return lock_file
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise sa.exc.OperationalError(
                        "waiting for the write lock file", None, sqlite3.OperationalError("database is locked")
                    ) from None
                time.sleep(min(pause, left))
                pause = min(pause * 2, LOCK_POLL_MOST)
    except BaseException:
        lock_file.close()
        raise
