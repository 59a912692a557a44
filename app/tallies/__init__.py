"""Running totals for reports: each change adds to its quarter hour's tally in the transaction
that makes it, so a report over a month reads a few thousand small rows instead of every message.

`add` (or `add_many`) is the one way in. Metrics in use: "cost" and "parts" (replies' prices
from delivery reports, app/replies/delivery.py); "in" (an inbound message, at its arrival, by
channel and our number), "out" (a reply written, at its time, by channel, our sender and author;
0 for the away reply and the API), "started" and "reopened" (conversation openings), "done" (by
who marked it), "opted_out", and "dlv:<outcome>" (each reply's current delivery outcome, at its
time: see app/tallies/events.py). app/reports reads them. A bucket is UTC and
15 minutes long, so days in any time zone (including +05:30 and +05:45) are whole buckets.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import NamedTuple

import sqlalchemy as sa

from app.db.models import Tally
from app.extensions import dialect_insert

BUCKET = timedelta(minutes=15)


def bucket_of(at: datetime) -> datetime:
    """The start of the quarter hour `at` (naive UTC) falls in."""
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


def add(
    connection: sa.Connection,
    at: datetime,
    metric: str,
    value: Decimal | int,
    *,
    channel: str = "",
    our_number: str = "",
    user_id: int | None = None,
) -> None:
    """Add `value` (negative to take back) to `metric` in the bucket of `at`."""
    if not value:
        return
    connection.execute(
        _upsert(connection.dialect.name),
        {
            "bucket": bucket_of(at),
            "metric": metric,
            "channel": channel or "",
            "our_number": our_number or "",
            "user_id": user_id or 0,
            "value": Decimal(value),
        },
    )


@cache
def _upsert(dialect: str) -> sa.Insert:
    insert = dialect_insert(Tally.__table__, dialect)
    return insert.on_conflict_do_update(
        index_elements=["bucket", "metric", "channel", "our_number", "user_id"],
        set_={"value": Tally.value + insert.excluded.value},
    )


class Entry(NamedTuple):
    at: datetime
    metric: str
    value: Decimal | int
    channel: str = ""
    our_number: str = ""
    user_id: int = 0


def add_many(connection: sa.Connection, entries: Iterable[Entry]) -> None:
    """Several additions in one statement (ingest's batch): summed per bucket and key first."""
    summed: dict[tuple, Decimal] = {}
    for entry in entries:
        key = (bucket_of(entry.at), entry.metric, entry.channel or "", entry.our_number or "", entry.user_id or 0)
        summed[key] = summed.get(key, Decimal(0)) + Decimal(entry.value)
    rows = [
        {"bucket": key[0], "metric": key[1], "channel": key[2], "our_number": key[3], "user_id": key[4], "value": value}
        for key, value in summed.items()
        if value
    ]
    if rows:
        connection.execute(_upsert(connection.dialect.name), rows)


def totals(
    connection: sa.Connection,
    start: datetime,
    end: datetime,
    metrics: Iterable[str] | None = None,
    metric_prefix: str | None = None,
    *,
    channel: str | None = None,
    our_number: str | None = None,
    user_id: int | None = None,
    by: Iterable[str] = (),
) -> list[sa.Row]:
    """Sums of metrics over buckets in [start, end) (both on quarter hours), grouped by metric and
    the columns named in `by` ("channel", "our_number", "user_id", "bucket")."""
    table = Tally.__table__
    columns = [table.c.metric, *(table.c[name] for name in by)]
    query = sa.select(*columns, sa.func.sum(table.c.value).label("value")).where(
        table.c.bucket >= start, table.c.bucket < end
    )
    if metrics is not None:
        query = query.where(table.c.metric.in_(list(metrics)))
    if metric_prefix is not None:
        query = query.where(table.c.metric.startswith(metric_prefix, autoescape=True))
    if channel is not None:
        query = query.where(table.c.channel == channel)
    if our_number is not None:
        query = query.where(table.c.our_number == our_number)
    if user_id is not None:
        query = query.where(table.c.user_id == user_id)
    return list(connection.execute(query.group_by(*columns)).all())
