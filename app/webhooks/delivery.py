"""Delivering events: at least once, in order per conversation, each endpoint on its own.

`webhooks_dispatch` (left due by `emit`) gives every enabled endpoint behind the newest event its
`webhooks_deliver` job, keyed by the endpoint, so one endpoint's jobs run one at a time and a
stalled receiver holds one job runner thread for one attempt's timeouts, then waits out its
backoff holding none. A deliver job:

1. takes the endpoint's new events (those after its position, in commit order) as `pending`
   deliveries of the types it subscribed to, and moves its position past them;
2. sends the pending deliveries that are due, oldest event first, skipping any behind an
   undelivered earlier event of the same conversation (a conversation's events arrive in
   order; other conversations' go on past a failing one);
3. records the attempts (the response code, or why there was none) in short writes, a
   failure at once and successes a few at a time, never holding a transaction over the network;
4. leaves a job due when the next delivery is.

An answer 2xx delivers. Timeouts, refused connections, 5xx and 429 are tried again with backoff
(5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h) for WEBHOOK_RETRY_HOURS; any other answer fails at
once. A timeout, a refused connection or a 429 also pauses the whole endpoint for its backoff. An
endpoint none of whose attempts succeeded for WEBHOOK_DISABLE_AFTER_HOURS is turned off, audited,
and shown to admins on every admin page. Every attempt has the event's `webhook-id` and is
signed anew with the real time (signing.py); the connection goes to an address `addresses.resolve`
checked, with no proxy and no redirects followed, and reads back at most MAX_RESPONSE_BYTES.
"""

import logging
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import aliased

from app import audit, clock, jobs
from app.db.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.db.unit_of_work import rows_matched, write_transaction
from app.extensions import db
from app.webhooks import DELIVER, DISPATCH, addresses, signing

log = logging.getLogger(__name__)

