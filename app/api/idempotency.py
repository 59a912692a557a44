"""`Idempotency-Key`: a request retried with the same key (by the same token) gets the first
answer again and does nothing more; the same key with another body is refused (422).

The first answer is stored with the key, the token, a hash of the request (method, path, body)
and the time, in the transaction that does the work: the work and its record commit together,
and a retry that races the first waits for the write lock, then finds the record. Records are
kept 24 hours; each new one deletes those past that.
"""

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa

from app import clock
from app.api.problems import Problem
from app.db.models import ApiIdempotency
from app.db.unit_of_work import write_transaction
from app.extensions import db

KEPT = timedelta(hours=24)


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), body])).hexdigest()


def _earlier(token_id: int, key: str, hashed: str) -> tuple[int, dict] | None:
    row = db.session.scalar(
        sa.select(ApiIdempotency).where(
            ApiIdempotency.token_id == token_id,
            ApiIdempotency.key == key,
            ApiIdempotency.created_at > clock.now() - KEPT,
        )
    )
    if row is None:
        return None
    if row.body_hash != hashed:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "This Idempotency-Key was used with another request in the last 24 hours: use a new key.",
        )
    return row.status, json.loads(row.response)


def once(token_id: int, key: str | None, hashed: str, work: Callable[[], tuple[int, dict]]) -> tuple[int, dict, bool]:
    """(status, body, replayed): `work()` run in a write transaction, its answer stored under the
    key; or, for a key seen before, the answer stored then (`replayed`)."""
    if key is None:
        with write_transaction():
            status, body = work()
        return status, body, False
    earlier = _earlier(token_id, key, hashed)
    if earlier is not None:
        return (*earlier, True)
    with write_transaction() as session:
        earlier = _earlier(token_id, key, hashed)  # again, holding the write lock
        if earlier is not None:
            return (*earlier, True)
        status, body = work()
        now = clock.now()
        session.execute(sa.delete(ApiIdempotency).where(ApiIdempotency.created_at <= now - KEPT))
        session.add(
            ApiIdempotency(
                token_id=token_id,
                key=key,
                body_hash=hashed,
                status=status,
                response=json.dumps(body, ensure_ascii=False),
                created_at=now,
            )
        )
    return status, body, False
