"""Group commit: concurrent callbacks share one transaction and one fsync.

With `synchronous=FULL` every commit waits for the disk, so one commit per request caps a
worker at a few hundred messages a second. Instead each request hands its message to this
process's committer thread and waits; the thread stores everything queued so far in one
transaction, commits, and only then releases the waiting requests to answer 200.

On SQLite the committer also holds a file lock for the whole transaction, so the worker
processes take turns without SQLite's sleep-and-retry busy handler.
"""
import fcntl
import threading
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from pathlib import Path

from flask import Flask, current_app

from . import ingest
from .extensions import db

MAX_BATCH = 256
IDLE_SECONDS = 2.0  # the thread ends after this long without work, and restarts on demand
WAIT_SECONDS = 25.0  # below gunicorn's timeout, so a stuck commit becomes a 503, not a killed worker


class Committer:
    def __init__(self, app: Flask):
        self.app = app
        self.pending: list[tuple[ingest.Inbound, Future]] = []
        self.wakeup = threading.Condition()
        self.running = False

    def store(self, message: ingest.Inbound) -> bool:
        """Store the message (True if new, False if a duplicate) once it is committed."""
        done: Future = Future()
        with self.wakeup:
            self.pending.append((message, done))
            if self.running:
                self.wakeup.notify()
            else:
                self.running = True
                threading.Thread(target=self.run, name="group-commit", daemon=True).start()
        return done.result(timeout=WAIT_SECONDS)

    def run(self) -> None:
        try:
            self.commit_batches()
        except Exception as exc:  # could not even open the database: fail the waiting requests
            with self.wakeup:
                self.running = False  # and let the next request start a fresh thread
                waiting, self.pending = self.pending, []
            for _, done in waiting:
                done.set_exception(exc)

    def commit_batches(self) -> None:
        with self.app.app_context(), write_lock() as lock:
            while batch := self.next_batch():
                try:
                    with lock():
                        stored = ingest.store_messages([message for message, _ in batch])
                        db.session.commit()
                except Exception as exc:  # nothing in the batch was acked: each request answers 503
                    db.session.rollback()
                    for _, done in batch:
                        done.set_exception(exc)
                else:
                    for (_, done), new in zip(batch, stored):
                        done.set_result(new)

    def next_batch(self) -> list:
        with self.wakeup:
            if not self.pending:
                self.wakeup.wait(IDLE_SECONDS)
            if not self.pending:
                self.running = False
                return []
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            return batch


def store(message: ingest.Inbound) -> bool:
    """Store one message through this process's committer; True if it was new."""
    app = current_app._get_current_object()
    committer = app.extensions.get("group_commit")
    if committer is None:
        committer = app.extensions.setdefault("group_commit", Committer(app))
    return committer.store(message)


@contextmanager
def write_lock():
    """A lock shared by every process writing this SQLite file (a no-op elsewhere).

    Opened in the committer thread, after gunicorn forked: a descriptor inherited across
    fork would be one lock shared by all workers, excluding nobody.
    """
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield nullcontext
        return
    with open(Path(url.database).with_suffix(".write-lock"), "a") as lock_file:
        @contextmanager
        def held():
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        yield held
