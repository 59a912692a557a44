"""Replies from the inbox, through the fake Omnichannel API (a real HTTP server), on both databases.

The app's own job runner (its threads, started as a server process starts them) does the sending,
as in production; tests wait for the outcome in the database, never for a fixed time. Retries with
backoff are driven by `jobs.run_due` and the app's clock instead.
"""

import os
import re
import signal
import socket
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import jobs, replies
from app.db.models import Job, Message
from app.db.models import Server as ServerRow
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.jobs import runner
from conftest import (
    PASSWORD,
    AuthActions,
    Browser,
    Server,
    body_for,
    close_app,
    conversation_of,
    create_tables,
    flask_process,
    make_app,
    wait_until,
)
from helpers import CUSTOMER, OUR_NUMBER, deliver, replies_in, reply_form, send_reply, thread_path, wait_for_status


@pytest.fixture
def clocked_app(database_url, messente, user_row):
    """Replies sent by `jobs.run_due` at the test's clock (no runner threads): for retries."""
    now = {"moment": datetime(2026, 3, 2, 10, 0)}
    app = make_app(
        database_url,
        MESSENTE_API_URL=messente.url,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        MESSENTE_READ_TIMEOUT=0.5,
        MESSENTE_CONNECT_TIMEOUT=0.5,
        CLOCK=lambda: now["moment"].replace(tzinfo=UTC),
    )
    app.now = now
    with app.app_context():
        create_tables()
        user_row()
    yield app
    close_app(app)


def run_jobs_at(app, moment: datetime) -> None:
    app.now["moment"] = moment
    with app.app_context():
        jobs.run_due(moment)


def test_a_reply_reaches_the_api_once_with_the_right_body_and_credentials(reply_app, person, messente):
    deliver(reply_app, text="Tere! Kas pood on avatud?")
    response_form = send_reply(person, reply_app, "Jah, kella 18-ni. 🙂")
    [reply] = wait_for_status(reply_app, "sent")
    [request] = messente.wait_for_requests(1)
    assert request.method == "POST" and request.path == "/v1/omnimessage"
    assert request.basic_auth == ("api-user", "api-password")
    assert request.json == {
        "to": CUSTOMER,
        "messages": [{"channel": "sms", "text": "Jah, kella 18-ni. 🙂", "sender": OUR_NUMBER, "autoconvert": "off"}],
        "dlr_url": "https://inbox.example.com/callbacks/delivery",
    }
    assert reply.omnimessage_id == request.answer["omnimessage_id"]
    assert (reply.text, reply.sender, reply.recipient, reply.channel) == (
        "Jah, kella 18-ni. 🙂",
        OUR_NUMBER,
        CUSTOMER,
        "sms",
    )
    with reply_app.app_context():
        conversation = conversation_of(CUSTOMER)
        assert (conversation.last_direction, conversation.last_text) == ("out", "Jah, kella 18-ni. 🙂")
        assert (conversation.message_count, conversation.unread_count) == (2, 1)  # replies are never unread
    assert '<span class="you">You:</span> <bdi>Jah, kella 18-ni. 🙂</bdi>' in person.get("/").text
    page = person.get(thread_path(reply_app)).text
    assert 'class="message out"' in page and "alice" in page and ">Sent<" in page
    assert response_form["key"] != reply_form(page)["key"]  # a new one-time key for the next reply


def test_a_resubmitted_form_sends_once(reply_app, person, messente):
    deliver(reply_app)
    path = thread_path(reply_app)
    form = reply_form(person.get(path).text)
    action = form.pop("action")
    for _ in range(3):  # a double click, then the browser's resubmit
        assert person.post(action, data={**form, "text": "Once only"}).status_code == 303
    wait_for_status(reply_app, "sent")
    assert len(replies_in(reply_app)) == 1
    assert len(messente.requests) == 1


def test_without_javascript_the_form_posts_and_returns_to_the_thread(reply_app, person, messente):
    deliver(reply_app)
    path = thread_path(reply_app)
    form = reply_form(person.get(path).text)
    response = person.post(form.pop("action"), data={**form, "text": "Plain form"})
    assert response.status_code == 303 and response.headers["Location"] == path
    wait_for_status(reply_app, "sent")
    assert "Plain form" in person.get(path).text


