"""Group commit: concurrent callbacks share one transaction and one fsync.

With `synchronous=FULL` every commit waits for the disk, so one commit per request caps a
worker at a few hundred messages a second. Instead the requests of a process take turns as the
leader: the leader stores every message queued so far (its own among them) in one transaction,
commits, and releases the requests whose messages it stored to answer 200; meanwhile the next
messages queue up for the next leader. No thread of its own: each leader is a request's thread.

When a batch fails, its messages are stored one by one, so one bad message never costs the
others their first delivery.
"""

import threading
import time
from concurrent.futures import Future
from typing import cast

import sqlalchemy as sa
from flask import Flask, current_app
from werkzeug.local import LocalProxy

from app.callbacks import ingest

# Failures of the database itself (down, locked too long, disk full): storing the batch's
# messages one by one would only fail again, each after its own wait.
DATABASE_AWAY = (sa.exc.OperationalError, sa.exc.InterfaceError, OSError)
MAX_BATCH = 256
# A request waits this much past the write lock's wait (WRITE_LOCK_WAIT_SECONDS), so the lock's
# error is what it reports; well below gunicorn's timeout, so a stuck commit becomes a 503
# (retried by Messente), never a killed worker.
WAIT_MARGIN_SECONDS = 5.0


class Committer:
    def __init__(self, app: Flask):
        self.pending: list[tuple[ingest.Inbound, Future]] = []
        self.turn = threading.Condition()
        self.leading = False
        self.wait_seconds = app.config["WRITE_LOCK_WAIT_SECONDS"] + WAIT_MARGIN_SECONDS

    def store(self, message: ingest.Inbound) -> bool:
        """Store the message (True if new, False if a duplicate) once it is committed."""
        done: Future = Future()
        deadline = time.monotonic() + self.wait_seconds
        entry = (message, done)
        with self.turn:
            self.pending.append(entry)
        while not done.done():
            with self.turn:
                while self.leading and not done.done():
                    if not self.turn.wait(max(0.0, deadline - time.monotonic())) and not done.done():
                        # Answered 503, so not stored later behind the provider's back (unless a
                        # leader has it already: then the provider's retry is a duplicate).
                        if entry in self.pending:
                            self.pending.remove(entry)
                        raise TimeoutError("the message was not committed in time")
                if done.done():
                    break
                self.leading = True  # this request's turn: it stores what is queued, its own included
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            try:
                self.commit(batch)
            finally:
                for _, waiting in batch:  # only if the commit itself was interrupted
                    if not waiting.done():
                        waiting.set_exception(RuntimeError("the commit was interrupted"))
                with self.turn:
                    self.leading = False
                    self.turn.notify_all()
        return done.result()

    def commit(self, batch: list[tuple[ingest.Inbound, Future]]) -> None:
        try:
            stored = ingest.store_messages([message for message, _ in batch])
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, DATABASE_AWAY):
                for _, done in batch:  # the database, not a message: all answer 503
                    done.set_exception(exc)
                return
            # Nothing in the batch was acked. Store each message on its own, so only a
            # message that fails alone answers 503 (and the provider retries it).
            for message, done in batch:
                self.store_alone(message, done)
        else:
            for (_, done), new in zip(batch, stored, strict=True):
                done.set_result(new)

    @staticmethod
    def store_alone(message: ingest.Inbound, done: Future) -> None:
        try:
            [new] = ingest.store_messages([message])
        except Exception as exc:
            done.set_exception(exc)
        else:
            done.set_result(new)


def store(message: ingest.Inbound) -> bool:
    """Store one message through this process's committer; True if it was new."""
    # Flask types current_app as the app itself; it is the proxy that finds it.
    app = cast("LocalProxy[Flask]", current_app)._get_current_object()
    committer = app.extensions.get("group_commit")
    if committer is None:
        committer = app.extensions.setdefault("group_commit", Committer(app))
    return committer.store(message)
