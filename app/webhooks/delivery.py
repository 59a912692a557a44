"""Delivering events: at least once, in order per conversation, each endpoint on its own.

`webhooks_dispatch` (left due by `emit`, WEBHOOK_DISPATCH_SECONDS later so that a burst of
changes shares it) gives every enabled endpoint behind the newest event its `webhooks_deliver`
job, keyed by the endpoint: one endpoint's jobs run one at a time, so a stalled receiver holds
one job runner thread for one attempt's timeouts, then waits out its backoff holding none. Each
process runs WEBHOOK_DELIVERY_THREADS deliver jobs at once (1: each run keeps its thread busy with
Python, which the process's callbacks and pages would wait for), so during those timeouts the
other endpoints' runs wait for that process's place or go in another process. The dispatch is a
few statements however many endpoints there are, and a run's claim, record and result commit
without waiting for the disk (durable=False: lost to a crash, the run is done again): callbacks
queue for the write lock behind none of them for long. A deliver job, holding no transaction
over the network:

1. reads what is due: its pending deliveries (retries, "Send again"), then the events after its
   position (in commit order) of the types it takes;
2. sends them oldest event first, one conversation's in order: an event behind an undelivered
   earlier one of its conversation waits (a pending delivery without an attempt), while other
   conversations' events go on;
3. records every outcome, moves its position past the events it handled and leaves its next run
   due, all in one short write.

An answer 2xx delivers. Timeouts, refused connections, 5xx and 429 are tried again with backoff
(5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h) for WEBHOOK_RETRY_HOURS; any other answer fails at
once. A timeout, a refused connection or a 429 also pauses the whole endpoint for its backoff. An
endpoint none of whose attempts succeeded for WEBHOOK_DISABLE_AFTER_HOURS is turned off, audited,
and shown to admins on every admin page. Every attempt has the event's `webhook-id` and is
signed anew with the real time (signing.py); the connection goes to an address `addresses.resolve`
checked, with no proxy and no redirects followed, and reads back at most MAX_RESPONSE_BYTES. A
runner that stops between an answer and its record sends that event again: receivers drop
repeats by `webhook-id`.
"""

import logging
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import aliased

from app import audit, clock, jobs
from app.db.models import Job, WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.db.unit_of_work import rows_matched, write_transaction
from app.extensions import db
from app.webhooks import DELIVER, DISPATCH, addresses, signing

log = logging.getLogger(__name__)

BACKOFF = [timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=5)]
BACKOFF_MOST = timedelta(hours=10)
TAKE_EVENTS = 500  # new events a run reads at most
SEND_BATCH = 200  # attempts a run makes at most
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


def dispatch_soon(now: datetime) -> None:
    """One dispatch due shortly (in the caller's write transaction): a burst of changes shares it."""
    delay = timedelta(seconds=current_app.config["WEBHOOK_DISPATCH_SECONDS"])
    jobs.enqueue_once(DISPATCH, {}, key=DISPATCH, due_at=now + delay)


def deliver_lease(config) -> timedelta:
    """A run starts attempts for RUN_SECONDS; the last one may take its timeouts after that."""
    seconds = RUN_SECONDS + config["WEBHOOK_CONNECT_TIMEOUT"] + config["WEBHOOK_READ_TIMEOUT"]
    return timedelta(seconds=seconds + 60)


@jobs.kind(DISPATCH)
def dispatch(payload: dict, attempt: jobs.Attempt) -> None:
    """Each enabled endpoint behind the newest event gets its deliver job (due once its pause ends)."""
    now = clock.now()
    with write_transaction(durable=False) as session:  # lost to a crash: the prune job gives them theirs
        newest = session.scalar(sa.select(sa.func.max(WebhookEvent.id)))
        if newest is None:
            return
        behind = session.execute(
            sa.select(WebhookEndpoint.id, WebhookEndpoint.paused_until).where(
                WebhookEndpoint.enabled, WebhookEndpoint.position < newest
            )
        ).all()
        # In a few statements however many endpoints there are: callbacks wait for this write.
        jobs.enqueue_once_each(
            DELIVER,
            {
                endpoint_key(endpoint_id): ({"endpoint": endpoint_id}, max(now, paused_until or now))
                for endpoint_id, paused_until in behind
            },
        )


