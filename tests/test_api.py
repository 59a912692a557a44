"""/api/v1: tokens and scopes, problem details, the resources with the web's rules, idempotency
keys, the send guard, the rate limit, and the admin page and command that make tokens. The
OpenAPI document's validity and Schemathesis's run against it are in test_api_schemathesis.py."""

import csv
import hashlib
import io
import json
import re
from datetime import datetime

import pytest
import sqlalchemy as sa

from app import notifications
from app.accounts import users as accounts
from app.api import tokens
from app.db.models import ApiIdempotency, ApiToken, AuditEvent, Conversation, Message, User
from app.extensions import db
from conftest import ONE_DATABASE, AuthActions, close_app, conversation_of, create_tables, csrf_token, make_app
from helpers import CUSTOMER, OUR_NUMBER, Clock, deliver, replies_in, user_id, wait_for_status

PROBLEM = "application/problem+json"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def api_app(database_url, clock, user_row):
    """An app at a clock the test moves, alice (admin) and bob (agent) in it, one conversation.
    Replies are stored and queued; no job runner sends them (tests that send use `reply_app`)."""
    app = make_app(
        database_url,
        CLOCK=clock,
        API_RATE_LIMIT=1000,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        MESSENTE_API_URL="http://127.0.0.1:9/v1",
    )
    with app.app_context():
        create_tables()
        user_row()
        user_row("bob", role="agent")
    deliver(app, text="Tere! Is the shop open?")
    yield app
    close_app(app)


def make_token(app, name: str = "crm", scopes: tuple = ("read", "send"), **options) -> str:
    with app.app_context():
        return tokens.create_token(name, list(scopes), **options)[1]


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def conversation_id(app, sender: str = CUSTOMER) -> int:
    with app.app_context():
        return conversation_of(sender).id


def audit_events(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        found = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        ).all()
        db.session.expunge_all()
        return list(found)


# --- tokens ------------------------------------------------------------------------------


def test_a_token_is_stored_as_its_hash_only_and_identifies_itself(api_app):
    secret = make_token(api_app, "crm", ("read",))
    assert secret.startswith("smsi_") and len(secret) > 40
    with api_app.app_context():
        row = db.session.scalar(sa.select(ApiToken))
        columns = [str(getattr(row, column.name)) for column in ApiToken.__table__.columns]
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in value for value in columns)  # only the hash, and a short prefix
    response = api_app.test_client().get("/api/v1/me", headers=bearer(secret))
    assert response.status_code == 200
    assert response.json["token"] == {
        "id": row.id,
        "name": "crm",
        "scopes": ["read"],
        "created_at": "2026-03-02T09:00:00Z",
        "expires_at": None,
        "last_used_at": "2026-03-02T09:00:00Z",
    }


