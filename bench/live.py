"""Live latency in a real browser: from a callback's 200 to its row on the open inbox page.

The server as `make run` starts it (access log on its stdout), a headless Chromium (Playwright,
/usr/bin/chromium) logged in with the inbox open. For each message, a signed callback with a
fresh text; the clock starts when the callback has its 200 and stops when the page shows the
text (checked every animation frame). Messages go one at a time, at random moments of the
page's poll interval, as they would arrive.

Also what a repeat visit fetches: the inbox opened again in the same browser, and the static
files the server saw requested meanwhile (its access log), which fingerprinted, immutable
caching keeps at none.
"""

import json
import random
import re
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from app.accounts import users
from app.callbacks import signing
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.ops import demo

from . import ingest
from .data import SECRET, Server, bench_app, fresh_database
from .report import Row
from .watchers import POLL_SECONDS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "bench password 1"
TARGET_SECONDS = POLL_SECONDS + 0.5


def measure(workdir: Path, messages: int, log) -> list[Row]:
    from playwright.sync_api import sync_playwright  # a test dependency: only this part needs it

    if not CHROMIUM.exists():
        log(f"  live latency skipped: {CHROMIUM} is missing")
        return []
    url = fresh_database(workdir, "live")
    app = bench_app(url)
    with app.app_context():
        demo.seed(1_000, 100)
        with write_transaction():
            users.create_user("bench", PASSWORD)
        db.engine.dispose()
    port = ingest.free_port()
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(messages)
    latencies = []
    with (
        Server(ingest.make_run(port, "bench.app:create_bench_app"), url, port) as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(base + "/login")
        page.fill("input[name=username]", "bench")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda address: "/login" not in address)
        for n in range(messages):
            time.sleep(rng.uniform(0, POLL_SECONDS))  # a moment of the poll interval, at random
            text = f"Live {n} {uuid.uuid4().hex[:8]}"
            answered = send_callback(port, text)
            page.wait_for_function(
                "text => document.body.innerText.includes(text)",
                arg=text,
                polling="raf",
                timeout=(POLL_SECONDS + 30) * 1000,
            )
            latencies.append(time.monotonic() - answered)

        # A repeat visit: the same browser opens the inbox again.
        log_before = server.output()
        page.goto(base + "/")
        page.wait_for_load_state("load")
        time.sleep(0.5)
        static_requests = re.findall(r'"GET (/static/[^ ?"]+)[^"]*" (\d{3})', server.output()[len(log_before) :])
        fetched_again = [path for path, status in static_requests if status != "304"]
        revalidated = [path for path, status in static_requests if status == "304"]
        on_page = set(re.findall(r'(?:href|src)="(/static/[^"?]+)', page.content()))
        browser.close()
    latencies.sort()
    p50, p95 = latencies[len(latencies) // 2], latencies[int(0.95 * (len(latencies) - 1))]
    log(
        f"  live latency over {messages} messages: p50 {p50:.2f} s, p95 {p95:.2f} s; "
        f"a repeat visit fetched {len(fetched_again)} of {len(on_page)} static files, revalidated {len(revalidated)}"
    )
    label = f"{messages} messages"
    note = f"POLL_SECONDS = {POLL_SECONDS:g}, headless Chromium"
    return [
        Row("live latency, callback's 200 to the row in the browser: p50", label, p50, "s", note=note),
        Row(
            "live latency, callback's 200 to the row in the browser: p95",
            label,
            p95,
            "s",
            target=f"<= {TARGET_SECONDS:g} s",
            met=p95 <= TARGET_SECONDS,
            note=note,
        ),
        Row(
            "repeat visit: static files fetched again (browser)",
            label,
            len(fetched_again),
            "requests",
            target="0",
            met=not fetched_again,
            note=f"{len(on_page)} on the page"
            + (": " + ", ".join(fetched_again) if fetched_again else "")
            + (f"; asked again without a body (304): {', '.join(revalidated)}" if revalidated else ""),
        ),
    ]


def send_callback(port: int, text: str) -> float:
    """POST one signed callback; the monotonic time its 200 arrived."""
    body = json.dumps(
        {
            "msg_id": str(uuid.uuid4()),
            "sender": "+37255501234",
            "text": text,
            "channel": "sms",
            "recipient": "+37250000000",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{ingest.CALLBACK}",
        data=body,
        headers={"Content-Type": "application/json", "X-Messente-Signature": signing.sign(body, SECRET)},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"the callback answered {response.status}")
    return time.monotonic()
