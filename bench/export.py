"""CSV export of every message, against `sqlite3 -csv` running the same query.

Both run as child processes writing their CSV to /dev/null; peak memory is the child's
highest resident set size. Run as `python -m bench.export URL TIMING_FILE` it is the child.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from app.db.models import Message
from app.export import csv_chunks, export_query, xlsx_file
from app.extensions import db

from .data import bench_app
from .report import Row, size_label

RATIO_TARGET = 0.3
MEMORY_TARGET_MB = 150


def measure(url: str, messages: int, workdir: Path, log, xlsx: bool = True) -> list[Row]:
    size = size_label(messages)
    timing_file = workdir / "export-timing.json"
    wall, peak_mb, status = run_measured([sys.executable, "-m", "bench.export", url, str(timing_file)])
    if status != 0:
        raise RuntimeError(f"the export child failed with exit code {status}")
    child = json.loads(timing_file.read_text())
    seconds = child["seconds"]  # the export itself, without the interpreter's start-up

    ceiling_seconds = ceiling_mb = None
    note = "ceiling: sqlite3 -csv, same query"
    if shutil.which("sqlite3"):
        command = ["sqlite3", "-csv", sa.make_url(url).database, export_sql()]
        ceiling_seconds, ceiling_mb, status = run_measured(command)
        if status != 0:
            raise RuntimeError(f"sqlite3 -csv failed with exit code {status}")
    else:
        note = "ceiling tool missing: install the sqlite3 command-line shell (apt-get install sqlite3)"
        log("  " + note)
    ratio = ceiling_seconds / seconds if ceiling_seconds else None
    log(
        f"  export of {child['rows']:,} rows: {seconds:.2f} s (process {wall:.2f} s), {peak_mb:.0f} MB;"
        f" sqlite3 -csv: {ceiling_seconds or 0:.2f} s"
    )
    rows = [
        Row(
            "CSV export of all rows: time",
            size,
            seconds,
            "s",
            ceiling_seconds,
            ratio,
            f">= {RATIO_TARGET} of sqlite3",
            None if ratio is None else ratio >= RATIO_TARGET,
            note,
        ),
        Row(
            "CSV export of all rows: peak memory",
            size,
            peak_mb,
            "MB",
            ceiling_mb,
            None,
            f"< {MEMORY_TARGET_MB} MB",
            peak_mb < MEMORY_TARGET_MB,
            "whole process, ceiling: sqlite3",
        ),
    ]
    if xlsx:
        workbook = workdir / "export.xlsx"
        _, xlsx_peak_mb, status = run_measured(
            [sys.executable, "-m", "bench.export", url, str(timing_file), str(workbook)]
        )
        if status != 0:
            raise RuntimeError(f"the XLSX export child failed with exit code {status}")
        child = json.loads(timing_file.read_text())
        workbook.unlink(missing_ok=True)
        log(
            f"  XLSX export of {child['rows']:,} rows: {child['seconds']:.1f} s ({child['cpu_seconds']:.1f} s of CPU),"
            f" {xlsx_peak_mb:.0f} MB"
        )
        rows += [
            Row(
                "XLSX export of all rows: rows per second",
                size,
                child["rows"] / child["seconds"],
                "rows/s",
                note=f"{child['seconds']:.1f} s ({child['cpu_seconds']:.1f} s of CPU), {child['bytes'] / 1e6:.0f} MB file",
            ),
            Row(
                "XLSX export of all rows: peak memory",
                size,
                xlsx_peak_mb,
                "MB",
                target=f"< {MEMORY_TARGET_MB} MB",
                met=xlsx_peak_mb < MEMORY_TARGET_MB,
                note="whole process",
            ),
        ]
    return rows


def run_measured(argv: list[str]) -> tuple[float, float, int]:
    """Run a command with its output to /dev/null: wall seconds, peak memory in MB, exit code.

    The peak is the process's VmHWM, read while it runs. (Its rusage maxrss would not do: a
    child forked from this large process starts with our resident pages on its account.) A
    child that ends before the first read (a tiny export) is measured by its rusage after all.
    """
    peak_kb = 0
    with open(os.devnull, "wb") as devnull:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=devnull)
        while True:
            peak_kb = max(peak_kb, high_water_mark_kb(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return seconds, (peak_kb or usage.ru_maxrss) / 1024, process.returncode


def high_water_mark_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it has just exited
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def export_sql() -> str:
    """The export's own SELECT (every message), as SQLite text."""
    return str(export_query(dialect="sqlite").compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))


def export_child(url: str, timing_file: str, workbook: str | None = None) -> None:
    """Stream the CSV export to stdout as the download route does (or write the XLSX workbook), and time it."""
    app = bench_app(url)
    if workbook:
        with app.app_context(), open(workbook, "wb") as output:
            started, cpu_started = time.perf_counter(), time.process_time()
            rows = xlsx_file(export_query(), output)
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        Path(timing_file).write_text(
            json.dumps(
                {"seconds": seconds, "cpu_seconds": cpu_seconds, "bytes": Path(workbook).stat().st_size, "rows": rows}
            )
        )
        return
    with app.app_context():
        out = sys.stdout.buffer
        size = 0
        started = time.perf_counter()
        for chunk in csv_chunks(export_query()):
            out.write(chunk)
            size += len(chunk)
        out.flush()
        seconds = time.perf_counter() - started
        rows = db.session.scalar(sa.select(sa.func.count()).select_from(Message))
    Path(timing_file).write_text(json.dumps({"seconds": seconds, "bytes": size, "rows": rows}))


if __name__ == "__main__":
    export_child(*sys.argv[1:4])
