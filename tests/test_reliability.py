"""Load and faults against the real server: nothing acked is lost, nothing is stored twice.

Every test starts gunicorn on the test's database (SQLite file or PostgreSQL schema), talks to it
over HTTP like the provider and a browser would, then checks the database itself. Each test
prints its figures (`pytest -s` shows them) and appends them as a JSON line to
test-output/reliability.jsonl, which docs/reliability.md quotes.
"""

import csv
import http.client
import io
import json
import os
import select
import signal
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.callbacks import ingest
from app.db.models import Message, User
from app.db.unit_of_work import write_transaction
from app.export import COLUMNS
from app.extensions import db
from app.inbox import read_state
from app.server import worker
from conftest import (
    ONE_DATABASE,
    PASSWORD,
    ROOT,
    body_for,
    conversation_of,
    csrf_token,
    password_hash,
    signed_headers,
    wait_until,
)
from helpers import Storm, assert_counters_match_messages, post_callback, replay_unacked, stored_msg_ids, storm_plan

pytestmark = pytest.mark.slow

FIGURES = ROOT / "test-output" / "reliability.jsonl"
# What the server must never say in its error log, whatever the load.
LOG_ALARMS = ("database is locked", "Traceback", "Error handling request", "OperationalError")
SLOW = 10.0  # seconds: far above a healthy answer, far below a client giving up


# The provider (many keep-alive connections posting signed callbacks: Storm, storm_plan) is in
# helpers.py, for tests/test_faults.py too.


# --- what the database holds -------------------------------------------------------------


def messages_in_id_order(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Message.msg_id).order_by(Message.id)))


def message_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Message))


def assert_quiet_log(server):
    log = server.output()
    for alarm in LOG_ALARMS:
        assert alarm not in log, f"{alarm!r} in the server's log:\n{log[-3000:]}"


def backend(app) -> str:
    return app.config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0].split("+")[0]


def record(test: str, app, **figures):
    figures = {"test": test, "backend": backend(app), **figures, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    print(
        f"\n{test} [{figures['backend']}]: "
        + ", ".join(f"{k}={v}" for k, v in figures.items() if k not in ("test", "backend", "at"))
    )
    FIGURES.parent.mkdir(exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(json.dumps(figures) + "\n")


# --- a logged-in browser-like client ----------------------------------------------------


class Reader:
    """A browser-like client with its cookie jar; every request is timed.

    A 5xx fails the test at once, with the server's log; other statuses are returned.
    """

    def __init__(self, server):
        self.server, self.url = server, server.url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self.timings: list[tuple[str, int, float]] = []
        self.timeout = 60.0

    def request(self, path: str, form: dict | None = None) -> tuple[int, str, bytes]:
        """(status, path after redirects, body) of a GET, or of a form POST when `form` is given."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        started = time.monotonic()
        try:
            with self.opener.open(self.url + path, data=data, timeout=self.timeout) as response:
                status, body = response.status, response.read()
                final_path = urllib.parse.urlsplit(response.url).path
        except urllib.error.HTTPError as error:
            with error:
                status, final_path, body = error.code, path, error.read()
        self.timings.append((path, status, time.monotonic() - started))
        assert status < 500, f"{path}: {status}\n{self.server.output()[-3000:]}"
        return status, final_path, body

    def get(self, path: str) -> tuple[int, bytes]:
        status, _, body = self.request(path)
        return status, body

    def post_form(self, path: str, page: str, **fields) -> tuple[int, str, bytes]:
        """Submit a form the way a browser does: with the CSRF token from `page`."""
        _, _, html = self.request(page)
        return self.request(path, {**fields, "csrf_token": csrf_token(html.decode())})

    def thread_path(self, sender: str) -> str:
        """A conversation's own URL, reached as an old link reaches it: through the redirect."""
        return self.request("/conversations/" + urllib.parse.quote(sender, safe=""))[1]

    def login(self, username="alice", password=PASSWORD) -> "Reader":
        status, landed_on, _ = self.post_form("/login", "/login", username=username, password=password)
        assert (status, landed_on) == (200, "/"), f"login failed: {status} at {landed_on}"
        return self


def parse_export(body: bytes) -> list[list[str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:], newline="")))
    assert rows[0] == list(COLUMNS)
    return rows[1:]


# --- 1. the ingest storm ----------------------------------------------------------------


