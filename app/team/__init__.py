"""The team's own settings that every feature reads: its time zone (snooze presets, scheduled
messages, business hours, reports). People still see times in their browser's zone; the team's
zone is where "tomorrow 09:00" and "Monday" are.

The admin's choice (the `setting` table) wins over TEAM_TIME_ZONE; without either, the server's zone.
The account's currency, which prices are shown in, is in app/team/currency.py.
"""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask import current_app, g, has_request_context

from app import audit
from app.db import settings
from app.db.unit_of_work import write_transaction

TIME_ZONE = "team_time_zone"


def server_time_zone() -> str:
    """The zone this machine keeps (TZ, else /etc/localtime's name), UTC when it names none."""
    named = os.environ.get("TZ", "").lstrip(":")
    if not named:
        try:
            named = str(Path("/etc/localtime").resolve()).partition("zoneinfo/")[2]
        except OSError:
            named = ""
    return named if is_time_zone(named) else "UTC"


def is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return bool(name)


def time_zone_names() -> list[str]:
    """Every zone an admin may choose, sorted."""
    return sorted(available_timezones())


def time_zone_name() -> str:
    """The team's zone: read once a request (a thread page's snooze menu, times and presets ask
    for it a dozen times), and each time outside one."""
    if not has_request_context():
        return _read_time_zone_name()
    if "team_time_zone" not in g:
        g.team_time_zone = _read_time_zone_name()
    return g.team_time_zone


def _read_time_zone_name() -> str:
    stored = settings.stored(TIME_ZONE)
    if stored and is_time_zone(stored):
        return stored
    configured = current_app.config.get("TEAM_TIME_ZONE") or ""
    return configured if is_time_zone(configured) else server_time_zone()


def time_zone() -> ZoneInfo:
    return ZoneInfo(time_zone_name())


def set_time_zone(name: str) -> None:
    """An admin's choice, audited; ValueError for a name that is not a zone."""
    if not is_time_zone(name):
        raise ValueError(f"{name!r} is not a time zone (for example Europe/Tallinn).")
    with write_transaction():
        previous = time_zone_name()
        settings.save(TIME_ZONE, name)
        audit.record("settings_changed", {"team_time_zone": name, "was": previous})
    if has_request_context():
        g.pop("team_time_zone", None)  # the request that changed it shows the new zone


def local(moment: datetime) -> datetime:
    """A stored (naive UTC) time in the team's zone, aware."""
    return moment.replace(tzinfo=UTC).astimezone(time_zone())


def to_utc(moment: datetime) -> datetime:
    """A time in the team's zone (naive or aware) as stored: naive UTC. A naive wall time that a
    DST change skips or repeats takes the offset before the change (PEP 495's fold=0)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=time_zone())
    return aware.astimezone(UTC).replace(tzinfo=None)


def presets(now: datetime) -> dict[str, datetime]:
    """The moments people pick from (snooze, send later), as naive UTC, from `now` (naive UTC):
    in an hour; this evening 18:00 (while it is before 17:00 there); tomorrow 09:00; next Monday
    09:00 (a week on when today is Monday)."""
    here = local(now)
    today = here.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    choices = {"in an hour": now + timedelta(hours=1)}
    if here.hour < 17:
        choices["this evening"] = to_utc(today.replace(hour=18))
    choices["tomorrow"] = to_utc(today + timedelta(days=1, hours=9))
    choices["next Monday"] = to_utc(today + timedelta(days=7 - today.weekday(), hours=9))
    return choices
