"""Error answers for the whole app: people get a page with a way back, machines short JSON."""

import logging

from flask import Flask, g, render_template, request
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from app.extensions import db, login_manager
from app.web.htmx import is_htmx

log = logging.getLogger(__name__)
# Paths machines call (Messente's callbacks): every answer there is JSON, routing errors included.
JSON_PATHS = ("/callbacks/",)


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, json_on_machine_paths)
    for code in (403, 404, 500):
        app.register_error_handler(code, error_page)
    app.register_error_handler(OperationalError, storage_unavailable)
    app.register_error_handler(InterfaceError, storage_unavailable)


def json_error(status: int, message: str):
    return {"error": message}, status


def for_machines() -> bool:
    return request.path.startswith(JSON_PATHS)


def json_on_machine_paths(exc: HTTPException):
    """Routing errors (404, 405) on a machine's path are JSON too; elsewhere Flask's own answer."""
    if for_machines():
        return json_error(exc.code or 500, exc.description or exc.name)
    return exc


def error_page(exc: HTTPException):
    if for_machines():
        return json_on_machine_paths(exc)
    return render_template(f"errors/{exc.code}.html"), exc.code


def storage_unavailable(exc: Exception):
    """The database is away (restarting, full, locked too long): a page that retries, not a traceback.

    htmx polls get the bare status and simply poll again; the callbacks answer their own JSON 503.
    """
    db.session.rollback()
    g._login_user = login_manager.anonymous_user()  # the page must not ask the database who is asking
    log.error("%s: database unavailable: %s", request.path, getattr(exc, "orig", exc))
    if is_htmx():
        return "", 503, {"Retry-After": "5"}
    return render_template("errors/503.html"), 503, {"Retry-After": "5"}
