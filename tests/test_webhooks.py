"""Webhooks: every event kind reaches a real receiver on 127.0.0.1, which checks each delivery with
the Standard Webhooks library; retries, ordering, rotation, refused addresses, disabling,
retention and erasure, at the test's clock (jobs run by `jobs.run_due`, no runner threads)."""

import base64
import json
import re
import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app import audit, jobs, webhooks
from app.contacts import optouts, owners, set_status
from app.db.models import AuditEvent, Job, User, WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.privacy import erasure, purge
from app.replies import delivery as reports
from app.webhooks import addresses, delivery, endpoints
from conftest import ONE_DATABASE, ROOT, AuthActions, close_app, conversation_of, create_tables, make_app
from helpers import CUSTOMER, deliver, send_reply

OTHER = "+37255500002"
ALL_TYPES = list(webhooks.EVENT_TYPES)


# --- a receiver --------------------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict
    body: bytes
    status: int

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 (a real HTTP server thread): answers `answers.pop(0)` while
    there are any, else `default`; keeps every request."""

    default: int = 204
    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.answers.pop(0) if receiver.answers else receiver.default
                receiver.received.append(Received(dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks?team=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def verified(self, secret: str) -> list[dict]:
        """Every body received, each checked with the Standard Webhooks library (raises if one fails)."""
        return [Webhook(secret).verify(request.body, request.headers) for request in self.received]

    def delivered(self) -> list[Received]:
        return [request for request in self.received if 200 <= request.status < 300]


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.stop()


@pytest.fixture
def hook_app(database_url, messente, user_row):
    """An app whose webhooks may reach 127.0.0.0/8 over http, at a clock the test moves
    (`app.moved(minutes=5)`), sending replies through the fake Messente."""
    now = {"moment": datetime(2026, 3, 2, 9, 0)}
    app = make_app(
        database_url,
        WEBHOOKS_ALLOWED_NETWORKS="127.0.0.0/8",
        WEBHOOK_CONNECT_TIMEOUT=1.0,
        WEBHOOK_READ_TIMEOUT=0.5,
        WEBHOOK_DISPATCH_SECONDS=0,  # dispatched at the test's clock, unmoved
        MESSENTE_API_URL=messente.url,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        MESSENTE_READ_TIMEOUT=0.5,
        MESSENTE_CONNECT_TIMEOUT=0.5,
        CLOCK=lambda: now["moment"].replace(tzinfo=UTC),
    )
    app.now = lambda: now["moment"]

    def moved(**delta):
        now["moment"] += timedelta(**delta)

    app.moved = moved
    with app.app_context():
        create_tables()
        user_row()
    yield app
    close_app(app)


def run_jobs(app) -> None:
    with app.app_context():
        jobs.run_due(app.now())


def next_delivery_due(app) -> datetime | None:
    """When the next webhook job is due (the other jobs' periods are minutes: skipped over)."""
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.min(Job.due_at)).where(
                Job.kind.in_([webhooks.DISPATCH, webhooks.DELIVER]), Job.state == "due"
            )
        )


def run_until(app, end: datetime) -> None:
    """Run the jobs as webhook jobs fall due, moving the clock from one due time to the next, up to `end`."""
    while True:
        run_jobs(app)
        due = next_delivery_due(app)
        if due is None or due > end:
            return
        app.moved(seconds=max((due - app.now()).total_seconds(), 0))


def subscribe(app, url: str, events=ALL_TYPES) -> tuple[int, str]:
    with app.app_context():
        endpoint, secret = endpoints.create_endpoint(url, events)
        return endpoint.id, secret


def conversation_id(app, sender: str = CUSTOMER) -> int:
    with app.app_context():
        return conversation_of(sender).id


def rows(app, model, *where) -> list:
    with app.app_context():
        found = list(db.session.scalars(sa.select(model).where(*where).order_by(model.id)))
        db.session.expunge_all()
        return found


# --- what arrives ----------------------------------------------------------------------------------


