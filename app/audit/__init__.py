"""The audit trail: who did what, when and from which address.

`record` appends one event, in the caller's write transaction when there is one (so the event
and what it describes commit together) or in its own. The app never changes or deletes an event,
except the audit trail's own retention (app/privacy/purge.py). Phone numbers never go in as they are:
`number_hash` is a keyed hash (HMAC with SECRET_KEY) that matches the same number again
without revealing it.
"""

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from flask import current_app, has_request_context, request  # noqa: TID251 (an event's address defaults to the client's)
from flask_login import current_user

from app import clock
from app.db import numbers
from app.db.models import ADDRESS_LENGTH, USERNAME_LENGTH, AuditEvent
from app.db.unit_of_work import write_transaction
from app.extensions import db

# What is recorded, in the words the audit page shows.
ACTIONS = {
    "login": "Logged in",
    "login_failed": "Failed login",
    "lockout": "Login locked",
    "logout": "Logged out",
    "export": "Exported messages",
    "events_export": "Exported conversation events",
    "reply": "Sent a reply",
    "note": "Wrote a note",
    "contact_edited": "Edited a contact",
    "conversation_deleted": "Deleted a conversation",
    "user_added": "Added a user",
    "user_changed": "Changed a user",
    "user_disabled": "Disabled a user",
    "user_enabled": "Re-enabled a user",
    "password_reset": "Password reset link",
    "password_set": "Set a password",
    "password_changed": "Changed own password",
    "sessions_ended": "Ended sessions",
    "two_factor_on": "Turned on two-factor sign-in",
    "two_factor_off": "Turned off two-factor sign-in",
    "backup_codes_new": "Made new backup codes",
    "backup_code_used": "Logged in with a backup code",
    "two_factor_reset": "Reset two-factor sign-in",
    "two_factor_required": "Changed the two-factor requirement",
    "login_unlocked": "Unlocked a login",
    "settings_changed": "Changed settings",
    "retention_purge": "Retention purge",
    "job_retried": "Retried a job",
    "opted_out": "Opted out",
    "opted_in": "Opted back in",
    "assigned": "Assigned a conversation",
    "unassigned": "Unassigned a conversation",
    "on_shift": "Went on shift",
    "off_shift": "Went off shift",
    "snoozed": "Snoozed a conversation",
    "woke": "A conversation woke from snooze",
    "new_message": "Wrote a new message",
    "scheduled": "Scheduled a message",
    "scheduled_edited": "Edited a scheduled message",
    "scheduled_cancelled": "Cancelled a scheduled message",
    "scheduled_sent": "Sent a scheduled message",
    "scheduled_missed": "Scheduled message missed",
    "scheduled_held": "Scheduled message held",
    "label_created": "Created a label",
    "label_renamed": "Renamed a label",
    "label_recoloured": "Recoloured a label",
    "label_deleted": "Deleted a label",
    "label_added": "Labelled a conversation",
    "label_removed": "Took a label off a conversation",
    # API tokens (app/api/tokens.py); what a token does is recorded as "API: <its name>".
    "api_token_created": "Created an API token",
    "api_token_revoked": "Revoked an API token",
    "status_changed": "Changed a conversation's status",
    # Webhooks (app/webhooks/)
    "webhook_added": "Added a webhook",
    "webhook_changed": "Changed a webhook",
    "webhook_removed": "Deleted a webhook",
    "webhook_resent": "Sent a webhook again",
    "webhook_disabled": "Turned off a failing webhook",
}

UNSET = object()


def record(action: str, details: dict | None = None, username=UNSET, address=UNSET, at: datetime | None = None) -> None:
    """Append an event. `username` defaults to the person logged in (None outside a request:
    the app itself, e.g. the daily purge); `address` to the request's client address (the
    socket's, or the X-Forwarded-For hop that PROXY_COUNT trusts); `at` to now."""
    if username is UNSET:
        username = current_user.username if has_request_context() and current_user.is_authenticated else None
    if address is UNSET:
        address = request.remote_addr if has_request_context() else None
    with write_transaction():
        db.session.add(AuditEvent(**event_row(action, details, username, address, at)))


def event_row(
    action: str, details: dict | None, username: str | None, address: str | None, at: datetime | None = None
) -> dict:
    """An event's columns, for `record` and for code that writes through a Core connection
    (ingest records a customer's STOP in its own transaction); `at` defaults to now."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return dict(
        at=at or clock.now(),
        username=username[:USERNAME_LENGTH] if username else None,
        address=address[:ADDRESS_LENGTH] if address else None,
        action=action,
        details=json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str),
    )


def number_hash(number: str) -> str:
    """A keyed hash of a phone number: the same number gives the same hash, and without
    SECRET_KEY the hash cannot be turned back into the number by trying every number.

    The number is first made the key its conversation has (numbers.normalise: `+372 5557 7003` and
    `37255577003` are one number, `37255577003#` another sender), so a hash matches exactly
    the conversations of that number. A number's hash is of its digits (E.164 without `+`).
    """
    key = numbers.normalise(number)
    hashed = key[1:] if numbers.is_number_key(key) else key
    return hmac.new(current_app.config["SECRET_KEY"].encode(), hashed.encode(), hashlib.sha256).hexdigest()


def events_query(
    action: str | None = None,
    username: str | None = None,
    first_day: date | None = None,
    last_day: date | None = None,
    before_id: int | None = None,
) -> sa.Select:
    """Events newest first, filtered by action, user and days (UTC, both ends included); with
    `before_id`, those after that event in this order (the next page)."""
    query = sa.select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if before_id is not None:
        anchor = sa.select(AuditEvent.at).where(AuditEvent.id == before_id).scalar_subquery()
        query = query.where(sa.tuple_(AuditEvent.at, AuditEvent.id) < sa.tuple_(anchor, before_id))
    if action:
        query = query.where(AuditEvent.action == action)
    if username:
        query = query.where(AuditEvent.username == username)
    if first_day:
        query = query.where(AuditEvent.at >= datetime.combine(first_day, datetime.min.time()))
    if last_day:
        query = query.where(AuditEvent.at < datetime.combine(last_day + timedelta(days=1), datetime.min.time()))
    return query


def events_page(size: int, **filters) -> tuple[list[AuditEvent], bool]:
    """A page of the events `events_query` finds, and whether more follow it."""
    found = db.session.scalars(events_query(**filters).limit(size + 1)).all()
    return list(found[:size]), len(found) > size


def every_event(**filters) -> Iterator[AuditEvent]:
    """Every event `events_query` finds, fetched 500 at a time (the CSV download)."""
    yield from db.session.scalars(events_query(**filters).execution_options(yield_per=500))


def usernames() -> list[str]:
    """Everyone who appears in the trail, for the filter."""
    return list(
        db.session.scalars(
            sa.select(AuditEvent.username)
            .where(AuditEvent.username.is_not(None))
            .distinct()
            .order_by(AuditEvent.username)
        )
    )


def details_of(event: AuditEvent) -> dict:
    return json.loads(event.details)


def describe_details(event: AuditEvent) -> str:
    """The details as `key: value` pairs for people."""
    return "; ".join(
        f"{key.replace('_', ' ')}: {value}"
        for key, value in details_of(event).items()
        if value not in (None, "", [], 0)
    )
