"""Time counted in business hours only: the seconds between two instants that fall inside the
team's opening hours (app/hours: weekly intervals in the team's time zone, closed days). Each day's
intervals are placed in the zone on that day, so a day that changes to or from summer time has
its real length (an 09:00-17:00 day is 8 hours either way)."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.hours import Hours


def _utc(day, moment: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, moment, tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


def seconds(hours: Hours, zone: ZoneInfo, start: datetime, end: datetime) -> float:
    """Business seconds in [start, end) (both naive UTC); 0 when end is not after start."""
    if end <= start:
        return 0.0
    day = start.replace(tzinfo=UTC).astimezone(zone).date() - timedelta(days=1)
    last = end.replace(tzinfo=UTC).astimezone(zone).date() + timedelta(days=1)
    total = 0.0
    while day <= last:
        if day not in hours.closed:
            for opens, closes in hours.weekly[day.weekday()]:
                begin = _utc(day, opens, zone)
                finish = _utc(day + timedelta(days=1), time(0), zone) if closes == time(0) else _utc(day, closes, zone)
                overlap = (min(finish, end) - max(begin, start)).total_seconds()
                if overlap > 0:
                    total += overlap
        day += timedelta(days=1)
    return total
