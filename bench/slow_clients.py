"""Slow clients against the server as `make run` starts it, and the servers compared.

For each kind of slow client in turn, 50 anonymous connections (header trickle: a header line
every 4 s; request-line stall: half a request line, then nothing; body trickle: a callback body
at a byte every 4 s) stay open for 20 s. A client the server cuts off connects again at once, as
an attacker would. Meanwhile a logged-in client loads `GET /` and a provider posts signed
callbacks, one after another; the figures are the page's p95 and how many callbacks were stored.

`--compare` also runs the candidate servers on the same load, and on two more: ingest bursts
(bench/ingest.py) and a mixed load of reply sends that block their thread for seconds, a few
hundred keep-alive pollers and streamed CSV exports.
"""

import http.client
import importlib.util
import json
import re
import select
import socket
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from contextlib import closing
from http.cookiejar import CookieJar
from pathlib import Path

import sqlalchemy as sa
from flask import Response, request

from app import server as make_run_server
from app.callbacks import signing

from .data import SECRET, Server, fresh_database
from .report import Row

KINDS = ("header-trickle", "request-line-stall", "body-trickle")
CLIENTS = 50
TRICKLE_SECONDS = 4.0
ANSWER_TIMEOUT = 10.0  # a page or callback not answered by then counts as failed, at this latency
PAGE_P95_TARGET = 1.0
PASSWORD = "bench password 1"
WAIT = "/bench/wait"  # a request that blocks its thread, as a reply send waiting on an outside API


# --- the servers ------------------------------------------------------------------------------


def make_run(port: int, spec: str) -> list[str]:
    return make_run_server.command(f"127.0.0.1:{port}", spec)


def whole_request_worker(workers: int, threads: int):
    """`make run`'s server with another number of processes and threads."""

    def command(port: int, spec: str) -> list[str]:
        argv = make_run(port, spec)
        argv[-1:-1] = ["--workers", str(workers), "--threads", str(threads)]
        return argv

    return command


def gunicorn_gthread(port: int, spec: str) -> list[str]:
    """gunicorn's own threaded worker, 4 processes of 8 threads."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gthread",
        "--workers",
        "4",
        "--threads",
        "8",
        "--timeout",
        "30",
        "--graceful-timeout",
        "10",
        "--keep-alive",
        "5",
        "--bind",
        f"127.0.0.1:{port}",
        "--access-logfile",
        "/dev/null",
        f"{spec}()",
    ]


def gunicorn_many_threads(port: int, spec: str) -> list[str]:
    """The fix within gunicorn's own settings: more threads than slow clients, per worker."""
    command = gunicorn_gthread(port, spec)
    command[command.index("--threads") + 1] = "64"
    command[command.index("--workers") + 1] = "2"
    return command


def waitress(port: int, spec: str) -> list[str]:
    """One process (waitress has no workers), as many threads as the others have in all."""
    return [
        sys.executable,
        "-m",
        "waitress",
        "--listen",
        f"127.0.0.1:{port}",
        "--threads",
        "64",
        "--connection-limit",
        "1000",
        "--channel-timeout",
        "30",
        "--call",
        spec,
    ]