def deliveries_per_runner(config) -> int:
    return int(config["WEBHOOK_DELIVERY_THREADS"])


@jobs.kind(DELIVER, lease=deliver_lease, per_runner=deliveries_per_runner)
def deliver(payload: dict, attempt: jobs.Attempt) -> None:
    run(payload["endpoint"])


@dataclass(frozen=True)
class Endpoint:
    id: int
    url: str
    signing_secrets: list[str]
    events: frozenset[str]
    position: int
    paused_until: datetime | None


@dataclass(frozen=True)
class Ready:
    """A delivery to make: a pending one (`id`), or a new event's first (`id` None)."""

    id: int | None
    event_id: int
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


HELD = None  # the outcome of an event held behind its conversation: no attempt yet


@dataclass
class Run:
    """What one run did, recorded at its end in one write."""

    endpoint: Endpoint
    started: datetime
    outcomes: list[tuple[Ready, Outcome | None]] = field(default_factory=list)
    position: int = 0  # the last new event handled (sent, held or not taken)
    more: bool = False  # it stopped with work left that is due now


def run(endpoint_id: int) -> None:
    """One run of an endpoint's deliveries (see the module's steps)."""
    endpoint = current(endpoint_id)
    if endpoint is None:
        return  # deleted or turned off: its deliveries wait (or went with it)
    now = clock.now()
    this = Run(endpoint, now, position=endpoint.position)
    if endpoint.paused_until and endpoint.paused_until > now:
        this.more = True
        record(this)  # only its next run, once the pause is over
        return
    started = time.monotonic()
    waiting = pending_by_conversation(endpoint_id)  # a conversation's new events wait behind these
    blocked: set[int | None] = set()  # conversations whose event failed in this run
    stopped = False
    where: tuple[addresses.Target, list[str]] | Outcome | None = None  # looked up at the first attempt
    due = ready_deliveries(endpoint_id, now, SEND_BATCH)
    new, boundary = ([], endpoint.position) if len(due) >= SEND_BATCH else new_events(endpoint, now, TAKE_EVENTS)
    for ready in due + new:
        conversation = ready.conversation_id
        if ready.id is None and (conversation in blocked or (conversation is not None and waiting[conversation] > 0)):
            this.outcomes.append((ready, HELD))
            this.position = ready.event_id
            continue
        if conversation in blocked:
            continue
        if stopped or len(this.outcomes) >= SEND_BATCH or time.monotonic() - started > RUN_SECONDS:
            this.more = True
            break
        if where is None:
            where = destination(endpoint)
        outcome = attempt(endpoint, ready, where)
        this.outcomes.append((ready, outcome))
        if ready.id is None:
            this.position = ready.event_id
        elif conversation is not None and (outcome.delivered or not outcome.retry):
            waiting[conversation] -= 1  # settled: its conversation's next may go
        if not outcome.delivered:
            blocked.add(conversation)
            if outcome.pause:
                stopped = True
    else:
        this.position = boundary  # every event it read is handled, those of other types too
        this.more = len(new) == TAKE_EVENTS or len(due) >= SEND_BATCH
    record(this)


def current(endpoint_id: int) -> Endpoint | None:
    """The endpoint as a run needs it, with the secrets that sign now (the previous one too
    during its overlap); None when it is gone or off."""
    row = db.session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
    db.session.rollback()  # the read ends here
    if row is None or not row.enabled:
        return None
    valid = [row.secret]
    if row.previous_secret and row.previous_secret_until and row.previous_secret_until > clock.now():
        valid.append(row.previous_secret)
    return Endpoint(row.id, row.url, valid, frozenset(row.events.split()), row.position, row.paused_until)