def test_every_event_kind_arrives_signed_with_its_data(hook_app, receiver, messente):
    endpoint_id, secret = subscribe(hook_app, receiver.url)
    person = AuthActions(hook_app.test_client())
    person.login()

    deliver(hook_app, text="Hello, is my order on its way?")  # conversation.created, message.created
    customer = conversation_id(hook_app)
    with hook_app.app_context():
        set_status(customer, "done")  # conversation.updated (status)
    deliver(hook_app, text="Still there?")  # message.created, conversation.updated (reopened)
    with hook_app.app_context():
        alice = db.session.scalar(sa.select(User.id).where(User.username == "alice"))
        owners.assign(customer, alice, None)  # conversation.updated (owner)
    send_reply(person.client, hook_app, "On its way!")  # message.created (outbound)
    run_jobs(hook_app)  # the reply is sent (message.updated: sending, sent) and the events delivered
    with hook_app.app_context():
        omnimessage_id = db.session.scalar(
            sa.select(sa.text("omnimessage_id")).select_from(sa.text("message")).where(sa.text("direction = 'out'"))
        )
        reports.apply_report(reports.Report(omnimessage_id, "DELIVRD", None))  # message.updated (delivery)
    deliver(hook_app, text="STOP")  # message.created, contact.opted_out
    deliver(hook_app, text="Start")  # message.created, contact.opted_in
    run_jobs(hook_app)

    bodies = receiver.verified(secret)
    assert [body["type"] for body in bodies] == [
        "conversation.created",
        "message.created",
        "conversation.updated",
        "message.created",
        "conversation.updated",
        "conversation.updated",
        "message.created",
        "message.updated",
        "message.updated",
        "message.updated",
        "message.created",
        "contact.opted_out",
        "message.created",
        "contact.opted_in",
    ]
    assert {body["type"] for body in bodies} == set(ALL_TYPES)
    # One webhook-id per event, all different; each body's time is the change's, RFC 3339 in UTC.
    ids = [request.headers["webhook-id"] for request in receiver.received]
    assert len(set(ids)) == len(ids)
    assert all(body["timestamp"] == "2026-03-02T09:00:00.000Z" for body in bodies)
    created, first = bodies[0]["data"], bodies[1]["data"]
    assert created == {
        "id": customer,
        "number": CUSTOMER,
        "name": None,
        "channel": "sms",
        "status": "open",
        "owner": None,
        "opted_out": False,
        "last_inbound_at": None,
        "labels": [],
        "snoozed_until": None,
        "snoozed_until_reply": False,
    }
    assert first | {"id": 0} == {
        "id": 0,
        "conversation_id": customer,
        "direction": "inbound",
        "channel": "sms",
        "text": "Hello, is my order on its way?",
        "sender": CUSTOMER,
        "recipient": "+37250000000",
        "status": None,
        "delivery": None,
        "problem": None,
        "author": None,
        "sent_at": "2024-06-01T08:00:00Z",
        "received_at": "2026-03-02T09:00:00Z",
        "price": None,
        "parts": None,
    }
    assert bodies[2]["data"]["status"] == "done" and bodies[2]["data"]["changed"] == ["status"]
    assert bodies[4]["data"]["status"] == "open" and bodies[4]["data"]["changed"] == ["status"]
    assert bodies[5]["data"]["owner"] == "alice" and bodies[5]["data"]["changed"] == ["owner"]
    reply = bodies[6]["data"]
    assert (reply["direction"], reply["text"], reply["status"], reply["author"]) == (
        "outbound",
        "On its way!",
        "queued",
        "alice",
    )
    assert [body["data"]["status"] for body in bodies[7:9]] == ["sending", "sent"]
    assert bodies[9]["data"]["delivery"] == "DELIVRD"
    assert bodies[11]["data"] | {"message_id": 0} == {
        "conversation_id": customer,
        "number": CUSTOMER,
        "by": "customer",
        "message_id": 0,
    }
    # docs/webhooks.md's sample bodies have the fields each type has.
    documented = {
        sample["type"]: sample
        for sample in map(
            json.loads, re.findall(r"```json\n(.*?)```", (ROOT / "docs" / "webhooks.md").read_text(), re.S)
        )
    }
    assert set(documented) == set(ALL_TYPES) - {"contact.opted_in"}  # shaped as contact.opted_out
    for body in bodies:
        sample = documented.get(body["type"], documented["contact.opted_out"])
        assert set(sample) == set(body) and set(sample["data"]) - {"changed"} == set(body["data"]) - {"changed"}
    # Every delivery's row says so.
    assert {row.status for row in rows(hook_app, WebhookDelivery)} == {"delivered"}
    assert all(row.attempts == 1 and row.response_code == 204 for row in rows(hook_app, WebhookDelivery))
    assert endpoint_id


