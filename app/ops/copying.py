"""Copying the whole database to another one (`flask copy-db`): how a team moves to PostgreSQL.

Every table is copied in primary-key order, one batch per transaction, with the same ids (the
inbox's "newer than id N" depends on them). So the target always holds a prefix of each table,
and a re-run after an interruption starts after the target's highest key. A count and a sha256
over every row, computed on both sides, prove the copy.

Plain functions over engines: the command, the tests and any script can use them.
"""

import hashlib
import json
from base64 import b64encode
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import alembic.command
import sqlalchemy as sa
from flask import current_app

from app.config import database_url
from app.db.models import (
    ApiToken,
    AuditEvent,
    BackupCode,
    BusinessHours,
    ChangeCounter,
    Conversation,
    ConversationLabel,
    ConversationRecipient,
    DailyCount,
    DeadLetter,
    Job,
    Label,
    Mention,
    Message,
    Notification,
    NotificationOptOut,
    OptOut,
    SavedReply,
    Setting,
    Suppression,
    Tally,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from app.extensions import configure_engine, engine_options

# Referenced tables first. Login throttling and sessions are not copied: their rows only matter
# for minutes, and everyone logs in again on the new database. Jobs are: a reply queued in the
# old database is sent from the new one. API tokens are (replies name them); the answers kept for
# idempotency keys and the per-minute rate counts are not, for the same reason as sessions.
TABLES = tuple(
    model.__table__
    for model in (
        User,
        ApiToken,
        BackupCode,
        Conversation,
        Message,
        ConversationRecipient,
        Label,
        ConversationLabel,
        Mention,
        OptOut,
        Notification,
        NotificationOptOut,
        SavedReply,
        DailyCount,
        Tally,
        DeadLetter,
        ChangeCounter,
        AuditEvent,
        Setting,
        BusinessHours,
        Suppression,
        Job,
        WebhookEndpoint,
        WebhookEvent,
        WebhookDelivery,
    )
)


@dataclass(frozen=True)
class TableCheck:
    """One table's row count and checksum on both sides."""

    table: str
    source_rows: int
    target_rows: int
    source_sha256: str
    target_sha256: str

    @property
    def matches(self) -> bool:
        return (self.source_rows, self.source_sha256) == (self.target_rows, self.target_sha256)


def open_database(url: str) -> sa.Engine:
    """An engine for any URL the app accepts, set up as the app sets up its own (WAL on SQLite)."""
    url = database_url(url)
    engine = sa.create_engine(url, **engine_options(url))
    configure_engine(engine)
    return engine


def upgrade_schema(target: sa.Engine) -> None:
    """Create or upgrade the target's tables with our migrations, as `init-db` does for the app's."""
    alembic_config = current_app.extensions["migrate"].migrate.get_config()
    with target.begin() as connection:
        alembic_config.attributes["connection"] = connection  # migrations/env.py uses it
        alembic.command.upgrade(alembic_config, "head")


def primary_key(table: sa.Table) -> list[sa.Column]:
    return list(table.primary_key.columns)


def in_byte_order(columns: list[sa.Column], dialect: sa.Dialect) -> list[sa.ColumnElement]:
    """The key's columns, compared by their bytes on every backend.

    SQLite compares text byte by byte; PostgreSQL by the database's collation, where "abc" may
    sort before "ABC". Resuming after "the highest key copied" needs one order on both sides.
    """
    return [
        column.collate("C") if isinstance(column.type, sa.String) and dialect.name == "postgresql" else column
        for column in columns
    ]


def after_key(ordered: list[sa.ColumnElement], after: tuple) -> sa.ColumnElement:
    """Rows whose key sorts after `after` (a row value comparison for a key of several columns)."""
    if len(ordered) == 1:
        return ordered[0] > after[0]
    return sa.tuple_(*ordered) > sa.tuple_(*(sa.literal(value) for value in after))


def batches(engine: sa.Engine, table: sa.Table, batch_size: int, after=None) -> Iterator[Sequence[sa.Row]]:
    """Every row with a key above `after`, in key order; each batch is its own short read."""
    key = primary_key(table)
    ordered = in_byte_order(key, engine.dialect)
    while True:
        query = sa.select(table).order_by(*ordered).limit(batch_size)
        if after is not None:
            query = query.where(after_key(ordered, after))
        with engine.connect() as connection:
            rows = connection.execute(query).all()
        if not rows:
            return
        yield rows
        after = tuple(rows[-1]._mapping[column] for column in key)


def highest_key(engine: sa.Engine, table: sa.Table) -> tuple | None:
    """The last key already in `engine`'s table (None when empty): where copying resumes."""
    ordered = in_byte_order(primary_key(table), engine.dialect)
    with engine.connect() as connection:
        row = connection.execute(sa.select(*ordered).order_by(*(column.desc() for column in ordered)).limit(1)).first()
    return None if row is None else tuple(row)


def count_rows(engine: sa.Engine, table: sa.Table, after=None) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    if after is not None:
        query = query.where(after_key(in_byte_order(primary_key(table), engine.dialect), after))
    with engine.connect() as connection:
        return connection.scalar(query) or 0


def rows_to_copy(source: sa.Engine, target: sa.Engine, table: sa.Table) -> int:
    return count_rows(source, table, after=highest_key(target, table))


def copy_table(source: sa.Engine, target: sa.Engine, table: sa.Table, batch_size: int) -> Iterator[int]:
    """Copy the rows after the target's highest key; yields the size of each committed batch."""
    for rows in batches(source, table, batch_size, after=highest_key(target, table)):
        with target.begin() as connection:
            connection.execute(table.insert(), [row._asdict() for row in rows])
        yield len(rows)


def continue_numbering(source: sa.Engine, target: sa.Engine) -> None:
    """The target goes on where the source stopped: change numbers, and ids from where the
    source's sequences are, not from the largest id copied: the rows with the largest ids may
    have been deleted (an erased conversation), and their ids must not be handed out again."""
    counter = ChangeCounter.__table__
    with source.connect() as connection:
        value = connection.scalar(sa.select(counter.c.value))
    with target.begin() as connection:  # the migration made the row; copying skipped it
        connection.execute(sa.update(counter).values(value=value))
    with source.connect() as connection:
        handed_out = {
            table.name: last_id_handed_out(connection, table)
            for table in TABLES
            if table.autoincrement_column is not None
        }
    with target.begin() as connection:
        for table in TABLES:
            if table.name in handed_out:
                # Never below what the target itself already holds (a re-run after new rows).
                last = max(handed_out[table.name], last_id_handed_out(connection, table))
                continue_ids_after(connection, table, last)


def last_id_handed_out(connection: sa.Connection, table: sa.Table) -> int:
    """The largest id the table ever handed out: its sequence's position (SQLite's
    sqlite_sequence for AUTOINCREMENT tables, PostgreSQL's sequence), and at least its largest id."""
    column = table.autoincrement_column
    assert column is not None  # continue_numbering passes only tables with an id column
    largest = connection.scalar(sa.select(sa.func.max(column))) or 0
    if connection.dialect.name == "sqlite":
        if connection.scalar(sa.text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'")):
            position = connection.scalar(
                sa.text("SELECT seq FROM sqlite_sequence WHERE name = :name"), {"name": table.name}
            )
            largest = max(largest, position or 0)
        return largest
    sequence = connection.scalar(
        sa.select(
            sa.func.pg_get_serial_sequence(connection.dialect.identifier_preparer.format_table(table), column.name)
        )
    )
    if sequence is not None:
        # last_value is the last id handed out once is_called; before that, nothing was.
        last_value, is_called = connection.execute(sa.text(f"SELECT last_value, is_called FROM {sequence}")).one()
        largest = max(largest, last_value if is_called else 0)
    return largest


def continue_ids_after(connection: sa.Connection, table: sa.Table, last: int) -> None:
    """Make the next id the table hands out `last` + 1."""
    if connection.dialect.name == "sqlite":
        connection.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :name"), {"name": table.name})
        connection.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :last)"), {"name": table.name, "last": last}
        )
        return
    quoted_table = connection.dialect.identifier_preparer.format_table(table)
    column = table.autoincrement_column
    assert column is not None  # continue_numbering passes only tables with an id column
    connection.execute(
        sa.select(
            sa.func.setval(
                sa.func.pg_get_serial_sequence(quoted_table, column.name),
                max(last, 1),
                last > 0,  # is_called: the next id is last + 1 (with nothing handed out yet: 1)
            )
        )
    )


