"""New messages (writing first) and send later, through the fake Messente API, on both databases.

The jobs run by `jobs.run_due` at the test's clock (no runner threads) except where a real server
runs them; nothing sleeps.
"""

import json
import os
import re
import signal
import threading
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
import sqlalchemy as sa

from app import audit, contacts, jobs, replies
from app.db.models import AuditEvent, Conversation, Job, Message, Notification, Suppression, WebhookEvent
from app.db.unit_of_work import write_transaction
from app.export import export_query
from app.extensions import db
from app.replies import scheduled
from app.webhooks import endpoints
from conftest import AuthActions, add_user, close_app, conversation_of, create_tables, make_app
from helpers import CUSTOMER, deliver, replies_in, reply_form, thread_path

START = datetime(2026, 3, 2, 10, 0)  # a Monday, 10:00 UTC (12:00 in Tallinn)
NEW_NUMBER = "+37255577003"
API = {"MESSENTE_API_USERNAME": "api-user", "MESSENTE_API_PASSWORD": "api-password"}


@pytest.fixture
def clocked(database_url, messente, user_row):
    """An app sending through the fake Messente at a clock the test moves; no runner threads."""
    now = {"moment": START}
    app = make_app(
        database_url,
        MESSENTE_API_URL=messente.url,
        MESSENTE_SMS_SENDER="Shop",
        MESSENTE_READ_TIMEOUT=0.5,
        MESSENTE_CONNECT_TIMEOUT=0.5,
        TEAM_TIME_ZONE="Europe/Tallinn",
        CLOCK=lambda: now["moment"].replace(tzinfo=UTC),
        **API,
    )
    app.now = now
    with app.app_context():
        create_tables()
        user_row()
    yield app
    close_app(app)


@pytest.fixture
def alice(clocked):
    client = clocked.test_client()
    assert AuthActions(client).login().status_code == 302
    return client


def run_at(app, moment: datetime) -> None:
    app.now["moment"] = moment
    with app.app_context():
        jobs.run_due(moment)
        db.session.remove()


def form_fields(html: str, action: str) -> dict:
    form = re.search(rf'<form method="post" action="{re.escape(action)}".*?</form>', html, re.S)
    assert form, f"no form posting to {action}"
    return {
        name: unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(0))
    }


def new_message(client, to: str, text: str = "Your order is ready", **fields):
    form = form_fields(client.get("/messages/new").text, "/messages/new")
    return client.post("/messages/new", data={**form, "to": to, "text": text, "route": "sms", **fields})


def schedule_reply(client, app, text: str, when: str = "in an hour", **fields):
    form = reply_form(client.get(thread_path(app)).text)
    action = form.pop("action")
    return client.post(action, data={**form, "text": text, "schedule": "1", "when": when, **fields})


def texts_sent(messente) -> list[str]:
    return [request.json["messages"][0]["text"] for request in messente.requests]


def events(app, action: str) -> list[dict]:
    with app.app_context():
        return [
            json.loads(details)
            for details in db.session.scalars(
                sa.select(AuditEvent.details).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        ]


def waiting(app) -> list[Message]:
    with app.app_context():
        found = db.session.scalars(
            sa.select(Message).where(Message.status.in_(scheduled.STATES)).order_by(Message.id)
        ).all()
        db.session.expunge_all()
        return found


# --- new messages ------------------------------------------------------------------------------


def test_a_new_message_to_a_new_number_starts_a_conversation_owned_by_its_writer(clocked, alice, messente):
    response = new_message(alice, "+372 5557 7003")
    with clocked.app_context():
        conversation = conversation_of(NEW_NUMBER)
        assert response.status_code == 303 and response.location.endswith(f"/conversations/{conversation.id}")
        assert (conversation.channel, conversation.message_count, conversation.last_direction) == ("sms", 1, "out")
        assert conversation.assignee_id == 1  # its writer owns it (replying takes ownership: on by default)
        assert conversation.last_text == "Your order is ready"
    run_at(clocked, START)
    [request] = messente.requests
    assert (request.json["to"], request.json["messages"][0]["sender"]) == (NEW_NUMBER, "Shop")
    assert [(r.status, r.recipient) for r in replies_in(clocked)] == [("sent", NEW_NUMBER)]
    [event] = events(clocked, "new_message")
    assert event["started"] is True and event["reply"] == replies_in(clocked)[0].id
    assert "Your order is ready" in alice.get(f"/conversations/{event['conversation']}").text


def test_a_new_message_lands_in_the_numbers_conversation_however_the_number_is_written(clocked, alice, messente):
    deliver(clocked)  # CUSTOMER (+37255512345) wrote first
    admin = AuthActions(alice)
    assert (
        alice.post("/messages/new/default-region", data={"csrf_token": admin.csrf("/messages/new"), "region": "ee"})
    ).status_code == 303
    assert events(clocked, "settings_changed") == [{"default_region": "EE", "was": "none"}]
    for typed in ("5551 2345", "+372 555-123-45", "00372 55512345"):
        assert new_message(alice, typed, text=f"To {typed}").status_code == 303
    with clocked.app_context():
        conversation_id = conversation_of(CUSTOMER).id
        contacts.set_contact(conversation_id, "Mari Õun", "")  # ... and by the contact's name, accents and case aside
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Conversation)) == 1
    assert new_message(alice, "mari õun", text="By name").status_code == 303
    run_at(clocked, START)
    assert sorted(texts_sent(messente)) == sorted(
        ["To 5551 2345", "To +372 555-123-45", "To 00372 55512345", "By name"]
    )
    assert {r.conversation_id for r in replies_in(clocked)} == {conversation_id}
    assert [e["started"] for e in events(clocked, "new_message")] == [False] * 4