@pytest.mark.parametrize(
    "behaviour, words",
    [
        ("400", "Invalid data"),
        ("401", "Unauthorized"),
        ("500", "500"),
    ],
)
def test_a_refused_reply_keeps_its_text_says_why_and_can_be_retried(reply_app, person, messente, behaviour, words):
    deliver(reply_app)
    messente.behave(behaviour, times=1)
    send_reply(person, reply_app, "Kept whatever happens")
    [reply] = wait_for_status(reply_app, "failed")
    assert reply.text == "Kept whatever happens" and words in reply.problem
    page = person.get(thread_path(reply_app)).text
    assert "Not sent" in page and "Retry" in page

    retry = re.search(r'action="([^"]+/retry)"', page).group(1)
    assert person.post(retry, data={"csrf_token": reply_form(page)["csrf_token"]}).status_code == 303
    [reply] = wait_for_status(reply_app, "sent")
    assert reply.problem is None and len(messente.requests) == 2


def test_messente_down_is_retried_with_backoff_then_a_failure_with_the_reason(clocked_app, messente):
    """Connection refused: nothing reached Messente, so the reply is tried again (the thread says
    Retrying) for REPLY_RETRY_SECONDS, then fails with the reason."""
    person = AuthActions(clocked_app.test_client())
    person.login()
    start = clocked_app.now["moment"]
    deliver(clocked_app)
    messente.down()
    send_reply(person.client, clocked_app, "Nobody listening")
    run_jobs_at(clocked_app, start)
    [reply] = replies_in(clocked_app)
    assert reply.status == "retrying" and "connection refused" in reply.problem.lower()
    assert "Retrying" in person.client.get(thread_path(clocked_app)).text
    run_jobs_at(clocked_app, start + timedelta(seconds=4))  # the first pause is 5 s
    with clocked_app.app_context():
        [job] = db.session.scalars(sa.select(Job).where(Job.kind == "send_reply")).all()
        assert (job.attempts, job.state) == (1, "due")
    moment = start
    for pause in (5, 10, 20, 40, 80, 160):  # backoff, within ten minutes of the first try
        moment += timedelta(seconds=pause)
        run_jobs_at(clocked_app, moment)
    [reply] = replies_in(clocked_app)
    assert reply.status == "failed" and "connection refused" in reply.problem.lower()
    with clocked_app.app_context():
        [job] = db.session.scalars(sa.select(Job).where(Job.kind == "send_reply")).all()
        assert (job.attempts, job.state) == (7, "done")


def test_rate_limited_replies_are_retried_with_backoff(clocked_app, messente):
    deliver(clocked_app)
    start = clocked_app.now["moment"]
    messente.behave("429", times=2)
    with clocked_app.app_context():
        replies.queue_reply(conversation_of(CUSTOMER), "Third time lucky", "sms", None, 1, "t" * 16)
    for seconds in (0, 5, 15):
        run_jobs_at(clocked_app, start + timedelta(seconds=seconds))
    assert replies_in(clocked_app)[0].status == "sent"
    assert [request.status for request in messente.requests] == [429, 429, 201]


@pytest.mark.parametrize("behaviour", ["500", "slow"])
def test_a_send_that_may_have_reached_messente_is_never_resent(clocked_app, messente, behaviour):
    """A 5xx or no answer within the read timeout: the send ran once and is never run again."""
    deliver(clocked_app)
    start = clocked_app.now["moment"]
    messente.behave(behaviour, times=1)
    with clocked_app.app_context():
        replies.queue_reply(conversation_of(CUSTOMER), "Only once", "sms", None, 1, "o" * 16)
    for minutes in (0, 1, 5, 11, 60):
        run_jobs_at(clocked_app, start + timedelta(minutes=minutes))
    assert replies_in(clocked_app)[0].status == ("failed" if behaviour == "500" else "unconfirmed")
    assert len(messente.requests) == 1


def test_a_reply_that_times_out_is_unconfirmed_and_never_resent_by_itself(reply_app, person, messente):
    deliver(reply_app)
    messente.behave("slow", times=1)
    send_reply(person, reply_app, "Did it go?")
    [reply] = wait_for_status(reply_app, "unconfirmed")
    with reply_app.app_context():
        jobs.run_due(replies.clock.now() + timedelta(hours=1))  # whatever comes due later: not this one
    assert len(messente.requests) == 1 and replies_in(reply_app)[0].status == "unconfirmed"
    page = person.get(thread_path(reply_app)).text
    assert "Unconfirmed" in page and "Send again" in page


