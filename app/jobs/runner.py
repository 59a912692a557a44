"""The runner: a few threads per process working through the job table (app/jobs/__init__.py).

Started explicitly, never by a request: in every server process by gunicorn's `post_worker_init`
hook (app/server/settings.py), and by `flask --app app worker` for a deployment that wants it in its
own process. Each thread claims a due job, runs it holding no lock, records the result, and
otherwise waits: until a local commit enqueues work (`wake_local_runners`), the next job falls
due, or JOBS_POLL_SECONDS pass (work another process enqueued). Waiting reads, never writes: an
idle runner moves no change number. It writes one heartbeat at most every HEARTBEAT seconds, on
its server's row (app/jobs/servers.py), which the admin's jobs page shows.
"""

import os
import secrets
import socket
import threading
import weakref
from collections import Counter
from datetime import datetime, timedelta

from flask import Flask

from app import clock, jobs
from app.extensions import db
from app.jobs import servers

HEARTBEAT = timedelta(seconds=15)
ALIVE_WITHIN = timedelta(minutes=1)  # a runner not heard from this long is taken to be gone
_local_runners: "weakref.WeakSet[Runner]" = weakref.WeakSet()


def wake_local_runners() -> None:
    """A commit added jobs: this process's runners look at once."""
    for runner in list(_local_runners):
        runner.wake()


class Runner:
    def __init__(self, app: Flask, server_id: int | None = None, threads: int | None = None):
        self.app = app
        self.server_id = server_id  # the server row its heartbeat goes on
        self.thread_count = threads if threads is not None else app.config["JOB_THREADS"]
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[:64]
        self.threads: list[threading.Thread] = []
        self.condition = threading.Condition()
        self.signals = 0  # wake-ups so far: a thread waits only if none came since it last looked
        self.looks = 0  # times its threads looked for work (the admin page; tests wait on it)
        self.stopping = False
        self.last_heartbeat: datetime | None = None
        self.last_housekeeping = None
        self.running: Counter[str] = Counter()  # jobs of each kind its threads run now

    def start(self) -> "Runner":
        if self.threads:
            return self
        _local_runners.add(self)
        self.threads = [
            threading.Thread(target=self.work, name=f"job-runner-{n}", daemon=True) for n in range(self.thread_count)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Take no new job; wait up to `timeout` for the running ones to finish."""
        with self.condition:
            self.stopping = True
            self.condition.notify_all()
        for thread in self.threads:
            thread.join(timeout)
        _local_runners.discard(self)

    def wake(self) -> None:
        with self.condition:
            self.signals += 1
            self.condition.notify_all()

    def work(self) -> None:
        while not self.stopping:
            with self.condition:
                seen = self.signals
            wait = 5.0
            with self.app.app_context():
                try:
                    wait = 0.0 if self.step() else self.idle_wait()
                except Exception as exc:  # the database is away, say: look again in a while
                    jobs.log_failure(exc, "job runner step failed")
                finally:
                    db.session.remove()
            if wait:
                with self.condition:
                    if self.signals == seen and not self.stopping:
                        self.condition.wait(wait)

    def step(self) -> bool:
        """Heartbeat and housekeeping when due, then one job if there is one: whether one ran."""
        now = clock.now()
        with self.condition:  # one thread of the runner does these at a time
            self.looks += 1
            heartbeat = self.last_heartbeat is None or now - self.last_heartbeat >= HEARTBEAT
            if heartbeat:
                self.last_heartbeat = now
        if heartbeat:
            self.heartbeat(now)
            jobs.recover(now, self.app.config)
            jobs.ensure_periodic(now)
        if self.stopping:
            return False
        for row in jobs.find_due(now, limit=max(self.thread_count, 1), skip_kinds=self.kinds_at_limit()):
            if not self.take(row.kind):
                continue  # another thread took the last place meanwhile
            try:
                job = jobs.claim(row.id, row.kind, now, self.holder, self.app.config)
                if job is not None:
                    jobs.run(job, now)
                    return True
            finally:
                self.release(row.kind)
        return False

    def limit(self, kind: str) -> int | None:
        found = jobs.KINDS.get(kind)
        return found.per_runner_for(self.app.config) if found else None

    def kinds_at_limit(self) -> list[str]:
        """Kinds whose `per_runner` limit this runner's threads have reached."""
        with self.condition:
            limits = {kind: self.limit(kind) for kind in self.running}
            return [kind for kind, count in self.running.items() if (limits[kind] or count + 1) <= count]

    def take(self, kind: str) -> bool:
        """A place for one more job of `kind` in this runner, if its limit leaves one."""
        limit = self.limit(kind)
        with self.condition:
            if limit is not None and self.running[kind] >= limit:
                return False
            self.running[kind] += 1
            return True

    def release(self, kind: str) -> None:
        """(Nobody is woken: the thread that ran it looks for the next job at once.)"""
        with self.condition:
            self.running[kind] -= 1

    def idle_wait(self) -> float:
        """Seconds until the next job falls due, at most JOBS_POLL_SECONDS (and HEARTBEAT)."""
        longest = min(float(self.app.config["JOBS_POLL_SECONDS"]), HEARTBEAT.total_seconds())
        now = clock.now()
        # Not the jobs due already that it found nothing to take of (behind their key, or their
        # kind at its limit: woken when freed): a scheduled moment after them wakes it on time.
        due = jobs.next_due_at(after=now)
        if due is None:
            return longest
        return min(longest, max((due - now).total_seconds(), 0.001))

    def heartbeat(self, now) -> None:
        if self.server_id is not None:
            servers.heartbeat(self.server_id, now)


def start(app: Flask, server_id: int | None = None) -> Runner:
    """This process's runner, started once."""
    runner = app.extensions.get("jobs_runner")
    if runner is None:
        runner = app.extensions.setdefault("jobs_runner", Runner(app, server_id))
    return runner.start()


def stop(app: Flask, timeout: float = 30.0) -> None:
    runner = app.extensions.pop("jobs_runner", None)
    if runner is not None:
        runner.stop(timeout)


def runners_alive(now) -> bool:
    """Whether some runner, anywhere, was heard from within ALIVE_WITHIN."""
    newest = servers.newest_runner_heartbeat()
    return newest is not None and now - newest <= ALIVE_WITHIN
