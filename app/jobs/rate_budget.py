"""One rate budget for calls to an API, shared by every process and instance using the database.

A row per budget holds the earliest moment the next call may start. Taking a turn is one atomic
UPDATE: next_at = max(next_at, now) + interval, RETURNING it; the caller then sleeps until its
turn (next_at - interval). Calls are so spaced evenly, at most `per_second` a second across all
processes. A stall books nothing ahead: after one, next_at is in the past and starts from now,
so the calls behind it don't go in a burst.
"""
import time

import sqlalchemy as sa

from ..models import RateBudget
from ..unit_of_work import write_transaction

MESSENTE = "messente"


def take_turn(name: str, per_second: float) -> float:
    """Book the next call's slot; seconds to wait until it (0 when it is now)."""
    interval = 1.0 / per_second
    now = time.time()  # the wall clock, as the sleep is real (not the app's settable clock)
    with write_transaction() as session:
        next_at = session.scalar(
            sa.update(RateBudget).where(RateBudget.name == name)
            .values(next_at=sa.case((RateBudget.next_at > now, RateBudget.next_at), else_=now) + interval)
            .returning(RateBudget.next_at))
        if next_at is None:  # the first call ever
            next_at = now + interval
            session.execute(sa.insert(RateBudget).values(name=name, next_at=next_at))
    return max(0.0, next_at - interval - now)


def wait_turn(name: str, per_second: float) -> None:
    time.sleep(take_turn(name, per_second))