def test_an_opted_out_customer_gets_nothing(reply_app, person, messente):
    deliver(reply_app, text="Tere!")
    path = thread_path(reply_app)
    form = reply_form(person.get(path).text)
    deliver(reply_app, text="  Stop. ")
    page = person.get(path).text
    assert "opted out" in page and 'action="' + form["action"] + '"' not in page
    response = person.post(form.pop("action"), data={**form, "text": "Are you sure?"})
    assert response.status_code == 400 and "opted out" in response.text
    assert replies_in(reply_app) == [] and messente.requests == []
    assert "opted out" in person.get("/").text


def test_a_queued_reply_is_not_sent_if_the_customer_opts_out_before_it_goes(clocked_app, messente):
    reply_app = clocked_app  # no runner: the job waits until run_due
    deliver(reply_app)
    with reply_app.app_context():
        conversation = conversation_of(CUSTOMER)
        replies.queue_reply(conversation, "Queued", "sms", None, 1, "k" * 16)
    deliver(reply_app, text="STOP")
    with reply_app.app_context():
        jobs.run_due()
    assert replies_in(reply_app)[0].status == "failed"
    assert replies_in(reply_app)[0].problem == "the customer opted out: not sent"
    assert messente.requests == []


def replies_client(app):
    from app.replies import messente

    return messente.from_config(app.config)


def test_start_opts_back_in_and_a_sentence_with_stop_does_not_opt_out(reply_app, person):
    deliver(reply_app, text="STOP")
    deliver(reply_app, text="Count me in! We must STOP this bill")
    with reply_app.app_context():
        assert conversation_of(CUSTOMER).opted_out is True
    deliver(reply_app, text="start")
    with reply_app.app_context():
        assert conversation_of(CUSTOMER).opted_out is False
    assert reply_form(person.get(thread_path(reply_app)).text)


def test_a_person_can_opt_a_customer_out_and_back_in(reply_app, person):
    deliver(reply_app, text="please stop texting me")
    path = thread_path(reply_app)
    token = reply_form(person.get(path).text)["csrf_token"]
    assert person.post(path + "/opt-out", data={"csrf_token": token, "opted_out": "yes"}).status_code == 303
    assert "Opt back in" in person.get(path).text and '/replies"' not in person.get(path).text
    assert person.post(path + "/opt-out", data={"csrf_token": token, "opted_out": "no"}).status_code == 303
    with reply_app.app_context():
        from app.contacts import optouts

        history = optouts.history(db.session, conversation_of(CUSTOMER).id)
        assert [(event.opted_out, event.user_id is not None) for event in history] == [(True, True), (False, True)]


def test_whatsapp_inside_its_window_with_sms_as_fallback(database_url, messente, user_row):
    app = make_app(
        database_url,
        MESSENTE_API_URL=messente.url,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        MESSENTE_WHATSAPP_SENDER="+37250000009",
    )
    with app.app_context():
        create_tables()
        user_row()
    runner.start(app)  # as every server process does
    try:
        client = app.test_client()
        AuthActions(client).login()
        deliver(app, channel="whatsapp", text="Hi from WhatsApp")
        page = client.get(thread_path(app)).text
        assert "WhatsApp window open for another 23 hours" in page
        assert '<option value="whatsapp+sms" data-sms>' in page
        send_reply(client, app, "Hello on WhatsApp", route="whatsapp+sms")
        [request] = messente.wait_for_requests(1)
        assert request.json["messages"] == [
            {
                "channel": "whatsapp",
                "sender": "+37250000009",
                "text": {"body": "Hello on WhatsApp", "preview_url": False},
            },
            {"channel": "sms", "sender": OUR_NUMBER, "text": "Hello on WhatsApp", "autoconvert": "off"},
        ]

        with app.app_context(), write_transaction():  # the customer wrote 25 hours ago: the window closed
            conversation = conversation_of(CUSTOMER)
            conversation.last_inbound_at -= timedelta(hours=25)
        page = client.get(thread_path(app)).text
        assert "only within 24 hours" in page and "whatsapp" not in reply_form(page)["route"]
    finally:
        close_app(app)


@pytest.mark.parametrize(
    "fields, note",
    [
        ({"channel": "telegram"}, "cannot send Telegram"),
        ({"sender": "MyShop"}, "cannot receive replies"),
        ({"sender": "1234"}, "cannot receive replies"),
    ],
)
def test_channels_and_senders_that_cannot_be_answered_say_so(reply_app, person, fields, note):
    deliver(reply_app, **fields)
    sender = fields.get("sender", CUSTOMER)
    page = person.get(thread_path(reply_app, sender)).text
    assert note in page
    if "sender" in fields:
        assert '/replies"' not in page


