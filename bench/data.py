"""Fresh databases made as `make run` makes them, and demo data seeded into them (timed)."""

import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from app.db.models import Message
from app.extensions import db
from app.ops import demo

from .app import create_bench_app
from .report import Row, size_label

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-shared-secret"
SEED_TARGET = 100_000  # messages a second into SQLite
# The server the tests use (README: "Running the tests"); its database `test` is left as it was.
POSTGRESQL_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# Start-up, shutdown and access-log lines, as gunicorn, granian and waitress write them.
INFORMATIONAL = re.compile(r"\binfo\b|\"(GET|POST) ", re.IGNORECASE)


class Server:
    """A server process on 127.0.0.1:port, serving the benchmark app on a database."""

    def __init__(self, command: list[str], url: str, port: int, env: dict | None = None):
        self.command, self.url, self.port, self.env = command, url, port, env or {}

    def __enter__(self):
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env={**server_environment(self.url), **self.env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/login", timeout=2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        output = self.output()
        self.__exit__()
        raise RuntimeError(f"{self.command[:4]} did not start: " + output[-2000:])

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def errors(self) -> str:
        """What the server logged, less its informational lines."""
        return "\n".join(line for line in self.output().splitlines() if not INFORMATIONAL.search(line))

    def __exit__(self, *exc_info):
        if exc_info and exc_info[0] is not None:
            print(f"{self.command[:4]} failed; its log ends:\n" + self.output()[-3000:], file=sys.stderr)
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def server_environment(url: str) -> dict:
    """What the app reads from the environment in the benchmarks (instance/ is left alone)."""
    return {**os.environ, "DATABASE_URL": url, "MESSENTE_SHARED_SECRET": SECRET, "SECRET_KEY": "bench-secret-key"}


def fresh_database(directory: Path, name: str) -> str:
    """An empty SQLite file with the schema from `flask init-db`, as `make run` creates it."""
    url = f"sqlite:///{directory / f'{name}.sqlite3'}"
    init_db(url)
    return url


@contextmanager
def postgresql_database(server_url: str, name: str) -> Iterator[str]:
    """An empty schema on the PostgreSQL server with the schema from `flask init-db`; dropped after."""
    admin = sa.create_engine(server_url)
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"  # a run beside another (the tests') is left alone
    with admin.begin() as connection:
        # In public, as the tests have it: created in the schema (first on its search path), it
        # would go with the schema when this size is done, and the next size would lack it.
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        url = f"{server_url}?options=-csearch_path%3D{schema},public"
        init_db(url)
        yield url
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def init_db(url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "init-db"],
        cwd=ROOT,
        env=server_environment(url),
        check=True,
        capture_output=True,
    )


def bench_app(url: str):
    return create_bench_app(
        {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench-secret-key", "MESSENTE_SHARED_SECRET": SECRET}
    )


def seed_postgresql(url: str, messages: int, senders: int, log) -> list[Row]:
    """Seed through COPY, then VACUUM ANALYZE, as autovacuum soon leaves a table after a bulk insert:
    statistics for the planner, and a visibility map that lets index-only scans skip the table.
    Then CHECKPOINT: the server writes the seed out now, not while the reads are timed (settle)."""
    app = bench_app(url)
    with app.app_context():
        started = time.perf_counter()
        demo.seed(messages, senders, rng=random.Random(messages))
        seconds = time.perf_counter() - started
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
        settle(db.engine)
        db.engine.dispose()
    log(f"  seeded {messages:,} messages from {senders:,} senders in {seconds:.1f} s (PostgreSQL)")
    return [Row("PostgreSQL: seed-demo, messages stored per second", size_label(messages), messages / seconds, "msg/s")]


def settle(engine: sa.Engine) -> None:
    """On PostgreSQL, write every changed page out now (CHECKPOINT, as the bench's superuser):
    a gigabyte seeded would otherwise be written by the checkpointer, on the same two CPUs and
    disk, during the reads timed next."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("CHECKPOINT")


def seed(url: str, messages: int, senders: int, log) -> list[Row]:
    """Seed the database, and compare with SQLite copying the same rows into a fresh table."""
    app = bench_app(url)
    with app.app_context():
        started = time.perf_counter()
        demo.seed(messages, senders, rng=random.Random(messages))
        seconds = time.perf_counter() - started
        db.engine.dispose()
    log(f"  seeded {messages:,} messages from {senders:,} senders in {seconds:.1f} s")
    copy_seconds = copy_messages_seconds(url)
    rate, ceiling = messages / seconds, messages / copy_seconds
    database = Path(sa.make_url(url).database)
    size = sum(path.stat().st_size for path in (database, Path(f"{database}-wal")) if path.exists())
    return [
        Row(
            "seed-demo: messages stored per second",
            size_label(messages),
            rate,
            "msg/s",
            ceiling,
            rate / ceiling,
            f">= {SEED_TARGET:,} msg/s",
            rate >= SEED_TARGET,
            "ceiling: SQLite's own INSERT ... SELECT of the same rows, indexes built as seed-demo builds them",
        ),
        Row(
            "database size per message",
            size_label(messages),
            size / messages,
            "bytes",
            note=f"{size / 1e9:.2f} GB in all, indexes and text search included",
        ),
    ]


def copy_messages_seconds(url: str) -> float:
    """Time SQLite itself takes to store the seeded messages as seed-demo stores them in an empty inbox.

    The same table, indexes and text search index in a fresh file; the rows copied by one
    `INSERT ... SELECT`, the secondary indexes and the text search index built at the end, the
    same journal: seed-demo's own work with no Python per row, what it can at best approach.
    """
    source = sa.make_url(url).database
    target = f"{source}.copy"
    engine = sa.create_engine(f"sqlite:///{target}")
    try:
        Message.__table__.create(engine)  # with the text search index (app.models)
        with engine.connect() as connection:
            raw = connection.connection.driver_connection
            raw.isolation_level = None
            raw.execute("PRAGMA journal_mode=DELETE")
            raw.execute("PRAGMA synchronous=FULL")
            raw.execute(f"PRAGMA cache_size=-{demo.SQLITE_CACHE_KIB}")
            raw.execute("ATTACH DATABASE ? AS seeded", (source,))
            started = time.perf_counter()
            raw.execute("BEGIN IMMEDIATE")
            with demo.indexes_built_at_the_end(connection, rebuild=True):
                raw.execute("INSERT INTO main.message SELECT * FROM seeded.message")
            raw.execute("COMMIT")
            seconds = time.perf_counter() - started
            raw.execute("DETACH DATABASE seeded")
    finally:
        engine.dispose()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(target + suffix).unlink(missing_ok=True)
    return seconds
