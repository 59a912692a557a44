"""Error answers for the whole app: people get a page with a way back, machines short JSON, and
the API (/api/) problem details (RFC 9457, `application/problem+json`)."""

import json
import logging

from flask import Flask, Response, current_app, g, render_template, request
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from app.extensions import db, login_manager
from app.web.htmx import is_htmx

log = logging.getLogger(__name__)
# Paths machines call (Messente's callbacks): every answer there is JSON, routing errors included.
JSON_PATHS = ("/callbacks/",)
# The API's paths: every error there is a problem document, routing errors and 500s included.
PROBLEM_PATHS = ("/api/",)
PROBLEM_TYPES = "/api/v1/problems/"  # + a kind: the stable `type` of each kind of problem
# The kind of problem each status is, unless the code that raised it says a more precise one.
PROBLEM_KINDS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "validation",
    429: "rate-limited",
    500: "internal",
    503: "unavailable",
}


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, json_on_machine_paths)
    for code in (403, 404, 500):
        app.register_error_handler(code, error_page)
    app.register_error_handler(OperationalError, storage_unavailable)
    app.register_error_handler(InterfaceError, storage_unavailable)


def for_api() -> bool:
    return request.path.startswith(PROBLEM_PATHS)


def problem(status: int, title: str, detail: str | None = None, kind: str | None = None, headers=None, **extra):
    """A problem document: `type` (stable per kind), `title`, `status`, `detail`, and any
    extension members (`errors`: the fields refused, and why)."""
    body = {"type": PROBLEM_TYPES + (kind or PROBLEM_KINDS.get(status, "error")), "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return Response(json.dumps(body, ensure_ascii=False), status, headers, mimetype="application/problem+json")


def problem_of(exc: HTTPException) -> Response:
    """An HTTP error as a problem. Code that raises one may give `exc.problem` (kind, title,
    detail, extension members) and `exc.headers_to_send`; request validation (webargs, in
    flask-smorest) gives its messages per location and field, which become `errors`."""
    if isinstance(exc, MethodNotAllowed) and no_such_resource(exc):
        exc = NotFound()
    status = exc.code or 500
    given = dict(getattr(exc, "problem", None) or {})
    headers = dict(getattr(exc, "headers_to_send", None) or {})
    data = getattr(exc, "data", None) or {}
    headers.update(data.get("headers") or {})
    if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    messages = data.get("messages") or data.get("errors")
    if messages and "errors" not in given:
        given["errors"] = field_errors(messages)
        given.setdefault("detail", "The request has fields that are missing or not valid: see errors.")
    title = given.pop("title", exc.name)
    detail = given.pop("detail", None) or exc.description
    return problem(status, title, detail, kind=given.pop("kind", None), headers=headers, **given)


def no_such_resource(exc: MethodNotAllowed) -> bool:
    """Werkzeug answers 405 for a path whose id its converter refuses (beyond the column's range)
    when a rule with another method matched the path's text: with that method it is a 404."""
    adapter = current_app.create_url_adapter(request)
    if adapter is None or not exc.valid_methods:
        return False
    try:
        adapter.match(method=sorted(exc.valid_methods)[0])
    except NotFound:
        return True
    except HTTPException:
        return False
    return False


# webargs' names for where a value was, in OpenAPI's words.
LOCATIONS = {"json": "body", "query": "query", "headers": "header", "view_args": "path", "form": "body"}


def field_errors(messages: dict) -> list[dict]:
    """webargs' {location: {field: [message, ...]}} (nested for nested fields) as a flat list of
    {"in", "field", "message"}, `field` a dotted path ("" for the body as a whole)."""
    found: list[dict] = []

    def walk(location: str, path: list[str], value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(location, [*path, str(key)], inner)
        elif isinstance(value, list) and value and all(isinstance(item, str) for item in value):
            for message in value:
                found.append({"in": location, "field": ".".join(path), "message": message})
        else:
            found.append({"in": location, "field": ".".join(path), "message": str(value)})

    for location, fields in messages.items():
        where = LOCATIONS.get(location, location)
        if isinstance(fields, dict) and "_schema" in fields and len(fields) == 1:
            walk(where, [], fields["_schema"])
        else:
            walk(where, [], fields)
    return found


def json_error(status: int, message: str):
    return {"error": message}, status


def for_machines() -> bool:
    return request.path.startswith(JSON_PATHS)


def json_on_machine_paths(exc: HTTPException):
    """Routing errors (404, 405) on a machine's path are JSON too; elsewhere Flask's own answer."""
    if for_api():
        return problem_of(exc)
    if for_machines():
        return json_error(exc.code or 500, exc.description or exc.name)
    return exc


def error_page(exc: HTTPException):
    if for_machines() or for_api():
        return json_on_machine_paths(exc)
    return render_template(f"errors/{exc.code}.html"), exc.code


def storage_unavailable(exc: Exception):
    """The database is away (restarting, full, locked too long): a page that retries, not a traceback.

    htmx polls get the bare status and simply poll again; the callbacks answer their own JSON 503.
    """
    db.session.rollback()
    g._login_user = login_manager.anonymous_user()  # the page must not ask the database who is asking
    log.error("%s: database unavailable: %s", request.path, getattr(exc, "orig", exc))
    if for_api():
        return problem(
            503, "Service Unavailable", "The database is unavailable: try again.", headers={"Retry-After": "5"}
        )
    if is_htmx():
        return "", 503, {"Retry-After": "5"}
    return render_template("errors/503.html"), 503, {"Retry-After": "5"}
