"""Errors the API raises, as problem details (RFC 9457): app/web/errors.py renders any HTTP
error on an /api/ path as `application/problem+json`; these say which kind it is (a stable
`type`, /api/v1/problems/<kind>) and carry its extension members."""

from werkzeug.exceptions import HTTPException

# Every kind of problem the API answers with, and what it means (the docs page lists them).
KINDS = {
    "bad-request": "The request could not be read (e.g. its body is not JSON).",
    "unauthorized": "No token, or one that is wrong, revoked or expired (401).",
    "forbidden": "The token lacks the scope the operation needs (403).",
    "not-found": "No such resource, or no such path (404).",
    "method-not-allowed": "The path exists, the method doesn't (405); `Allow` lists those that do.",
    "validation": "Fields missing or not valid (422): `errors` lists each, with where it was and why.",
    "refused": "Valid, but the state of things refuses it (409): e.g. a reply to a customer who opted out, "
    "a username taken, the last admin made an agent; `errors` names the field.",
    "idempotency-key-reused": "The Idempotency-Key came with another request in the last 24 hours (422).",
    "reply-held": "The send guard (409): messages came after `seen_message_id`; `newer` lists them.",
    "rate-limited": "Past the token's requests per minute (429); `Retry-After` says when to try again.",
    "unavailable": "The database is unavailable for now (503); `Retry-After` says when to try again.",
    "internal": "A fault of ours (500).",
}


class Problem(HTTPException):
    """An error answered as a problem document of a kind, with extension members."""

    def __init__(
        self, status: int, kind: str, title: str, detail: str | None = None, headers: dict | None = None, **extra
    ) -> None:
        super().__init__(description=detail)
        self.code = status
        self.problem = {"kind": kind, "title": title, "detail": detail, **extra}
        self.headers_to_send = headers or {}


def unauthorized() -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Unauthorized",
        "Send a valid API token: `Authorization: Bearer <token>` (wrong, revoked and expired tokens are refused).",
        headers={"WWW-Authenticate": 'Bearer realm="sms-inbox"'},
    )


def missing_scope(scope: str) -> Problem:
    return Problem(403, "forbidden", "Forbidden", f"This operation needs a token with the `{scope}` scope.")


def not_found(what: str) -> Problem:
    return Problem(404, "not-found", "Not Found", f"No such {what}.")


def refused(field: str, detail: str) -> Problem:
    """A request the current state refuses (not its form): a 409 naming the field."""
    return Problem(409, "refused", "Refused", detail, errors=[{"in": "body", "field": field, "message": detail}])


def invalid(field: str, detail: str) -> Problem:
    """A field whose value can't be used, found past the schema (a webhook URL that resolves to a
    private address): a 422 naming the field, as the schema's own refusals are."""
    return Problem(
        422, "validation", "Unprocessable Content", detail, errors=[{"in": "body", "field": field, "message": detail}]
    )


def rate_limited(seconds: int) -> Problem:
    return Problem(
        429,
        "rate-limited",
        "Too Many Requests",
        f"This token made its requests for this minute: try again in {seconds} s.",
        headers={"Retry-After": str(seconds)},
    )