def test_a_person_opting_a_customer_out_is_an_event_by_user(hook_app, receiver):
    _, secret = subscribe(hook_app, receiver.url, ["contact.opted_out", "contact.opted_in"])
    deliver(hook_app)
    with hook_app.app_context():
        alice = db.session.scalar(sa.select(User.id).where(User.username == "alice"))
        optouts.set_opted_out(conversation_id(hook_app), True, alice)
    run_jobs(hook_app)
    [body] = receiver.verified(secret)
    assert (body["type"], body["data"]["by"], body["data"]["message_id"]) == ("contact.opted_out", "user", None)


def test_only_the_types_subscribed_arrive_and_nothing_is_recorded_without_subscribers(hook_app, receiver):
    deliver(hook_app, text="before anyone subscribed")
    assert rows(hook_app, WebhookEvent) == []
    assert rows(hook_app, Job, Job.kind.like("webhooks_%")) == []
    _, secret = subscribe(hook_app, receiver.url, ["conversation.created"])
    deliver(hook_app, text="an existing conversation: no conversation.created")
    deliver(hook_app, sender=OTHER, text="a new one")
    run_jobs(hook_app)
    assert [(body["type"], body["data"]["number"]) for body in receiver.verified(secret)] == [
        ("conversation.created", OTHER)
    ]


def test_an_unknown_event_type_or_none_is_refused_with_a_clear_message(hook_app, receiver):
    with hook_app.app_context():
        with pytest.raises(ValueError, match="Unknown event type 'message.deleted'"):
            endpoints.create_endpoint(receiver.url, ["message.created", "message.deleted"])
        with pytest.raises(ValueError, match="at least one"):
            endpoints.create_endpoint(receiver.url, [])
        assert endpoints.listing() == []


# --- at least once, in order -----------------------------------------------------------------------


def test_after_the_receiver_answered_500s_for_a_while_everything_arrives_once_in_order(hook_app, receiver):
    _, secret = subscribe(hook_app, receiver.url, ["message.created"])
    receiver.default = 500
    for n in range(3):
        deliver(hook_app, text=f"first {n}")
        deliver(hook_app, sender=OTHER, text=f"second {n}")
    run_jobs(hook_app)
    # One attempt per conversation: the rest of each waits behind its first.
    assert sorted(request.json["data"]["text"] for request in receiver.received) == ["first 0", "second 0"]
    for minutes in (0.1, 5, 30, 120):  # the backoff: 5 s, 5 min, 30 min, 2 h
        hook_app.moved(minutes=minutes)
        run_jobs(hook_app)
    assert len(receiver.received) == 2 * 5
    receiver.default = 204
    hook_app.moved(hours=5)
    run_jobs(hook_app)

    receiver.verified(secret)  # every attempt, failed ones too, is signed
    by_id = defaultdict(set)
    for request in receiver.received:
        by_id[request.headers["webhook-id"]].add(request.json["data"]["text"])
    assert len(by_id) == 6 and all(len(texts) == 1 for texts in by_id.values())  # an id is one event
    delivered = [request.json["data"]["text"] for request in receiver.delivered()]
    assert sorted(delivered) == sorted(f"{who} {n}" for who in ("first", "second") for n in range(3))
    for who in ("first", "second"):
        assert [text for text in delivered if text.startswith(who)] == [f"{who} {n}" for n in range(3)]
    assert [row.attempts for row in rows(hook_app, WebhookDelivery) if row.status == "delivered"] == [6, 6, 1, 1, 1, 1]
    hook_app.moved(days=4)
    run_jobs(hook_app)
    assert len(receiver.delivered()) == 6  # delivered once, never again


def test_a_timeout_is_tried_again_and_pauses_the_endpoint(hook_app):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections into its backlog, never answers
    try:
        endpoint_id, _ = subscribe(hook_app, f"http://127.0.0.1:{silent.getsockname()[1]}/", ["message.created"])
        deliver(hook_app)
        deliver(hook_app, sender=OTHER)
        run_jobs(hook_app)
    finally:
        silent.close()
    [first] = rows(hook_app, WebhookDelivery)
    assert (first.status, first.attempts, first.error) == ("pending", 1, "timed out")
    [endpoint] = rows(hook_app, WebhookEndpoint)
    assert endpoint.position == first.event_id  # paused: the other conversation's event waits too
    assert endpoint.paused_until == hook_app.now() + timedelta(seconds=5)
    with hook_app.app_context():
        [job] = db.session.scalars(sa.select(Job).where(Job.key == f"webhook:{endpoint_id}", Job.state == "due"))
        assert job.due_at == hook_app.now() + timedelta(seconds=5)


