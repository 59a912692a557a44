"""POST /callbacks/inbound: Messente's signed inbound-message callback."""
import logging

from flask import Blueprint, current_app, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from . import group_commit, ingest, signing
from .extensions import csrf, db

bp = Blueprint("callback", __name__, url_prefix="/callbacks")
csrf.exempt(bp)  # the provider signs its requests; it has no session to hold a token
log = logging.getLogger(__name__)


def error(status: int, message: str):
    return {"error": message}, status


@bp.post("/inbound")
def inbound():
    secrets = current_app.config["MESSENTE_SHARED_SECRETS"]
    if not secrets:
        log.error("inbound callback refused: no MESSENTE_SHARED_SECRET is configured")
        return error(503, "no shared secret is configured on this server; see the README")

    try:
        raw_body = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH raises 413
    except OSError:  # the client stalled mid-body (see gunicorn_conf) or went away
        return error(408, "the request body did not arrive in time")
    if not signing.verify(raw_body, request.headers.get("X-Messente-Signature"), secrets):
        log.warning(
            "inbound callback rejected: missing or wrong X-Messente-Signature (%d bytes from %s)",
            len(raw_body), request.remote_addr,
        )
        return error(401, "missing or invalid X-Messente-Signature")

    try:
        message = ingest.parse_payload(raw_body)
    except ingest.InvalidPayload as exc:
        ingest.store_dead_letter(raw_body, str(exc))
        db.session.commit()
        log.warning("signed inbound callback kept as a dead letter: %s", exc)
        return error(400, str(exc))

    stored = group_commit.store(message)  # returns once the message is committed
    return {"status": "stored" if stored else "duplicate"}


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return error(exc.code, exc.description if exc.code != 413 else "body is larger than 64 KiB")


@bp.errorhandler(SQLAlchemyError)
@bp.errorhandler(TimeoutError)
def storage_unavailable(exc: Exception):
    # Nothing was acked, so the provider retries; the 503 tells it to.
    db.session.rollback()
    log.error("inbound callback not stored, database unavailable: %s", getattr(exc, "orig", exc))
    return error(503, "storage temporarily unavailable, retry later")