def test_ingest_storm_stores_every_msg_id_exactly_once(app, server_factory):
    server = server_factory(workers=4)
    plan = storm_plan(5000, "storm")
    storm = Storm(server.port, plan, connections=32).run()

    failed = [answer for answer in storm.answers if answer[1] != 200]
    assert not failed, f"{len(failed)} callbacks without a 200, e.g. {failed[:5]}"
    assert len(storm.answers) == len(plan)
    outcomes = Counter((msg_id, outcome) for msg_id, _, outcome in storm.answers)
    distinct = {msg_id for msg_id, _ in plan}
    for msg_id in distinct:
        assert outcomes[msg_id, "stored"] == 1, msg_id
    assert sum(outcomes.values()) == len(plan)

    stored = stored_msg_ids(app)
    assert set(stored) == distinct
    assert max(stored.values()) == 1
    assert_counters_match_messages(app)
    assert_quiet_log(server)

    duplicates = sum(1 for _, _, outcome in storm.answers if outcome == "duplicate")
    assert duplicates == len(plan) - len(distinct)
    record(
        "ingest_storm",
        app,
        requests=len(plan),
        connections=32,
        workers=4,
        distinct_msg_ids=len(distinct),
        stored=sum(stored.values()),
        duplicates_merged=duplicates,
        server_errors=0,
        wall_seconds=round(storm.seconds, 2),
        requests_per_second=round(len(plan) / storm.seconds),
        latency_p50=storm.latency(0.5),
        latency_p99=storm.latency(0.99),
        latency_max=storm.latency(1),
    )


# --- 2. readers while the storm goes on ----------------------------------------------------


def test_inbox_search_polls_and_export_work_during_a_storm(app, user, server_factory):
    with app.app_context():  # a second user, whose logouts don't end alice's session
        db.session.add(User(username="bob", password_hash=password_hash()))
        db.session.commit()
    server = server_factory(workers=4)
    plan = storm_plan(2000, "busy", senders=20)
    storm = Storm(server.port, plan, connections=16)
    reader = Reader(server).login()
    storm.start()
    storm.wait_until_answered(100)

    exports = []
    while storm.answered() < len(plan) or not exports:
        before = message_count(app)
        status, body = reader.get("/export.csv")
        after = message_count(app)
        assert status == 200
        exports.append((before, parse_export(body), after))

        assert reader.get("/")[0] == 200
        assert reader.get("/?q=372500001")[0] == 200
        assert reader.get("/?since=0")[0] == 200  # every stored message is news to a first poll
        assert reader.get("/?since=999999999")[0] == 204
        assert reader.get("/conversations/%2B372500001")[0] == 200
        assert reader.get("/conversations/%2B372500001?since=0")[0] == 200  # it has messages
        thread = reader.thread_path("+372500002")
        assert reader.post_form(thread + "/unread", thread)[:2] == (200, thread)
        # Writes besides messages: a failed login (throttle), a login and a logout (session token).
        stranger = Reader(server)
        assert (
            stranger.post_form("/login", "/login", username=f"nobody-{len(exports)}", password="wrong password")[0]
            == 401
        )
        assert stranger.login("bob").post_form("/logout", "/")[:2] == (200, "/login")
        reader.timings += stranger.timings
    storm.join()

    failed = [answer for answer in storm.answers if answer[1] != 200]
    assert not failed, f"{len(failed)} callbacks without a 200, e.g. {failed[:5]}"
    slowest = max(reader.timings, key=lambda timing: timing[2])
    assert slowest[2] < SLOW, f"{slowest[0]} took {slowest[2]:.1f} s"

    in_commit_order = messages_in_id_order(app)
    assert min(before for before, _, _ in exports) < len(in_commit_order), "no export ran mid-storm"
    for before, rows, after in exports:
        assert all(len(row) == len(COLUMNS) for row in rows), "a partial row"
        received_at = COLUMNS.index("received_at")
        assert all(row[received_at].endswith("Z") and row[0].endswith("Z") for row in rows)
        msg_ids = [row[COLUMNS.index("msg_id")] for row in rows]
        assert len(set(msg_ids)) == len(msg_ids), "a msg_id twice in one export"
        assert before <= len(rows) <= after
        # Ids follow commit order, so any snapshot is exactly the oldest N messages.
        assert msg_ids == in_commit_order[: len(rows)]
    assert_counters_match_messages(app, unread_untouched=False)
    assert_quiet_log(server)
    slowest_by_page = {}
    for path, _, seconds in reader.timings:
        page = path.split("?")[0] + ("?since" if "since=" in path else "?q" if "q=" in path else "")
        slowest_by_page[page] = round(max(seconds, slowest_by_page.get(page, 0)), 2)
    record(
        "readers_during_storm",
        app,
        requests=len(plan),
        reader_requests=len(reader.timings),
        exports=len(exports),
        largest_export_rows=max(len(rows) for _, rows, _ in exports),
        slowest_read_seconds=slowest_by_page,
        storm_wall_seconds=round(storm.seconds, 2),
    )


