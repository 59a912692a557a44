"""The events export: what happened to conversations (opened, reopened, assigned, done, snoozed,
opted_out), with their times, people and conversation ids, as CSV or XLSX. Formula-safe as the
message export (app/export): every CSV cell quoted, a cell starting like a formula prefixed with
an apostrophe; XLSX cells are text, times real dates (UTC)."""

from collections.abc import Iterator
from datetime import datetime
from typing import IO

import sqlalchemy as sa

from app import clock, export
from app.db.models import ConversationEvent, User
from app.extensions import db

COLUMNS = ("time", "event", "conversation_id", "user", "channel", "our_number")
ROWS_PER_CHUNK = 1000


def events_query(start: datetime | None = None, end: datetime | None = None) -> sa.Select:
    """Events in [start, end) (naive UTC; None: no bound), in the order they happened."""
    username = sa.select(User.username).where(User.id == ConversationEvent.user_id).scalar_subquery()
    query = sa.select(
        ConversationEvent.at,
        ConversationEvent.kind,
        sa.cast(ConversationEvent.conversation_id, sa.String),
        username,
        ConversationEvent.channel,
        ConversationEvent.our_number,
    ).order_by(ConversationEvent.id)
    if start is not None:
        query = query.where(ConversationEvent.at >= start)
    if end is not None:
        query = query.where(ConversationEvent.at < end)
    return query


def count(query: sa.Select) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0


def csv_chunks(query: sa.Select) -> Iterator[bytes]:
    """UTF-8 with a byte-order mark, every cell quoted, times ISO 8601 UTC with Z."""
    yield ("\ufeff" + export.csv_line(COLUMNS)).encode()
    with db.engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=ROWS_PER_CHUNK).execute(query)
        for partition in result.partitions():
            yield "".join(
                export.csv_line([clock.utc_iso(row[0], "microseconds"), *(export.safe_cell(cell) for cell in row[1:])])
                for row in partition
            ).encode()


def xlsx_file(query: sa.Select, output: IO[bytes]) -> int:
    return export.xlsx_file(query, output, columns=COLUMNS, time_columns=("time",), sheet_name="Events")
