"""Running servers, recorded in the database they share with the commands.

Each server process (the gunicorn master; see app/server/settings.py) adds a `server` row when it is
ready to serve and deletes it when it stops cleanly. Commands read the rows to find the address
to print in a link or to send a test message to (`site_address`): PUBLIC_URL if set, else the
newest live server's own address, else BIND, else the default 127.0.0.1:5000.

A row is live when its process still runs (checked by pid on the host that wrote it) or, for a
row of another host, when it was seen within LIVE_ELSEWHERE. A crashed server's row stays, not
live, until a server starts on its host again and deletes it. `last_seen_at` is refreshed by the
server's job runners' heartbeats (app/jobs/runner.py), as is `runner_seen_at`; a `flask worker`
has a row of kind "worker" for its heartbeats, which commands never take for a server.
"""

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from app import clock, config
from app.db.models import Server
from app.db.unit_of_work import _begin_holding_lock
from app.extensions import db

# A server on another host can't be checked by its pid: its row counts as live this long after
# it was last seen.
LIVE_ELSEWHERE = timedelta(minutes=2)
PROGRAMS = {"server": b"gunicorn", "worker": b"worker"}  # in the command line of a row's process
NO_SERVER = "No server is running: start it with `make run`"
LOOPBACK = ("127.0.0.1", "[::1]")


@dataclass(frozen=True)
class SiteAddress:
    """Where commands reach the app, and whether a running server was found."""

    url: str
    server_running: bool


def record(bind: str, public_url: str | None, pid: int | None = None) -> int:
    """Add this process's row (replacing the rows of servers on this host that are gone); its id."""
    host, pid, now = socket.gethostname(), pid or os.getpid(), clock.now()
    with bounded_write():
        gone = [
            row.id
            for row in db.session.scalars(sa.select(Server).where(Server.host == host))
            if row.pid == pid or not process_running(row.pid, PROGRAMS.get(row.kind, b"gunicorn"))
        ]
        if gone:
            db.session.execute(sa.delete(Server).where(Server.id.in_(gone)))
        row = Server(host=host, pid=pid, bind=bind, public_url=public_url or None, started_at=now, last_seen_at=now)
        db.session.add(row)
        db.session.flush()
        return row.id


def remove(server_id: int) -> None:
    with bounded_write():
        db.session.execute(sa.delete(Server).where(Server.id == server_id))


@contextmanager
def bounded_write() -> Iterator[None]:
    """A transaction that waits for the database's write lock at most WRITE_LOCK_WAIT_SECONDS.

    Not write_transaction(): on SQLite it queues on a lock file for as long as the writer before
    it takes (a seed-demo into an empty inbox takes minutes), and a server starting or stopping
    must not wait that long. These rows take no change number: no page shows them.
    """
    session = db.session()
    if session.in_transaction():
        session.commit()  # only reads so far
    # PostgreSQL: no queueing behind the app's writers (their advisory lock); no row here is theirs.
    _begin_holding_lock(session, queue_with_writers=False)
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


def newest_live() -> sa.Row | None:
    """The most recently seen server that is still running (its host, pid, bind, public_url and
    last_seen_at), or None."""
    try:
        rows = db.session.execute(
            sa.select(Server.host, Server.pid, Server.bind, Server.public_url, Server.last_seen_at)
            .where(Server.kind == "server")
            .order_by(Server.last_seen_at.desc(), Server.id.desc())
        ).all()
    except DBAPIError:  # a database from before the table (init-db not run since): no server known
        db.session.rollback()
        return None
    db.session.rollback()  # the read ends here
    host, now = socket.gethostname(), clock.now()
    return next((row for row in rows if is_live(row, host, now)), None)


def is_live(row: sa.Row, host: str, now) -> bool:
    if row.host == host:
        return process_running(row.pid)
    return now - row.last_seen_at <= LIVE_ELSEWHERE


def process_running(pid: int, program: bytes = b"gunicorn") -> bool:
    """Whether a server's process still runs here (a pid reused by another program doesn't count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")  # Linux: also the right program
    try:
        return program in cmdline.read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc here: the pid alone has to do
    except OSError:
        return True


def site_address(settings) -> SiteAddress:
    """The app's address for commands: PUBLIC_URL, else the newest live server's, else BIND."""
    server = newest_live()
    if settings["PUBLIC_URL"]:
        url = settings["PUBLIC_URL"].rstrip("/")
    elif server is not None:
        url = config.site_url({"PUBLIC_URL": server.public_url or "", "BIND": reachable_bind(server)})
    else:
        url = config.site_url(settings)
    return SiteAddress(url, server is not None)


def reachable_bind(server: sa.Row) -> str:
    """A server's bind as this host reaches it: a server on another host listening on every
    address (0.0.0.0) or on its own loopback is reached by its host's name, not 127.0.0.1."""
    host, _, port = server.bind.rpartition(":")
    if server.host != socket.gethostname() and host in ("", "0.0.0.0", "[::]", "::", "localhost") + LOOPBACK:
        return f"{server.host}:{port}"
    return server.bind


def heartbeat(server_id: int, now) -> None:
    """A runner of this server is alive (at most one write per runner every 15 s; no change number)."""
    with bounded_write():
        db.session.execute(sa.update(Server).where(Server.id == server_id).values(last_seen_at=now, runner_seen_at=now))


def record_worker() -> int:
    """`flask --app app worker`: a row of its own (it listens nowhere), for its heartbeats."""
    now = clock.now()
    with bounded_write():
        row = Server(
            host=socket.gethostname(),
            pid=os.getpid(),
            bind="",
            kind="worker",
            started_at=now,
            last_seen_at=now,
            runner_seen_at=now,
        )
        db.session.add(row)
        db.session.flush()
        return row.id


def runner_rows() -> list[Server]:
    """Servers and workers with their runners' heartbeats, most recently heard from first."""
    rows = list(
        db.session.scalars(sa.select(Server).order_by(Server.runner_seen_at.desc().nulls_last(), Server.id.desc()))
    )
    return rows


def newest_runner_heartbeat():
    try:
        return db.session.scalar(sa.select(sa.func.max(Server.runner_seen_at)))
    except DBAPIError:
        db.session.rollback()
        return None
