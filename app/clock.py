"""Time in one place: naive UTC as stored, ISO 8601 as shown, and a clock tests can set.

Every reading of "now" goes through `now()`, so a test moves time by setting the app's
`CLOCK` (a callable returning an aware datetime) instead of sleeping.
"""

from datetime import UTC, datetime

from flask import current_app, has_app_context


def now() -> datetime:
    """The current time in UTC, naive, as every table stores it."""
    clock = has_app_context() and current_app.config.get("CLOCK")
    moment = clock() if clock else datetime.now(UTC)
    return moment.astimezone(UTC).replace(tzinfo=None)


def timestamp() -> float:
    """Seconds since the epoch by the same clock (for session ages)."""
    return now().replace(tzinfo=UTC).timestamp()


def utc_iso(moment: datetime, timespec: str = "seconds") -> str:
    """A stored (naive UTC) time as ISO 8601 with a Z: for <time datetime> and exports."""
    return moment.isoformat(timespec=timespec) + "Z"