@pytest.mark.parametrize(
    "header",
    [None, "Bearer smsi_wrong", "Basic YWxpY2U6cGFzc3dvcmQ=", "Bearer ", "smsi_no_scheme"],
)
@ONE_DATABASE
def test_no_token_or_a_wrong_one_is_a_401_problem(api_app, header):
    response = api_app.test_client().get("/api/v1/conversations", headers={"Authorization": header} if header else {})
    assert response.status_code == 401 and response.mimetype == PROBLEM
    assert response.json["type"] == "/api/v1/problems/unauthorized" and response.json["status"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_and_expired_tokens_get_401(api_app, clock):
    revoked = make_token(api_app, "old")
    expiring = make_token(api_app, "temp", expires_at=datetime(2026, 3, 3, 9, 0))
    client = api_app.test_client()
    assert client.get("/api/v1/me", headers=bearer(revoked)).status_code == 200
    with api_app.app_context():
        assert tokens.revoke(db.session.scalar(sa.select(ApiToken.id).where(ApiToken.name == "old")))
    assert client.get("/api/v1/me", headers=bearer(revoked)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(expiring)).status_code == 200
    clock.advance(days=1)
    assert client.get("/api/v1/me", headers=bearer(expiring)).status_code == 401
    [revocation] = audit_events(api_app, "api_token_revoked")
    assert json.loads(revocation.details) == {"token": "old"}


def test_a_missing_scope_is_a_403_problem_before_the_body_is_looked_at(api_app):
    reader = make_token(api_app, "reader", ("read",))
    sender = make_token(api_app, "sender", ("send",))
    client, conversation = api_app.test_client(), conversation_id(api_app)
    refused = client.post(
        f"/api/v1/conversations/{conversation}/messages", json={"nonsense": 1}, headers=bearer(reader)
    )
    assert refused.status_code == 403 and refused.mimetype == PROBLEM
    assert refused.json["type"] == "/api/v1/problems/forbidden" and "`send`" in refused.json["detail"]
    assert client.get("/api/v1/conversations", headers=bearer(sender)).status_code == 403
    # Managing users takes the admin scope, as the web's admin pages take an admin.
    for secret in (reader, sender):
        assert client.post("/api/v1/users", json={"username": "carol"}, headers=bearer(secret)).status_code == 403
        assert (
            client.patch(
                f"/api/v1/users/{user_id(api_app, 'bob')}", json={"role": "admin"}, headers=bearer(secret)
            ).status_code
            == 403
        )
    assert client.get("/api/v1/users", headers=bearer(reader)).status_code == 200


def test_last_use_is_written_at_most_once_a_minute(api_app, clock):
    secret = make_token(api_app)
    client = api_app.test_client()

    def last_used() -> datetime:
        with api_app.app_context():
            return db.session.scalar(sa.select(ApiToken.last_used_at))

    client.get("/api/v1/me", headers=bearer(secret))
    assert last_used() == datetime(2026, 3, 2, 9, 0)
    clock.advance(seconds=59)
    client.get("/api/v1/me", headers=bearer(secret))
    assert last_used() == datetime(2026, 3, 2, 9, 0)
    clock.advance(seconds=1)
    client.get("/api/v1/me", headers=bearer(secret))
    assert last_used() == datetime(2026, 3, 2, 9, 1)


def test_api_requests_use_no_session_no_cookie_and_no_csrf(api_app):
    """A logged-in browser's cookie is no API credential; an API answer sets no cookie; a POST
    needs no CSRF token."""
    browser = api_app.test_client()
    assert AuthActions(browser).login().status_code == 302
    response = browser.get("/api/v1/conversations")
    assert response.status_code == 401
    secret = make_token(api_app)
    client = api_app.test_client()
    answered = client.patch(
        f"/api/v1/conversations/{conversation_id(api_app)}", json={"status": "done"}, headers=bearer(secret)
    )
    assert answered.status_code == 200 and "Set-Cookie" not in answered.headers
    assert client.get_cookie("session") is None


@ONE_DATABASE
def test_every_api_route_refuses_a_request_without_a_token(api_app):
    """Walks the URL map: every /api/v1 operation answers 401 without a token (the document and
    its page are open; a problem type leads to the page)."""
    client, checked = api_app.test_client(), []
    for rule in api_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint.startswith("api_docs."):
            continue
        url = re.sub(r"<(int(\([^)]*\))?:)?\w+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method, json={})
            assert response.status_code == 401 and response.mimetype == PROBLEM, (method, url)
            checked.append((method, rule.rule))
    assert ("POST", "/api/v1/conversations/<int(max=9223372036854775807):conversation_id>/messages") in checked
    assert client.get("/api/v1/openapi.json").status_code == 200
    assert client.get("/api/v1/docs").status_code == 200
    assert client.get("/api/v1/problems/validation").headers["Location"] == "/api/v1/docs#problem-validation"


# --- errors ------------------------------------------------------------------------------


def test_errors_are_problems_with_stable_types_and_field_messages(api_app):
    secret = make_token(api_app)
    client, conversation = api_app.test_client(), conversation_id(api_app)
    unknown = client.post(
        f"/api/v1/conversations/{conversation}/messages", json={"text": "Hi", "colour": "red"}, headers=bearer(secret)
    )
    assert unknown.status_code == 422 and unknown.mimetype == PROBLEM
    assert unknown.json["type"] == "/api/v1/problems/validation"
    assert unknown.json["errors"] == [{"in": "body", "field": "colour", "message": "Unknown field."}]
    missing = client.post(
        f"/api/v1/conversations/{conversation}/messages", json={"kind": "fax"}, headers=bearer(secret)
    )
    assert sorted((error["field"], error["message"]) for error in missing.json["errors"]) == [
        ("kind", "Must be one of: reply, note."),
        ("text", "Missing data for required field."),
    ]
    bad_query = client.get("/api/v1/conversations?limit=1000&status=later", headers=bearer(secret))
    assert bad_query.status_code == 422
    assert {(error["in"], error["field"]) for error in bad_query.json["errors"]} == {
        ("query", "limit"),
        ("query", "status"),
    }
    not_json = client.post(
        f"/api/v1/conversations/{conversation}/messages",
        data="{not json",
        headers={**bearer(secret), "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400 and not_json.json["type"] == "/api/v1/problems/bad-request"
    nowhere = client.get("/api/v1/conversations/999999", headers=bearer(secret))
    assert nowhere.status_code == 404 and nowhere.json["type"] == "/api/v1/problems/not-found"
    no_path = client.get("/api/v1/no-such-thing", headers=bearer(secret))
    assert no_path.status_code == 404 and no_path.mimetype == PROBLEM
    wrong_method = client.delete("/api/v1/me", headers=bearer(secret))
    assert wrong_method.status_code == 405 and wrong_method.json["type"] == "/api/v1/problems/method-not-allowed"
    assert wrong_method.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_past_the_rate_limit_a_token_gets_429_with_retry_after_until_the_next_minute(database_url, clock, user_row):
    app = make_app(database_url, CLOCK=clock, API_RATE_LIMIT=3)
    try:
        with app.app_context():
            create_tables()
        first, second = make_token(app, "first"), make_token(app, "second")
        client = app.test_client()
        clock.advance(seconds=15)  # 09:00:15
        assert [client.get("/api/v1/me", headers=bearer(first)).status_code for _ in range(3)] == [200, 200, 200]
        limited = client.get("/api/v1/me", headers=bearer(first))
        assert limited.status_code == 429 and limited.mimetype == PROBLEM
        assert limited.json["type"] == "/api/v1/problems/rate-limited" and limited.headers["Retry-After"] == "45"
        assert client.get("/api/v1/me", headers=bearer(second)).status_code == 200  # per token
        clock.advance(seconds=45)
        assert client.get("/api/v1/me", headers=bearer(first)).status_code == 200
    finally:
        close_app(app)


def test_the_rate_limit_is_shared_by_processes(database_url, clock):
    """Two apps on one database (as two server processes are) share one count per token."""
    apps = [make_app(database_url, CLOCK=clock, API_RATE_LIMIT=4) for _ in range(2)]
    try:
        with apps[0].app_context():
            create_tables()
        secret = make_token(apps[0])
        answers = [apps[n % 2].test_client().get("/api/v1/me", headers=bearer(secret)).status_code for n in range(6)]
        assert answers == [200, 200, 200, 200, 429, 429]
    finally:
        for app in apps:
            close_app(app)


# --- conversations, contacts, users: the web's rules, audited as the token -----------------


def test_conversations_list_with_the_webs_filters_and_cursor_paging(api_app):
    for n in range(5):
        deliver(api_app, sender=f"+3725550000{n}", text=f"Message {n}", channel="viber" if n % 2 else "sms")
    secret = make_token(api_app)
    client = api_app.test_client()

    def senders(query: str) -> list[str]:
        answer = client.get(f"/api/v1/conversations?{query}", headers=bearer(secret))
        assert answer.status_code == 200, answer.json
        return [row["sender"] for row in answer.json["conversations"]]

    assert senders("") == [f"+3725550000{n}" for n in (4, 3, 2, 1, 0)] + [CUSTOMER]
    assert senders("channel=viber") == ["+37255500003", "+37255500001"]
    assert senders("q=55500002") == ["+37255500002"]
    assert senders(f"to={OUR_NUMBER.replace('+', '%2B')}&limit=1") == ["+37255500004"]
    first = client.get("/api/v1/conversations?limit=4", headers=bearer(secret)).json
    assert first["newer"] is None and first["older"] is not None
    second = client.get(f"/api/v1/conversations?limit=4&before={first['older']}", headers=bearer(secret)).json
    assert [row["sender"] for row in second["conversations"]] == ["+37255500000", CUSTOMER]
    assert second["older"] is None
    back = client.get(f"/api/v1/conversations?limit=4&after={second['newer']}", headers=bearer(secret)).json
    assert back["conversations"] == first["conversations"]
    done = client.patch(
        f"/api/v1/conversations/{conversation_id(api_app)}", json={"status": "done"}, headers=bearer(secret)
    )
    assert done.json["status"] == "done"
    assert senders("status=done") == [CUSTOMER] and CUSTOMER not in senders("status=open")
    assert senders("assignee=none&status=all")[-1] == CUSTOMER


def test_status_and_owner_change_as_on_the_web_and_are_audited_as_the_token(api_app):
    secret = make_token(api_app, "crm")
    client, conversation = api_app.test_client(), conversation_id(api_app)
    bob = user_id(api_app, "bob")
    answer = client.patch(
        f"/api/v1/conversations/{conversation}", json={"status": "done", "assignee_id": bob}, headers=bearer(secret)
    )
    assert answer.status_code == 200
    assert (answer.json["status"], answer.json["assignee_id"], answer.json["assignee"]) == ("done", bob, "bob")
    [status] = audit_events(api_app, "status_changed")
    [assigned] = audit_events(api_app, "assigned")
    assert status.username == assigned.username == "API: crm"
    assert json.loads(assigned.details) == {"conversation": conversation, "by": "API: crm", "assignee": "bob"}
    with api_app.app_context():
        assert notifications.unread_count(bob) == 1  # told, as when a teammate assigns
    # A disabled account gets nothing: refused, and nothing of the change is stored.
    with api_app.app_context():
        accounts.set_disabled(db.session.get(User, bob), True)
        db.session.commit()
    refused = client.patch(
        f"/api/v1/conversations/{conversation}", json={"status": "open", "assignee_id": bob}, headers=bearer(secret)
    )
    assert refused.status_code == 409 and refused.json["errors"][0]["field"] == "assignee_id"
    assert client.get(f"/api/v1/conversations/{conversation}", headers=bearer(secret)).json["status"] == "done"
    unassigned = client.patch(
        f"/api/v1/conversations/{conversation}", json={"assignee_id": None}, headers=bearer(secret)
    )
    assert unassigned.json["assignee_id"] is None


def test_contacts_name_note_and_opt_outs_follow_the_webs_rules(api_app):
    sender = make_token(api_app, "crm", ("read", "send"))
    admin = make_token(api_app, "ops", ("read", "send", "admin"))
    client, conversation = api_app.test_client(), conversation_id(api_app)
    named = client.patch(
        f"/api/v1/contacts/{conversation}", json={"name": " Mari  Maasikas ", "note": "VIP"}, headers=bearer(sender)
    )
    assert named.status_code == 200
    assert named.json == {
        "id": conversation,
        "name": "Mari Maasikas",
        "note": "VIP",
        "numbers": [CUSTOMER],
        "opted_out": False,
        "opt_in_needs_admin": False,
    }
    assert (
        client.patch(f"/api/v1/contacts/{conversation}", json={"note": None}, headers=bearer(sender)).json["name"]
        == "Mari Maasikas"
    )
    [edited, _] = audit_events(api_app, "contact_edited")
    assert edited.username == "API: crm"
    # The customer's own STOP: lifting it takes the admin scope and a reason.
    deliver(api_app, text="STOP")
    assert client.get(f"/api/v1/contacts/{conversation}", headers=bearer(sender)).json["opt_in_needs_admin"] is True
    assert client.post(f"/api/v1/contacts/{conversation}/opt-in", json={}, headers=bearer(sender)).status_code == 403
    no_reason = client.post(f"/api/v1/contacts/{conversation}/opt-in", json={}, headers=bearer(admin))
    assert no_reason.status_code == 409 and no_reason.json["errors"][0]["field"] == "reason"
    lifted = client.post(
        f"/api/v1/contacts/{conversation}/opt-in", json={"reason": "Asked by phone"}, headers=bearer(admin)
    )
    assert lifted.status_code == 200 and lifted.json["opted_out"] is False
    out = client.post(f"/api/v1/contacts/{conversation}/opt-out", json={}, headers=bearer(sender))
    assert out.json["opted_out"] is True
    [_, by_token] = audit_events(api_app, "opted_out")
    [opted_in] = audit_events(api_app, "opted_in")
    assert (by_token.username, opted_in.username) == ("API: crm", "API: ops")
    assert json.loads(opted_in.details)["reason"] == "Asked by phone"


def test_users_are_listed_with_read_and_managed_with_admin(api_app):
    admin = make_token(api_app, "ops", ("read", "admin"))
    client = api_app.test_client()
    listed = client.get("/api/v1/users", headers=bearer(admin)).json["users"]
    assert [(u["username"], u["role"]) for u in listed] == [("alice", "admin"), ("bob", "agent")]
    made = client.post("/api/v1/users", json={"username": "carol", "role": "agent"}, headers=bearer(admin))
    assert made.status_code == 201 and made.json["user"]["role"] == "agent"
    assert "/set-password/" in made.json["password_link"]
    assert client.post("/api/v1/users", json={"username": "carol"}, headers=bearer(admin)).status_code == 409
    carol = made.json["user"]["id"]
    promoted = client.patch(f"/api/v1/users/{carol}", json={"role": "admin", "disabled": True}, headers=bearer(admin))
    assert (promoted.json["role"], promoted.json["disabled"]) == ("admin", True)
    alice = user_id(api_app, "alice")
    last_admin = client.patch(f"/api/v1/users/{alice}", json={"role": "agent"}, headers=bearer(admin))
    assert last_admin.status_code == 409 and last_admin.json["type"] == "/api/v1/problems/refused"
    assert [event.username for event in audit_events(api_app, "user_added")] == ["API: ops"]
    assert [event.username for event in audit_events(api_app, "user_changed")] == ["API: ops"]
    assert [event.username for event in audit_events(api_app, "user_disabled")] == ["API: ops"]


# --- messages ----------------------------------------------------------------------------


def test_messages_page_both_ways(api_app):
    for n in range(6):
        deliver(api_app, text=f"Line {n}")
    secret = make_token(api_app)
    client, conversation = api_app.test_client(), conversation_id(api_app)
    path = f"/api/v1/conversations/{conversation}/messages"
    newest = client.get(f"{path}?limit=3", headers=bearer(secret)).json
    assert [m["text"] for m in newest["messages"]] == ["Line 3", "Line 4", "Line 5"]
    assert newest["newer"] is None and newest["older"] == newest["messages"][0]["id"]
    older = client.get(f"{path}?limit=3&before={newest['older']}", headers=bearer(secret)).json
    assert [m["text"] for m in older["messages"]] == ["Line 0", "Line 1", "Line 2"]
    oldest = client.get(f"{path}?limit=3&before={older['older']}", headers=bearer(secret)).json
    assert [m["text"] for m in oldest["messages"]] == ["Tere! Is the shop open?"] and oldest["older"] is None
    forward = client.get(f"{path}?limit=3&after={oldest['messages'][0]['id']}", headers=bearer(secret)).json
    assert [m["text"] for m in forward["messages"]] == ["Line 0", "Line 1", "Line 2"]
    assert forward["newer"] == forward["messages"][-1]["id"]
    assert client.get(f"{path}?after={forward['newer']}&limit=3", headers=bearer(secret)).json == newest
    message = newest["messages"][0]
    assert (message["direction"], message["author"], message["status"], message["conversation_id"]) == (
        "in",
        None,
        None,
        conversation,
    )


def test_a_reply_sent_with_a_token_is_the_tokens_never_takes_ownership_and_is_sent_once(reply_app, messente):
    """The same reply posted twice with one Idempotency-Key reaches Messente once, and both
    answers are the first one; the author is "API: <name>" in the thread, the export and the trail."""
    deliver(reply_app, text="Where is my parcel?")
    secret = make_token(reply_app, "crm")
    client, conversation = reply_app.test_client(), conversation_id(reply_app)
    path = f"/api/v1/conversations/{conversation}/messages"
    headers = {**bearer(secret), "Idempotency-Key": "order-42-shipped"}
    body = {"kind": "reply", "text": "It left today."}
    first = client.post(path, json=body, headers=headers)
    assert first.status_code == 201, first.json
    assert (first.json["text"], first.json["status"], first.json["author"], first.json["direction"]) == (
        "It left today.",
        "queued",
        "API: crm",
        "out",
    )
    again = client.post(path, json=body, headers=headers)
    assert again.status_code == 201 and again.json == first.json and again.headers["Idempotency-Replayed"] == "true"
    [reply] = wait_for_status(reply_app, "sent")
    assert reply.id == first.json["id"] and reply.author_id is None
    [request] = messente.wait_for_requests(1)
    assert request.json["messages"][0]["text"] == "It left today."
    assert len(replies_in(reply_app)) == 1 and len(messente.requests) == 1
    other = client.post(path, json={"text": "Something else"}, headers=headers)
    assert other.status_code == 422 and other.json["type"] == "/api/v1/problems/idempotency-key-reused"
    with reply_app.app_context():
        assert db.session.get(Conversation, conversation).assignee_id is None  # a token owns nothing
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiIdempotency)) == 1
    [event] = audit_events(reply_app, "reply")
    assert event.username == "API: crm"
    # People see who sent it: in the thread and in the export's `agent` column.
    person = reply_app.test_client()
    assert AuthActions(person).login().status_code == 302
    assert '<span class="author"><bdi>API: crm</bdi></span>' in person.get(f"/conversations/{conversation}").text
    exported = person.get("/export.csv?days=all")
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    assert [row["agent"] for row in rows if row["direction"] == "out"] == ["API: crm"]


def test_an_idempotency_key_is_kept_24_hours(api_app, clock):
    secret = make_token(api_app)
    client, conversation = api_app.test_client(), conversation_id(api_app)
    path = f"/api/v1/conversations/{conversation}/messages"
    headers = {**bearer(secret), "Idempotency-Key": "k-1"}
    first = client.post(path, json={"text": "One"}, headers=headers).json
    clock.advance(hours=23, minutes=59)
    assert client.post(path, json={"text": "One"}, headers=headers).json["id"] == first["id"]
    clock.advance(minutes=1)
    later = client.post(path, json={"text": "One"}, headers=headers)
    assert later.status_code == 201 and later.json["id"] != first["id"]
    with api_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiIdempotency)) == 1  # the old one went