def test_no_retry_after_a_400(hook_app, receiver):
    subscribe(hook_app, receiver.url, ["message.created"])
    receiver.answers = [400]
    deliver(hook_app, text="refused")
    deliver(hook_app, text="next")
    run_jobs(hook_app)
    hook_app.moved(days=3)
    run_jobs(hook_app)
    assert [(request.json["data"]["text"], request.status) for request in receiver.received] == [
        ("refused", 400),
        ("next", 204),
    ]
    first, second = rows(hook_app, WebhookDelivery)
    assert (first.status, first.attempts, first.response_code) == ("failed", 1, 400)
    assert (second.status, second.attempts) == ("delivered", 1)


def test_429_and_5xx_are_tried_again_with_backoff_then_given_up_after_three_days(hook_app, receiver):
    subscribe(hook_app, receiver.url, ["message.created"])
    receiver.answers = [429, 503]
    receiver.default = 502
    deliver(hook_app)
    start = hook_app.now()
    run_jobs(hook_app)
    hook_app.moved(seconds=4)
    run_jobs(hook_app)
    assert len(receiver.received) == 1  # not before the 5 s pause
    [endpoint] = rows(hook_app, WebhookEndpoint)
    assert endpoint.paused_until == start + timedelta(seconds=5)  # a 429 pauses the endpoint
    hook_app.moved(seconds=1)
    run_jobs(hook_app)
    assert [request.status for request in receiver.received] == [429, 503]
    [row] = rows(hook_app, WebhookDelivery)
    assert row.next_at == hook_app.now() + timedelta(minutes=5)
    attempts_at = []
    while (due := next_delivery_due(hook_app)) is not None:
        hook_app.moved(seconds=(due - hook_app.now()).total_seconds())
        before = len(receiver.received)
        run_jobs(hook_app)
        if len(receiver.received) > before:
            attempts_at.append(hook_app.now() - start)
    [row] = rows(hook_app, WebhookDelivery)
    assert (row.status, row.response_code) == ("failed", 502)
    hours = [round(moment.total_seconds() / 3600, 1) for moment in attempts_at]
    assert hours == [0.1, 0.6, 2.6, 7.6, 17.6, 27.6, 37.6, 47.6, 57.6, 67.6]  # then 10 h more is past 72 h
    assert row.attempts == 12


def test_an_endpoint_failing_for_days_is_turned_off_and_admins_are_told(hook_app, receiver, client):
    endpoint_id, _ = subscribe(hook_app, receiver.url, ["message.created"])
    receiver.default = 500
    deliver(hook_app, text="one")
    start = hook_app.now()
    run_until(hook_app, start + timedelta(days=5))
    hook_app.moved(seconds=(start + timedelta(days=5) - hook_app.now()).total_seconds())
    [endpoint] = rows(hook_app, WebhookEndpoint)
    assert endpoint.enabled  # the event was given up after three days; nothing tried since
    deliver(hook_app, text="two")
    run_jobs(hook_app)
    [endpoint] = rows(hook_app, WebhookEndpoint)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "failing")
    with hook_app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "webhook_disabled"))
        assert audit.details_of(event)["endpoint"] == endpoint_id and event.username is None
    seen = len(receiver.received)
    deliver(hook_app, text="three")
    hook_app.moved(hours=1)
    run_jobs(hook_app)
    assert len(receiver.received) == seen  # off: nothing is sent
    admin = AuthActions(hook_app.test_client())
    admin.login()
    for page in ("/admin/users", "/admin/webhooks"):
        text = " ".join(re.sub("<[^>]+>", "", admin.client.get(page).text).split())
        assert f"1 webhook endpoint was turned off after failing for days: {receiver.url}" in text
    # Turned on again by an admin, it starts from now and the banner goes.
    receiver.default = 204
    with hook_app.app_context():
        assert endpoints.set_enabled(endpoint_id, True)
    deliver(hook_app, text="four")
    run_jobs(hook_app)
    assert receiver.delivered()[-1].json["data"]["text"] == "four"
    assert "turned off after failing" not in admin.client.get("/admin/users").text


