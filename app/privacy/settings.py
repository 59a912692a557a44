"""The retention settings: days to keep messages and audit events, and when the last purge finished.

An admin's choice (the `setting` table) wins over the environment's RETENTION_DAYS and
AUDIT_RETENTION_DAYS; emptied, it keeps for ever whatever the environment says.
"""

from datetime import datetime

import sqlalchemy as sa
from flask import current_app

from app.db.models import Setting
from app.db.unit_of_work import write_transaction
from app.extensions import db

RETENTION_DAYS, AUDIT_RETENTION_DAYS = "retention_days", "audit_retention_days"
LAST_PURGE = "last_purge_at"
FOREVER = ""  # the stored value for "keep for ever"


def _setting(name: str) -> str | None:
    return db.session.scalar(sa.select(Setting.value).where(Setting.name == name))


def _store(name: str, value: str) -> None:
    row = db.session.get(Setting, name)
    if row is None:
        db.session.add(Setting(name=name, value=value))
    else:
        row.value = value


def days() -> int | None:
    """Days to keep messages: the admin's setting, else RETENTION_DAYS; None keeps them for ever."""
    stored = _setting(RETENTION_DAYS)
    if stored is None:
        return current_app.config["RETENTION_DAYS"]
    return int(stored) if stored != FOREVER else None


def audit_days() -> int | None:
    """Days to keep audit events: the admin's setting, else AUDIT_RETENTION_DAYS; None keeps them for ever."""
    stored = _setting(AUDIT_RETENTION_DAYS)
    if stored is None:
        return current_app.config["AUDIT_RETENTION_DAYS"] or None
    return int(stored) if stored != FOREVER else None


def set_days(message_days: int | None, audit_event_days: int | None) -> None:
    """In a write transaction (the caller's, if open); None (or 0) keeps for ever."""
    with write_transaction():
        _store(RETENTION_DAYS, str(message_days) if message_days else FOREVER)
        _store(AUDIT_RETENTION_DAYS, str(audit_event_days) if audit_event_days else FOREVER)


def last_purge() -> datetime | None:
    stored = _setting(LAST_PURGE)
    return datetime.fromisoformat(stored) if stored else None


def set_last_purge(finished: datetime) -> None:
    """In the caller's write transaction."""
    _store(LAST_PURGE, finished.isoformat())
