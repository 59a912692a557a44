"""How long a retention purge delays callbacks.

A SQLite inbox seeded with demo messages from 100 days ago, the server as `make run` starts it,
callbacks at a steady rate from a thread; meanwhile this process purges everything older than
30 days in batches, as the daily purge does. Figures: a callback's time to its answer before and
during the purge (p99 each; the delay is the difference), and the purge's own rate. The target:
a callback waits under 100 ms more during a purge, far inside Messente's patience.
"""

import statistics
import threading
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

from app import clock
from app.callbacks import signing
from app.extensions import db
from app.ops import demo
from app.privacy import purge

from . import ingest
from .data import SECRET, Server, bench_app, fresh_database
from .report import Row, size_label

TARGET_MS = 100


def callback(base: str) -> float:
    """One signed callback from a new customer; milliseconds until its answer."""
    body = (
        f'{{"msg_id": "{uuid.uuid4()}", "channel": "sms", "recipient": "+37250000000", '
        f'"time": "2026-01-01T08:00:00.000000Z", "text": "Tere!", '
        f'"sender": "+3725559{uuid.uuid4().int % 10_000:04d}"}}'
    ).encode()
    request = urllib.request.Request(
        base + "/callbacks/inbound",
        data=body,
        headers={"Content-Type": "application/json", "X-Messente-Signature": signing.sign(body, SECRET)},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(workdir: Path, messages: int, per_second: float, log) -> list[Row]:
    url = fresh_database(workdir, "purge")
    app = bench_app(url)
    with app.app_context():
        demo.seed(messages, max(1, messages // 20), now=clock.now() - timedelta(days=100))
        db.engine.dispose()
    port = ingest.free_port()
    base = f"http://127.0.0.1:{port}"
    with Server(ingest.make_run(port, "app:create_app"), url, port):
        before = []
        for _ in range(int(per_second * 5)):
            before.append(callback(base))
            time.sleep(1 / per_second)
        during, done = [], threading.Event()

        def steady_callbacks():
            while not done.is_set():
                during.append(callback(base))
                time.sleep(1 / per_second)

        thread = threading.Thread(target=steady_callbacks)
        thread.start()
        try:
            with app.app_context():
                started = time.perf_counter()
                result = purge.purge(clock.now(), days=30, audit_days=365, batch_size=purge.BATCH_SIZE)
                seconds = time.perf_counter() - started
                db.engine.dispose()
        finally:
            done.set()
            thread.join()
    delay = p99(during) - p99(before)
    log(
        f"purge: {result.messages:,} messages in {seconds:.1f} s; callbacks p99 {p99(before):.1f} ms before, "
        f"{p99(during):.1f} ms during (median {statistics.median(during):.1f} ms, {len(during)} callbacks)"
    )
    size = size_label(messages)
    return [
        Row(
            "purge: messages deleted per second",
            size,
            result.messages / seconds,
            "/s",
            note=f"batches of {purge.BATCH_SIZE}, while {per_second:g} callbacks/s arrive",
        ),
        Row("purge: callback p99 before it", size, p99(before), "ms"),
        Row("purge: callback p99 during it", size, p99(during), "ms", note=f"{len(during)} callbacks"),
        Row(
            "purge: callback delay it adds, p99",
            size,
            max(0.0, delay),
            "ms",
            target=f"< {TARGET_MS} ms",
            met=delay < TARGET_MS,
        ),
    ]