# --- signatures ------------------------------------------------------------------------------------


def test_a_rotated_secret_signs_beside_the_new_one_for_the_overlap(hook_app, receiver):
    endpoint_id, old = subscribe(hook_app, receiver.url, ["message.created"])
    with hook_app.app_context():
        new = endpoints.rotate_secret(endpoint_id)
    assert new != old and new.startswith("whsec_") and len(base64.b64decode(new.removeprefix("whsec_"))) == 32
    deliver(hook_app, text="during the overlap")
    run_jobs(hook_app)
    [during] = receiver.received
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(during.body, during.headers)["data"]["text"] == "during the overlap"
    hook_app.moved(hours=24, seconds=1)
    deliver(hook_app, text="after it")
    run_jobs(hook_app)
    after = receiver.received[-1]
    assert Webhook(new).verify(after.body, after.headers)["data"]["text"] == "after it"
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


def test_every_attempt_is_signed_at_the_real_time_with_the_same_id(hook_app, receiver):
    _, secret = subscribe(hook_app, receiver.url, ["message.created"])
    receiver.answers = [500]
    deliver(hook_app)
    run_jobs(hook_app)
    hook_app.moved(hours=1)  # the app's clock moves; the signature's time is the real one
    run_jobs(hook_app)
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert [body["data"]["text"] for body in receiver.verified(secret)] == ["Tere!"] * 2
    assert abs(int(second.headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60


# --- where deliveries may go --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://localhost:8080/hooks", r"resolves to (127\.0\.0\.1|::1)"),
        ("https://127.0.0.1/hooks", "not on the public internet"),
        ("https://10.1.2.3/hooks", "not on the public internet"),
        ("https://100.64.0.1/hooks", "not on the public internet"),
        ("https://[::ffff:127.0.0.1]/hooks", "not on the public internet"),
        ("https://[::1]/hooks", "not on the public internet"),
        ("https://169.254.169.254/latest/meta-data", "not on the public internet"),
        ("http://93.184.216.34/hooks", "starts with https://"),
        ("ftp://93.184.216.34/hooks", "starts with https://"),
        ("https://user:secret@93.184.216.34/hooks", "no user name or password"),
        ("https:///hooks", "names a host"),
        ("not-a-url", "starts with https://"),
    ],
)
@ONE_DATABASE
def test_a_url_that_may_not_be_reached_is_refused_when_subscribed(app, url, words):
    with app.app_context():
        with pytest.raises(ValueError, match=words):
            endpoints.create_endpoint(url, ["message.created"])
        endpoint, secret = endpoints.create_endpoint("https://93.184.216.34/hooks", ["message.created"])
        assert endpoint.url == "https://93.184.216.34/hooks" and secret.startswith("whsec_")


def test_allowed_networks_admit_their_addresses_and_plain_http_to_them():
    allowed = addresses.allowed_networks("127.0.0.0/8, 10.0.0.0/8")
    assert addresses.resolve(addresses.parse("http://127.0.0.1:9/x"), allowed) == ["127.0.0.1"]
    assert addresses.resolve(addresses.parse("http://[::ffff:10.0.0.7]:9/x"), allowed) == ["::ffff:10.0.0.7"]
    assert addresses.resolve(addresses.parse("https://93.184.216.34/x"), allowed) == ["93.184.216.34"]
    with pytest.raises(addresses.AddressRefused):
        addresses.resolve(addresses.parse("http://192.168.1.1/x"), allowed)


