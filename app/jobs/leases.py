"""Leases: "one at a time" across every process that shares the database.

A lease is a row named after what it guards (`lease.name`), holding who has it and until when.
`take` succeeds when no one holds the name or the holder's time has passed (its process died or
stalled); the holder renews it while it works (`Lease.keep`) and releases it when done. Taking
runs inside the app's write transaction, which serialises writers on both databases, so two
processes can never both take the same name.
"""

import secrets
import time
from datetime import timedelta

import sqlalchemy as sa

from app import clock
from app.db.models import Lease as LeaseRow
from app.db.unit_of_work import write_transaction


class Lease:
    """A lease this process holds."""

    def __init__(self, name: str, holder: str, seconds: float) -> None:
        self.name, self.holder, self.seconds = name, holder, seconds
        self._renewed = time.monotonic()

    def keep(self) -> None:
        """Push the expiry on while the work goes on; writes at most every quarter of the time."""
        if time.monotonic() - self._renewed < self.seconds / 4:
            return
        with write_transaction() as session:
            session.execute(
                sa.update(LeaseRow)
                .where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                .values(expires_at=clock.now() + timedelta(seconds=self.seconds))
            )
        self._renewed = time.monotonic()

    def release(self) -> None:
        with write_transaction() as session:
            session.execute(sa.delete(LeaseRow).where(LeaseRow.name == self.name, LeaseRow.holder == self.holder))


def take(name: str, seconds: float) -> Lease | None:
    """The lease on `name` for `seconds` (renewable), or None while someone else holds it."""
    holder = secrets.token_hex(16)
    now = clock.now()
    with write_transaction() as session:
        session.execute(sa.delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.expires_at <= now))
        if session.get(LeaseRow, name) is not None:
            return None
        session.add(LeaseRow(name=name, holder=holder, expires_at=now + timedelta(seconds=seconds)))
    return Lease(name, holder, seconds)
