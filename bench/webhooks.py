"""Webhooks: 100 subscribed endpoints, one of them stalled, while callbacks arrive.

The server as `make run` starts it (its job runners deliver), on a fresh SQLite database, with
WEBHOOKS_ALLOWED_NETWORKS admitting 127.0.0.0/8. In this process: a receiver (a real HTTP server)
answering 204 for 99 endpoints, and a socket that accepts connections and never answers for the
100th. Callbacks arrive at a steady rate, first with no endpoint subscribed, then with the 100,
each subscribed to `message.created`. Figures: a callback's time to its answer with and without
them (p99; the difference is what webhooks add), and the time from the last callback until all
99 live endpoints had every event, each exactly once (none is lost to the stalled one).
"""

import socket
import statistics
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from app.extensions import db
from app.webhooks import endpoints

from . import ingest
from .data import Server, bench_app, fresh_database
from .purge import callback, p99
from .report import Row

ENDPOINTS = 100
TARGET_MS = 100  # what webhooks may add to a callback's p99
DELIVERED_TIMEOUT = 300.0
ALLOWED = "127.0.0.0/8"


class Receiver:
    """Counts each webhook-id per path: /hook/<n> for the live endpoints."""

    def __init__(self):
        self.seen: Counter = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.seen[(self.path, self.headers["webhook-id"])] += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def counts(self) -> Counter:
        with self.lock:
            return Counter(self.seen)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def steady(base: str, count: int, per_second: float) -> list[float]:
    latencies = []
    for _ in range(count):
        latencies.append(callback(base))
        time.sleep(1 / per_second)
    return latencies


def measure(workdir: Path, callbacks: int, per_second: float, log) -> list[Row]:
    url = fresh_database(workdir, "webhooks")
    receiver = Receiver()
    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(256)  # connections wait in its backlog: never accepted, never answered
    port = ingest.free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {"WEBHOOKS_ALLOWED_NETWORKS": ALLOWED}
    try:
        with Server(ingest.make_run(port, "app:create_app"), url, port, settings):
            before = steady(base, callbacks, per_second)
            app = bench_app(url)
            app.config.update(settings)
            with app.app_context():
                for n in range(ENDPOINTS - 1):
                    endpoints.create_endpoint(f"http://127.0.0.1:{receiver.port}/hook/{n}", ["message.created"])
                endpoints.create_endpoint(f"http://127.0.0.1:{stalled.getsockname()[1]}/stalled", ["message.created"])
                db.engine.dispose()
            during = steady(base, callbacks, per_second)
            last_callback = time.monotonic()
            expected = (ENDPOINTS - 1) * callbacks
            while time.monotonic() < last_callback + DELIVERED_TIMEOUT:
                if len(receiver.counts()) >= expected:
                    break
                time.sleep(0.1)
            caught_up = time.monotonic() - last_callback
    finally:
        stalled.close()
        receiver.stop()
    counts = receiver.counts()
    paths = Counter(path for path, _ in counts)
    exactly_once = len(counts) == expected and set(counts.values()) == {1} and len(paths) == ENDPOINTS - 1
    added = p99(during) - p99(before)
    log(
        f"  webhooks: callbacks p99 {p99(before):.1f} ms without endpoints, {p99(during):.1f} ms with {ENDPOINTS} "
        f"(medians {statistics.median(before):.1f} and {statistics.median(during):.1f} ms) "
        f"(one stalled); {len(counts):,} of {expected:,} deliveries in {caught_up:.1f} s after the last callback"
    )
    label = f"{ENDPOINTS} endpoints"
    return [
        Row("webhooks: callback p99 without endpoints", label, p99(before), "ms", note=f"{callbacks} callbacks"),
        Row(
            "webhooks: callback p99 with 100 endpoints, one stalled",
            label,
            p99(during),
            "ms",
            note=f"{callbacks} callbacks at {per_second:g}/s",
        ),
        Row(
            "webhooks: callback delay they add, p99",
            label,
            max(0.0, added),
            "ms",
            target=f"< {TARGET_MS} ms",
            met=added < TARGET_MS,
        ),
        Row(
            "webhooks: all events at the 99 live endpoints",
            label,
            caught_up,
            "s",
            note="from the last callback; each event once at each",
        ),
        Row(
            "webhooks: each event delivered once to every live endpoint",
            label,
            sum(counts.values()),
            "deliveries",
            expected,
            None,
            f"{expected:,}, one each",
            exactly_once,
            note=f"{len(counts):,} distinct",
        ),
    ]
