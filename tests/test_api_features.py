"""/api/v1 for notes, send later, new messages, snooze and labels: the web's rules through a
token, on both databases, through the fake Messente API at a clock the test moves (the jobs run by
`jobs.run_due`; no runner threads, nothing sleeps)."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import jobs
from app.api import tokens
from app.db.models import Mention
from app.extensions import db
from conftest import AuthActions, close_app, conversation_of, create_tables, make_app
from helpers import CUSTOMER, deliver, replies_in, thread_path, user_id

START = datetime(2026, 3, 2, 10, 0)  # a Monday, 10:00 UTC
NEW_NUMBER = "+37255577003"
PROBLEM = "application/problem+json"


@pytest.fixture
def clocked(database_url, messente, user_row):
    """An app sending through the fake Messente at a clock the test moves; alice and bob in it,
    one conversation (CUSTOMER's)."""
    now = {"moment": START}
    app = make_app(
        database_url,
        MESSENTE_API_URL=messente.url,
        MESSENTE_SMS_SENDER="Shop",
        MESSENTE_READ_TIMEOUT=0.5,
        MESSENTE_CONNECT_TIMEOUT=0.5,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        TEAM_TIME_ZONE="Europe/Tallinn",
        API_RATE_LIMIT=1000,
        CLOCK=lambda: now["moment"].replace(tzinfo=UTC),
    )
    app.now = now
    with app.app_context():
        create_tables()
        user_row()
        user_row("bob", role="agent")
    deliver(app, text="Is my parcel on its way?")
    yield app
    close_app(app)


def run_at(app, moment: datetime) -> None:
    app.now["moment"] = moment
    with app.app_context():
        jobs.run_due(moment)
        db.session.remove()


def token(app, name: str = "crm", scopes: tuple = ("read", "send")) -> dict:
    with app.app_context():
        secret = tokens.create_token(name, list(scopes))[1]
    return {"Authorization": f"Bearer {secret}"}


def conversation_id(app, sender: str = CUSTOMER) -> int:
    with app.app_context():
        return conversation_of(sender).id


def texts_sent(messente) -> list[str]:
    return [request.json["messages"][0]["text"] for request in messente.requests]


# --- notes -------------------------------------------------------------------------------


def test_a_note_by_a_token_is_stored_as_the_tokens_mentions_and_is_never_sent(clocked, messente):
    headers, conversation = token(clocked), conversation_id(clocked)
    client = clocked.test_client()
    answer = client.post(
        f"/api/v1/conversations/{conversation}/messages",
        json={"kind": "note", "text": "@bob please call them back"},
        headers=headers,
    )
    assert answer.status_code == 201, answer.json
    assert answer.json["direction"] == "note" and answer.json["author"] == "API: crm"
    assert answer.json["status"] is None and answer.json["text"] == "@bob please call them back"
    run_at(clocked, START + timedelta(hours=1))
    assert messente.requests == [] and replies_in(clocked) == []
    with clocked.app_context():
        assert db.session.scalars(sa.select(Mention.user_id)).all() == [user_id(clocked, "bob")]
    thread = client.get(f"/api/v1/conversations/{conversation}/messages", headers=headers).json["messages"]
    assert [(m["direction"], m["author"]) for m in thread] == [("in", None), ("note", "API: crm")]
    person = clocked.test_client()
    assert AuthActions(person).login().status_code == 302
    assert "API: crm" in person.get(thread_path(clocked)).get_data(as_text=True)  # the note's author on the web


def test_a_note_is_refused_without_the_send_scope_or_text_or_with_a_time(clocked):
    conversation = conversation_id(clocked)
    path = f"/api/v1/conversations/{conversation}/messages"
    client = clocked.test_client()
    reader = token(clocked, "reader", ("read",))
    assert client.post(path, json={"kind": "note", "text": "hi"}, headers=reader).status_code == 403
    sender = token(clocked)
    assert client.post(path, json={"kind": "note", "text": "   "}, headers=sender).status_code == 422
    later = (START + timedelta(hours=1)).isoformat() + "Z"
    answer = client.post(path, json={"kind": "note", "text": "x", "send_at": later}, headers=sender)
    assert answer.status_code == 409 and answer.json["type"].endswith("/refused")


# --- send later --------------------------------------------------------------------------


def schedule(app, headers: dict, at: str, text: str = "See you tomorrow"):
    return app.test_client().post(
        f"/api/v1/conversations/{conversation_id(app)}/messages",
        json={"kind": "reply", "text": text, "send_at": at},
        headers=headers,
    )


def test_a_reply_scheduled_through_the_api_is_sent_once_at_its_time_as_the_tokens(clocked, messente):
    headers = token(clocked)
    answer = schedule(clocked, headers, "2026-03-02T14:00:00+02:00")  # 12:00 UTC
    assert answer.status_code == 201, answer.json
    assert answer.json["status"] == "scheduled" and answer.json["author"] == "API: crm"
    person = clocked.test_client()
    assert AuthActions(person).login().status_code == 302
    waiting = person.get(thread_path(clocked)).get_data(as_text=True)
    assert "See you tomorrow" in waiting and "API: crm" in waiting  # the thread's waiting message is the token's
    run_at(clocked, START + timedelta(hours=1))
    assert messente.requests == []
    run_at(clocked, START + timedelta(hours=2))
    run_at(clocked, START + timedelta(hours=2, minutes=1))
    assert texts_sent(messente) == ["See you tomorrow"]
    [reply] = replies_in(clocked)
    assert reply.status == "sent" and reply.api_token_id is not None and reply.author_id is None
    thread = (
        clocked.test_client()
        .get(f"/api/v1/conversations/{conversation_id(clocked)}/messages", headers=headers)
        .json["messages"]
    )
    assert thread[-1]["author"] == "API: crm" and thread[-1]["status"] == "sent"


def test_a_time_past_or_too_far_or_without_an_offset_is_refused(clocked, messente):
    headers = token(clocked)
    past = schedule(clocked, headers, "2026-03-02T09:00:00Z")  # valid a while ago: the time refuses it
    assert past.status_code == 409 and past.json["errors"][0]["field"] == "send_at"
    assert schedule(clocked, headers, "2027-03-04T10:00:00Z").status_code == 409  # over a year ahead
    assert schedule(clocked, headers, "2026-03-02T14:00:00").status_code == 422  # no offset
    run_at(clocked, START + timedelta(days=1))
    assert messente.requests == []


def test_a_scheduled_message_cancelled_through_the_api_is_never_sent(clocked, messente):
    headers = token(clocked)
    client = clocked.test_client()
    scheduled_id = schedule(clocked, headers, "2026-03-02T11:00:00Z").json["id"]
    assert client.delete(f"/api/v1/messages/{scheduled_id}", headers=token(clocked, "r", ("read",))).status_code == 403
    assert client.delete(f"/api/v1/messages/{scheduled_id}", headers=headers).status_code == 204
    assert client.delete(f"/api/v1/messages/{scheduled_id}", headers=headers).status_code == 409
    run_at(clocked, START + timedelta(hours=2))
    assert messente.requests == []
    assert client.delete("/api/v1/messages/999999", headers=headers).status_code == 404


def test_a_scheduled_message_on_its_way_or_sent_cannot_be_cancelled(clocked, messente):
    headers = token(clocked)
    client = clocked.test_client()
    scheduled_id = schedule(clocked, headers, "2026-03-02T11:00:00Z").json["id"]
    run_at(clocked, START + timedelta(hours=1))
    run_at(clocked, START + timedelta(hours=1, minutes=1))
    assert texts_sent(messente) == ["See you tomorrow"]
    answer = client.delete(f"/api/v1/messages/{scheduled_id}", headers=headers)
    assert answer.status_code == 409 and answer.json["type"].endswith("/refused")
    [reply] = replies_in(clocked)
    assert client.delete(f"/api/v1/messages/{reply.id}", headers=headers).status_code == 409


# --- new messages ------------------------------------------------------------------------


def test_a_new_message_through_the_api_starts_a_conversation_and_is_sent_once(clocked, messente):
    headers = {**token(clocked), "Idempotency-Key": "order-1"}
    client = clocked.test_client()
    body = {"to": "+372 5557 7003", "text": "Your order is ready", "channel": "sms"}
    answer = client.post("/api/v1/messages", json=body, headers=headers)
    assert answer.status_code == 201, answer.json
    again = client.post("/api/v1/messages", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotency-Replayed"] == "true"
    assert again.json == answer.json
    assert answer.json["recipient"] == NEW_NUMBER and answer.json["author"] == "API: crm"
    assert answer.json["conversation_id"] == conversation_id(clocked, NEW_NUMBER)
    run_at(clocked, START)
    assert texts_sent(messente) == ["Your order is ready"]
    conversation = client.get(f"/api/v1/conversations/{answer.json['conversation_id']}", headers=headers).json
    assert conversation["assignee_id"] is None  # a token owns nothing


def test_a_new_message_to_the_existing_conversation_later(clocked, messente):
    headers = token(clocked)
    body = {"to": CUSTOMER, "text": "Reminder", "channel": "sms", "send_at": "2026-03-02T14:00:00+02:00"}
    answer = clocked.test_client().post("/api/v1/messages", json=body, headers=headers)
    assert answer.status_code == 201, answer.json
    assert answer.json["status"] == "scheduled" and answer.json["conversation_id"] == conversation_id(clocked)
    run_at(clocked, START + timedelta(minutes=1))
    assert messente.requests == []


def test_a_new_message_to_no_number_or_an_opted_out_one_is_refused(clocked, messente):
    headers = token(clocked)
    client = clocked.test_client()
    answer = client.post("/api/v1/messages", json={"to": "call me", "text": "Hi", "channel": "sms"}, headers=headers)
    assert answer.status_code == 422 and answer.content_type == PROBLEM
    answer = client.post("/api/v1/messages", json={"to": "+1", "text": "Hi", "channel": "sms"}, headers=headers)
    assert answer.status_code == 422
    answer = client.post("/api/v1/messages", json={"to": "+0000", "text": "Hi", "channel": "sms"}, headers=headers)
    assert answer.status_code == 409 and answer.json["errors"][0]["field"] == "to"
    deliver(clocked, text="STOP")
    answer = client.post("/api/v1/messages", json={"to": CUSTOMER, "text": "Hi", "channel": "sms"}, headers=headers)
    assert answer.status_code == 409 and answer.json["type"].endswith("/refused")
    answer = client.post("/api/v1/messages", json={"to": NEW_NUMBER, "text": "Hi", "channel": "viber"}, headers=headers)
    assert answer.status_code == 409  # no Viber sender set up
    run_at(clocked, START + timedelta(hours=1))
    assert messente.requests == []


# --- snooze ------------------------------------------------------------------------------


def listed(app, headers: dict, query: str) -> list[int]:
    answer = app.test_client().get(f"/api/v1/conversations?{query}", headers=headers)
    assert answer.status_code == 200, answer.json
    return [row["id"] for row in answer.json["conversations"]]


def test_a_conversation_snoozed_through_the_api_leaves_open_and_wakes_at_its_time_or_by_hand(clocked):
    headers, conversation = token(clocked), conversation_id(clocked)
    client, path = clocked.test_client(), f"/api/v1/conversations/{conversation}"
    answer = client.patch(path, json={"snoozed_until": "2026-03-02T13:00:00+02:00"}, headers=headers)
    assert answer.status_code == 200, answer.json
    assert answer.json["snoozed_until"] == "2026-03-02T11:00:00Z" and answer.json["snoozed_until_reply"] is False
    assert listed(clocked, headers, "status=open") == [] and listed(clocked, headers, "status=snoozed") == [
        conversation
    ]
    run_at(clocked, START + timedelta(hours=1))
    assert listed(clocked, headers, "status=open") == [conversation]
    answer = client.patch(path, json={"snoozed_until_reply": True}, headers=headers)
    assert answer.json["snoozed_until_reply"] is True and answer.json["snoozed_until"] is None
    answer = client.patch(path, json={"snoozed_until": None}, headers=headers)
    assert answer.status_code == 200 and answer.json["snoozed_until_reply"] is False
    assert listed(clocked, headers, "status=open") == [conversation]


def test_a_snooze_in_the_past_or_without_the_send_scope_is_refused(clocked):
    path = f"/api/v1/conversations/{conversation_id(clocked)}"
    client = clocked.test_client()
    answer = client.patch(path, json={"snoozed_until": "2026-03-02T09:00:00Z"}, headers=token(clocked))
    assert answer.status_code == 409 and answer.content_type == PROBLEM
    answer = client.patch(path, json={"snoozed_until": "tomorrow"}, headers=token(clocked, "second"))
    assert answer.status_code == 422 and answer.content_type == PROBLEM
    reader = token(clocked, "reader", ("read",))
    assert client.patch(path, json={"snoozed_until_reply": True}, headers=reader).status_code == 403
    assert client.get("/api/v1/conversations?status=mentions", headers=reader).status_code == 422


# --- labels ------------------------------------------------------------------------------


def test_labels_are_kept_by_admin_tokens_and_put_on_conversations_by_senders(clocked):
    admin, sender = token(clocked, "ops", ("read", "admin")), token(clocked)
    client, conversation = clocked.test_client(), conversation_id(clocked)
    assert client.post("/api/v1/labels", json={"name": "VIP"}, headers=sender).status_code == 403
    created = client.post("/api/v1/labels", json={"name": "VIP", "colour": "red"}, headers=admin)
    assert created.status_code == 201 and created.json["name"] == "VIP" and created.json["colour"] == "red"
    taken = client.post("/api/v1/labels", json={"name": "vip"}, headers=admin)
    assert taken.status_code == 409 and taken.json["type"].endswith("/refused")
    refund = client.post("/api/v1/labels", json={"name": "Refund"}, headers=admin).json["id"]
    vip = created.json["id"]
    for label_id in (vip, vip, refund):  # twice: nothing more
        assert client.put(f"/api/v1/conversations/{conversation}/labels/{label_id}", headers=sender).status_code == 204
    assert client.get(f"/api/v1/conversations/{conversation}", headers=sender).json["labels"] == ["Refund", "VIP"]
    assert listed(clocked, sender, "label=vip&label=REFUND") == [conversation]
    for _ in range(2):
        answer = client.delete(f"/api/v1/conversations/{conversation}/labels/{refund}", headers=sender)
        assert answer.status_code == 204
    assert listed(clocked, sender, "label=vip&label=refund") == []
    assert client.put(f"/api/v1/conversations/{conversation}/labels/99999", headers=sender).status_code == 404
    renamed = client.patch(f"/api/v1/labels/{vip}", json={"name": "Gold"}, headers=admin)
    assert renamed.status_code == 200 and renamed.json == {"id": vip, "name": "Gold", "colour": "red"}
    assert client.get(f"/api/v1/conversations/{conversation}", headers=sender).json["labels"] == ["Gold"]
    assert client.delete(f"/api/v1/labels/{vip}", headers=admin).status_code == 204
    assert client.delete(f"/api/v1/labels/{vip}", headers=admin).status_code == 404
    assert client.get("/api/v1/labels", headers=sender).json == {
        "labels": [{"id": refund, "name": "Refund", "colour": "grey"}]
    }
    assert client.get(f"/api/v1/conversations/{conversation}", headers=sender).json["labels"] == []


def test_an_id_too_large_for_its_integer_column_is_a_404_never_a_database_error(clocked):
    """Labels and webhook endpoints have INTEGER ids (PostgreSQL refuses 2**31 in a query on them);
    the document says so too."""
    admin = token(clocked, "ops", ("read", "send", "admin"))
    client, conversation, too_large = clocked.test_client(), conversation_id(clocked), 2**31
    for method, path in [
        ("put", f"/api/v1/conversations/{conversation}/labels/{too_large}"),
        ("delete", f"/api/v1/conversations/{conversation}/labels/{too_large}"),
        ("patch", f"/api/v1/labels/{too_large}"),
        ("delete", f"/api/v1/labels/{too_large}"),
        ("get", f"/api/v1/webhooks/{too_large}"),
        ("delete", f"/api/v1/webhooks/{too_large}"),
        ("post", f"/api/v1/webhooks/{too_large}/rotate"),
    ]:
        answer = getattr(client, method)(path, json={"name": "x"} if method == "patch" else None, headers=admin)
        assert answer.status_code == 404, (method, path, answer.status_code)
    document = client.get("/api/v1/openapi.json").json
    for path in ("/api/v1/labels/{label_id}", "/api/v1/webhooks/{endpoint_id}"):
        operation = document["paths"][path]
        parameters = operation.get("parameters", []) + operation["delete"].get("parameters", [])
        parameter = next(p for p in parameters if p["in"] == "path")
        assert parameter["schema"]["maximum"] == 2**31 - 1


def test_a_nul_or_a_lone_surrogate_in_a_text_is_stored_as_a_replacement_character(clocked, messente):
    """PostgreSQL text holds no NUL and UTF-8 no lone surrogate: a new message, a reply and a note
    keep the rest of the text (as a customer's message does), on both databases."""
    headers = token(clocked)
    client, conversation = clocked.test_client(), conversation_id(clocked)
    answers = [
        client.post(
            "/api/v1/messages", json={"to": NEW_NUMBER, "text": "\x00a\ud800", "channel": "sms"}, headers=headers
        ),
        client.post(f"/api/v1/conversations/{conversation}/messages", json={"text": "b\x00"}, headers=headers),
        client.post(
            f"/api/v1/conversations/{conversation}/messages", json={"kind": "note", "text": "\x00c"}, headers=headers
        ),
    ]
    assert [answer.status_code for answer in answers] == [201, 201, 201], [answer.json for answer in answers]
    assert [answer.json["text"] for answer in answers] == ["\ufffda\ufffd", "b\ufffd", "\ufffdc"]