def test_the_send_guard_holds_a_reply_when_something_newer_came(api_app):
    secret = make_token(api_app)
    client, conversation = api_app.test_client(), conversation_id(api_app)
    path = f"/api/v1/conversations/{conversation}/messages"
    seen = client.get(path, headers=bearer(secret)).json["messages"][-1]["id"]
    own = client.post(path, json={"text": "Yes, until six.", "seen_message_id": seen}, headers=bearer(secret))
    assert own.status_code == 201
    # The token's own reply is no news; the customer's next message is.
    second = client.post(path, json={"text": "And Sundays too.", "seen_message_id": seen}, headers=bearer(secret))
    assert second.status_code == 201
    deliver(api_app, text="Also on Sunday?")
    held = client.post(path, json={"text": "Closed on Sundays.", "seen_message_id": seen}, headers=bearer(secret))
    assert held.status_code == 409 and held.mimetype == PROBLEM
    assert held.json["type"] == "/api/v1/problems/reply-held"
    assert [(m["direction"], m["preview"]) for m in held.json["newer"]] == [("in", "Also on Sunday?")]
    with api_app.app_context():
        texts = db.session.scalars(sa.select(Message.text).where(Message.direction == "out").order_by(Message.id)).all()
    assert texts == ["Yes, until six.", "And Sundays too."]  # nothing stored for the held one
    newest = held.json["newer"][-1]["id"]
    # A person who had not seen the token's replies is held by them, and told who wrote them.
    person = api_app.test_client()
    assert AuthActions(person).login().status_code == 302
    page = person.post(
        f"/conversations/{conversation}/replies",
        data={
            "csrf_token": csrf_token(person.get(f"/conversations/{conversation}").text),
            "text": "Hi!",
            "key": "p" * 16,
            "seen_message_id": str(seen),
        },
        headers={"HX-Request": "true"},
    )
    assert '<bdi class="who">API: crm</bdi>' in page.text
    assert (
        client.post(
            path, json={"text": "Closed on Sundays.", "seen_message_id": newest}, headers=bearer(secret)
        ).status_code
        == 201
    )


