"""`python -m bench` on tiny sizes, so the benchmarks keep working (no timing targets here)."""

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.__main__ import PARTS
from conftest import ROOT

EXPECTED_ROWS = [
    "ingest over HTTP: signed callbacks stored per second",
    "seed-demo: messages stored per second",
    "inbox first page: server time, median",
    "inbox page 500: server time, median",
    "search, six digits from the middle of a number: server time, p50",
    "search, six digits at the end of a number: server time, p50",
    "search, three common digits: server time, p95",
    "search, a contact name: server time, p50",
    "search, a word from message texts: server time, p50",
    "search, a three-character fragment: server time, p95",
    "thread of 1,000 messages: server time, median",
    "poll, nothing new: server time, median",
    "view Mine: server time, median",
    "view of one label: server time, median",
    "view Mentions: server time, median",
    "view Snoozed: server time, median",
    "reports, last 30 days: server time, median",
    "API: conversations first page: server time, median",
    "API: newest 100 messages of a thread of 1,000: server time, median",
    "inbox page: HTML size for 50 rows",
    "inbox page: static files a repeat visit fetches",
    "database size per message",
    "CSV export of all rows: time",
    "CSV export of all rows: peak memory",
    "XLSX export of all rows: rows per second",
    "XLSX export of all rows: peak memory",
    "PostgreSQL: seed-demo, messages stored per second",
    "PostgreSQL: inbox first page: server time, median",
    "PostgreSQL: search, three common digits: server time, p95",
    "PostgreSQL: thread of 1,000 messages: server time, median",
    "PostgreSQL: poll, nothing new: server time, median",
    "PostgreSQL: view Mine: server time, median",
    "PostgreSQL: view of one label: server time, median",
    "PostgreSQL: view Mentions: server time, median",
    "PostgreSQL: view Snoozed: server time, median",
    "PostgreSQL: reports, last 30 days: server time, median",
    "PostgreSQL: API: conversations first page: server time, median",
]
WITH_CEILING = [
    row for row in EXPECTED_ROWS if row.startswith(("seed", "inbox first", "poll", "view", "thread", "CSV", "API"))
]
# Measured against no size: (what, the label it is measured at).
ELSEWHERE = [
    ("ingest over HTTP: signed callbacks stored per second", "fresh DB"),
    ("ingest without group commit: one commit per message, per second", "fresh DB"),
    ("watchers: poll p95", "3 watchers"),
    ("watchers: thread poll with presence p95", "3 watchers"),
    ("watchers: inbox page p95", "3 watchers"),
    ("watchers: callback p95", "3 watchers"),
    ("watchers: callbacks lost or failed", "3 watchers"),
    ("watchers: server CPU with POLL_SECONDS halved", "3 watchers"),
    ("watchers: where the first target breaks", "3 watchers"),
    ("replies: time until all are sent", "20 replies"),
    ("replies: each sent exactly once", "20 replies"),
    ("replies: most API requests in one second", "20 replies"),
    ("scheduled sends due at once: time until all are sent", "20 scheduled"),
    ("scheduled sends due at once: each sent exactly once", "20 scheduled"),
    ("scheduled sends due at once: most API requests in one second", "20 scheduled"),
    ("auto-assignment of a burst: time until all are assigned", "16 conversations"),
    ("auto-assignment of a burst: each assigned exactly once", "16 conversations"),
    ("auto-assignment of a burst: most open conversations of one person", "16 conversations"),
    ("live latency, callback's 200 to the row in the browser: p95", "1 messages"),
    ("repeat visit: static files fetched again (browser)", "1 messages"),
    ("purge: callback delay it adds, p99", "300 msgs"),
    ("purge: messages deleted per second", "300 msgs"),
    ("webhooks: callback p99 without endpoints", "100 endpoints"),
    ("webhooks: callback p99 with 100 endpoints, one stalled", "100 endpoints"),
    ("webhooks: callback delay they add, p99", "100 endpoints"),
    ("webhooks: all events at the 99 live endpoints", "100 endpoints"),
    ("webhooks: each event delivered once to every live endpoint", "100 endpoints"),
]
# Figures that are rightly zero when all is well.
MAY_BE_ZERO = ("static files", "lost or failed", "delay it adds", "delay they add")


# Each part in a process of its own, this many at once, the slowest first: most of a part's time
# is waiting (for its server to start, for a rate of callbacks, for a window of time), so together
# they take about as long as the longest ones alone.
AT_ONCE = 4
SLOWEST_FIRST = ["autoassign", "watchers", "slow-clients", "inbox-postgresql", "inbox", "live", "ingest"]
SETTINGS = [
    "--sizes",
    "300",
    "--samples",
    "3",
    "--ingest-requests",
    "200",
    "--load-threads",
    "4",
    "--slow-client-seconds",
    "2",
    "--slow-clients",
    "5",
    "--watchers",
    "3",
    "--most-watchers",
    "3",
    "--callbacks-per-second",
    "10",
    "--watch-seconds",
    "1",
    "--watchers-seed",
    "300",
    "--replies",
    "20",
    "--scheduled",
    "20",
    "--autoassign-burst",
    "16",
    "--live-messages",
    "1",
    "--purge-messages",
    "300",
    "--purge-callbacks-per-second",
    "20",
    "--webhook-callbacks",
    "10",
    "--webhook-callbacks-per-second",
    "10",
]


def run_part(part: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m bench --only PART` with the tiny settings; what it printed, and its JSON."""
    out = tmp_path / f"{part}.json"
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            part,
            *SETTINGS,
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / part),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # the slowest part on a loaded machine, with three others beside it
    )
    assert finished.returncode == 0, f"{part}: {finished.stderr[-3000:]}"
    return finished, json.loads(out.read_text())


@pytest.mark.slow
def test_bench_runs_every_benchmark_on_tiny_sizes(tmp_path):
    with ThreadPoolExecutor(AT_ONCE) as pool:
        parts = sorted(PARTS, key=lambda part: SLOWEST_FIRST.index(part) if part in SLOWEST_FIRST else len(PARTS))
        runs = list(pool.map(lambda part: run_part(part, tmp_path), parts))
    assert sorted(part for _, results in runs for part in results["settings"]["only"]) == sorted(PARTS)
    rows = [row for _, results in runs for row in results["rows"]]
    stdout = "".join(finished.stdout for finished, _ in runs)

    measured = {(row["what"], row["size"]) for row in rows}
    for what in EXPECTED_ROWS[1:]:
        assert (what, "300 msgs") in measured
    for what, label in ELSEWHERE:
        if "browser" in what and not Path("/usr/bin/chromium").exists():
            continue
        assert (what, label) in measured
    for row in rows:
        assert row["figure"] > 0 or (row["figure"] == 0 and any(word in row["what"] for word in MAY_BE_ZERO)), row
        # A verdict exactly where there is a target to meet, and none where there is not.
        assert isinstance(row["met"], bool) if row["target"] else row["met"] is None, row
        if row["what"] in WITH_CEILING and (shutil.which("sqlite3") or "export" not in row["what"]):
            assert row["ceiling"] > 0, row
    # The printed table names every row too, and the machine is recorded beside the figures.
    for what in EXPECTED_ROWS:
        assert what in stdout
    for _, results in runs:
        assert results["machine"]["cpus"] >= 1 and results["machine"]["sqlite"]
