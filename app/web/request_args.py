"""Ids and days from URLs and query strings, read one way everywhere.

An id is ASCII digits no larger than a BIGINT: `'²'.isdigit()` and `int('①')`-style tricks, signs,
spaces and numbers too large for the id columns never reach the database (SQLite raises
OverflowError on an integer beyond 64 bits, PostgreSQL an out-of-range error: both were 500s).
"""

import re
from datetime import date

from flask import abort, request
from werkzeug.routing import IntegerConverter

LARGEST_ID = 2**63 - 1  # a database BIGINT; anything larger is no id of ours
LARGEST_INT = 2**31 - 1  # an INTEGER id column (users, saved replies, ...) on PostgreSQL
DIGITS = re.compile(r"[0-9]{1,19}")


def parse_id(value: str) -> int | None:
    """The id a text holds, or None: ASCII digits only, at most LARGEST_ID."""
    return int(value) if DIGITS.fullmatch(value) and int(value) <= LARGEST_ID else None


def id_arg(name: str, required: bool = False) -> int | None:
    """An id from the query string. Anything else (², ①, -1, 2**64) is ignored, or with `required`
    a 400 that says what was expected (an empty or missing value is still None)."""
    value = request.args.get(name, "")
    parsed = parse_id(value)
    if parsed is None and value and required:
        abort(400, f"'{name}' must be an id")
    return parsed


def date_arg(name: str) -> date | None:
    """A day (YYYY-MM-DD) from the query string, None when empty; anything else is a 400."""
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        abort(400, f"'{name}' must be a date like 2024-06-01")


class IdConverter(IntegerConverter):
    """`<int:...>` in every route, installed as the app's `int` converter: a number larger than the
    id column can hold is a 404 (no such page) rather than a query the database refuses.

    Plain `<int:...>` fits the smallest id column, an INTEGER (LARGEST_INT); a route whose id is a
    BIGINT (conversations, messages, sessions) says `<int(max=LARGEST_ID):...>`."""

    def __init__(self, map, *args, max: int | None = None, **kwargs) -> None:
        kwargs["max"] = LARGEST_INT if max is None else min(max, LARGEST_ID)
        super().__init__(map, *args, **kwargs)
