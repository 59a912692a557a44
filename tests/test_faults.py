"""Faults survived on the real server: the database going away, a full disk, a deploy in the
middle of a burst, a write lock held too long. Each ends with nothing acked lost, nothing
stored twice, and the app serving again by itself. Figures go to test-output/faults.jsonl.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import WRITE_LOCK_WAIT_SECONDS, db
from app.server import settings
from conftest import (
    PASSWORD,
    ROOT,
    Browser,
    Server,
    add_user,
    body_for,
    close_app,
    flask_command,
    free_port,
    make_app,
    wait_until,
)
from helpers import (
    CUSTOMER,
    Storm,
    assert_counters_match_messages,
    replay_unacked,
    reply_form,
    stored_msg_ids,
    storm_plan,
)

pytestmark = pytest.mark.slow

FIGURES = ROOT / "test-output" / "faults.jsonl"
CALLBACK_BOUND = WRITE_LOCK_WAIT_SECONDS + 5  # the group commit's wait: a callback never waits longer


def settle(app, port: int, plan, answers, limit: float = 30.0) -> list:
    """Replay what got no 200, as Messente's retries would, until everything is acked."""
    replayed = []
    deadline = time.monotonic() + limit
    while True:
        again = replay_unacked(port, plan, answers + replayed)
        replayed += again
        if all(status == 200 for _, status, _ in again) or time.monotonic() > deadline:
            return replayed


def assert_nothing_lost_or_doubled(app, plan, answers, replayed) -> dict:
    statuses = [status for _, status, _ in answers + replayed]
    assert not [status for status in statuses if status not in (200, 503, None)], "a 500 or another error"
    acked = {msg_id for msg_id, status, _ in answers + replayed if status == 200}
    assert acked == {msg_id for msg_id, _ in plan}, "something was never stored, even after retries"
    stored = stored_msg_ids(app)
    assert set(stored) == acked and max(stored.values()) == 1
    assert_counters_match_messages(app)
    acked_first_time = {msg_id for msg_id, status, _ in answers if status == 200}
    return {
        "sent": len(plan),
        "acked": len(acked_first_time),
        "answered_503": statuses.count(503),
        "stored": sum(stored.values()),
        "lost": len(acked_first_time - set(stored)),
        "doubled": sum(count - 1 for count in stored.values()),
    }


def record(fault: str, how: str, backend: str, **figures):
    figures = {
        "fault": fault,
        "how": how,
        "backend": backend,
        **figures,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(
        f"\n{fault} [{backend}]: "
        + ", ".join(f"{k}={v}" for k, v in figures.items() if k not in ("fault", "backend", "at", "how"))
    )
    FIGURES.parent.mkdir(exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(json.dumps(figures) + "\n")


def backend_of(app) -> str:
    return app.config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0].split("+")[0]


# --- a deploy: SIGTERM in the middle of a burst ----------------------------------------------


def test_a_deploy_in_the_middle_of_a_burst_loses_nothing(app, server_factory):
    server = server_factory(workers=2)
    plan = storm_plan(600, "deploy")
    storm = Storm(server.port, plan, connections=16, timeout=10).start()
    storm.wait_until_answered(150)
    stopping = time.monotonic()
    server.process.send_signal(signal.SIGTERM)  # what systemd and container platforms send
    server.process.wait(timeout=settings.graceful_timeout + 10)
    exited_after = time.monotonic() - stopping
    storm.join()  # the rest finds the port closed: refused cleanly, never half-answered

    restarted = server_factory(workers=2)
    replayed = settle(app, restarted.port, plan, storm.answers)
    figures = assert_nothing_lost_or_doubled(app, plan, storm.answers, replayed)
    # No reply is being sent, so the workers stop once the burst's requests are answered, long
    # before graceful_timeout (which leaves room for a send's connect and read timeouts).
    assert exited_after < 12
    assert server.process.returncode == 0  # a clean exit, not a kill
    record(
        "deploy mid-burst",
        "SIGTERM to the server after 150 of 600 callbacks; a new server",
        backend_of(app),
        **figures,
        recovered_seconds=round(exited_after, 1),
    )


# --- a write lock held for too long ----------------------------------------------------------

HOLDER = """
import sys
import sqlalchemy as sa
from app.db.unit_of_work import write_lock
url = sys.argv[1]
engine = sa.create_engine(url)
with engine.connect() as connection:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # as an admin's sqlite3 shell would
    else:
        connection.execute(sa.select(write_lock()))  # as a long copy-db would
    print("holding", flush=True)
    sys.stdin.readline()  # until the test says so
    connection.rollback()
"""


def test_a_write_lock_held_too_long_makes_callbacks_503_within_a_bound(app, server_factory):
    server = server_factory(workers=2)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, app.config["SQLALCHEMY_DATABASE_URI"]],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    plan = storm_plan(40, "locked")
    storm = Storm(server.port, plan, connections=8, timeout=60)
    try:
        assert holder.stdout.readline().strip() == "holding"
        held_since = time.monotonic()
        storm.start()
        # Held until a callback has given up waiting for it, and answered 503.
        storm.wait_until(lambda answers: any(status == 503 for _, status, _ in answers), limit=60)
        held = time.monotonic() - held_since
    finally:
        holder.communicate("release\n", timeout=60)
    storm.join()
    # Every callback sent while the lock was held waited, then was answered: never a hang.
    assert max(storm.latencies) <= CALLBACK_BOUND + 3, max(storm.latencies)
    replayed = settle(app, server.port, plan, storm.answers)
    figures = assert_nothing_lost_or_doubled(app, plan, storm.answers, replayed)
    record(
        "write lock held",
        f"another process holds the write lock for {held:.0f} s, until a callback gives up",
        backend_of(app),
        **figures,
        slowest_answer_seconds=round(max(storm.latencies), 1),
    )


