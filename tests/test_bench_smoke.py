"""`python -m bench` on tiny sizes, so the benchmarks keep working (no timing targets here)."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

EXPECTED_ROWS = [
    "ingest over HTTP: signed callbacks stored per second",
    "seed-demo: messages stored per second",
    "inbox first page: server time, median",
    "inbox page 500: server time, median",
    "search by sender: server time, median",
    "thread of 1,000 messages: server time, median",
    "poll, nothing new: server time, median",
    "inbox page: HTML size for 50 rows",
    "inbox page: sub-resources",
    "CSV export of all rows: time",
    "CSV export of all rows: peak memory",
]
WITH_CEILING = [row for row in EXPECTED_ROWS if "HTML" not in row and "sub-resources" not in row]


@pytest.mark.slow
def test_bench_runs_every_benchmark_on_tiny_sizes(tmp_path):
    out = tmp_path / "results.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--sizes", "300", "--samples", "3", "--ingest-requests", "200",
         "--load-threads", "4", "--slow-client-seconds", "2", "--slow-clients", "5", "--out", str(out), "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = results["rows"]

    measured = {(row["what"], row["size"]) for row in rows}
    for what in EXPECTED_ROWS[1:]:
        assert (what, "300 msgs") in measured
    assert ("ingest over HTTP: signed callbacks stored per second", "fresh DB") in measured
    assert ("ingest without group commit: one commit per message, per second", "fresh DB") in measured
    for row in rows:
        assert row["figure"] > 0, row
        # A verdict exactly where there is a target to meet, and none where there is not.
        assert isinstance(row["met"], bool) if row["target"] else row["met"] is None, row
        if row["what"] in WITH_CEILING and (shutil.which("sqlite3") or "export" not in row["what"]):
            assert row["ceiling"] > 0, row
    # The printed table names every row too, and the machine is recorded beside the figures.
    for what in EXPECTED_ROWS:
        assert what in finished.stdout
    assert results["machine"]["cpus"] >= 1 and results["machine"]["sqlite"]
