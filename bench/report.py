"""One table row per figure; printed as a table and written as JSON."""

import json
import os
import platform
import sqlite3
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

COLUMNS = ("what", "size", "figure", "ceiling", "ratio", "target", "met?")


@dataclass
class Row:
    what: str
    size: str  # the data size it was measured at, e.g. "10^6 msgs"
    figure: float
    unit: str
    ceiling: float | None = None  # the same unit, measured in the same run
    ratio: float | None = None  # how close to the ceiling: 1.0 is the ceiling itself
    target: str = ""
    met: bool | None = None
    note: str = ""


def size_label(messages: int) -> str:
    exponent = len(str(messages)) - 1
    if messages == 10**exponent:
        return f"10^{exponent} msgs"
    return f"{messages:,} msgs"


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def cells(row: Row) -> list[str]:
    what = f"{row.what} ({row.note})" if row.note else row.what
    met = {True: "yes", False: "NO", None: "-"}[row.met]
    return [
        what,
        row.size,
        number(row.figure, row.unit),
        number(row.ceiling, row.unit),
        number(row.ratio),
        row.target,
        met,
    ]


def table(rows: list[Row]) -> str:
    lines = [list(COLUMNS)] + [cells(row) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = []
    for n, line in enumerate(lines):
        text.append(" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            text.append("-+-".join("-" * width for width in widths))
    return "\n".join(text)


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = []
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": load,
        "kernel": platform.release(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }


def write_json(rows: list[Row], path: Path, settings: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "settings": settings,
                "rows": [asdict(row) for row in rows],
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )


def growth(rows: list[Row]) -> str:
    """How each figure measured at several sizes grew from the smallest size to the largest."""
    by_what: dict[str, list[Row]] = {}
    for row in rows:
        by_what.setdefault(row.what, []).append(row)
    lines = []
    for what, measured in by_what.items():
        if len(measured) < 2:
            continue
        first, last = measured[0], measured[-1]
        factor = last.figure / first.figure if first.figure else float("nan")
        lines.append(
            f"  {what}: {number(first.figure, first.unit)} at {first.size} -> "
            f"{number(last.figure, last.unit)} at {last.size} (x{factor:.2f})"
        )
    if not lines:
        return "Growth: one size only."
    return "Growth from the smallest to the largest size:\n" + "\n".join(lines)