BACKOFF = [timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=5)]
BACKOFF_MOST = timedelta(hours=10)
TAKE_EVENTS = 500  # new events a run takes at once
SEND_BATCH = 100  # deliveries a run sends at most
RECORD_BATCH = 20  # successes recorded in one write
RUN_SECONDS = 20.0  # a run starts no attempt after this; the next run goes on
MAX_RESPONSE_BYTES = 16 * 1024  # of a receiver's answer, headers included: the rest is not read
USER_AGENT = "sms-inbox-webhooks/1"
ERROR_LENGTH = 200


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure in a row."""
    return BACKOFF[attempts - 1] if 0 < attempts <= len(BACKOFF) else BACKOFF_MOST


def endpoint_key(endpoint_id: int) -> str:
    return f"webhook:{endpoint_id}"


def schedule(endpoint_id: int, at: datetime) -> None:
    """The endpoint's deliver job is due by `at` (in the caller's write transaction)."""
    jobs.enqueue_once(DELIVER, {"endpoint": endpoint_id}, key=endpoint_key(endpoint_id), due_at=at)


def deliver_lease(config) -> timedelta:
    """A run starts attempts for RUN_SECONDS; the last one may take its timeouts after that."""
    seconds = RUN_SECONDS + config["WEBHOOK_CONNECT_TIMEOUT"] + config["WEBHOOK_READ_TIMEOUT"]
    return timedelta(seconds=seconds + 60)


@jobs.kind(DISPATCH)
def dispatch(payload: dict, attempt: jobs.Attempt) -> None:
    """Each enabled endpoint behind the newest event gets its deliver job (due once its pause ends)."""
    now = clock.now()
    with write_transaction() as session:
        newest = session.scalar(sa.select(sa.func.max(WebhookEvent.id)))
        if newest is None:
            return
        for endpoint_id, paused_until in session.execute(
            sa.select(WebhookEndpoint.id, WebhookEndpoint.paused_until).where(
                WebhookEndpoint.enabled, WebhookEndpoint.position < newest
            )
        ).all():
            schedule(endpoint_id, max(now, paused_until or now))


@jobs.kind(DELIVER, lease=deliver_lease)
def deliver(payload: dict, attempt: jobs.Attempt) -> None:
    run(payload["endpoint"])


@dataclass(frozen=True)
class Endpoint:
    id: int
    url: str
    signing_secrets: list[str]


@dataclass(frozen=True)
class Ready:
    id: int
    conversation_id: int | None
    attempts: int
    created_at: datetime
    uid: str
    body: str


@dataclass(frozen=True)
class Outcome:
    code: int | None = None  # the answer's status, if there was one
    error: str | None = None  # why there was none, or what the code means
    retry: bool = False  # worth another attempt later
    pause: bool = False  # the endpoint as a whole should wait (it is unreachable, or said 429)

    @property
    def delivered(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


def run(endpoint_id: int) -> None:
    """One run of an endpoint's deliveries (see the module's steps); leaves the next run due."""
    more_events = take_events(endpoint_id)
    endpoint = current(endpoint_id)
    if endpoint is None:
        return  # deleted or turned off: its deliveries wait (or went with it)
    started, blocked, stopped = time.monotonic(), set(), False
    outcomes: list[tuple[Ready, Outcome]] = []
    for ready in ready_deliveries(endpoint_id, clock.now(), SEND_BATCH):
        if ready.conversation_id is not None and ready.conversation_id in blocked:
            continue
        if time.monotonic() - started > RUN_SECONDS:
            stopped = True
            break
        outcome = attempt(endpoint, ready)
        outcomes.append((ready, outcome))
        if not outcome.delivered:
            blocked.add(ready.conversation_id)
        if not outcome.delivered or len(outcomes) >= RECORD_BATCH:
            # Successes are recorded a few at a time (one write for several); a failure at once.
            if not record(endpoint_id, outcomes):
                return  # the endpoint was turned off
            outcomes = []
        if outcome.pause:
            break
    if outcomes and not record(endpoint_id, outcomes):
        return
    with write_transaction() as session:
        row = session.execute(
            sa.select(WebhookEndpoint.enabled, WebhookEndpoint.paused_until).where(WebhookEndpoint.id == endpoint_id)
        ).first()
        if row is None or not row.enabled:
            return
        now = clock.now()
        due = now if (more_events or stopped) else next_ready_at(endpoint_id)
        if due is not None:
            schedule(endpoint_id, max(due, row.paused_until or due, now))


def take_events(endpoint_id: int) -> bool:
    """New events become the endpoint's pending deliveries (the types it takes); whether more wait."""
    now = clock.now()
    with write_transaction() as session:
        endpoint = session.execute(
            sa.select(WebhookEndpoint.position, WebhookEndpoint.events, WebhookEndpoint.enabled).where(
                WebhookEndpoint.id == endpoint_id
            )
        ).first()
        if endpoint is None or not endpoint.enabled:
            return False
        events = session.execute(
            sa.select(WebhookEvent.id, WebhookEvent.type, WebhookEvent.conversation_id)
            .where(WebhookEvent.id > endpoint.position)
            .order_by(WebhookEvent.id)
            .limit(TAKE_EVENTS)
        ).all()
        if not events:
            return False
        wanted = set(endpoint.events.split())
        rows = [
            {
                "endpoint_id": endpoint_id,
                "event_id": event.id,
                "conversation_id": event.conversation_id,
                "status": "pending",
                "attempts": 0,
                "next_at": now,
                "created_at": now,
            }
            for event in events
            if event.type in wanted
        ]
        if rows:
            session.execute(sa.insert(WebhookDelivery), rows)
        session.execute(
            sa.update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(position=events[-1].id)
        )
    return len(events) == TAKE_EVENTS


def current(endpoint_id: int) -> Endpoint | None:
    """The endpoint's URL and the secrets that sign now (the previous one too during its overlap)."""
    row = db.session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
    db.session.rollback()  # the read ends here
    if row is None or not row.enabled:
        return None
    valid = [row.secret]
    if row.previous_secret and row.previous_secret_until and row.previous_secret_until > clock.now():
        valid.append(row.previous_secret)
    return Endpoint(row.id, row.url, valid)


def _ahead(waiting_after: datetime | None = None):
    """An undelivered earlier event of the same conversation, for the same endpoint (with
    `waiting_after`: only one not due by then; the due ones go first in the same run)."""
    earlier = aliased(WebhookDelivery)
    conditions = [
        earlier.endpoint_id == WebhookDelivery.endpoint_id,
        earlier.conversation_id == WebhookDelivery.conversation_id,
        earlier.event_id < WebhookDelivery.event_id,
        earlier.status == "pending",
    ]
    if waiting_after is not None:
        conditions.append(earlier.next_at > waiting_after)
    return sa.select(earlier.id).where(*conditions).exists()


