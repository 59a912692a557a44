"""Many people watching: logged-in clients polling the inbox while callbacks arrive.

The server as `make run` starts it, on a SQLite file seeded with demo data. One load process
sends signed callbacks at a fixed rate (each on a schedule, so a slow answer does not slow the
rate down); another runs the watchers, each polling `GET /?since=<latest>` as the open page
does (HX-Request, every POLL_SECONDS, keep-alive, starts spread over the interval), plus one
person loading the whole inbox page every second. Every answer's latency is kept; afterwards
the rows stored must equal the callbacks answered "stored". The server's CPU time (master and
workers, from /proc) says what the watchers cost.

A share of the watchers (a quarter by default: 50 of 200) have a conversation open instead:
each polls its thread as the page does, saying it is viewing and, now and then, typing, with
the presence version it shows (app/inbox/presence.py). They are PRESENCE_USERS people spread
over THREADS_WATCHED conversations, so each sees the others there come, type and stop; their
polls have the same target as the list's.

Then the same with more watchers (doubling) until a target breaks, and once with half the
poll interval.
"""

import http.client
import multiprocessing
import os
import re
import socket
import threading
import time
import urllib.parse
from html import unescape
from pathlib import Path

import sqlalchemy as sa

from app.accounts import users
from app.config import defaults as config_defaults
from app.db.models import Conversation
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.ops import demo

from . import ingest
from .data import Server, bench_app, fresh_database
from .report import Row

POLL_SECONDS = config_defaults("instance")["POLL_SECONDS"]
POLL_P95_MS, PAGE_P95_MS, CALLBACK_P95_MS = 50, 200, 1000
PASSWORD = "bench password 1"
SEED_MESSAGES, SEED_SENDERS = 100_000, 5_000
# Thread watchers: as many people, each typing for TYPING_POLLS polls in every TYPING_EVERY.
PRESENCE_USERS, THREADS_WATCHED, TYPING_POLLS, TYPING_EVERY = 10, 5, 2, 8