def test_nothing_is_delivered_to_a_private_address_outside_the_allowed_networks(hook_app, receiver):
    """The address is checked at each delivery, on what the name resolves to then: a URL
    subscribed while allowed, or a name that resolves to 127.0.0.1, reaches nothing."""
    endpoint_id, _ = subscribe(hook_app, receiver.url, ["message.created"])
    port = receiver.server.server_address[1]
    other_id, _ = subscribe(hook_app, receiver.url, ["message.created"])
    with hook_app.app_context(), write_transaction():
        db.session.get(WebhookEndpoint, other_id).url = f"http://localhost:{port}/hooks"
    hook_app.config["WEBHOOKS_ALLOWED_NETWORKS"] = ""
    deliver(hook_app)
    run_jobs(hook_app)
    assert receiver.received == []
    refused = r"refused: (127\.0\.0\.1|localhost) resolves to (127\.0\.0\.1|::1), which is not on the public internet"
    for row in rows(hook_app, WebhookDelivery):
        assert row.status == "pending" and row.attempts == 1 and row.response_code is None
        assert re.match(refused, row.error), row.error
    # Allowed again (an admin's change of WEBHOOKS_ALLOWED_NETWORKS), both arrive.
    hook_app.config["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8,::1/128"
    hook_app.moved(seconds=5)
    run_jobs(hook_app)
    assert len(receiver.delivered()) == 2
    assert endpoint_id != other_id


def test_an_answer_is_read_no_further_than_its_status_line():
    assert delivery.status_code(b"HTTP/1.1 204 No Content\r\n") == 204
    assert delivery.status_code(b"HTTP/1.0 503 x\r\nRetry-After: 5\r\n\r\n") == 503
    for bad in (b"", b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 20 x\r\n", b"HTTP/1.1 abc\r\n"):
        with pytest.raises(ValueError):
            delivery.status_code(bad)


# --- keeping and erasing -----------------------------------------------------------------------------


def test_erasure_deletes_the_conversations_events_and_their_deliveries(hook_app, receiver):
    subscribe(hook_app, receiver.url)
    deliver(hook_app, text="erase me")
    deliver(hook_app, sender=OTHER, text="keep me")
    run_jobs(hook_app)
    customer = conversation_id(hook_app)
    assert {row.conversation_id for row in rows(hook_app, WebhookEvent)} == {customer, conversation_id(hook_app, OTHER)}
    with hook_app.app_context():
        erasure.erase_conversation(customer)
    events = rows(hook_app, WebhookEvent)
    assert {row.conversation_id for row in events} == {conversation_id(hook_app, OTHER)}
    assert {row.event_id for row in rows(hook_app, WebhookDelivery)} == {event.id for event in events}
    assert all("erase me" not in event.body and CUSTOMER not in event.body for event in events)


def test_the_retention_purge_takes_the_events_of_what_it_deletes(hook_app, receiver):
    subscribe(hook_app, receiver.url)
    deliver(hook_app, text="old")
    run_jobs(hook_app)
    hook_app.moved(days=3)
    deliver(hook_app, sender=OTHER, text="new")
    run_jobs(hook_app)
    with hook_app.app_context():
        purge.purge(hook_app.now(), days=2, audit_days=None)
    events = rows(hook_app, WebhookEvent)
    assert {event.conversation_id for event in events} == {conversation_id(hook_app, OTHER)}
    assert {row.event_id for row in rows(hook_app, WebhookDelivery)} == {event.id for event in events}


def test_events_are_kept_for_the_configured_days(hook_app, receiver):
    subscribe(hook_app, receiver.url, ["message.created"])
    deliver(hook_app, text="old")
    run_jobs(hook_app)
    hook_app.moved(days=6)
    deliver(hook_app, text="newer")
    run_jobs(hook_app)
    hook_app.moved(days=1, hours=1)  # "old" is 7 days and an hour old: the next prune takes it
    run_jobs(hook_app)
    assert [json.loads(row.body)["data"]["text"] for row in rows(hook_app, WebhookEvent)] == ["newer"]
    assert len(rows(hook_app, WebhookDelivery)) == 1


# --- the admin page ----------------------------------------------------------------------------------


def form(actions: AuthActions, **fields) -> dict:
    return {"csrf_token": actions.csrf("/admin/webhooks"), **fields}


def test_an_admin_subscribes_sees_the_secret_once_and_deliveries_and_sends_again(hook_app, receiver):
    admin = AuthActions(hook_app.test_client())
    admin.login()
    response = admin.client.post(
        "/admin/webhooks", data=form(admin, url=receiver.url, events=["message.created", "contact.opted_out"])
    )
    assert response.status_code == 200
    secret = response.text.split('<code class="webhook-secret">', 1)[1].split("<", 1)[0]
    assert secret.startswith("whsec_") and "not shown again" in response.text
    assert secret not in admin.client.get("/admin/webhooks").text
    [endpoint] = rows(hook_app, WebhookEndpoint)
    assert endpoint.events == "contact.opted_out message.created"

    receiver.answers = [400]
    deliver(hook_app, text="answered 400")
    run_jobs(hook_app)
    page = admin.client.get("/admin/webhooks").text
    assert "message.created" in page and "Failed" in page and "400 not tried again" in page
    [row] = rows(hook_app, WebhookDelivery)
    response = admin.client.post(f"/admin/webhooks/{endpoint.id}/deliveries/{row.id}/send-again", data=form(admin))
    assert response.status_code == 303
    run_jobs(hook_app)
    assert [request.status for request in receiver.received] == [400, 204]
    assert len({request.headers["webhook-id"] for request in receiver.received}) == 1
    Webhook(secret).verify(receiver.received[-1].body, receiver.received[-1].headers)
    page = admin.client.get("/admin/webhooks").text
    assert "Delivered" in page

    rotated = admin.client.post(f"/admin/webhooks/{endpoint.id}/rotate", data=form(admin))
    assert "whsec_" in rotated.text and secret not in rotated.text and "also signs until" in rotated.text
    off = admin.client.post(f"/admin/webhooks/{endpoint.id}/enabled", data=form(admin, on="0"))
    assert off.status_code == 303 and not rows(hook_app, WebhookEndpoint)[0].enabled
    assert "Delete this endpoint and its deliveries" in admin.client.get("/admin/webhooks").text
    gone = admin.client.post(f"/admin/webhooks/{endpoint.id}/delete", data=form(admin))
    assert gone.status_code == 303 and rows(hook_app, WebhookEndpoint) == rows(hook_app, WebhookDelivery) == []
    with hook_app.app_context():
        actions = list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))
    assert [action for action in actions if action.startswith("webhook")] == [
        "webhook_added",
        "webhook_resent",
        "webhook_changed",
        "webhook_changed",
        "webhook_removed",
    ]


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"url": "http://localhost/hooks", "events": ["message.created"]}, "resolves to"),
        ({"url": "https://93.184.216.34/", "events": ["message.deleted"]}, "Unknown event type"),
        ({"url": "https://93.184.216.34/", "events": []}, "Choose at least one event type."),
    ],
)
def test_a_refused_subscription_is_the_forms_error(app, admin, fields, words):
    response = admin.client.post("/admin/webhooks", data=form(admin, **fields))
    assert response.status_code == 400
    assert words in response.text and "webhook-secret" not in response.text
    with app.app_context():
        assert endpoints.listing() == []