def pending_by_conversation(endpoint_id: int) -> Counter:
    found = Counter(
        dict(
            db.session.execute(
                sa.select(WebhookDelivery.conversation_id, sa.func.count())
                .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
                .group_by(WebhookDelivery.conversation_id)
            ).all()
        )
    )
    db.session.rollback()
    return found


def new_events(endpoint: Endpoint, now: datetime, limit: int) -> tuple[list[Ready], int]:
    """The events after the endpoint's position of the types it takes, in commit order, and the
    position once they are handled: the newest event there was (ids follow commit order, so
    every event up to it has committed), or the last one read when there are more."""
    boundary = db.session.scalar(sa.select(sa.func.max(WebhookEvent.id))) or endpoint.position
    rows = db.session.execute(
        sa.select(WebhookEvent.id, WebhookEvent.conversation_id, WebhookEvent.uid, WebhookEvent.body)
        .where(
            WebhookEvent.id > endpoint.position,
            WebhookEvent.id <= boundary,
            WebhookEvent.type.in_(sorted(endpoint.events)),
        )
        .order_by(WebhookEvent.id)
        .limit(limit)
    ).all()
    db.session.rollback()
    if len(rows) == limit:
        boundary = rows[-1].id
    return [Ready(None, row.id, row.conversation_id, 0, now, row.uid, row.body) for row in rows], boundary


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
            WebhookDelivery.event_id,
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


def record(this: Run) -> None:
    """A run's outcomes (in the order they were made), its new position and its next run, in one
    write. Nothing of it when the endpoint went meanwhile; its outcomes but no next run when it
    is off now."""
    endpoint_id = this.endpoint.id
    now = clock.now()
    # Not flushed to disk on its own (durable=False): a crash that loses it sends those events
    # again, as a runner stopped before its record does.
    with write_transaction(durable=False) as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
        if endpoint is None:
            return
        rows = []
        for ready, outcome in this.outcomes:
            values = outcome_values(ready, outcome, now)
            if ready.id is None:
                rows.append(
                    {
                        "endpoint_id": endpoint_id,
                        "event_id": ready.event_id,
                        "conversation_id": ready.conversation_id,
                        "created_at": ready.created_at,
                        **values,
                    }
                )
            else:
                matched = rows_matched(
                    session.execute(
                        sa.update(WebhookDelivery)
                        .where(WebhookDelivery.id == ready.id, WebhookDelivery.status == "pending")
                        .values(**values)
                    )
                )
                if not matched:
                    continue  # deleted meanwhile (its event expired)
            if outcome is not HELD:
                count_outcome(endpoint, outcome, now)
        if rows:
            session.execute(sa.insert(WebhookDelivery), rows)
        if endpoint.position == this.endpoint.position:  # unless turned on again meanwhile (a new start)
            endpoint.position = max(endpoint.position, this.position)
        session.flush()
        if not endpoint.enabled:
            return
        # Events committed since it read them have their dispatch, which gives it its next run.
        due = now if this.more else next_ready_at(endpoint_id)
        if due is not None:
            schedule(endpoint_id, max(due, endpoint.paused_until or due, now))


def outcome_values(ready: Ready, outcome: Outcome | None, now: datetime) -> dict:
    if outcome is HELD:
        return {"status": "pending", "attempts": 0, "next_at": now}
    attempts = ready.attempts + 1
    values: dict = {
        "attempts": attempts,
        "last_attempt_at": now,
        "response_code": outcome.code,
        "error": outcome.error and outcome.error[:ERROR_LENGTH],
        "status": "pending",
        "next_at": now,
    }
    give_up_at = ready.created_at + timedelta(hours=current_app.config["WEBHOOK_RETRY_HOURS"])
    if outcome.delivered:
        values["status"] = "delivered"
    elif outcome.retry and now + backoff(attempts) <= give_up_at:
        values["next_at"] = now + backoff(attempts)
    else:
        values["status"] = "failed"
    return values