def measure(
    workdir: Path,
    watchers: int,
    callbacks_per_second: int,
    seconds: float,
    most_watchers: int,
    log,
    seed: int = SEED_MESSAGES,
    thread_share: float = 0.25,
) -> list[Row]:
    url = fresh_database(workdir, "watchers")
    app = bench_app(url)
    with app.app_context():
        demo.seed(seed, max(1, seed * SEED_SENDERS // SEED_MESSAGES))
        with write_transaction():
            users.create_user("bench", PASSWORD)
            for n in range(PRESENCE_USERS):
                users.create_user(f"bench-{n}", PASSWORD)
        conversations = db.session.scalars(
            sa.select(Conversation.id).order_by(Conversation.message_count.desc()).limit(THREADS_WATCHED)
        ).all()
        db.engine.dispose()
    port = ingest.free_port()
    rows: list[Row] = []
    with (
        Server(ingest.make_run(port, "bench.app:create_bench_app"), url, port) as server,
        multiprocessing.get_context("spawn").Pool(2) as pool,
    ):
        cookie = log_in(port)
        people = [log_in(port, f"bench-{n}") for n in range(PRESENCE_USERS)]
        opened: dict[tuple[int, int], dict] = {}

        def thread_watchers(count: int) -> list[dict]:
            """Each thread watcher's person, conversation and poll, from the page as it opened."""
            specs = []
            for n in range(count):
                person, conversation = (n // len(conversations)) % len(people), conversations[n % len(conversations)]
                if (person, conversation) not in opened:
                    opened[person, conversation] = open_thread(port, people[person], conversation)
                specs.append(opened[person, conversation])
            return specs

        def run(count: int, interval: float) -> dict:
            stored_before = ingest.stored_messages(url)
            threads = thread_watchers(round(count * thread_share))
            result = one_run(pool, server, port, cookie, count, threads, interval, callbacks_per_second, seconds)
            result["lost"] = result["stored_answers"] - (ingest.stored_messages(url) - stored_before)
            log(
                f"  {count} watchers ({len(threads)} on a thread) every {interval:g} s, {callbacks_per_second} callbacks/s: "
                f"poll p95 {result['poll_p95']:.0f} ms, thread poll p95 {result['thread_p95']:.0f} ms "
                f"({result['presence_answers']} presence-only answers of {result['thread_polls']}), "
                f"page p95 {result['page_p95']:.0f} ms, "
                f"callback p95 {result['callback_p95']:.0f} ms, server CPU {result['cpu']:.0%}, "
                f"machine {result['machine']:.0%} busy, "
                f"{result['errors']} errors, {result['lost']} lost"
            )
            return result

        first = run(watchers, POLL_SECONDS)
        label = f"{watchers} watchers"
        on_threads = round(watchers * thread_share)
        note = (
            f"{watchers - on_threads} watchers polling the list every {POLL_SECONDS:g} s, "
            f"{callbacks_per_second} callbacks/s, {seconds:g} s"
        )
        rows += [
            Row(
                "watchers: poll p95",
                label,
                first["poll_p95"],
                "ms",
                target=f"< {POLL_P95_MS} ms",
                met=first["poll_p95"] < POLL_P95_MS,
                note=note + f", {first['polls']:,} polls",
            ),
            Row(
                "watchers: thread poll with presence p95",
                label,
                first["thread_p95"],
                "ms",
                target=f"< {POLL_P95_MS} ms",
                met=first["thread_p95"] < POLL_P95_MS,
                note=f"{on_threads} of the watchers on {min(on_threads, THREADS_WATCHED)} conversations, "
                f"{PRESENCE_USERS} people; {first['thread_polls']:,} polls, "
                f"{first['presence_answers']:,} answered with the presence line alone",
            ),
            Row(
                "watchers: inbox page p95",
                label,
                first["page_p95"],
                "ms",
                target=f"< {PAGE_P95_MS} ms",
                met=first["page_p95"] < PAGE_P95_MS,
                note=f"{first['pages']} loads",
            ),
            Row(
                "watchers: callback p95",
                label,
                first["callback_p95"],
                "ms",
                target=f"< {CALLBACK_P95_MS} ms",
                met=first["callback_p95"] < CALLBACK_P95_MS,
                note=f"{first['callbacks']:,} sent at {first['callback_rate']:,.0f}/s",
            ),
            Row(
                "watchers: callbacks lost or failed",
                label,
                first["lost"] + first["errors"],
                "messages",
                target="0",
                met=first["lost"] == 0 and first["errors"] == 0,
            ),
            Row(
                "watchers: server CPU",
                label,
                first["cpu"] * 100,
                "% of one CPU",
                note=f"the whole machine {first['machine']:.0%} busy ({os.cpu_count()} CPUs, load generators included)",
            ),
        ]
        halved = run(watchers, POLL_SECONDS / 2)
        rows.append(
            Row(
                "watchers: server CPU with POLL_SECONDS halved",
                label,
                halved["cpu"] * 100,
                "% of one CPU",
                first["cpu"] * 100,
                note=f"poll p95 {halved['poll_p95']:.0f} ms, page p95 "
                f"{halved['page_p95']:.0f} ms, every {POLL_SECONDS / 2:g} s",
            )
        )
        count, breaking = watchers, None
        broken = broken_targets(first)
        while not broken and count * 2 <= most_watchers:
            count *= 2
            broken = broken_targets(run(count, POLL_SECONDS))
        if broken:
            breaking = count
        rows.append(
            Row(
                "watchers: where the first target breaks",
                label,
                breaking or count,
                "watchers",
                note=(
                    f"{broken[0]} first, at {breaking} watchers (doubling from {watchers})"
                    if broken
                    else f"none broken up to {count} watchers"
                ),
            )
        )
        errors = server.errors()
        if errors.strip():
            log("  server log: " + errors[-500:])
    return rows


def broken_targets(result: dict) -> list[str]:
    checks = [
        ("poll p95", result["poll_p95"] < POLL_P95_MS),
        ("thread poll p95", result["thread_p95"] < POLL_P95_MS),
        ("page p95", result["page_p95"] < PAGE_P95_MS),
        ("callback p95", result["callback_p95"] < CALLBACK_P95_MS),
        ("nothing lost", result["lost"] == 0 and result["errors"] == 0),
    ]
    return [name for name, met in checks if not met]


def one_run(
    pool,
    server: Server,
    port: int,
    cookie: str,
    watchers: int,
    threads: list[dict],
    interval: float,
    callbacks_per_second: int,
    seconds: float,
) -> dict:
    prepared = [ingest.prepared_request(port, ingest.CALLBACK) for _ in range(int(callbacks_per_second * seconds))]
    start_at = time.monotonic() + 1.0
    cpu_before, machine_before = server_cpu_seconds(server.process.pid), machine_cpu()
    sent = pool.apply_async(send_callbacks, (port, prepared, callbacks_per_second, start_at))
    watched = pool.apply_async(watch, (port, cookie, watchers - len(threads), threads, interval, start_at, seconds))
    callbacks, (poll_times, page_times, thread_times, presence_answers) = sent.get(), watched.get()
    cpu = (server_cpu_seconds(server.process.pid) - cpu_before) / (time.monotonic() - start_at)
    busy, total = (after - before for after, before in zip(machine_cpu(), machine_before, strict=True))
    callback_times, stored_answers, errors, finished = callbacks
    return {
        "poll_p95": p95(poll_times),
        "thread_p95": p95(thread_times) if threads else 0.0,
        "thread_polls": len(thread_times),
        "presence_answers": presence_answers,
        "page_p95": p95(page_times),
        "callback_p95": p95(callback_times),
        "polls": len(poll_times),
        "pages": len(page_times),
        "callbacks": len(prepared),
        "callback_rate": len(prepared) / max(finished - start_at, 1e-9),
        "stored_answers": stored_answers,
        "errors": errors,
        "cpu": cpu,
        "machine": busy / total,
    }


def p95(times: list[float]) -> float:
    if not times:
        return float("inf")
    ordered = sorted(times)
    return ordered[int(0.95 * (len(ordered) - 1))] * 1000


def send_callbacks(port: int, prepared: list[bytes], per_second: int, start_at: float):
    """In a load process: request i leaves at start_at + i / per_second, on one of several connections."""
    lanes = max(4, per_second // 10)  # enough connections that a slow answer does not hold the schedule
    times: list[float] = []
    counts = {"stored": 0, "errors": 0}
    lock = threading.Lock()

    def lane(n: int) -> None:
        connection = None
        for i in range(n, len(prepared), lanes):
            due = start_at + i / per_second
            time.sleep(max(0.0, due - time.monotonic()))
            started = time.monotonic()
            try:
                if connection is None:
                    connection = _connect(port)
                connection.sendall(prepared[i])
                status, body = ingest.read_response(connection.responses)
            except OSError:
                connection = None
                with lock:
                    counts["errors"] += 1
                continue
            with lock:
                times.append(time.monotonic() - started)
                if status == 200 and b'"stored"' in body:
                    counts["stored"] += 1
                else:
                    counts["errors"] += 1
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=lane, args=(n,)) for n in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times, counts["stored"], counts["errors"], time.monotonic()


class _Connection:
    def __init__(self, sock):
        self.sock, self.responses = sock, sock.makefile("rb")

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.responses.close()
        self.sock.close()


def _connect(port: int) -> _Connection:
    return _Connection(socket.create_connection(("127.0.0.1", port), timeout=30))


def watch(port: int, cookie: str, watchers: int, threads: list[dict], interval: float, start_at: float, seconds: float):
    """In a load process: `watchers` pollers of the list, one of each thread in `threads` (with
    presence), and one person reloading the page, for `seconds`."""
    poll_times: list[float] = []
    page_times: list[float] = []
    thread_times: list[float] = []
    presence_answers = [0]
    lock = threading.Lock()
    stop_at = start_at + seconds
    headers = {"Cookie": cookie}

    def get(connection: http.client.HTTPConnection, path: str, extra: dict) -> tuple[int, bytes]:
        connection.request("GET", path, headers={**headers, **extra})
        response = connection.getresponse()
        return response.status, response.read()

    # Every watcher starts from the page as one load showed it: 200 pages opened in the same
    # second would be a stampede to measure on its own, and would queue the first polls behind it.
    opening = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    opened_at = latest(get(opening, "/", {})[1])
    opening.close()

    def poller(n: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        since = opened_at
        due = start_at + interval * n / watchers  # spread over the interval, as pages opened at random
        while due < stop_at:
            time.sleep(max(0.0, due - time.monotonic()))
            started = time.monotonic()
            try:
                status, body = get(connection, f"/?since={since}", {"HX-Request": "true"})
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            with lock:
                poll_times.append(time.monotonic() - started)
            if status == 200:
                since = latest(body, since)
            due += interval
        connection.close()

    def thread_poller(n: int, spec: dict) -> None:
        """A conversation open in `spec`'s person's browser: typing now and then, as presence.js says."""
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        poll_url, shown = spec["poll"], dict(spec["shown"])
        extra = {"HX-Request": "true", "Cookie": spec["cookie"]}
        due = start_at + interval * n / max(1, len(threads))
        polls = 0
        while due < stop_at:
            time.sleep(max(0.0, due - time.monotonic()))
            typing = (polls + n) % TYPING_EVERY < TYPING_POLLS
            query = urllib.parse.urlencode({**shown, "viewing": "1", "typing": "1" if typing else "0"})
            started = time.monotonic()
            try:
                status, body = get(connection, f"{poll_url}&{query}", extra)
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            with lock:
                thread_times.append(time.monotonic() - started)
                if status == 200 and b"thread-poller" not in body:
                    presence_answers[0] += 1
            if status == 200:
                poll_url = thread_poll_url(body) or poll_url
                shown.update(showing(body))
            polls += 1
            due += interval
        connection.close()

    def reader() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        due = start_at
        while due < stop_at:
            time.sleep(max(0.0, due - time.monotonic()))
            started = time.monotonic()
            status, _ = get(connection, "/", {})
            if status == 200:
                page_times.append(time.monotonic() - started)
            due += 1.0
        connection.close()

    runners = [threading.Thread(target=poller, args=(n,)) for n in range(watchers)]
    runners += [threading.Thread(target=thread_poller, args=(n, spec)) for n, spec in enumerate(threads)]
    runners.append(threading.Thread(target=reader))
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    return poll_times, page_times, thread_times, presence_answers[0]


def open_thread(port: int, cookie: str, conversation_id: int) -> dict:
    """A conversation's page as one person opens it: their cookie, its poll URL, what it shows."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", f"/conversations/{conversation_id}", headers={"Cookie": cookie})
    response = connection.getresponse()
    page = response.read()
    connection.close()
    poll_url = thread_poll_url(page)
    if response.status != 200 or poll_url is None:
        raise RuntimeError(f"conversation {conversation_id} did not open: {response.status}")
    return {"cookie": cookie, "poll": poll_url, "shown": showing(page)}


def thread_poll_url(page: bytes) -> str | None:
    found = re.search(rb'id="thread-poller"[^>]*hx-get="([^"]+)"', page)
    return unescape(found.group(1).decode()) if found else None


def showing(page: bytes) -> dict[str, str]:
    """What the page shows, as its poll sends it back: the header's buttons, the presence version."""
    return {
        name.decode(): unescape(value.decode())
        for name, value in re.findall(rb'<input type="hidden" name="([^"]+)" value="([^"]*)" data-showing>', page)
    }


def latest(page: bytes, default: int = 0) -> int:
    found = re.search(rb"[?&;]since=(\d+)", page)
    return int(found.group(1)) if found else default


def log_in(port: int, username: str = "bench") -> str:
    """One login's session cookie, shared by every watcher (each login would cost an Argon2 hash)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/login")
    response = connection.getresponse()
    page = response.read().decode()
    jar = cookies(response)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrf_token": token})
    connection.request(
        "POST", "/login", body=form, headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": jar}
    )
    response = connection.getresponse()
    response.read()
    if response.status != 302:
        raise RuntimeError(f"login failed: {response.status}")
    connection.close()
    return cookies(response) or jar


def cookies(response: http.client.HTTPResponse) -> str:
    return "; ".join(header.split(";", 1)[0] for name, header in response.getheaders() if name.lower() == "set-cookie")


def machine_cpu() -> tuple[int, int]:
    """Busy and all CPU ticks of the whole machine so far (the load generators run here too)."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def server_cpu_seconds(pid: int) -> float:
    """User and system time of the server process and its workers so far."""
    ticks = 0
    pids = [pid] + [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
