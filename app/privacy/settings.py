"""The retention settings: days to keep messages and audit events, and when the last purge finished.

An admin's choice (the `setting` table) wins over the environment's RETENTION_DAYS and
AUDIT_RETENTION_DAYS; emptied, it keeps for ever whatever the environment says.
"""

from datetime import datetime

from flask import current_app

from app import audit
from app.db import settings
from app.db.unit_of_work import write_transaction

RETENTION_DAYS, AUDIT_RETENTION_DAYS = "retention_days", "audit_retention_days"
LAST_PURGE = "last_purge_at"
FOREVER = ""  # the stored value for "keep for ever"


def days() -> int | None:
    """Days to keep messages: the admin's setting, else RETENTION_DAYS; None keeps them for ever."""
    stored = settings.stored(RETENTION_DAYS)
    if stored is None:
        return current_app.config["RETENTION_DAYS"]
    return int(stored) if stored != FOREVER else None


def audit_days() -> int | None:
    """Days to keep audit events: the admin's setting, else AUDIT_RETENTION_DAYS; None keeps them for ever."""
    stored = settings.stored(AUDIT_RETENTION_DAYS)
    if stored is None:
        return current_app.config["AUDIT_RETENTION_DAYS"] or None
    return int(stored) if stored != FOREVER else None


def set_days(message_days: int | None, audit_event_days: int | None) -> None:
    """An admin's choice, audited; None (or 0) keeps for ever."""
    with write_transaction():
        settings.save(RETENTION_DAYS, str(message_days) if message_days else FOREVER)
        settings.save(AUDIT_RETENTION_DAYS, str(audit_event_days) if audit_event_days else FOREVER)
        audit.record(
            "settings_changed",
            {"retention_days": message_days or "for ever", "audit_retention_days": audit_event_days or "for ever"},
        )


def last_purge() -> datetime | None:
    stored = settings.stored(LAST_PURGE)
    return datetime.fromisoformat(stored) if stored else None


def set_last_purge(finished: datetime) -> None:
    """In the caller's write transaction."""
    settings.save(LAST_PURGE, finished.isoformat())
