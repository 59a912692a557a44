"""Endpoints: what admins subscribe (the API's `POST /api/v1/webhooks` and the admin page share
these functions). Each change is audited in its own transaction; a bad URL or event type is a
ValueError saying why (422 in the API, the form's error on the page).

A secret is shown once, when it is made (`create_endpoint`, `rotate_secret`): it is stored as is
(it signs every delivery) and never shown again. After a rotation the previous secret signs too,
beside the new one, for WEBHOOK_SECRET_OVERLAP_HOURS, so receivers can switch without a gap.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from app import audit, clock
from app.db.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.db.unit_of_work import rows_matched, write_transaction
from app.extensions import db
from app.webhooks import EVENT_TYPES, addresses, delivery, signing

RECENT_DELIVERIES = 20


def check_events(events: Iterable[str]) -> list[str]:
    """The event types asked for, known and at least one; ValueError naming an unknown one."""
    chosen = sorted({event.strip() for event in events if event.strip()})
    unknown = [event for event in chosen if event not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"Unknown event type {unknown[0]!r}: the types are {', '.join(EVENT_TYPES)}.")
    if not chosen:
        raise ValueError("Choose at least one event type.")
    return chosen


def check_url(url: str) -> str:
    """A URL fit to subscribe; AddressRefused (a ValueError) saying why not."""
    return addresses.check_url(url, addresses.allowed_networks(current_app.config["WEBHOOKS_ALLOWED_NETWORKS"]))


def create_endpoint(url: str, events: Iterable[str]) -> tuple[WebhookEndpoint, str]:
    """Subscribe `url` to `events`; the endpoint and its secret (shown this once). It gets the
    events from now on."""
    chosen, url = check_events(events), check_url(url)
    secret = signing.new_secret()
    with write_transaction() as session:
        endpoint = WebhookEndpoint(
            url=url,
            events=" ".join(chosen),
            secret=secret,
            enabled=True,
            position=session.scalar(sa.select(sa.func.max(WebhookEvent.id))) or 0,
            failures=0,
            created_at=clock.now(),
        )
        session.add(endpoint)
        session.flush()
        audit.record("webhook_added", {"endpoint": endpoint.id, "host": host_of(url), "events": chosen})
    return endpoint, secret


def update_endpoint(endpoint_id: int, url: str | None = None, events: Iterable[str] | None = None) -> WebhookEndpoint:
    """Change an endpoint's URL or event types; LookupError when there is no such endpoint."""
    chosen = check_events(events) if events is not None else None
    url = check_url(url) if url is not None else None
    with write_transaction() as session:
        endpoint = found(endpoint_id)
        details: dict = {"endpoint": endpoint_id}
        if url is not None and url != endpoint.url:
            endpoint.url, details["host"] = url, host_of(url)
        if chosen is not None and " ".join(chosen) != endpoint.events:
            endpoint.events, details["events"] = " ".join(chosen), chosen
        if len(details) > 1:
            session.flush()
            audit.record("webhook_changed", details)
    return endpoint


def rotate_secret(endpoint_id: int) -> str:
    """A new secret (shown this once); the one before it still signs for the overlap."""
    secret = signing.new_secret()
    overlap = timedelta(hours=current_app.config["WEBHOOK_SECRET_OVERLAP_HOURS"])
    with write_transaction():
        endpoint = found(endpoint_id)
        endpoint.previous_secret, endpoint.secret = endpoint.secret, secret
        endpoint.previous_secret_until = clock.now() + overlap
        audit.record("webhook_changed", {"endpoint": endpoint_id, "secret": "rotated"})
    return secret


def set_enabled(endpoint_id: int, enabled: bool) -> bool:
    """Turn an endpoint off or on again; False when it was so already. Turned on again, it starts
    from the newest event (it misses what happened while it was off) and tries its pending
    deliveries at once."""
    with write_transaction() as session:
        endpoint = found(endpoint_id)
        if endpoint.enabled == enabled:
            return False
        now = clock.now()
        endpoint.enabled = enabled
        if enabled:
            endpoint.disabled_reason = endpoint.disabled_at = endpoint.failing_since = endpoint.paused_until = None
            endpoint.failures = 0
            endpoint.position = session.scalar(sa.select(sa.func.max(WebhookEvent.id))) or 0
            session.execute(
                sa.update(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
                .values(next_at=now, created_at=now)
            )
            delivery.schedule(endpoint_id, now)
        else:
            endpoint.disabled_at = now
        session.flush()
        audit.record("webhook_changed", {"endpoint": endpoint_id, "enabled": "yes" if enabled else "no"})
    return True


def delete_endpoint(endpoint_id: int) -> bool:
    """Unsubscribe for good, with its deliveries; False when there was no such endpoint."""
    with write_transaction() as session:
        deleted = rows_matched(session.execute(sa.delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)))
        if deleted:
            audit.record("webhook_removed", {"endpoint": endpoint_id})
    return bool(deleted)


def send_again(endpoint_id: int, delivery_id: int) -> bool:
    """An admin's "Send again": the delivery is pending and due now, its attempts counted afresh
    (and tried again for as long as a new one); False when it is not the endpoint's or its
    event is gone."""
    with write_transaction() as session:
        now = clock.now()
        updated = rows_matched(
            session.execute(
                sa.update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id)
                .values(status="pending", attempts=0, next_at=now, created_at=now)
            )
        )
        if not updated:
            return False
        session.execute(
            sa.update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled)
            .values(paused_until=None)
        )
        delivery.schedule(endpoint_id, now)
        audit.record("webhook_resent", {"endpoint": endpoint_id, "delivery": delivery_id})
    return True


def found(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise LookupError(f"no webhook endpoint {endpoint_id}")
    return endpoint


def get(endpoint_id: int) -> WebhookEndpoint | None:
    return db.session.get(WebhookEndpoint, endpoint_id)


def listing() -> list[WebhookEndpoint]:
    return list(db.session.scalars(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def turned_off_for_failing() -> list[WebhookEndpoint]:
    """Endpoints the app turned off (every admin page says so until an admin acts)."""
    return list(
        db.session.scalars(
            sa.select(WebhookEndpoint)
            .where(~WebhookEndpoint.enabled, WebhookEndpoint.disabled_reason == "failing")
            .order_by(WebhookEndpoint.id)
        )
    )


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    event_uid: str
    event_type: str
    event_at: datetime
    status: str
    attempts: int
    last_attempt_at: datetime | None
    next_at: datetime
    response_code: int | None
    error: str | None


def recent_deliveries(endpoint_id: int, limit: int = RECENT_DELIVERIES) -> list[DeliveryRow]:
    """An endpoint's newest deliveries, newest event first."""
    rows = db.session.execute(
        sa.select(
            WebhookDelivery.id,
            WebhookEvent.uid.label("event_uid"),
            WebhookEvent.type.label("event_type"),
            WebhookEvent.created_at.label("event_at"),
            WebhookDelivery.status,
            WebhookDelivery.attempts,
            WebhookDelivery.last_attempt_at,
            WebhookDelivery.next_at,
            WebhookDelivery.response_code,
            WebhookDelivery.error,
        )
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.event_id.desc())
        .limit(limit)
    ).all()
    return [DeliveryRow(**row._asdict()) for row in rows]


def host_of(url: str) -> str:
    """What the audit trail keeps of a URL: its host (a path or query may hold a receiver's token)."""
    try:
        return addresses.parse(url).host
    except ValueError:
        return ""
