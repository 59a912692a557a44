"""Messente's signed callbacks: inbound messages and delivery reports for our replies."""

import logging

from flask import Blueprint, current_app, request
from sqlalchemy.exc import SQLAlchemyError

from app.callbacks import group_commit, ingest, signing
from app.config import MAX_CALLBACK_BYTES
from app.extensions import csrf, db
from app.replies import delivery
from app.web.errors import json_error as error

URL_PREFIX = "/callbacks"
bp = Blueprint("callback", __name__, url_prefix=URL_PREFIX)
csrf.exempt(bp)  # the provider signs its requests; it has no session to hold a token
log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


class BodyIncomplete(Exception):
    pass


def read_body(limit: int = MAX_CALLBACK_BYTES) -> bytes:
    """The whole request body, chunked or not; BodyTooLarge past `limit` bytes.

    Read here rather than through `request.get_data`, which cuts a chunked body at the limit
    without saying so (and the signature would then be checked over a prefix).
    """
    expected = request.content_length
    if expected is not None and expected > limit:
        raise BodyTooLarge
    stream = request.environ["wsgi.input"]
    try:
        body = stream.read(limit + 1 if expected is None else expected)
    except OSError as exc:  # the client stalled mid-body, or went away
        raise BodyIncomplete from exc
    if len(body) > limit:
        raise BodyTooLarge
    if expected is not None and len(body) < expected:
        raise BodyIncomplete
    return body


class Refused(Exception):
    """Answered with its status and a short reason; nothing is stored."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def signed_body(keys: list[str], what: str) -> bytes:
    """The whole body, once its X-Messente-Signature verifies under one of `keys`."""
    try:
        raw_body = read_body()
    except BodyTooLarge:
        raise Refused(413, f"body is larger than {MAX_CALLBACK_BYTES // 1024} KiB") from None
    except BodyIncomplete:
        raise Refused(408, "the request body did not arrive in full") from None
    if not signing.verify(raw_body, request.headers.get("X-Messente-Signature"), keys):
        log.warning(
            "%s rejected: missing or wrong X-Messente-Signature (%d bytes from %s)",
            what,
            len(raw_body),
            request.remote_addr,
        )
        raise Refused(401, "missing or invalid X-Messente-Signature")
    return raw_body


@bp.post("/inbound")
def inbound():
    secrets = current_app.config["MESSENTE_SHARED_SECRETS"]
    if not secrets:
        log.error("inbound callback refused: no MESSENTE_SHARED_SECRET is configured")
        return error(503, "no shared secret is configured on this server; see the README")
    raw_body = signed_body(secrets, "inbound callback")
    try:
        message = ingest.parse_payload(raw_body)
    except ingest.InvalidPayload as exc:
        ingest.store_dead_letter(raw_body, str(exc))
        log.warning("signed inbound callback kept as a dead letter: %s", exc)
        return error(400, str(exc))

    stored = group_commit.store(message)  # returns once the message is committed
    return {"status": "stored" if stored else "duplicate"}


@bp.post("/delivery")
def delivery_report():
    """Messente's delivery reports for our replies, signed with the API key's password."""
    password = current_app.config["MESSENTE_API_PASSWORD"]
    if not password:
        log.error("delivery report refused: no MESSENTE_API_PASSWORD is configured")
        return error(503, "no MESSENTE_API_PASSWORD is configured on this server")
    raw_body = signed_body([password], "delivery report")
    try:
        report = delivery.parse_report(raw_body)
    except delivery.InvalidReport as exc:
        return error(400, str(exc))
    matched = delivery.apply_report(report)
    return {"status": "applied" if matched else "kept until its reply is known"}


@bp.errorhandler(Refused)
def refused(exc: Refused):
    return error(exc.status, exc.reason)


@bp.errorhandler(SQLAlchemyError)
@bp.errorhandler(OSError)  # the disk is full, the lock file can't be opened; TimeoutError too
def storage_unavailable(exc: Exception):
    # Nothing was acked, so the provider retries; the 503 tells it to.
    db.session.rollback()
    log.error("%s not stored, database unavailable: %s", request.path, getattr(exc, "orig", exc))
    return error(503, "storage temporarily unavailable, retry later")