def test_agents_may_not_use_the_webhooks_page(app, agent):
    assert agent.client.get("/admin/webhooks").status_code == 403
    response = agent.client.post(
        "/admin/webhooks",
        data={"csrf_token": agent.csrf(), "url": "https://93.184.216.34/", "events": ["message.created"]},
    )
    assert response.status_code == 403
    with app.app_context():
        assert endpoints.listing() == []


def test_an_endpoint_that_runs_often_keeps_one_job_row(hook_app, receiver):
    endpoint_id, _ = subscribe(hook_app, receiver.url, ["message.created"])
    for n in range(5):
        deliver(hook_app, text=f"message {n}")
        run_jobs(hook_app)
    assert len(receiver.delivered()) == 5
    with hook_app.app_context():
        keys = list(db.session.scalars(sa.select(Job.key).where(Job.kind.in_([webhooks.DISPATCH, webhooks.DELIVER]))))
    assert sorted(keys) == sorted([webhooks.DISPATCH, f"webhook:{endpoint_id}"])


def test_notes_labels_and_snooze_arrive_as_their_events(hook_app, receiver):
    """A note is a message.created with direction "note"; a label put on and a snooze (and its
    wake at its time) are conversation.updated naming what changed, with the labels and the
    snooze in the data."""
    from app.contacts import labels, snooze
    from app.replies import notes

    deliver(hook_app, text="Where is my refund?")
    customer = conversation_id(hook_app)
    endpoint_id, secret = subscribe(hook_app, receiver.url, ["message.created", "conversation.updated"])
    with hook_app.app_context():
        alice = db.session.scalar(sa.select(User.id).where(User.username == "alice"))
        notes.add_note(customer, "Refund approved, tell her Monday", alice, "k" * 20)
        labels.add_to(customer, labels.create("Refund", "red"))
        snooze.snooze(customer, hook_app.now() + timedelta(hours=1), False, alice)
    run_jobs(hook_app)
    hook_app.moved(hours=1)
    run_until(hook_app, hook_app.now() + timedelta(minutes=1))

    bodies = receiver.verified(secret)
    assert [(body["type"], body["data"].get("changed")) for body in bodies] == [
        ("message.created", None),
        ("conversation.updated", ["labels"]),
        ("conversation.updated", ["snooze"]),
        ("conversation.updated", ["snooze"]),
    ]
    note, labelled, snoozed, woke = (body["data"] for body in bodies)
    assert (note["direction"], note["text"]) == ("note", "Refund approved, tell her Monday")
    assert labelled["labels"] == ["Refund"]
    assert snoozed["snoozed_until"] == "2026-03-02T10:00:00Z" and woke["snoozed_until"] is None