def granian(port: int, spec: str) -> list[str]:
    """Two processes of 32 Python threads; its Rust front end reads the headers, not the body."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--factory",
        "--workers",
        "2",
        "--blocking-threads",
        "32",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        spec,
    ]


CANDIDATES = {
    "make run": make_run,
    "make run 2x32": whole_request_worker(2, 32),
    "gunicorn gthread": gunicorn_gthread,
    "gunicorn gthread 64 threads": gunicorn_many_threads,
    "waitress": waitress,
    "granian": granian,
}


def create_app_with_wait_route():
    """The app plus WAIT, which holds its thread for ?seconds= (at most 10) like a reply send."""
    from app import create_app
    from app.accounts import routes as auth

    app = create_app()

    @app.get(WAIT, endpoint="bench_wait")
    @auth.public
    def wait():
        time.sleep(min(float(request.args.get("seconds", "3")), 10.0))
        return Response("waited", mimetype="text/plain")

    return app


SPEC = "bench.slow_clients:create_app_with_wait_route"


# --- slow clients ---------------------------------------------------------------------------------


class SlowClients:
    """`count` connections of one kind, each reopened as soon as the server closes it."""

    def __init__(self, port: int, kind: str, count: int = CLIENTS):
        self.port, self.kind = port, kind
        self.stopping = threading.Event()
        self.reconnects = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.keep_one_open, daemon=True) for _ in range(count)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=TRICKLE_SECONDS + 2)

    def keep_one_open(self):
        while not self.stopping.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    self.misbehave(sock)
            except OSError:
                pass
            if not self.stopping.is_set():
                with self.lock:
                    self.reconnects += 1
                self.stopping.wait(0.05)

    def misbehave(self, sock: socket.socket):
        """Send what this kind sends, until the server closes the connection or the run ends."""
        if self.kind == "request-line-stall":
            sock.sendall(b"GET /callbacks/inbound HT")
            trickle = iter(())
        elif self.kind == "header-trickle":
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            trickle = (f"X-Trickle-{n}: {'x' * 20}\r\n".encode() for n in range(10_000))
        else:
            sock.sendall(
                b"POST /callbacks/inbound HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nX-Messente-Signature: 00\r\n"
                b"Content-Length: 4000\r\n\r\n{"
            )
            trickle = (b" " for _ in range(3999))
        while not self.stopping.is_set():
            readable, _, _ = select.select([sock], [], [], TRICKLE_SECONDS)
            if readable:
                return  # the server answered (408, 400) or closed: connect again
            chunk = next(trickle, None)
            if chunk is not None:
                sock.sendall(chunk)


# --- the logged-in reader and the provider -------------------------------------------------------


def log_in(port: int) -> str:
    """A session cookie for the benchmark user, as `Cookie:` header text."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"
    html = opener.open(base + "/login", timeout=ANSWER_TIMEOUT).read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
    form = urllib.parse.urlencode({"username": "bench", "password": PASSWORD, "csrf_token": token})
    with opener.open(base + "/login", data=form.encode(), timeout=ANSWER_TIMEOUT) as response:
        if urllib.parse.urlsplit(response.url).path != "/":
            raise RuntimeError("the benchmark user could not log in")
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


