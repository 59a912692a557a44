"""A token's requests per minute (API_RATE_LIMIT), counted for every process and instance together.

The count is a row per token in the database: the minute it is for and how many requests that
minute has used. Taking one request at a time from it would make every API request a write, so a
process takes a share of the minute's allowance at once (a twentieth of it, at least one) and hands
it out to that token's requests itself; only when its share is used up does it write again. The
limit holds across processes (no share is ever granted beyond it); a process may answer 429 while
another still holds an unused share, at most a twentieth of the limit per other process.
Windows are whole minutes of the app's clock (app.clock), so tests move time instead of waiting.
"""

import threading
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from app import clock
from app.db.models import ApiRateWindow
from app.db.unit_of_work import write_transaction
from app.extensions import dialect_insert

SHARES = 20
_lock = threading.Lock()


@dataclass
class _Share:
    window: int
    left: int


def retry_after(token_id: int, per_minute: int) -> int:
    """0 when this request may go ahead (and counts it); else the seconds until the next minute."""
    seconds = int(clock.timestamp())
    window = seconds // 60
    shares: dict[int, _Share] = current_app.extensions.setdefault("api_rate_shares", {})
    with _lock:
        share = shares.get(token_id)
        if share is not None and share.window == window and share.left > 0:
            share.left -= 1
            return 0
    granted = _take(token_id, window, per_minute, max(1, per_minute // SHARES))
    if granted == 0:
        return 60 - seconds % 60
    with _lock:
        shares[token_id] = _Share(window, granted - 1)
    return 0


def _take(token_id: int, window: int, per_minute: int, wanted: int) -> int:
    """Take up to `wanted` requests of the token's minute from the shared count: how many."""
    with write_transaction() as session:
        insert = dialect_insert(ApiRateWindow.__table__)
        session.execute(
            insert.values(token_id=token_id, window=window, used=0).on_conflict_do_nothing(index_elements=["token_id"])
        )
        row = session.execute(
            sa.select(ApiRateWindow.window, ApiRateWindow.used).where(ApiRateWindow.token_id == token_id)
        ).one()
        used = row.used if row.window == window else 0
        granted = max(0, min(wanted, per_minute - used))
        if granted or row.window != window:
            session.execute(
                sa.update(ApiRateWindow)
                .where(ApiRateWindow.token_id == token_id)
                .values(window=window, used=used + granted)
            )
    return granted