def test_several_of_our_numbers_let_the_person_pick(reply_app, person, messente):
    deliver(reply_app, recipient="+37250000001", text="to sales")
    deliver(reply_app, recipient=OUR_NUMBER, text="to support")
    page = person.get(thread_path(reply_app)).text
    assert re.findall(r"<option>(\+\d+)</option>", page) == [OUR_NUMBER, "+37250000001"]
    send_reply(person, reply_app, "From sales", sms_sender="+37250000001")
    [request] = messente.wait_for_requests(1)
    assert request.json["messages"][0]["sender"] == "+37250000001"


def test_without_api_credentials_the_box_says_what_to_set(app, client, auth, deliver):
    deliver(body_for(sender=CUSTOMER))
    auth.login()
    with app.app_context():
        path = f"/conversations/{conversation_of(CUSTOMER).id}"
    page = client.get(path).text
    assert "set MESSENTE_API_USERNAME and MESSENTE_API_PASSWORD" in page and '/replies"' not in page


def test_replies_are_sent_once_however_many_runners_look(clocked_app, messente):
    deliver(clocked_app)
    with clocked_app.app_context():
        conversation = conversation_of(CUSTOMER)
        for n in range(5):
            replies.queue_reply(conversation, f"Queued {n}", "sms", None, 1, f"{n}" * 16)
    # Two processes' runners (each its own app, engine and connections) at the same moment.
    other = make_app(
        clocked_app.config["SQLALCHEMY_DATABASE_URI"],
        **{
            name: clocked_app.config[name]
            for name in ("MESSENTE_API_URL", "MESSENTE_API_USERNAME", "MESSENTE_API_PASSWORD", "CLOCK")
        },
    )
    try:
        import threading

        def run(app):
            with app.app_context():
                jobs.run_due(clocked_app.now["moment"])
                db.session.remove()

        threads = [threading.Thread(target=run, args=(app,)) for app in (clocked_app, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [reply.status for reply in replies_in(clocked_app)] == ["sent"] * 5
        # In the order written: one conversation's replies go one at a time.
        assert [request.json["messages"][0]["text"] for request in messente.requests] == [
            f"Queued {n}" for n in range(5)
        ]
    finally:
        close_app(other)


def test_a_reply_whose_runner_died_while_sending_becomes_unconfirmed_and_is_not_resent(clocked_app, messente):
    deliver(clocked_app)
    start = clocked_app.now["moment"]
    with clocked_app.app_context():
        reply_id = replies.queue_reply(conversation_of(CUSTOMER), "Was it sent?", "sms", None, 1, "d" * 16)
        [job] = jobs.find_due(start)
        claimed = jobs.claim(job.id, job.kind, start, "a-runner-that-dies", clocked_app.config)
        with write_transaction() as session:  # it took the reply, and died before recording anything
            session.execute(sa.update(Message).where(Message.id == reply_id).values(status="sending", claimed_at=start))
    assert claimed is not None
    run_jobs_at(clocked_app, start + timedelta(seconds=20))  # it may still be on its way
    assert replies_in(clocked_app)[0].status == "sending"
    run_jobs_at(clocked_app, start + timedelta(minutes=5))  # its lease ran out
    [reply] = replies_in(clocked_app)
    assert reply.status == "unconfirmed" and "may or may not" in reply.problem
    run_jobs_at(clocked_app, start + timedelta(hours=1))
    assert messente.requests == []


class QuietServer(Server):
    """A server whose start is awaited without a request: a TCP connection made and closed."""

    def answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited: " + self.output()[-2000:]) from None
            return False


def test_a_reply_queued_before_a_restart_is_sent_by_a_server_that_gets_no_request(app, user, messente, tmp_path):
    app.config.update(
        MESSENTE_API_URL=messente.url,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        MESSENTE_SMS_SENDER="Shop",
    )
    deliver(app)
    with app.app_context():  # stored while no server ran
        replies.queue_reply(conversation_of(CUSTOMER), "Waiting for a server", "sms", None, 1, "w" * 16)
    access_log = tmp_path / "access.log"
    server = QuietServer(
        app.config["SQLALCHEMY_DATABASE_URI"],
        workers=1,
        threads=2,
        access_log=str(access_log),
        env={
            "MESSENTE_API_URL": messente.url,
            "MESSENTE_API_USERNAME": "api-user",
            "MESSENTE_API_PASSWORD": "api-password",
            "MESSENTE_SMS_SENDER": "Shop",
        },
    )
    try:
        server.start()
        [request] = messente.wait_for_requests(1, timeout=20)
        assert request.json["messages"][0]["text"] == "Waiting for a server"
        assert "jobs_runner" not in app.extensions  # the server sent it: this test process runs no jobs
        wait_for_status(app, "sent")
        with app.app_context():  # its runner's heartbeat is on the server's row (the admin's Jobs page)
            [row] = db.session.scalars(sa.select(ServerRow)).all()
            assert (row.kind, row.bind, row.runner_seen_at is not None) == ("server", f"127.0.0.1:{server.port}", True)
    finally:
        server.stop()
    assert access_log.read_text() == ""  # it served no request at all


def test_flask_worker_runs_the_jobs_in_its_own_process_and_shows_as_a_runner(app, user, messente):
    settings = {
        "MESSENTE_API_URL": messente.url,
        "MESSENTE_API_USERNAME": "api-user",
        "MESSENTE_API_PASSWORD": "api-password",
        "MESSENTE_SMS_SENDER": "Shop",
    }
    app.config.update(settings)
    deliver(app)
    with app.app_context():
        replies.queue_reply(conversation_of(CUSTOMER), "From the worker", "sms", None, 1, "f" * 16)
    worker = subprocess.Popen(
        **flask_process(app.config["SQLALCHEMY_DATABASE_URI"], "worker", env_extra=settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        [request] = messente.wait_for_requests(1, timeout=20)
        assert request.json["messages"][0]["text"] == "From the worker"
        wait_for_status(app, "sent")
        with app.app_context():
            [row] = db.session.scalars(sa.select(ServerRow)).all()
            assert (row.kind, row.pid, row.bind) == ("worker", worker.pid, "")
            assert row.runner_seen_at is not None
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 0, errors
    with app.app_context():
        assert db.session.scalars(sa.select(ServerRow)).all() == []  # it removed its row


@pytest.mark.slow
def test_killing_the_server_while_a_reply_is_sending_never_sends_it_twice(app, user, server_factory, messente):
    """kill -9 while the API call is in flight; a new server on the same database carries on."""
    messente.behave("silent")  # Messente has the request and never answers
    env = {
        "MESSENTE_API_URL": messente.url,
        "MESSENTE_API_USERNAME": "api-user",
        "MESSENTE_API_PASSWORD": "api-password",
        "MESSENTE_READ_TIMEOUT": "60",
    }
    first = server_factory(workers=1, threads=4, env=env)
    deliver(app)
    person = Browser()
    assert person.login(first.url, PASSWORD)[0] == 200
    _, _, page = person.get(first.url + thread_path(app))
    form = reply_form(page)
    assert person.post(first.url + form.pop("action"), {**form, "text": "In flight"})[0] == 200
    messente.wait_for_requests(1)
    for pid in [first.process.pid, *first.worker_pids()]:
        os.kill(pid, signal.SIGKILL)
    first.process.wait(timeout=10)

    # Another reply was stored meanwhile, to another customer (this one's next reply would wait
    # for the one in flight: a conversation's replies go in order): the new server's runner sends
    # it, and leaves the one in flight alone.
    app.config.update(MESSENTE_API_USERNAME="api-user", MESSENTE_API_PASSWORD="api-password")
    other = "+37255599999"
    deliver(app, sender=other)
    with app.app_context():
        replies.queue_reply(conversation_of(other), "Left queued", "sms", None, 1, "q" * 16)
    messente.behave("ok")
    server_factory(workers=2, threads=4, env=env)
    messente.wait_until(
        lambda requests: any(r.json["messages"][0]["text"] == "Left queued" for r in requests),
        timeout=30,
        what="the queued reply",
    )
    texts = [request.json["messages"][0]["text"] for request in messente.requests]
    assert sorted(texts) == ["In flight", "Left queued"]  # nothing twice
    statuses = {reply.text: reply.status for reply in replies_in(app)}
    assert statuses["In flight"] == "sending"  # never resent
    with app.app_context():
        # Once its job's lease is older than any live call could be, it is shown unconfirmed.
        jobs.run_due(replies.clock.now() + timedelta(minutes=10))
    assert {reply.text: reply.status for reply in replies_in(app)}["In flight"] == "unconfirmed"


@pytest.fixture
def blacklist_app(database_url, messente, user_row):
    app = make_app(
        database_url,
        MESSENTE_API_URL=messente.url,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        MESSENTE_BLACKLIST_SYNC=True,
    )
    with app.app_context():
        create_tables()
        user_row()
    runner.start(app)
    yield app
    close_app(app)


OUTBOX_SWEEP = 15.0  # seconds to wait for the app's own runner (a failed sync is tried again after 5 s)


def blacklist_state(app, sender: str = CUSTOMER) -> tuple[str | None, str | None]:
    with app.app_context():
        conversation = conversation_of(sender)
        return conversation.blacklist, conversation.blacklist_problem


def test_blacklist_sync_adds_on_stop_and_removes_only_what_it_added(blacklist_app, messente):
    deliver(blacklist_app, text="STOP")  # answered at once: the blacklist call is a job
    wait_until(lambda: messente.blacklist == {CUSTOMER}, "the number is blacklisted", timeout=OUTBOX_SWEEP)
    wait_until(lambda: blacklist_state(blacklist_app) == ("added", None), "it is known as ours", timeout=OUTBOX_SWEEP)
    deliver(blacklist_app, text="START")
    wait_until(lambda: messente.blacklist == set(), "the number is removed", timeout=OUTBOX_SWEEP)

    # A number someone else put on the blacklist stays there when the customer opts back in.
    other = "+37255500000"
    messente.add_to_blacklist(other)
    deliver(blacklist_app, sender=other, text="STOP")
    wait_until(
        lambda: blacklist_state(blacklist_app, other) == (None, None),
        "409: there already, not ours",
        timeout=OUTBOX_SWEEP,
    )
    deliver(blacklist_app, sender=other, text="START")
    with blacklist_app.app_context():

        def sync_pending() -> int:
            pending = db.session.scalar(
                sa.select(sa.func.count())
                .select_from(Job)
                .where(Job.kind == "sync_blacklist", Job.state.in_(["due", "running"]))
            )
            db.session.rollback()
            return pending

        wait_until(lambda: sync_pending() == 0, "the sync has run")
    assert messente.blacklist == {other}
    assert [request.method for request in messente.requests].count("DELETE") == 1  # ours only


def test_a_failed_blacklist_call_is_shown_retried_and_the_local_opt_out_holds(blacklist_app, person_of, messente):
    messente.behave("500")
    deliver(blacklist_app, text="stop")
    wait_until(
        lambda: (blacklist_state(blacklist_app)[1] or "").startswith("Messente's blacklist"),
        "the failure is recorded",
        timeout=OUTBOX_SWEEP,
    )
    with blacklist_app.app_context():
        assert conversation_of(CUSTOMER).opted_out and blacklist_state(blacklist_app)[0] == "add"
    page = person_of(blacklist_app).get(thread_path(blacklist_app)).text
    assert "(retrying)" in page and "opted out" in page
    messente.behave("ok")
    wait_until(lambda: messente.blacklist == {CUSTOMER}, "the retry succeeds", timeout=OUTBOX_SWEEP)
    wait_until(
        lambda: blacklist_state(blacklist_app) == ("added", None), "the problem is cleared", timeout=OUTBOX_SWEEP
    )


@pytest.fixture
def person_of():
    def logged_in(app):
        client = app.test_client()
        assert AuthActions(client).login().status_code == 302
        return client

    return logged_in


def test_a_burst_of_replies_from_two_processes_stays_under_one_rate_limit(database_url, messente, user_row):
    settings = dict(
        MESSENTE_API_URL=messente.url,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        MESSENTE_REQUESTS_PER_SECOND=20,
    )
    app, other = make_app(database_url, **settings), make_app(database_url, **settings)
    with app.app_context():
        create_tables()
        user_row()
    try:
        senders = [f"+3725551000{n}" for n in range(6)]
        for sender in senders:
            deliver(app, sender=sender)
        with app.app_context():
            for n in range(30):
                replies.queue_reply(conversation_of(senders[n % 6]), f"Burst {n}", "sms", None, 1, f"burst-{n:02d}" * 2)
        runner.start(app)  # two processes' runners, one budget
        runner.start(other)
        wait_for_status(app, "sent", count=30)
        times = sorted(request.at for request in messente.requests)
        busiest_second = max(sum(1 for other in times if start <= other < start + 1) for start in times)
        assert len(times) == 30 and busiest_second <= 21  # 20 a second, and one on the window's edge
    finally:
        close_app(app)
        close_app(other)