# --- PostgreSQL restarting during a burst ----------------------------------------------------


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class PrivatePostgres:
    """A PostgreSQL server of our own, on a free port, that the test may stop and start."""

    def __init__(self, directory: Path):
        self.bin, self.directory, self.port = postgres_bin(), directory, free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/inbox"

    def as_postgres(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True, timeout=120, check=True
        )

    def create(self) -> "PrivatePostgres":
        self.directory.mkdir(parents=True)
        shutil.chown(self.directory, "postgres")
        self.as_postgres(str(self.bin / "initdb"), "-D", str(self.directory / "data"), "-A", "trust", "-U", "postgres")
        self.start()
        engine = sa.create_engine(self.url.replace("/inbox", "/postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE DATABASE inbox")
        engine.dispose()
        return self

    def start(self):
        self.as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.directory / "data"),
            "-w",
            "-l",
            str(self.directory / "log"),
            "-o",
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1",
            "start",
        )

    def stop(self):
        self.as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-w", "-m", "fast", "stop")


@pytest.fixture
def private_postgres():
    if os.geteuid() != 0 or postgres_bin() is None or shutil.which("runuser") is None:
        pytest.skip("needs root and Debian's PostgreSQL binaries to run a server of its own")
    directory = Path(f"/tmp/sms-inbox-pg-{os.getpid()}-{free_port()}")
    server = PrivatePostgres(directory).create()
    yield server
    with contextlib.suppress(subprocess.CalledProcessError):
        server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def test_postgresql_restarting_during_a_burst_loses_nothing_and_the_app_recovers(private_postgres):
    assert flask_command(private_postgres.url, "init-db").returncode == 0
    app = make_app(private_postgres.url)
    with app.app_context():
        add_user()
    server = Server(private_postgres.url, workers=2).start()
    try:
        person = Browser()
        assert person.login(server.url, PASSWORD)[0] == 200
        plan = storm_plan(600, "pg-restart")
        storm = Storm(server.port, plan, connections=16, timeout=30).start()
        storm.wait_until_answered(150)
        private_postgres.stop()
        stopped = time.monotonic()
        status, _, page = person.get(server.url + "/")
        assert status == 503 and "Storage unavailable, retrying" in page, server.output()[-4000:]
        assert person.get(server.url + "/?since=0")[0] == 503  # a poll, too: it simply polls again
        private_postgres.start()
        # Pages come back without restarting the app.
        wait_until(lambda: person.get(server.url + "/")[0] == 200, "the app recovers", timeout=60, interval=0.2)
        recovered = time.monotonic() - stopped
        storm.join()
        replayed = settle(app, server.port, plan, storm.answers)
        figures = assert_nothing_lost_or_doubled(app, plan, storm.answers, replayed)
        assert "Traceback" not in server.output()
    finally:
        server.stop()
        close_app(app)
    record(
        "PostgreSQL restart",
        "pg_ctl stop -m fast after 150 of 600 callbacks, then start",
        "postgresql",
        **figures,
        recovered_seconds=round(recovered, 1),
    )