def analyze(target: sa.Engine) -> None:
    """Give PostgreSQL statistics and a clean trigram index after the bulk load.

    Without them it may soon plan sender search as a scan of every conversation (seen: from
    the sixth search on a connection, 100 ms instead of a few) until autovacuum comes by.
    """
    if target.dialect.name != "postgresql":
        return
    with target.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM runs outside a transaction
        for table in TABLES:
            quoted_table = target.dialect.identifier_preparer.format_table(table)
            connection.exec_driver_sql(f"VACUUM (ANALYZE) {quoted_table}")


def canonical(row: sa.Row) -> bytes:
    """One row as bytes that are the same whichever backend it was read from."""

    def plain(value):
        if isinstance(value, bytes):
            return b64encode(value).decode()
        if isinstance(value, (datetime, date)):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        return value

    return json.dumps([plain(value) for value in row], ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"


def checksum(engine: sa.Engine, table: sa.Table, batch_size: int) -> str:
    digest = hashlib.sha256()
    for rows in batches(engine, table, batch_size):
        for row in rows:
            digest.update(canonical(row))
    return digest.hexdigest()


def verify(source: sa.Engine, target: sa.Engine, batch_size: int = 1000) -> list[TableCheck]:
    """Count and checksum every table on both sides."""
    return [
        TableCheck(
            table=table.name,
            source_rows=count_rows(source, table),
            target_rows=count_rows(target, table),
            source_sha256=checksum(source, table, batch_size),
            target_sha256=checksum(target, table, batch_size),
        )
        for table in TABLES
    ]