def test_a_reply_to_a_customer_who_opted_out_is_refused(api_app):
    secret = make_token(api_app)
    deliver(api_app, text="STOP")
    refused = api_app.test_client().post(
        f"/api/v1/conversations/{conversation_id(api_app)}/messages", json={"text": "Hello?"}, headers=bearer(secret)
    )
    assert refused.status_code == 409 and refused.json["type"] == "/api/v1/problems/refused"
    assert refused.json["errors"][0]["field"] == "text"


# --- making tokens: the admin page and the command -----------------------------------------


def test_an_admin_makes_a_token_on_the_admin_page_sees_it_once_and_revokes_it(api_app, clock):
    admin = AuthActions(api_app.test_client())
    assert admin.login().status_code == 302
    page = admin.client.get("/admin/api-tokens/")
    assert page.status_code == 200 and "<h1>API tokens</h1>" in page.text
    made = admin.client.post(
        "/admin/api-tokens/",
        data={"csrf_token": csrf_token(page.text), "name": "Zapier", "scope": ["read", "send"], "days": "30"},
    )
    assert made.status_code == 200
    secret = re.search(r'id="secret"[^>]*value="(smsi_[^"]+)"', made.text).group(1)
    assert secret not in admin.client.get("/admin/api-tokens/").text  # shown once
    me = api_app.test_client().get("/api/v1/me", headers=bearer(secret)).json["token"]
    assert (me["name"], me["scopes"], me["expires_at"]) == ("Zapier", ["read", "send"], "2026-04-01T09:00:00Z")
    [created] = audit_events(api_app, "api_token_created")
    assert created.username == "alice"
    assert json.loads(created.details) == {"token": "Zapier", "scopes": "read,send", "expires": "2026-04-01 09:00:00"}
    no_scope = admin.client.post(
        "/admin/api-tokens/", data={"csrf_token": csrf_token(page.text), "name": "Nothing", "days": ""}
    )
    assert no_scope.status_code == 400 and "at least one scope" in no_scope.text
    with api_app.app_context():
        token_id = db.session.scalar(sa.select(ApiToken.id).where(ApiToken.name == "Zapier"))
    revoked = admin.client.post(f"/admin/api-tokens/{token_id}/revoke", data={"csrf_token": csrf_token(page.text)})
    assert revoked.status_code == 303
    assert api_app.test_client().get("/api/v1/me", headers=bearer(secret)).status_code == 401
    assert "Revoked" in admin.client.get("/admin/api-tokens/").text


