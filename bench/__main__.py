"""`python -m bench` (what `make bench` runs): measure, print the table, write it as JSON.

Ingest first, on a fresh database; then, for each size, a fresh database seeded with demo
data for the inbox reads and the CSV export, and a fresh PostgreSQL schema for the same reads;
then slow clients (bench/slow_clients.py).
`--sizes 300` makes a smoke run; `--only NAME` runs one part; `--only slow-clients --compare`
measures the candidate HTTP servers side by side.
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from . import autoassign, data, export, ingest, live, purge, reads, replies, scheduled, slow_clients, watchers, webhooks
from .report import Row, growth, table, write_json

RESULTS = Path(__file__).parent / "results"
PARTS = [
    "ingest",
    "inbox",
    "inbox-postgresql",
    "slow-clients",
    "watchers",
    "replies",
    "scheduled",
    "autoassign",
    "live",
    "purge",
    "webhooks",
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="message counts for the inbox and export runs, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--senders-per-million",
        type=int,
        default=100_000,
        help="senders per 1,000,000 messages, scaled to each size: 10^3 at 10^4, 10^5 at 10^6 (default: %(default)s)",
    )
    parser.add_argument("--samples", type=int, default=50, help="requests per read median (default: %(default)s)")
    parser.add_argument(
        "--ingest-requests",
        type=int,
        default=20_000,
        help="callbacks per ingest run, and as many no-op requests (default: %(default)s)",
    )
    parser.add_argument("--load-processes", type=int, default=2, help="load generator processes (default: %(default)s)")
    parser.add_argument(
        "--load-threads", type=int, default=16, help="connections per load process (default: %(default)s)"
    )
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only this part (may be given more than once; default: all)"
    )
    parser.add_argument(
        "--slow-client-seconds",
        type=float,
        default=20.0,
        help="how long each kind of slow client stays connected (default: %(default)s)",
    )
    parser.add_argument(
        "--slow-clients",
        type=int,
        default=slow_clients.CLIENTS,
        help="slow clients of each kind at once (default: %(default)s)",
    )
    parser.add_argument(
        "--compare",
        nargs="?",
        const=",".join(slow_clients.CANDIDATES),
        help="with slow-clients: also measure these servers, comma-separated "
        f"(default: all of {', '.join(slow_clients.CANDIDATES)})",
    )
    parser.add_argument(
        "--xlsx-up-to",
        type=int,
        default=1_000_000,
        help="the XLSX export at sizes up to this many messages, 0 for none (minutes per million "
        "rows; default: %(default)s)",
    )
    parser.add_argument(
        "--watchers", type=int, default=200, help="logged-in clients polling the inbox at once (default: %(default)s)"
    )
    parser.add_argument(
        "--most-watchers",
        type=int,
        default=3200,
        help="double the watchers up to this many to find where a target breaks (default: %(default)s)",
    )
    parser.add_argument(
        "--callbacks-per-second",
        type=int,
        default=200,
        help="callbacks a second while they watch (default: %(default)s)",
    )
    parser.add_argument(
        "--watchers-seed",
        type=int,
        default=100_000,
        help="demo messages in the inbox they watch (default: %(default)s)",
    )
    parser.add_argument(
        "--thread-share",
        type=float,
        default=0.25,
        help="the share of watchers that have a conversation open, polling it with presence, instead "
        "of the list (default: %(default)s, 50 of 200)",
    )
    parser.add_argument(
        "--watch-seconds", type=float, default=20.0, help="how long each watchers run lasts (default: %(default)s)"
    )
    parser.add_argument("--replies", type=int, default=1_000, help="replies queued at once (default: %(default)s)")
    parser.add_argument(
        "--scheduled", type=int, default=1_000, help="replies scheduled for the same moment (default: %(default)s)"
    )
    parser.add_argument(
        "--autoassign-burst",
        type=int,
        default=autoassign.BURST,
        help="new conversations at once for auto-assignment to give out (default: %(default)s)",
    )
    parser.add_argument(
        "--live-messages", type=int, default=30, help="messages timed from callback to browser (default: %(default)s)"
    )
    parser.add_argument(
        "--purge-messages",
        type=int,
        default=100_000,
        help="old messages a retention purge deletes while callbacks arrive (default: %(default)s)",
    )
    parser.add_argument(
        "--purge-callbacks-per-second",
        type=float,
        default=50,
        help="callbacks a second during the purge (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-callbacks",
        type=int,
        default=200,
        help="callbacks timed without and then with 100 webhook endpoints, one stalled (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-callbacks-per-second",
        type=float,
        default=20,
        help="callbacks a second while webhooks are delivered (default: %(default)s)",
    )
    parser.add_argument(
        "--postgresql-url",
        default=data.POSTGRESQL_URL,
        help="the PostgreSQL server for the inbox-postgresql part (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="where to write the JSON (default: bench/results/<time>.json)")
    parser.add_argument(
        "--workdir", type=Path, help="keep the databases in this directory (default: a temporary one, removed)"
    )
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    parts = args.only or PARTS

    rows: list[Row] = []
    started = time.monotonic()
    load_at_start = os.getloadavg()  # other work on a shared machine shows in the figures
    with tempfile.TemporaryDirectory(prefix="sms-inbox-bench-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        if "ingest" in parts:
            log(f"ingest over HTTP: {args.ingest_requests:,} requests per run")
            rows += ingest.measure(workdir, args.ingest_requests, args.load_processes, args.load_threads, log)
        for messages in sizes if "inbox" in parts else []:
            senders = max(1, round(messages * args.senders_per_million / 1_000_000))
            log(f"{messages:,} messages from {senders:,} senders")
            url = data.fresh_database(workdir, f"inbox-{messages}")
            rows += data.seed(url, messages, senders, log)
            rows += reads.measure(url, messages, args.samples, log)
            rows += export.measure(url, messages, workdir, log, xlsx=messages <= args.xlsx_up_to)
            if not args.workdir:
                for leftover in workdir.glob(f"inbox-{messages}.*"):
                    leftover.unlink()  # 10^7 messages take about 8 GB
        for messages in sizes if "inbox-postgresql" in parts else []:
            senders = max(1, round(messages * args.senders_per_million / 1_000_000))
            log(f"PostgreSQL: {messages:,} messages from {senders:,} senders")
            with data.postgresql_database(args.postgresql_url, f"inbox_{messages}") as url:
                rows += data.seed_postgresql(url, messages, senders, log)
                rows += reads.measure(url, messages, args.samples, log)
        if "slow-clients" in parts:
            log(f"slow clients: {args.slow_clients} of each kind for {args.slow_client_seconds:g} s")
            if args.compare:
                rows += slow_clients.compare(
                    workdir,
                    args.compare.split(","),
                    args.slow_client_seconds,
                    args.slow_clients,
                    args.ingest_requests,
                    log,
                )
            else:
                rows += slow_clients.measure(workdir, args.slow_client_seconds, args.slow_clients, log)

        if "watchers" in parts:
            log(f"many watchers: {args.watchers} polling while {args.callbacks_per_second} callbacks/s arrive")
            rows += watchers.measure(
                workdir,
                args.watchers,
                args.callbacks_per_second,
                args.watch_seconds,
                args.most_watchers,
                log,
                seed=args.watchers_seed,
                thread_share=args.thread_share,
            )
        if "replies" in parts:
            log(f"replies: {args.replies:,} queued at once")
            rows += replies.measure(workdir, args.replies, log)
        if "scheduled" in parts:
            log(f"scheduled sends: {args.scheduled:,} due at the same moment")
            rows += scheduled.measure(workdir, args.scheduled, log)
        if "autoassign" in parts:
            log(f"auto-assignment: a burst of {args.autoassign_burst} new conversations")
            rows += autoassign.measure(workdir, log, args.autoassign_burst)
        if "live" in parts:
            log(f"live latency: {args.live_messages} messages into an open inbox in Chromium")
            rows += live.measure(workdir, args.live_messages, log)
        if "purge" in parts:
            log(f"retention purge of {args.purge_messages:,} messages while callbacks arrive")
            rows += purge.measure(workdir, args.purge_messages, args.purge_callbacks_per_second, log)
        if "webhooks" in parts:
            log(f"webhooks: {args.webhook_callbacks} callbacks with 100 endpoints, one stalled")
            rows += webhooks.measure(workdir, args.webhook_callbacks, args.webhook_callbacks_per_second, log)

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
