"""Ingest over HTTP: signed callbacks against the same server's no-op route, same load.

The server runs exactly as `make run` starts it (`app.server.command`: its workers, threads
and settings), on a fresh SQLite file and a free port; only the app spec differs, to add the
no-op route (`bench/slow_clients.py --compare` runs the same measurement on other servers).
The load comes from separate processes, each with threads on keep-alive connections sending
requests prepared (and signed) before the clock starts.
"""

import json
import multiprocessing
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from app import server as make_run_server
from app.callbacks import signing

from .app import INBOUND_WITHOUT_GROUP_COMMIT, NOOP
from .data import SECRET, Server, fresh_database
from .report import Row

CALLBACK = "/callbacks/inbound"
RATIO_TARGET = 0.6
SENDERS = [f"+3725{n:07d}" for n in range(1_000)]


def measure(
    workdir: Path, requests: int, processes: int, threads: int, log, command=None, label: str = "make run"
) -> list[Row]:
    """Callbacks per second into the server `command(port, app_spec)` starts (default: `make run`'s)."""
    url = fresh_database(workdir, "ingest-" + label.replace(" ", "-").replace(",", ""))
    port = free_port()
    warm_up = max(100, requests // 20)
    command = command or make_run
    with (
        Server(command(port, "bench.app:create_bench_app"), url, port) as server,
        multiprocessing.get_context("spawn").Pool(processes) as pool,
    ):
        pool.map(_ready, range(processes))  # the load processes are up and have imported this module

        def load(path: str, count: int) -> float:
            return requests_per_second(pool, processes, threads, port, path, count)

        load(NOOP, warm_up)
        load(CALLBACK, warm_up)
        noop_before = load(NOOP, requests)
        callbacks = load(CALLBACK, requests)
        # The same work with one transaction and one fsync per message: what group commit earns.
        one_by_one = load(INBOUND_WITHOUT_GROUP_COMMIT, requests) if label == "make run" else None
        noop_after = load(NOOP, requests)
        errors = server.errors()
    stored = stored_messages(url)
    expected = warm_up + requests + (requests if one_by_one is not None else 0)
    if stored != expected:  # every "stored" answer must be on disk
        raise RuntimeError(f"{expected} callbacks answered 'stored' but {stored} rows are stored")
    noop = (noop_before + noop_after) / 2
    log(
        f"  ingest, {label}: {callbacks:,.0f} callbacks/s; no-op {noop_before:,.0f} and {noop_after:,.0f}/s"
        + (f"; server log: {errors[-300:]}" if errors else "")
    )
    note = f"{label}, {processes * threads} connections, {requests:,} requests"
    rows = [
        Row(
            "ingest over HTTP: signed callbacks stored per second",
            "fresh DB",
            callbacks,
            "req/s",
            noop,
            callbacks / noop,
            f">= {RATIO_TARGET} of no-op (aim 0.8)",
            callbacks / noop >= RATIO_TARGET,
            note,
        )
    ]
    if one_by_one is not None:
        log(f"  ingest without group commit: {one_by_one:,.0f} callbacks/s")
        rows.append(
            Row(
                "ingest without group commit: one commit per message, per second",
                "fresh DB",
                one_by_one,
                "req/s",
                noop,
                one_by_one / noop,
                note=f"group commit stores x{callbacks / one_by_one:.2f} as many",
            )
        )
    return rows


def make_run(port: int, app_spec: str) -> list[str]:
    return make_run_server.command(f"127.0.0.1:{port}", app_spec)


def requests_per_second(pool, processes: int, threads: int, port: int, path: str, requests: int) -> float:
    """Send `requests` requests over the pool's processes x `threads` connections."""
    prepared = [prepared_request(port, path) for _ in range(requests)]
    start_at = time.monotonic() + 0.5  # CLOCK_MONOTONIC is one clock for all processes
    results = pool.starmap(drive, [(port, prepared[n::processes], threads, start_at) for n in range(processes)])
    failures = [failure for _, failure in results if failure]
    if failures:
        raise RuntimeError(f"{path}: {failures[0]}")
    finished = max(finished_at for finished_at, _ in results)
    return requests / (finished - start_at)


def _ready(_n: int) -> None:
    return None


def prepared_request(port: int, path: str) -> bytes:
    """A realistic signed callback; the no-op route gets the same bytes."""
    body = json.dumps(
        {
            "msg_id": str(uuid.uuid4()),
            "sub_msg_id": str(uuid.uuid4()),
            "channel": "sms",
            "recipient": "+37250000000",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "text": "Tere! Kas minu tellimus 4711 on juba teel? 📦",
            "sender": SENDERS[uuid.uuid4().int % len(SENDERS)],
        },
        ensure_ascii=False,
    ).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-Messente-Signature: {signing.sign(body, SECRET)}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def drive(port: int, requests: list[bytes], threads: int, start_at: float) -> tuple[float, str | None]:
    """In a load process: each thread sends its share on one keep-alive connection, in turn."""
    failures = []

    def send_all(share: list[bytes]) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port)) as connection, connection.makefile("rb") as responses:
                time.sleep(max(0.0, start_at - time.monotonic()))
                for request in share:
                    connection.sendall(request)
                    status, body = read_response(responses)
                    if status != 200 or (b"/bench/noop" not in request[:40] and b'"stored"' not in body):
                        failures.append(f"answered {status} {body[:200]!r}")
                        return
        except OSError as exc:
            failures.append(f"connection failed: {exc!r}")

    workers = [threading.Thread(target=send_all, args=(requests[n::threads],)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.monotonic(), (failures[0] if failures else None)


def read_response(responses) -> tuple[int, bytes]:
    status_line = responses.readline()
    if not status_line:
        raise ConnectionResetError("the server closed the connection")
    length = 0
    while (line := responses.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(status_line.split()[1]), responses.read(length)


def stored_messages(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(sa.text("SELECT count(*) FROM message"))
    finally:
        engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