@pytest.mark.parametrize(
    "to,route,says",
    [
        ("hello there", "sms", "is not a phone number, and no contact has that name"),
        ("+372 12", "sms", "is not a phone number"),
        ("5551 2345", "sms", "has no country code"),  # no default country set
        ("+372 5557 7003", "whatsapp", "template"),
    ],
)
def test_what_is_not_a_number_or_cannot_be_sent_to_is_refused_with_the_reason(
    clocked, alice, messente, to, route, says
):
    response = new_message(alice, to, route=route)
    assert response.status_code == 400
    page = unescape(response.text)
    assert says in page and "Your order is ready" in page  # what was typed comes back
    with clocked.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Conversation)) == 0
    assert messente.requests == [] and events(clocked, "new_message") == []


def test_opted_out_and_erased_and_suppressed_numbers_are_refused(clocked, alice, messente):
    deliver(clocked, text="STOP")
    response = new_message(alice, CUSTOMER)
    assert response.status_code == 400 and "opted out" in response.text
    with clocked.app_context(), write_transaction() as session:
        session.add(Suppression(number_hash=audit.number_hash(NEW_NUMBER), created_at=START))
    response = new_message(alice, NEW_NUMBER)
    assert response.status_code == 400 and "opted out before its earlier messages were deleted" in response.text
    run_at(clocked, START)
    assert messente.requests == [] and replies_in(clocked) == []


def test_the_form_says_why_whatsapp_is_not_offered(clocked, alice):
    page = unescape(alice.get("/messages/new").text)
    assert "only with a message template WhatsApp approved" in page
    assert 'value="whatsapp' not in page and 'value="sms"' in page
    assert 'href="/messages/new"' in alice.get("/").text  # the list's New message button


# --- send later --------------------------------------------------------------------------------