def ready_deliveries(endpoint_id: int, now: datetime, limit: int) -> list[Ready]:
    """The pending deliveries due at `now`, oldest event first, but none behind an earlier event of
    its conversation that is not due yet. The run sends them in this order and skips the rest of
    a conversation after its first failure."""
    rows = db.session.execute(
        sa.select(
            WebhookDelivery.id,
            WebhookDelivery.conversation_id,
            WebhookDelivery.attempts,
            WebhookDelivery.created_at,
            WebhookEvent.uid,
            WebhookEvent.body,
        )
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_at <= now,
            ~_ahead(waiting_after=now),
        )
        .order_by(WebhookDelivery.event_id)
        .limit(limit)
    ).all()
    db.session.rollback()
    return [Ready(**row._asdict()) for row in rows]


def next_ready_at(endpoint_id: int) -> datetime | None:
    """When the next pending delivery not waiting behind its conversation is due (in a transaction)."""
    return db.session.scalar(
        sa.select(sa.func.min(WebhookDelivery.next_at)).where(
            WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending", ~_ahead()
        )
    )


def record(endpoint_id: int, outcomes: list[tuple[Ready, Outcome]]) -> bool:
    """Attempts' outcomes (in the order they were made), on the deliveries and their endpoint, in
    one write; False if the endpoint is now off."""
    with write_transaction():
        return all([record_one(endpoint_id, ready, outcome) for ready, outcome in outcomes])


def record_one(endpoint_id: int, ready: Ready, outcome: Outcome) -> bool:
    config = current_app.config
    now = clock.now()
    attempts = ready.attempts + 1
    values: dict = {
        "attempts": attempts,
        "last_attempt_at": now,
        "response_code": outcome.code,
        "error": outcome.error and outcome.error[:ERROR_LENGTH],
    }
    give_up_at = ready.created_at + timedelta(hours=config["WEBHOOK_RETRY_HOURS"])
    if outcome.delivered:
        values["status"] = "delivered"
    elif outcome.retry and now + backoff(attempts) <= give_up_at:
        values["next_at"] = now + backoff(attempts)
    else:
        values["status"] = "failed"
    with write_transaction() as session:
        updated = rows_matched(
            session.execute(
                sa.update(WebhookDelivery)
                .where(WebhookDelivery.id == ready.id, WebhookDelivery.status == "pending")
                .values(**values)
            )
        )
        if not updated:
            return True  # "Send again" or a deletion changed it meanwhile
        if outcome.delivered:
            session.execute(
                sa.update(WebhookEndpoint)
                .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failures > 0)
                .values(failing_since=None, failures=0, paused_until=None)
            )
            return True
        endpoint = session.get_one(WebhookEndpoint, endpoint_id, populate_existing=True)
        endpoint.failures += 1
        endpoint.failing_since = endpoint.failing_since or now
        if outcome.pause:
            endpoint.paused_until = now + backoff(endpoint.failures)
        if endpoint.enabled and now - endpoint.failing_since >= timedelta(hours=config["WEBHOOK_DISABLE_AFTER_HOURS"]):
            endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, "failing", now
            audit.record(
                "webhook_disabled",
                {"endpoint": endpoint_id, "failing_since": clock.utc_iso(endpoint.failing_since)},
                username=None,
                address=None,
            )
            log.warning(
                "webhook endpoint %d turned off: no delivery succeeded since %s", endpoint_id, endpoint.failing_since
            )
            return False
    return True


# --- one attempt over the network ------------------------------------------------------------------