def test_agents_cannot_see_or_make_tokens(api_app):
    agent = AuthActions(api_app.test_client())
    assert agent.login("bob").status_code == 302
    assert agent.client.get("/admin/api-tokens/").status_code == 403


def test_create_token_prints_the_token_alone_on_its_last_line(api_app):
    runner = api_app.test_cli_runner()
    result = runner.invoke(args=["create-token", "deploy"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert re.fullmatch(r"smsi_[A-Za-z0-9_-]{43}", secret)
    me = api_app.test_client().get("/api/v1/me", headers=bearer(secret)).json["token"]
    assert (me["name"], me["scopes"]) == ("deploy", ["read"])
    full = runner.invoke(args=["create-token", "ci", "--scopes", "read,send,admin"])
    assert api_app.test_client().get("/api/v1/me", headers=bearer(full.output.strip().splitlines()[-1])).json["token"][
        "scopes"
    ] == ["read", "send", "admin"]
    unknown = runner.invoke(args=["create-token", "x", "--scopes", "write"])
    assert unknown.exit_code == 1 and "Unknown scope write" in unknown.output
    taken = runner.invoke(args=["create-token", "ci"])
    assert taken.exit_code == 1 and "already exists" in taken.output
    events = audit_events(api_app, "api_token_created")
    assert [(e.username, json.loads(e.details)["by"]) for e in events] == [(None, "command line")] * 2
