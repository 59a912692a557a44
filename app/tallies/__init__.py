"""Running totals for reports: each change adds to its quarter hour's tally in the transaction
that makes it, so a report over a month reads a few thousand small rows instead of every message.

`add` is the one way in. Metrics in use: "cost" and "parts" (replies' prices from delivery
reports, app/replies/delivery.py), and those app/reports reads (see there). A bucket is UTC and
15 minutes long, so days in any time zone (including +05:30 and +05:45) are whole buckets.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache

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
