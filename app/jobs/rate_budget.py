"""One rate budget for calls to an API, shared by every process and instance using the database.

A row per budget holds the earliest moment (seconds since the epoch) the next call may start. A
caller takes its turn with one conditional UPDATE, next_at = now + interval WHERE next_at <= now,
right before its call; if another caller's turn is still running out, it sleeps until then and
tries again. Turns are so at least one interval apart however many processes and instances ask:
at most `per_second` calls a second in all. Nothing is booked ahead, so after a stall the calls
behind it don't go in a burst.
"""

import time

import sqlalchemy as sa

from app.db.models import RateBudget
from app.db.unit_of_work import rows_matched, write_transaction

MESSENTE = "messente"


def take_turn(name: str, per_second: float) -> float:
    """Take the turn if it is free (0.0), else the seconds until it may be."""
    interval = 1.0 / per_second
    now = time.time()  # the wall clock, as the sleep is real (not the app's settable clock)
    with write_transaction() as session:
        taken = rows_matched(
            session.execute(
                sa.update(RateBudget)
                .where(RateBudget.name == name, RateBudget.next_at <= now)
                .values(next_at=now + interval)
            )
        )
        if taken:
            return 0.0
        next_at = session.scalar(sa.select(RateBudget.next_at).where(RateBudget.name == name))
        if next_at is None:  # the first call ever
            session.execute(sa.insert(RateBudget).values(name=name, next_at=now + interval))
            return 0.0
    return max(next_at - now, 0.001)


def wait_turn(name: str, per_second: float) -> None:
    """Return when this caller may make its call."""
    while (wait := take_turn(name, per_second)) > 0:
        time.sleep(wait)