# --- SQLite's disk filling up ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_refuses_callbacks_cleanly_and_storing_resumes_when_space_is_back(small_disk, messente):
    url = f"sqlite:///{small_disk / 'inbox.sqlite3'}"
    assert flask_command(url, "init-db").returncode == 0
    app = make_app(url)
    with app.app_context():
        add_user()
    server = Server(
        url,
        workers=2,
        env={
            "MESSENTE_API_URL": messente.url,
            "MESSENTE_API_USERNAME": "api-user",
            "MESSENTE_API_PASSWORD": "api-password",
        },
    ).start()
    filler = small_disk / "filler"
    try:
        person = Browser()
        assert person.login(server.url, PASSWORD)[0] == 200
        first = [("before-full", body_for(msg_id="before-full", sender=CUSTOMER))]
        customer = settle(app, server.port, first, [])
        assert customer[0][1] == 200
        _, _, thread = person.get(server.url + "/conversations/" + CUSTOMER.replace("+", "%2B"))
        reply = reply_form(thread)
        free = shutil.disk_usage(small_disk).free
        filler.write_bytes(b"\0" * (free - 400_000))  # what other files on that disk would take
        plan = [(msg_id, body) for msg_id, body in storm_plan(200, "disk-full")]
        bodies = [
            (msg_id, body.replace(b'"text": "storm', b'"text": "' + b"x" * 8000 + b" storm")) for msg_id, body in plan
        ]
        storm = Storm(server.port, bodies, connections=8, timeout=30).run()
        assert [answer for answer in storm.answers if answer[1] == 503], "the disk never filled"
        filler.unlink()
        freed = time.monotonic()
        replayed = settle(app, server.port, bodies, storm.answers)
        recovered = time.monotonic() - freed
        figures = assert_nothing_lost_or_doubled(app, first + bodies, customer + storm.answers, replayed)
        with app.app_context():
            assert db.session.scalar(sa.text("PRAGMA integrity_check")) == "ok"
        # A reply written with the disk full again, to the last byte. SQLite may still find room
        # in its log for it, or refuse it with the storage page; either way the person may submit
        # the same form again, and it is stored and sent once.
        with contextlib.suppress(OSError), (small_disk / "last-bytes").open("wb", buffering=0) as last_bytes:
            while True:
                last_bytes.write(b"\0" * 4096)
        action = reply.pop("action")
        assert person.post(server.url + action, {**reply, "text": "Sent once the disk has room"})[0] in (200, 503)
        (small_disk / "last-bytes").unlink()
        assert person.post(server.url + action, {**reply, "text": "Sent once the disk has room"})[0] == 200
        messente.wait_for_requests(1)
        assert [request.json["messages"][0]["text"] for request in messente.requests] == ["Sent once the disk has room"]
        assert "Traceback" not in server.output()
    finally:
        server.stop()
        close_app(app)
    record(
        "SQLite disk full",
        "a 24 MiB file system, filled but for 400 kB, during 200 callbacks of 8 kB",
        "sqlite",
        **figures,
        recovered_seconds=round(recovered, 1),
    )


# --- a provider's clock years off --------------------------------------------------------------


def test_a_provider_time_years_off_is_shown_but_pins_nothing(app, client, auth, deliver):
    deliver(body_for(sender="+3725550001", text="from the future", time="2035-01-01T00:00:00Z"))
    deliver(body_for(sender="+3725550002", text="from the past", time="1999-01-01T00:00:00Z"))
    deliver(body_for(sender="+3725550003", text="on time"))
    auth.login()
    page = client.get("/").text
    # The list follows arrival: the message that came last is on top, whatever its clock said.
    order = [page.index(sender) for sender in ("+3725550003", "+3725550002", "+3725550001")]
    assert order == sorted(order)
    # The chart counts messages by the day they arrived here: all three are today's.
    with app.app_context():
        from app import clock
        from app.inbox import queries

        assert queries.daily_counts(days=1) == [(clock.now().date(), 3)]
    with app.app_context():
        from conftest import conversation_of

        path = f"/conversations/{conversation_of('+3725550001').id}"
    assert 'data-sent="2035-01-01T00:00:00Z"' in client.get(path).text  # kept as sent
