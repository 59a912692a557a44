"""The one way code writes: `with write_transaction(): ...` takes the write lock, then commits
or rolls back. Views, the CLI and services never call `commit()` themselves.

Holding the database's single write lock from the first statement means writers queue
instead of failing half-way ("database is locked"), ids are handed out in commit order, and
so are change numbers: "what changed after N" never misses a row that committed late.
"""
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .extensions import WRITE_LOCK_WAIT_SECONDS, db
from .models import ChangeCounter

# Any constant shared by every instance: PostgreSQL writers queue on this advisory lock.
WRITE_LOCK_KEY = 0x5D5_1B0C


@contextmanager
def write_transaction() -> Iterator[Session]:
    """A transaction holding the write lock; commits at the end, rolls back on any error.

    Nested use joins the outer transaction, which commits. Reads made before it are ended
    first: a SQLite read snapshot cannot become a write once another writer has committed.
    """
    session = db.session()
    if session.info.get("writing"):
        yield session
        return
    if session.in_transaction():
        session.commit()  # only reads so far
    with _file_lock():
        _begin_holding_lock(session)
        session.info["writing"] = True
        try:
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


@cache
def _next_change() -> sa.Update:
    """Built once, and run on the connection: the ORM's UPDATE path costs more than the update."""
    counter = ChangeCounter.__table__
    return sa.update(counter).values(value=counter.c.value + 1).returning(counter.c.value)


def _begin_holding_lock(session: Session, queue_with_writers: bool = True) -> None:
    """Begin a write: SQLite's write lock (waiting busy_timeout); on PostgreSQL a lock timeout
    of WRITE_LOCK_WAIT_SECONDS and, with `queue_with_writers`, the writers' advisory lock."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})  # waits busy_timeout
    else:
        session.execute(sa.text(f"SET LOCAL lock_timeout = '{WRITE_LOCK_WAIT_SECONDS}s'"))
        if queue_with_writers:
            session.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))


@contextmanager
def _file_lock() -> Iterator[None]:
    """Lets the processes and threads writing one SQLite file take turns without SQLite's
    sleep-and-retry busy handler (a no-op on other databases).

    Each use opens the lock file anew: flock excludes every other open file, in this process
    or another, and nothing is inherited across a fork or left open.
    """
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    with open(Path(url.database).with_suffix(".write-lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield  # closing the file releases the lock