def test_a_token_with_admin_subscribes_through_the_api_and_its_secret_verifies(hook_app, receiver):
    """POST /api/v1/webhooks answers 201 with the endpoint and its secret (once), which verifies
    what arrives; refused addresses and unknown event types are 422s naming the field; a token
    without `admin` gets 403; rotating answers a new secret; DELETE stops deliveries."""
    from app.api import tokens

    with hook_app.app_context():
        admin = {"Authorization": "Bearer " + tokens.create_token("ops", ["read", "send", "admin"])[1]}
        sender = {"Authorization": "Bearer " + tokens.create_token("shop", ["read", "send"])[1]}
    api = hook_app.test_client()
    body = {"url": receiver.url, "events": ["message.created"]}
    assert api.post("/api/v1/webhooks", json=body, headers=sender).status_code == 403

    private = api.post("/api/v1/webhooks", json=body | {"url": "https://10.1.2.3/hooks"}, headers=admin)
    assert private.status_code == 422 and private.json["errors"][0]["field"] == "url"
    unknown = api.post("/api/v1/webhooks", json=body | {"events": ["message.deleted"]}, headers=admin)
    assert unknown.status_code == 422 and unknown.mimetype == "application/problem+json"

    created = api.post("/api/v1/webhooks", json=body, headers=admin)
    assert created.status_code == 201
    endpoint, secret = created.json["id"], created.json["secret"]
    assert secret.startswith("whsec_") and created.json["events"] == ["message.created"]
    assert "secret" not in api.get(f"/api/v1/webhooks/{endpoint}", headers=admin).json

    deliver(hook_app, text="Hello")
    run_jobs(hook_app)
    assert [body["data"]["text"] for body in receiver.verified(secret)] == ["Hello"]

    rotated = api.post(f"/api/v1/webhooks/{endpoint}/rotate", headers=admin)
    assert rotated.status_code == 200 and rotated.json["secret"] not in ("", secret)
    off = api.patch(f"/api/v1/webhooks/{endpoint}", json={"enabled": False}, headers=admin)
    assert off.status_code == 200 and off.json["enabled"] is False
    assert api.delete(f"/api/v1/webhooks/{endpoint}", headers=admin).status_code == 204
    assert api.get(f"/api/v1/webhooks/{endpoint}", headers=admin).status_code == 404


def test_a_dispatch_to_many_endpoints_takes_as_few_statements_as_to_one(hook_app, receiver):
    """Callbacks wait for the dispatch's write: its statements do not grow with the endpoints
    (with a hundred, one each made it hold the write lock for half a second on a busy machine)."""

    def dispatch_statements() -> int:
        deliver(hook_app, text="a message")
        statements: list[str] = []
        with hook_app.app_context():
            engine = db.engine

            def count(conn, cursor, statement, *args):
                statements.append(statement)

            sa.event.listen(engine, "before_cursor_execute", count)
            try:
                delivery.dispatch({}, jobs.Attempt(0, 1, hook_app.now(), hook_app.now()))
            finally:
                sa.event.remove(engine, "before_cursor_execute", count)
            db.session.remove()
        run_jobs(hook_app)
        return len(statements)

    subscribe(hook_app, receiver.url, ["message.created"])
    run_jobs(hook_app)
    alone = dispatch_statements()
    for n in range(30):
        subscribe(hook_app, f"{receiver.url}&n={n}", ["message.created"])
    assert dispatch_statements() == alone + 1  # one INSERT of the 30 new deliver jobs besides
    assert dispatch_statements() == alone  # all 31 finished rows due again at once
    with hook_app.app_context():
        deliver_rows = db.session.scalar(sa.select(sa.func.count()).where(Job.kind == webhooks.DELIVER))
    assert deliver_rows == 31