def count_outcome(endpoint: WebhookEndpoint, outcome: Outcome, now: datetime) -> None:
    """An attempt's mark on its endpoint: a success clears its failures; a failure counts, may
    pause it, and turns it off when nothing has succeeded for WEBHOOK_DISABLE_AFTER_HOURS."""
    if outcome.delivered:
        endpoint.failing_since, endpoint.failures, endpoint.paused_until = None, 0, None
        return
    endpoint.failures += 1
    endpoint.failing_since = endpoint.failing_since or now
    if outcome.pause:
        endpoint.paused_until = now + backoff(endpoint.failures)
    limit = timedelta(hours=current_app.config["WEBHOOK_DISABLE_AFTER_HOURS"])
    if endpoint.enabled and now - endpoint.failing_since >= limit:
        endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, "failing", now
        audit.record(
            "webhook_disabled",
            {"endpoint": endpoint.id, "failing_since": clock.utc_iso(endpoint.failing_since)},
            username=None,
            address=None,
        )
        log.warning(
            "webhook endpoint %d turned off: no delivery succeeded since %s", endpoint.id, endpoint.failing_since
        )


# --- one attempt over the network ------------------------------------------------------------------


def destination(endpoint: Endpoint) -> tuple[addresses.Target, list[str]] | Outcome:
    """Where a run's attempts go: the URL's parts and the addresses its name resolves to now, all
    checked (looked up once a run); or the outcome of every attempt when they may not be used."""
    try:
        allowed = addresses.allowed_networks(current_app.config["WEBHOOKS_ALLOWED_NETWORKS"])
        target = addresses.parse(endpoint.url)
        return target, addresses.resolve(target, allowed)
    except addresses.AddressRefused as refused:
        return Outcome(error=f"refused: {refused}", retry=True, pause=True)


def attempt(endpoint: Endpoint, ready: Ready, where: tuple[addresses.Target, list[str]] | Outcome) -> Outcome:
    """POST the event's body to the endpoint once; what came of it. No transaction is open."""
    config = current_app.config
    if isinstance(where, Outcome):
        return where
    target, ips = where
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
        return Outcome(code, "too many requests: the endpoint waits", retry=True, pause=True)
    if code >= 500:
        return Outcome(code, retry=True)
    return Outcome(code, "not tried again" + (": redirects are not followed" if code < 400 else ""))


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
KEEP_FINISHED_RUNS = timedelta(hours=1)


@jobs.kind("webhooks_prune", every=timedelta(hours=1))
def prune(payload: dict, attempt: jobs.Attempt) -> None:
    """Events older than WEBHOOK_EVENT_RETENTION_DAYS go, with their deliveries (in short
    batches: a write waiting behind this one waits for one batch at most), and the finished
    dispatch and deliver jobs of more than an hour ago; and any endpoint with work left gets its
    job, should one have been lost."""
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
        session.execute(  # runs that finished: nothing to show (the jobs page shows pending and dead ones)
            sa.delete(Job).where(
                Job.kind.in_((DISPATCH, DELIVER)), Job.state == "done", Job.finished_at < now - KEEP_FINISHED_RUNS
            )
        )
        pending = sa.select(WebhookDelivery.id).where(
            WebhookDelivery.endpoint_id == WebhookEndpoint.id, WebhookDelivery.status == "pending"
        )
        newest = session.scalar(sa.select(sa.func.max(WebhookEvent.id))) or 0
        for endpoint_id, paused_until in session.execute(
            sa.select(WebhookEndpoint.id, WebhookEndpoint.paused_until).where(
                WebhookEndpoint.enabled, pending.exists() | (WebhookEndpoint.position < newest)
            )
        ).all():
            schedule(endpoint_id, max(now, paused_until or now))