def attempt(endpoint: Endpoint, ready: Ready) -> Outcome:
    """POST the event's body to the endpoint once; what came of it. No transaction is open."""
    config = current_app.config
    try:
        allowed = addresses.allowed_networks(config["WEBHOOKS_ALLOWED_NETWORKS"])
        target = addresses.parse(endpoint.url)
        ips = addresses.resolve(target, allowed)
    except addresses.AddressRefused as refused:
        return Outcome(error=f"refused: {refused}", retry=True, pause=True)
    body = ready.body.encode()
    headers = signing.headers(endpoint.signing_secrets, ready.uid, int(time.time()), body)
    try:
        code = post(
            target,
            ips,
            body,
            headers,
            connect_timeout=float(config["WEBHOOK_CONNECT_TIMEOUT"]),
            read_timeout=float(config["WEBHOOK_READ_TIMEOUT"]),
        )
    except TimeoutError:
        return Outcome(error="timed out", retry=True, pause=True)
    except ssl.SSLError as exc:
        return Outcome(error=f"TLS: {exc.reason or exc}", retry=True, pause=True)
    except (OSError, ValueError) as exc:
        return Outcome(error=f"no answer: {exc.__class__.__name__}: {exc}", retry=True, pause=True)
    if 200 <= code < 300:
        return Outcome(code)
    if code == 429:
        return Outcome(code, "HTTP 429: too many requests", retry=True, pause=True)
    if code >= 500:
        return Outcome(code, f"HTTP {code}", retry=True)
    return Outcome(code, f"HTTP {code}: not tried again" + (" (redirects are not followed)" if code < 400 else ""))


def connect(ips: list[str], port: int, timeout: float) -> socket.socket:
    """A connection to the first of `ips` (all checked) that takes one, as a browser tries them."""
    error: OSError | None = None
    for ip in ips:
        try:
            return socket.create_connection((ip, port), timeout=timeout)
        except TimeoutError:
            raise
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")


def post(
    target: addresses.Target,
    ips: list[str],
    body: bytes,
    headers: dict[str, str],
    connect_timeout: float,
    read_timeout: float,
) -> int:
    """An HTTP/1.1 POST to one of `ips` (already checked) in the name of `target.host` (the Host
    header, and TLS's server name and certificate check); the answer's status code. Reads at most
    MAX_RESPONSE_BYTES of the answer, within `read_timeout` in all; TimeoutError past it."""
    sock = connect(ips, target.port, connect_timeout)
    try:
        if target.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        lines = [
            f"POST {target.path} HTTP/1.1",
            f"Host: {target.host_header}",
            f"User-Agent: {USER_AGENT}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        deadline = time.monotonic() + read_timeout
        sock.settimeout(read_timeout)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        answer = b""
        while b"\r\n" not in answer and len(answer) < MAX_RESPONSE_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("read timed out")
            sock.settimeout(left)
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return status_code(answer)
    finally:
        sock.close()


def status_code(answer: bytes) -> int:
    """The code of an answer's status line (`HTTP/1.1 204 No Content`); ValueError for none."""
    parts = answer.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError("the answer is not HTTP")
    return int(parts[1])


# --- keeping the tables small ----------------------------------------------------------------------

PRUNE_BATCH = 1000


@jobs.kind("webhooks_prune", every=timedelta(hours=1))
def prune(payload: dict, attempt: jobs.Attempt) -> None:
    """Events older than WEBHOOK_EVENT_RETENTION_DAYS go, with their deliveries (in short
    batches: a write waiting behind this one waits for one batch at most); and any endpoint
    with work left gets its job, should one have been lost."""
    cutoff = attempt.now - timedelta(days=current_app.config["WEBHOOK_EVENT_RETENTION_DAYS"])
    while True:
        with write_transaction() as session:
            ids = list(
                session.scalars(
                    sa.select(WebhookEvent.id)
                    .where(WebhookEvent.created_at < cutoff)
                    .order_by(WebhookEvent.id)
                    .limit(PRUNE_BATCH)
                )
            )
            if ids:
                session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
                session.execute(sa.delete(WebhookEvent).where(WebhookEvent.id.in_(ids)))
        if len(ids) < PRUNE_BATCH:
            break
    with write_transaction() as session:
        now = clock.now()
        pending = sa.select(WebhookDelivery.id).where(
            WebhookDelivery.endpoint_id == WebhookEndpoint.id, WebhookDelivery.status == "pending"
        )
        for endpoint_id, paused_until in session.execute(
            sa.select(WebhookEndpoint.id, WebhookEndpoint.paused_until).where(WebhookEndpoint.enabled, pending.exists())
        ).all():
            schedule(endpoint_id, max(now, paused_until or now))