def test_a_scheduled_reply_is_shown_to_everyone_and_sent_once_at_its_time_by_racing_runners(clocked, alice, messente):
    deliver(clocked)
    assert schedule_reply(alice, clocked, "See you tomorrow", when="tomorrow").status_code == 303
    [row] = waiting(clocked)
    assert (row.status, row.send_at) == ("scheduled", datetime(2026, 3, 3, 7, 0))  # 09:00 in Tallinn
    with clocked.app_context():
        add_user("bob", role="agent")
        conversation = conversation_of(CUSTOMER)
        assert (conversation.scheduled_count, conversation.message_count, conversation.last_direction) == (1, 1, "in")
    bob = clocked.test_client()
    assert AuthActions(bob).login("bob").status_code == 302
    page = bob.get(thread_path(clocked)).text
    assert re.search(r"Scheduled for <time[^>]*data-team-time>Tue 09:00</time>", page)
    assert "scheduled-clock" in bob.get("/").text  # the list row's clock
    # A teammate's reply meanwhile: the scheduled one comes after it, by the time it is sent.
    with clocked.app_context():
        replies.queue_reply(conversation_of(CUSTOMER), "Right now", "sms", None, 1, "n" * 16)
    run_at(clocked, START + timedelta(hours=20))
    assert texts_sent(messente) == ["Right now"]

    other = make_app(
        clocked.config["SQLALCHEMY_DATABASE_URI"],
        **{name: clocked.config[name] for name in ("MESSENTE_API_URL", "MESSENTE_SMS_SENDER", "CLOCK", *API)},
    )
    due = datetime(2026, 3, 3, 7, 0)
    clocked.now["moment"] = due
    try:

        def run(app):
            with app.app_context():
                jobs.run_due(due)
                db.session.remove()

        threads = [threading.Thread(target=run, args=(app,)) for app in (clocked, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        close_app(other)
    run_at(clocked, due + timedelta(minutes=1))
    assert texts_sent(messente) == ["Right now", "See you tomorrow"]  # once
    sent = replies_in(clocked)
    assert [(r.text, r.status) for r in sent] == [("Right now", "sent"), ("See you tomorrow", "sent")]
    assert sent[1].send_at == due and sent[1].sent_at == due
    with clocked.app_context():
        conversation = conversation_of(CUSTOMER)
        assert (conversation.last_message_id, conversation.scheduled_count) == (sent[1].id, 0)
        assert conversation.message_count == 3
    assert waiting(clocked) == []
    assert "Scheduled for" not in bob.get(thread_path(clocked)).text
    assert [e["by"] for e in events(clocked, "scheduled_sent")] == ["schedule"]


def test_the_messages_of_one_moment_are_released_by_its_one_job_their_sends_taken_before_the_next_batch(
    clocked, alice, messente, monkeypatch
):
    monkeypatch.setattr(scheduled, "BATCH", 2, raising=False)  # (the code before had no batches)
    deliver(clocked)
    for n in range(3):
        schedule_reply(alice, clocked, f"At nine {n}", when="tomorrow")
    due = datetime(2026, 3, 3, 7, 0)
    with clocked.app_context():
        kinds = db.session.scalars(sa.select(Job.kind).where(Job.kind == scheduled.SEND_SCHEDULED)).all()
        assert len(kinds) == 1  # one job for the moment, not one a message
        db.session.rollback()
    run_at(clocked, due - timedelta(seconds=1))
    assert messente.requests == [] and [m.status for m in waiting(clocked)] == ["scheduled"] * 3  # none early
    clocked.now["moment"] = due
    with clocked.app_context():
        first = next(row for row in jobs.find_due(due, limit=50) if row.kind == scheduled.SEND_SCHEDULED)
        claimed = jobs.claim(first.id, first.kind, due, "a-runner", clocked.config)
        assert claimed is not None
        jobs.run(claimed, due)
        # Its first run released a batch: what a runner takes next is the first one's send (the
        # second waits behind it, one conversation), and only then the moment's job again.
        assert [m.text for m in waiting(clocked)] == ["At nine 2"]
        assert [row.kind for row in jobs.find_due(due, limit=50)] == [replies.SEND_REPLY, scheduled.SEND_SCHEDULED]
        db.session.remove()
    run_at(clocked, due)
    assert texts_sent(messente) == [f"At nine {n}" for n in range(3)]  # each once, in order
    assert [e["by"] for e in events(clocked, "scheduled_sent")] == ["schedule"] * 3
    assert waiting(clocked) == []


def test_edit_moves_it_and_the_old_time_sends_nothing(clocked, alice, messente):
    deliver(clocked)
    schedule_reply(alice, clocked, "First draft")
    [row] = waiting(clocked)
    edit_page = alice.get(f"{thread_path(clocked)}/scheduled/{row.id}/edit").text
    fields = form_fields(edit_page, f"{thread_path(clocked)}/scheduled/{row.id}/edit")
    response = alice.post(
        f"{thread_path(clocked)}/scheduled/{row.id}/edit",
        data={**fields, "text": "Second draft", "when": "custom", "send_at_local": "2026-03-02T16:30"},
    )
    assert response.status_code == 303
    [row] = waiting(clocked)
    assert (row.text, row.send_at) == ("Second draft", datetime(2026, 3, 2, 14, 30))
    run_at(clocked, START + timedelta(hours=1, minutes=5))  # the old time: its job does nothing
    assert messente.requests == [] and waiting(clocked)[0].status == "scheduled"
    run_at(clocked, datetime(2026, 3, 2, 14, 30))
    assert texts_sent(messente) == ["Second draft"]
    [edited] = events(clocked, "scheduled_edited")
    assert edited["send_at"].startswith("2026-03-02 14:30")


def test_cancel_and_the_due_time_racing_have_one_outcome(clocked, alice, messente):
    deliver(clocked)
    outcomes = []
    for n in range(4):
        schedule_reply(alice, clocked, f"Race {n}")
        row = waiting(clocked)[-1]
        due = row.send_at
        clocked.now["moment"] = due
        answer = {}

        def cancel(row=row, answer=answer):
            with clocked.app_context():
                answer["cancelled"] = scheduled.cancel(row.conversation_id, row.id)
                db.session.remove()

        def run(due=due):
            with clocked.app_context():
                jobs.run_due(due)
                db.session.remove()

        threads = [threading.Thread(target=cancel), threading.Thread(target=run)]
        for thread in threads[:: 1 if n % 2 else -1]:
            thread.start()
        for thread in threads:
            thread.join()
        run_at(clocked, due + timedelta(minutes=1))
        sent = f"Race {n}" in texts_sent(messente)
        assert sent is not answer["cancelled"]  # cancelled and never sent, or sent and not cancelled
        assert texts_sent(messente).count(f"Race {n}") == int(sent)
        outcomes.append(answer["cancelled"])
        clocked.now["moment"] = due + timedelta(minutes=2)
    statuses = {m.text: m.status for m in waiting(clocked)}
    assert all(statuses.get(f"Race {n}") == ("cancelled" if outcomes[n] else None) for n in range(4))


def test_a_cancel_after_the_job_took_it_says_it_is_too_late_and_one_before_stops_it(clocked, alice, messente):
    deliver(clocked)
    schedule_reply(alice, clocked, "Taken")
    schedule_reply(alice, clocked, "Stopped", when="tomorrow")
    taken, stopped = waiting(clocked)
    path = thread_path(clocked)
    token = form_fields(alice.get(path).text, f"{path}/scheduled/{stopped.id}/cancel")["csrf_token"]
    response = alice.post(
        f"{path}/scheduled/{stopped.id}/cancel", data={"csrf_token": token}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "poll-now"
    run_at(clocked, taken.send_at)
    response = alice.post(f"{path}/scheduled/{taken.id}/cancel", data={"csrf_token": token})
    assert response.status_code == 409 and "Too late to cancel" in response.text
    run_at(clocked, stopped.send_at + timedelta(minutes=1))
    assert texts_sent(messente) == ["Taken"]
    assert [e["scheduled"] for e in events(clocked, "scheduled_cancelled")] == [stopped.id]
    rows = [(row[9], row[4]) for row in db_rows(clocked)]
    assert ("cancelled", "Stopped") in rows and ("sent", "Taken") in rows  # the export's status


def db_rows(app):
    with app.app_context():
        return db.session.execute(export_query()).all()


def test_after_downtime_a_message_is_sent_within_the_grace_and_missed_beyond_it(clocked, alice, messente):
    deliver(clocked)
    schedule_reply(alice, clocked, "Thirteen hours late")  # 11:00 UTC
    schedule_reply(alice, clocked, "Three hours late", when="custom", send_at_local="2026-03-02T23:00")  # 21:00 UTC
    late, recent = waiting(clocked)
    assert (late.send_at, recent.send_at) == (datetime(2026, 3, 2, 11, 0), datetime(2026, 3, 2, 21, 0))
    run_at(clocked, datetime(2026, 3, 3, 0, 0))  # the app was down until now
    assert texts_sent(messente) == ["Three hours late"]
    [missed] = waiting(clocked)
    assert (missed.id, missed.status) == (late.id, "missed")
    with clocked.app_context():
        kinds = db.session.scalars(sa.select(Notification.kind).where(Notification.kind.in_(["held", "missed"]))).all()
        assert kinds == ["missed"]
    alice = clocked.test_client()  # hours later: logged in again
    assert AuthActions(alice).login().status_code == 302
    page = alice.get(thread_path(clocked)).text
    assert "Missed:" in page and "Send now" in page
    token = form_fields(page, f"{thread_path(clocked)}/scheduled/{late.id}/send")["csrf_token"]
    assert alice.post(f"{thread_path(clocked)}/scheduled/{late.id}/send", data={"csrf_token": token}).status_code == 303
    run_at(clocked, clocked.now["moment"])
    assert texts_sent(messente) == ["Three hours late", "Thirteen hours late"]
    assert [e["scheduled"] for e in events(clocked, "scheduled_missed")] == [late.id]
    assert [e["by"] for e in events(clocked, "scheduled_sent")] == ["schedule", "user"]


def test_within_the_grace_a_late_message_is_sent_when_the_app_is_back(clocked, alice, messente):
    deliver(clocked)
    schedule_reply(alice, clocked, "Late but sent")
    [row] = waiting(clocked)
    run_at(clocked, row.send_at + timedelta(hours=11, minutes=59))
    assert texts_sent(messente) == ["Late but sent"]


def test_a_scheduled_message_is_held_when_the_customer_wrote_since(clocked, alice, messente):
    deliver(clocked)
    schedule_reply(alice, clocked, "Do you still need it?")
    clocked.now["moment"] = START + timedelta(minutes=20)
    deliver(clocked, text="Never mind, found it")
    [row] = waiting(clocked)
    run_at(clocked, row.send_at)
    assert messente.requests == []
    [held] = waiting(clocked)
    assert held.status == "held" and "customer wrote" in held.problem
    with clocked.app_context():
        held_kinds = sa.select(Notification.kind).where(Notification.kind.in_(["held", "missed"]))
        assert db.session.scalars(held_kinds.where(Notification.user_id == 1)).all() == ["held"]
    page = alice.get(thread_path(clocked)).text
    assert "Held:" in page and "Send now" in page
    assert [e["scheduled"] for e in events(clocked, "scheduled_held")] == [row.id]
    with clocked.app_context():
        assert scheduled.cancel(row.conversation_id, row.id) is True
    run_at(clocked, row.send_at + timedelta(hours=1))
    assert messente.requests == [] and waiting(clocked)[0].status == "cancelled"


def test_a_new_message_can_be_scheduled_to_a_new_number(clocked, alice, messente):
    response = new_message(alice, NEW_NUMBER, text="Welcome!", schedule="1", when="next Monday")
    assert response.status_code == 303
    with clocked.app_context():
        conversation = conversation_of(NEW_NUMBER)
        assert (conversation.scheduled_count, conversation.message_count, conversation.last_text) == (1, 0, "Welcome!")
    assert 'href="/conversations/' in alice.get("/").text
    [row] = waiting(clocked)
    assert row.send_at == datetime(2026, 3, 9, 7, 0)
    run_at(clocked, row.send_at)
    assert texts_sent(messente) == ["Welcome!"]
    assert [e.get("send_at", "")[:16] for e in events(clocked, "scheduled")] == ["2026-03-09 07:00"]


@pytest.mark.slow
def test_killing_the_server_when_a_scheduled_message_is_due_never_sends_it_twice(app, user, server_factory, messente):
    """kill -9 while the due message's API call is in flight; a new server carries on."""
    messente.behave("silent")
    env = {"MESSENTE_API_URL": messente.url, "MESSENTE_READ_TIMEOUT": "60", "MESSENTE_SMS_SENDER": "Shop", **API}
    app.config.update(MESSENTE_API_URL=messente.url, MESSENTE_SMS_SENDER="Shop", **API)
    deliver(app)
    first = server_factory(workers=1, threads=4, env=env)
    with app.app_context():  # due in a moment, by the real clock the server keeps
        replies.queue_reply(
            conversation_of(CUSTOMER),
            "Due now",
            "sms",
            None,
            1,
            "k" * 16,
            send_at=replies.clock.now() + timedelta(seconds=1),
        )
    messente.wait_for_requests(1, timeout=30)
    for pid in [first.process.pid, *first.worker_pids()]:
        os.kill(pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    messente.behave("ok")
    server_factory(workers=2, threads=4, env=env)
    with app.app_context():
        jobs.run_due(replies.clock.now() + timedelta(minutes=10))  # past any live call's lease
    [reply] = replies_in(app)
    assert (reply.text, reply.status) == ("Due now", "unconfirmed")
    assert texts_sent(messente) == ["Due now"]  # never twice


def test_a_conversation_started_by_writing_first_is_reported_before_its_message(database_url, messente, user_row):
    app = make_app(
        database_url,
        MESSENTE_API_URL=messente.url,
        MESSENTE_SMS_SENDER="Shop",
        WEBHOOKS_ALLOWED_NETWORKS="127.0.0.0/8",
        **API,
    )
    try:
        with app.app_context():
            db.create_all()
            user_row()
            endpoints.create_endpoint("http://127.0.0.1:9/hook", ["conversation.created", "message.created"])
        client = app.test_client()
        assert AuthActions(client).login().status_code == 302
        new_message(client, "+372 5557 7003")
        new_message(client, "+372 5557 7003", text="And another thing")
        with app.app_context():
            sent = [
                (event.type, json.loads(event.body)["data"])
                for event in db.session.scalars(sa.select(WebhookEvent).order_by(WebhookEvent.id))
            ]
            conversation = conversation_of(NEW_NUMBER)
        assert [event_type for event_type, _ in sent] == ["conversation.created", "message.created", "message.created"]
        assert sent[0][1]["id"] == conversation.id and sent[0][1]["number"] == NEW_NUMBER
    finally:
        close_app(app)