# --- 3. crashes in the middle of a storm -----------------------------------------------------


def assert_every_ack_survived(app, plan, answers, replayed):
    acked = {msg_id for msg_id, status, _ in answers + replayed if status == 200}
    assert acked == {msg_id for msg_id, _ in plan}, "a replay went unanswered"
    assert not [answer for answer in answers + replayed if answer[1] is not None and answer[1] >= 500]
    stored = stored_msg_ids(app)
    assert set(stored) == acked
    assert max(stored.values()) == 1
    assert_counters_match_messages(app)


def test_killing_a_worker_mid_storm_loses_no_acked_message(app, server_factory):
    server = server_factory(workers=4)
    plan = storm_plan(1000, "kill-worker")
    storm = Storm(server.port, plan, connections=16).start()
    storm.wait_until_answered(len(plan) // 3)
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    storm.join()

    wait_until(
        lambda: victim not in server.worker_pids() and len(server.worker_pids()) >= 4,
        "gunicorn replaces the killed worker",
        timeout=30,
        interval=0.1,
    )
    replayed = replay_unacked(server.port, plan, storm.answers)
    assert_every_ack_survived(app, plan, storm.answers, replayed)
    assert_quiet_log(server)  # the killed worker left no error behind in the others

    record(
        "kill_worker_mid_storm",
        app,
        requests=len(plan),
        unanswered_at_crash=len(replayed),
        committed_but_unacked=sum(1 for *_, outcome in replayed if outcome == "duplicate"),
        stored=message_count(app),
        crashes_survived=1,
    )


def test_killing_the_whole_server_mid_storm_loses_no_acked_message(app, server_factory):
    server = server_factory(workers=4)
    plan = storm_plan(1000, "kill-server")
    storm = Storm(server.port, plan, connections=16, timeout=10).start()
    storm.wait_until_answered(len(plan) // 3)
    for pid in [server.process.pid, *server.worker_pids()]:
        os.kill(pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    storm.join()  # the rest of the storm finds the port closed

    restarted = server_factory(workers=4)
    replayed = replay_unacked(restarted.port, plan, storm.answers)
    assert_every_ack_survived(app, plan, storm.answers, replayed)
    assert_quiet_log(restarted)

    record(
        "kill_server_mid_storm",
        app,
        requests=len(plan),
        acked_before_crash=len({msg_id for msg_id, status, _ in storm.answers if status == 200}),
        unanswered_at_crash=len(replayed),
        committed_but_unacked=sum(1 for *_, outcome in replayed if outcome == "duplicate"),
        stored=message_count(app),
        crashes_survived=1,
    )


# --- 4. slow and abandoned clients ------------------------------------------------------------


def open_stalled_body(port: int, msg_id: str) -> socket.socket:
    """A signed callback whose headers promise a body that only half arrives."""
    body = body_for(msg_id=msg_id)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    headers = "".join(f"{name}: {value}\r\n" for name, value in signed_headers(body).items())
    sock.sendall(
        f"POST /callbacks/inbound HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode()
        + body[: len(body) // 2]
    )
    return sock


def accepted_connections(port: int) -> int:
    """Connections to `port` that a server process has accepted (inode 0: still in the backlog)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], fields[9]
        if local_port == port and state == "01" and inode != "0":  # 01: ESTABLISHED
            count += 1
    return count


def wait_until_accepted(port: int, count: int, limit: float = 10):
    wait_until(
        lambda: accepted_connections(port) >= count,
        lambda: f"{accepted_connections(port)} of {count} connections accepted",
        timeout=limit,
        interval=0.02,
    )


# The server (app/server/worker.py's WholeRequestWorker) reads each request whole in its event
# loop before a thread runs it, so stalled and silent connections hold no thread at all.
STALLED_BODIES, SILENT_CONNECTIONS, THREADS = 3, 4, 8


def test_stalled_and_silent_connections_do_not_stop_others(app, user, server_factory):
    server = server_factory(workers=2, threads=THREADS)
    hanging = [open_stalled_body(server.port, f"stalled-{n}") for n in range(STALLED_BODIES)]
    try:
        hanging += [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(SILENT_CONNECTIONS)]
        wait_until_accepted(server.port, len(hanging))

        plan = [(f"meanwhile-{n}", body_for(msg_id=f"meanwhile-{n}")) for n in range(40)]
        storm = Storm(server.port, plan, connections=4, timeout=SLOW).run()
        reader = Reader(server).login()
        for _ in range(5):
            assert reader.get("/")[0] == 200
    finally:
        for sock in hanging:
            sock.close()

    assert [status for _, status, _ in storm.answers] == [200] * len(plan), storm.answers
    slowest_page = max(seconds for *_, seconds in reader.timings)
    assert storm.latency(1) < 2, f"a callback took {storm.latency(1)} s while connections hung"
    assert slowest_page < 2, f"a page took {slowest_page:.1f} s while connections hung"
    assert set(stored_msg_ids(app)) == {msg_id for msg_id, _ in plan}, "a half-sent body was stored"
    assert_quiet_log(server)
    record(
        "slow_clients",
        app,
        stalled_bodies=STALLED_BODIES,
        silent_connections=SILENT_CONNECTIONS,
        threads_per_worker=THREADS,
        callbacks=len(plan),
        slowest_callback_seconds=storm.latency(1),
        slowest_page_seconds=round(slowest_page, 2),
    )


@ONE_DATABASE  # a property of the HTTP server, not of the database
def test_more_stalled_clients_than_threads_do_not_delay_others(app, server_factory):
    server = server_factory(workers=1, threads=2)
    hanging = [open_stalled_body(server.port, f"stalled-{n}") for n in range(4)]
    try:
        wait_until_accepted(server.port, len(hanging))
        body = body_for(msg_id="after-the-stall")
        request = urllib.request.Request(
            server.url + "/callbacks/inbound", data=body, headers=signed_headers(body), method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            status = response.status
        still_hanging = not select.select(hanging, [], [], 0)[0]  # none answered or closed yet
        # The stalled ones are answered 408 when their time is up, and closed.
        for sock in hanging:
            sock.settimeout(worker.REQUEST_SECONDS + 5)
        stalled_answers = [sock.recv(12) for sock in hanging]
    finally:
        for sock in hanging:
            sock.close()
    assert status == 200
    assert still_hanging, "the callback was answered only after a stalled client was let go"
    assert stalled_answers == [b"HTTP/1.1 408"] * len(hanging), stalled_answers
    assert set(stored_msg_ids(app)) == {"after-the-stall"}


# What a few dozen anonymous clients can do to a server that gives a thread to each connection
# as soon as it sends something: each sends a little every TRICKLE_SECONDS, never finishing.
SLOW_CLIENTS, TRICKLE_SECONDS, SLOW_CLIENT_SECONDS = 50, 4.0, 8.0
SLOW_CLIENT_KINDS = {
    "header trickle": (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Trickle: a header line\r\n"),
    "request-line stall": (b"GET /callbacks/inb", b""),
    "body trickle": (
        b"POST /callbacks/inbound HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{",
        b" ",
    ),
}


def misbehave(port: int, start: bytes, trickle: bytes, stop: threading.Event):
    """Keep one slow client connected until `stop`, reconnecting whenever the server hangs up."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(start)
                while not stop.wait(TRICKLE_SECONDS):
                    if select.select([sock], [], [], 0)[0]:
                        break  # answered (408) or closed: connect again
                    if trickle:
                        sock.sendall(trickle)
        except OSError:
            stop.wait(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("kind", SLOW_CLIENT_KINDS)
@ONE_DATABASE  # a property of the HTTP server, not of the database
def test_slow_clients_of_each_kind_do_not_stop_pages_or_callbacks(app, user, server_factory, kind):
    server = server_factory(workers=2, threads=THREADS)  # far fewer threads than slow clients
    reader = Reader(server).login()
    reader.timeout = SLOW
    stop = threading.Event()
    slow_clients = [
        threading.Thread(target=misbehave, args=(server.port, *SLOW_CLIENT_KINDS[kind], stop))
        for _ in range(SLOW_CLIENTS)
    ]
    pages, callbacks = [], []
    connection = None
    try:
        for client in slow_clients:
            client.start()
        wait_until_accepted(server.port, SLOW_CLIENTS)
        deadline = time.monotonic() + SLOW_CLIENT_SECONDS
        while time.monotonic() < deadline:
            try:
                pages.append(reader.get("/")[0])
            except OSError as exc:  # no answer within SLOW
                pages.append(exc.__class__.__name__)
            msg_id = f"{kind}-{len(callbacks)}".replace(" ", "-")
            try:
                connection = connection or http.client.HTTPConnection("127.0.0.1", server.port, timeout=SLOW)
                callbacks.append(post_callback(connection, msg_id, body_for(msg_id=msg_id)))
            except (OSError, http.client.HTTPException) as exc:
                connection = None
                callbacks.append((msg_id, None, exc.__class__.__name__))
    finally:
        stop.set()
        for client in slow_clients:
            client.join(timeout=TRICKLE_SECONDS + 5)
        if connection is not None:
            connection.close()

    assert pages and set(pages) == {200}, f"pages under {SLOW_CLIENTS} slow clients ({kind}): {pages}"
    assert callbacks and {status for _, status, _ in callbacks} == {200}, callbacks
    assert set(stored_msg_ids(app)) == {msg_id for msg_id, _, _ in callbacks}
    assert_quiet_log(server)
    page_seconds = sorted(seconds for path, _, seconds in reader.timings if path == "/")
    record(
        "slow_clients_" + kind.replace(" ", "_").replace("-", "_"),
        app,
        slow_clients=SLOW_CLIENTS,
        threads=2 * THREADS,
        pages=len(pages),
        callbacks_stored=len(callbacks),
        page_p95_seconds=round(page_seconds[int(0.95 * (len(page_seconds) - 1))], 3),
    )


# --- 5. writers take the write lock up front ----------------------------------------------------


def test_a_second_writer_waits_for_the_first_instead_of_failing(app):
    first_has_written, let_first_commit = threading.Event(), threading.Event()
    events, errors = [], []

    def first():
        try:
            with app.app_context(), write_transaction():
                assert ingest.store_messages([ingest.parse_payload(body_for(msg_id="first"))]) == [True]
                first_has_written.set()
                let_first_commit.wait(10)
                events.append("first committed")
        except Exception as exc:  # reported below: a thread's exception would be lost
            errors.append(exc)
            first_has_written.set()

    def second():
        try:
            with app.app_context():
                first_has_written.wait(10)
                assert ingest.store_messages([ingest.parse_payload(body_for(msg_id="second"))]) == [True]
                events.append("second wrote")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_has_written.wait(10)
    wait_until_a_writer_waits_for_the_lock(app)
    assert events == [], "the second writer did not wait for the first"
    let_first_commit.set()
    for thread in threads:
        thread.join(timeout=40)
    assert not errors, errors
    assert events == ["first committed", "second wrote"]
    assert messages_in_id_order(app) == ["first", "second"]  # ids in commit order


def wait_until_a_writer_waits_for_the_lock(app, timeout: float = 10.0) -> None:
    """Until a second writer of this process has the lock file open, trying for it (SQLite), or
    PostgreSQL shows a waiter for its advisory lock."""
    url = sa.engine.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        lock_file = str(Path(url.database).with_suffix(".write-lock").resolve())

        def waiting():
            opened = 0
            for descriptor in Path("/proc/self/fd").iterdir():
                try:
                    opened += os.readlink(descriptor) == lock_file
                except OSError:  # closed meanwhile
                    pass
            return opened >= 2  # the holder's and the waiter's
    else:

        def waiting():
            with app.app_context():
                return (
                    db.session.scalar(
                        sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                    )
                    > 0
                )

    wait_until(waiting, "a writer waits for the write lock", timeout=timeout, interval=0.01)


def store(app, msg_id: str, sender: str):
    with app.app_context():
        ingest.store_messages([ingest.parse_payload(body_for(msg_id=msg_id, sender=sender))])


def test_a_request_that_has_read_can_still_write_after_another_commit(app):
    # Opening a thread: the request reads (the user, the messages), a callback commits
    # meanwhile, then the request marks the conversation read. On SQLite a read snapshot
    # that is out of date cannot become a write: it must start again, holding the lock.
    sender = "+37255500042"
    store(app, "seen", sender)
    with app.app_context():
        conversation = conversation_of(sender)
        assert conversation.unread_count == 1  # this transaction has read
        store(app, "meanwhile", sender)  # another app context: another session and connection
        read_state.mark_read(conversation.id, through_id=conversation.last_message_id)
    with app.app_context():
        conversation = conversation_of(sender)
        # What arrived after the page was shown stays unread.
        assert (conversation.message_count, conversation.unread_count) == (2, 1)


def test_background_polls_stay_out_of_the_access_log(app, user, server_factory, tmp_path):
    access_log = tmp_path / "access.log"
    server = server_factory(workers=1, access_log=str(access_log))
    reader = Reader(server).login()
    assert reader.get("/")[0] == 200
    assert reader.get("/?since=999999999")[0] == 204
    assert reader.get("/export.csv")[0] == 200
    wait_until(lambda: "/export.csv" in access_log.read_text(), access_log.read_text)  # written after each response
    lines = access_log.read_text().splitlines()
    assert any('"GET / HTTP/1.1" 200' in line for line in lines)
    assert not any('"GET / HTTP/1.1" 204' in line for line in lines)  # the poll
    assert not any("since=" in line for line in lines)
