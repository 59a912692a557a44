"""`python -m bench` (what `make bench` runs): measure, print the table, write it as JSON.

Ingest first, on a fresh database; then, for each size, a fresh database seeded with demo
data for the inbox reads and the CSV export. `--sizes 300` makes a smoke run of seconds.
"""
import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from . import data, export, ingest, reads
from .report import Row, growth, table, write_json

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="message counts for the inbox and export runs, comma-separated (default: %(default)s)")
    parser.add_argument("--senders-per-million", type=int, default=50_000,
                        help="senders per 1,000,000 messages, scaled to each size (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=50, help="requests per read median (default: %(default)s)")
    parser.add_argument("--ingest-requests", type=int, default=20_000,
                        help="callbacks per ingest run, and as many no-op requests (default: %(default)s)")
    parser.add_argument("--load-processes", type=int, default=2, help="load generator processes (default: %(default)s)")
    parser.add_argument("--load-threads", type=int, default=16,
                        help="connections per load process (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="where to write the JSON (default: bench/results/<time>.json)")
    parser.add_argument("--workdir", type=Path,
                        help="keep the databases in this directory (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]

    rows: list[Row] = []
    started = time.monotonic()
    load_at_start = os.getloadavg()  # other work on a shared machine shows in the figures
    with tempfile.TemporaryDirectory(prefix="sms-inbox-bench-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        log(f"ingest over HTTP: {args.ingest_requests:,} requests per run")
        rows += ingest.measure(workdir, args.ingest_requests, args.load_processes, args.load_threads, log)
        for messages in sizes:
            senders = max(1, round(messages * args.senders_per_million / 1_000_000))
            log(f"{messages:,} messages from {senders:,} senders")
            url = data.fresh_database(workdir, f"inbox-{messages}")
            rows += data.seed(url, messages, senders, log)
            rows += reads.measure(url, messages, args.samples, log)
            rows += export.measure(url, messages, workdir, log)

    print(table(rows))
    print()
    print(growth(rows))
    out = args.out or RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    settings = {name: str(value) if isinstance(value, Path) else value for name, value in vars(args).items()}
    settings["load_average_at_start"] = load_at_start
    write_json(rows, out, settings)
    print(f"\nFinished in {time.monotonic() - started:.0f} s; written to {out}")


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