class Lane:
    """Requests one after another on a keep-alive connection, reconnecting after a failure."""

    def __init__(self, port: int, timeout: float = ANSWER_TIMEOUT):
        self.port, self.timeout = port, timeout
        self.connection = None
        self.latencies: list[float] = []  # failures count as `timeout`
        self.failures = 0

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, body), or None when no answer came in time."""
        started = time.monotonic()
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.connection.request(method, path, body, headers or {})
            response = self.connection.getresponse()
            answer = response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            self.failures += 1
            self.latencies.append(max(self.timeout, time.monotonic() - started))
            return None
        self.latencies.append(time.monotonic() - started)
        return answer

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def p95(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else float("nan")


def pages_and_callbacks(port: int, cookie: str, seconds: float, prefix: str) -> dict:
    """Load the inbox and post signed callbacks, each in a loop, for `seconds`."""
    deadline = time.monotonic() + seconds
    pages, provider = Lane(port), Lane(port)
    page_statuses, acked = [], []

    def read_pages():
        while time.monotonic() < deadline:
            answer = pages.send("GET", "/", headers={"Cookie": cookie})
            page_statuses.append(answer[0] if answer else None)
            time.sleep(0.1)

    def post_callbacks():
        n = 0
        while time.monotonic() < deadline:
            msg_id = f"{prefix}-{n}"
            body = json.dumps(
                {
                    "msg_id": msg_id,
                    "sender": "+37255500001",
                    "channel": "sms",
                    "recipient": "+37250000000",
                    "text": "slow-clients bench",
                    "time": "2024-06-01T08:00:00.000000Z",
                }
            ).encode()
            answer = provider.send(
                "POST",
                "/callbacks/inbound",
                body,
                {"Content-Type": "application/json", "X-Messente-Signature": signing.sign(body, SECRET)},
            )
            if answer and answer[0] == 200 and json.loads(answer[1])["status"] == "stored":
                acked.append(msg_id)
            n += 1
            time.sleep(0.1)

    threads = [threading.Thread(target=read_pages), threading.Thread(target=post_callbacks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pages.close()
    provider.close()
    return {
        "page_p95": p95(pages.latencies),
        "pages": len(page_statuses),
        "pages_ok": page_statuses.count(200),
        "callbacks": len(provider.latencies),
        "callbacks_acked": acked,
        "callback_p95": p95(provider.latencies),
    }


def stored_with_prefix(url: str, prefix: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(sa.text("SELECT count(*) FROM message WHERE msg_id LIKE :p"), {"p": prefix + "-%"})
    finally:
        engine.dispose()


def add_bench_user(url: str) -> None:
    from app.accounts import users
    from app.extensions import db

    from .data import bench_app

    app = bench_app(url)
    with app.app_context():
        users.create_user("bench", PASSWORD)
        db.session.commit()
        db.engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the benchmark ----------------------------------------------------------------------------------


def under_slow_clients(command, workdir: Path, name: str, seconds: float, clients: int, log) -> dict:
    """{kind: figures} for one server; kind "none" is the same load without slow clients."""
    url = fresh_database(workdir, f"slow-clients-{name}")
    add_bench_user(url)
    port = free_port()
    results = {}
    with Server(command(port, SPEC), url, port):
        cookie = log_in(port)
        for kind in ("none", *KINDS):
            prefix = f"{kind}-{uuid.uuid4().hex[:8]}"
            attackers = SlowClients(port, kind, clients if kind != "none" else 0)
            with attackers:
                time.sleep(1.0 if kind != "none" else 0)  # let them connect and start trickling
                figures = pages_and_callbacks(port, cookie, seconds if kind != "none" else 5, prefix)
            # A callback the client gave up on may still be stored after it: more is fine, fewer is not.
            figures["stored"] = stored_with_prefix(url, prefix)
            figures["acked"] = len(figures.pop("callbacks_acked"))
            figures["reconnects"] = attackers.reconnects
            if figures["stored"] < figures["acked"]:
                raise RuntimeError(f"{name}, {kind}: acked callbacks are not all stored")
            results[kind] = figures
            log(
                f"  {name}, {clients if kind != 'none' else 0} {kind}: page p95 {figures['page_p95']:.3f} s "
                f"({figures['pages_ok']}/{figures['pages']} pages 200), callbacks acked "
                f"{figures['acked']}/{figures['callbacks']} (p95 {figures['callback_p95']:.3f} s), "
                f"slow clients reconnected {figures['reconnects']} times"
            )
    return results


def measure(workdir: Path, seconds: float, clients: int, log) -> list[Row]:
    """The rows for `make bench`: the server as `make run` starts it."""
    results = under_slow_clients(make_run, workdir, "make-run", seconds, clients, log)
    return rows_for("make run", results, clients, seconds)


def rows_for(name: str, results: dict, clients: int, seconds: float) -> list[Row]:
    baseline = results["none"]["page_p95"]
    rows = []
    for kind in KINDS:
        figures = results[kind]
        rows.append(
            Row(
                f"logged-in page p95 under {clients} slow clients: {kind}",
                f"{seconds:.0f} s",
                figures["page_p95"],
                "s",
                baseline,
                baseline / figures["page_p95"] if figures["page_p95"] else None,
                f"< {PAGE_P95_TARGET:g} s",
                figures["page_p95"] < PAGE_P95_TARGET and figures["acked"] > 0,
                f"{name}; callbacks acked {figures['acked']} of {figures['callbacks']}; "
                f"pages 200 {figures['pages_ok']} of {figures['pages']}; ceiling: no slow clients",
            )
        )
    return rows


# --- the comparison: the whole load the app carries --------------------------------------------


def mixed_load(
    command, workdir: Path, name: str, log, pollers: int = 300, waits: int = 40, seconds: float = 12.0
) -> dict:
    """Reply sends holding threads for 3 s, keep-alive pollers every 4 s, a page and exports."""
    from app.extensions import db
    from app.ops import demo

    from .data import bench_app

    url = fresh_database(workdir, f"mixed-{name}")
    add_bench_user(url)
    app = bench_app(url)
    with app.app_context():
        import random

        demo.seed(50_000, 2_000, rng=random.Random(1))
        db.engine.dispose()
    port = free_port()
    with Server(command(port, SPEC), url, port):
        cookie = log_in(port)
        deadline = time.monotonic() + seconds
        poll_lanes = [Lane(port) for _ in range(pollers)]
        wait_lanes = [Lane(port, timeout=30) for _ in range(waits)]
        page_lane = Lane(port)
        exports = []

        def poll(lane: Lane, offset: float):
            time.sleep(offset)
            while time.monotonic() < deadline:
                lane.send("GET", f"/?since={2**40}", headers={"Cookie": cookie, "HX-Request": "true"})
                time.sleep(4.0)

        def wait(lane: Lane):
            while time.monotonic() < deadline:
                lane.send("GET", WAIT + "?seconds=3")

        def pages():
            while time.monotonic() < deadline:
                page_lane.send("GET", "/", headers={"Cookie": cookie})
                time.sleep(0.2)

        def export():
            while time.monotonic() < deadline:
                started = time.monotonic()
                with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=30)) as connection:
                    connection.request("GET", "/export.csv", headers={"Cookie": cookie})
                    response = connection.getresponse()
                    first = response.read(1024)
                    first_byte = time.monotonic() - started
                    size = len(first) + len(response.read())
                exports.append((response.status, first_byte, time.monotonic() - started, size))

        threads = (
            [threading.Thread(target=poll, args=(lane, 4.0 * n / pollers)) for n, lane in enumerate(poll_lanes)]
            + [threading.Thread(target=wait, args=(lane,)) for lane in wait_lanes]
            + [threading.Thread(target=pages)]
            + [threading.Thread(target=export) for _ in range(2)]
        )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for lane in [*poll_lanes, *wait_lanes, page_lane]:
            lane.close()
    waited = [latency for lane in wait_lanes for latency in lane.latencies]
    polled = [latency for lane in poll_lanes for latency in lane.latencies]
    figures = {
        "poll_p95": p95(polled),
        "polls": len(polled),
        "poll_failures": sum(lane.failures for lane in poll_lanes),
        "wait_median": statistics.median(waited) if waited else float("nan"),
        "waits": len(waited),
        "wait_failures": sum(lane.failures for lane in wait_lanes),
        "page_p95": p95(page_lane.latencies),
        "exports_ok": sum(1 for status, *_ in exports if status == 200),
        "export_first_byte_max": max((first for _, first, _, _ in exports), default=float("nan")),
        "export_seconds_max": max((total for _, _, total, _ in exports), default=float("nan")),
    }
    log(
        f"  {name}, mixed load ({pollers} pollers, {waits} 3-s reply sends, 2 exports, {seconds:.0f} s): "
        f"poll p95 {figures['poll_p95']:.3f} s ({figures['poll_failures']} failed of {figures['polls']}); "
        f"reply sends {figures['waits']} done, median {figures['wait_median']:.2f} s, "
        f"{figures['wait_failures']} failed; page p95 {figures['page_p95']:.3f} s; exports "
        f"{figures['exports_ok']} ok, first byte <= {figures['export_first_byte_max']:.2f} s, "
        f"whole <= {figures['export_seconds_max']:.2f} s"
    )
    return figures


def compare(workdir: Path, names: list[str], seconds: float, clients: int, ingest_requests: int, log) -> list[Row]:
    from . import ingest

    rows = []
    for name in names:
        command = CANDIDATES[name]
        module = command(0, SPEC)[2]
        if importlib.util.find_spec(module) is None:
            log(f"candidate: {name}: not installed (pip install -e '.[compare-servers]'), skipped")
            continue
        log(f"candidate: {name}")
        results = under_slow_clients(command, workdir, name.replace(" ", "-").replace(",", ""), seconds, clients, log)
        rows += rows_for(name, results, clients, seconds)
        rows += ingest.measure(workdir, ingest_requests, 2, 16, log, command=command, label=name)
        mixed = mixed_load(command, workdir, name.replace(" ", "-").replace(",", ""), log)
        rows.append(
            Row(
                "mixed load: keep-alive poll p95",
                "300 pollers",
                mixed["poll_p95"],
                "s",
                target="< 1 s",
                met=mixed["poll_p95"] < 1 and not mixed["poll_failures"],
                note=f"{name}; with 40 3-s reply sends: median {mixed['wait_median']:.2f} s, "
                f"{mixed['wait_failures']} failed; page p95 {mixed['page_p95']:.3f} s; "
                f"export first byte <= {mixed['export_first_byte_max']:.2f} s",
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit("run it as: python -m bench --only slow-clients")
