"""Two app instances (two gunicorn servers) on one PostgreSQL database agree on everything.

A load balancer may send the provider's retry of a message to the other instance at the same
moment as the original, and a person's requests to either instance.
"""

import json
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.db.models import Conversation, DailyCount, Message
from app.extensions import db
from conftest import PASSWORD, Browser, body_for, csrf_token, signed_headers

# Several instances need a database server: PostgreSQL only.
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

STORM = 2000
REPEATED = STORM // 5  # messages sent twice: the original to one instance, the repeat to the other
CONNECTIONS = 20
SENDERS = [f"+3725550{n:03d}" for n in range(40)]


def post_callback(base_url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        base_url + "/callbacks/inbound", data=body, headers=signed_headers(body), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())["status"]
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


@pytest.mark.slow
def test_callback_storm_split_across_two_instances_stores_each_message_once(app, server_factory):
    first, second = server_factory(workers=2, threads=4), server_factory(workers=2, threads=4)
    unique = STORM - REPEATED
    bodies = {
        f"storm-{n}": body_for(msg_id=f"storm-{n}", sender=SENDERS[n % len(SENDERS)], text=f"message {n} ✉️")
        for n in range(unique)
    }
    repeated = set(random.Random(5).sample(sorted(bodies), REPEATED))

    # A job is (instance, msg_id, barrier). Both halves of a pair are queued next to each other
    # and wait on one barrier, so the original and the repeat reach the two instances together.
    jobs = []
    for n, msg_id in enumerate(bodies):
        if msg_id in repeated:
            together = threading.Barrier(2)
            original, repeat = (first, second) if n % 2 else (second, first)
            jobs += [(original, msg_id, together), (repeat, msg_id, together)]
        else:
            jobs.append(((first, second)[n % 2], msg_id, None))

    def send(job) -> tuple[str, int, str]:
        server, msg_id, together = job
        if together is not None:
            together.wait(timeout=60)
        return (msg_id, *post_callback(server.url, bodies[msg_id]))

    started = time.monotonic()
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        results = list(pool.map(send, jobs))
    elapsed = time.monotonic() - started
    print(f"\n{STORM} callbacks over two instances in {elapsed:.1f} s: {STORM / elapsed:.0f}/s")

    assert len(results) == STORM
    assert [
        (status, outcome) for _, status, outcome in results if status != 200 or outcome not in ("stored", "duplicate")
    ] == []
    outcomes = Counter((msg_id, outcome) for msg_id, _, outcome in results)
    assert all(outcomes[msg_id, "stored"] == 1 for msg_id in bodies)
    assert sum(count for (_, outcome), count in outcomes.items() if outcome == "duplicate") == REPEATED

    expected_per_sender = Counter(SENDERS[n % len(SENDERS)] for n in range(unique))
    with app.app_context():
        assert sorted(db.session.scalars(sa.select(Message.msg_id))) == sorted(bodies)
        newest_per_sender = dict(
            db.session.execute(sa.select(Message.sender, sa.func.max(Message.id)).group_by(Message.sender)).all()
        )
        conversations = db.session.scalars(sa.select(Conversation)).all()
        assert {c.sender: c.message_count for c in conversations} == expected_per_sender
        assert {c.sender: c.unread_count for c in conversations} == expected_per_sender
        assert {c.sender: c.last_message_id for c in conversations} == newest_per_sender
        assert db.session.scalar(sa.select(sa.func.sum(DailyCount.count))) == unique
    for server in (first, second):
        assert "Traceback" not in server.output()


def test_login_throttling_sessions_and_read_state_are_shared_by_instances(app, user, server_factory):
    first, second = server_factory(workers=1, threads=4), server_factory(workers=1, threads=4)
    limit = app.config["LOGIN_MAX_FAILURES"]

    # Failed attempts spread over both instances add up to one lockout, seen by both.
    attacker = Browser()
    for attempt in range(limit):
        status, _, _ = attacker.login((first, second)[attempt % 2].url, "wrong password")
        assert status == 401
    with app.app_context():
        failures, locked_until = db.session.execute(
            sa.text("SELECT failures, locked_until FROM login_throttle WHERE username = 'alice' AND kind = 'address'")
        ).one()
        assert failures == limit and locked_until is not None
        # Held for a minute, so that both instances are asked while it holds.
        db.session.execute(
            sa.text("UPDATE login_throttle SET locked_until = :until WHERE username = 'alice'"),
            {"until": locked_until + timedelta(minutes=1)},
        )
        db.session.commit()
    for server in (first, second):
        status, _, page = attacker.login(server.url, PASSWORD)
        assert status == 401 and "locked" in page

    with app.app_context():  # the lock has expired
        db.session.execute(sa.text("UPDATE login_throttle SET locked_until = NULL"))
        db.session.commit()

    # Logged in through one instance, the person is logged in on the other.
    person = Browser()
    status, landed, _ = person.login(first.url, PASSWORD)
    assert status == 200 and urllib.parse.urlsplit(landed).path == "/"
    status, landed, _ = person.get(second.url + "/")
    assert status == 200 and urllib.parse.urlsplit(landed).path == "/"

    # A message read through one instance is read on the other.
    body = body_for(sender="+37255512345", text="read me")
    assert post_callback(first.url, body) == (200, "stored")
    assert "<title>(1) Inbox" in person.get(first.url + "/")[2]
    _, _, thread = person.get(second.url + "/conversations/" + urllib.parse.quote("+37255512345"))
    read_form = re.search(r'action="([^"]+/read)".*?name="through" value="(\d+)"', thread, re.S)
    person.post(second.url + read_form.group(1), {"through": read_form.group(2), "csrf_token": csrf_token(thread)})
    assert "<title>Inbox" in person.get(first.url + "/")[2]

    # Logging out through one instance ends the session on both, even for a copy of the cookie.
    old_cookie = person.copy()
    _, _, page = person.get(second.url + "/")
    person.post(second.url + "/logout", {"csrf_token": csrf_token(page)})
    assert urllib.parse.urlsplit(old_cookie.get(second.url + "/")[1]).path == "/login"
    assert urllib.parse.urlsplit(old_cookie.get(first.url + "/")[1]).path == "/login"


def test_replies_queued_while_two_instances_run_are_each_sent_once_within_one_rate(app, user, server_factory, messente):
    """Every worker of both instances runs jobs: each reply goes once, all within one rate budget,
    and each instance's runners heartbeat on its own row (the admin's Jobs page)."""
    from app import replies
    from app.db.models import Server
    from app.db.unit_of_work import write_transaction
    from conftest import conversation_of, wait_until

    settings = {
        "MESSENTE_API_URL": messente.url,
        "MESSENTE_API_USERNAME": "api-user",
        "MESSENTE_API_PASSWORD": "api-password",
        "MESSENTE_SMS_SENDER": "Shop",
        "MESSENTE_REQUESTS_PER_SECOND": "10",
    }
    first, second = (server_factory(workers=2, threads=4, env=settings) for _ in range(2))
    senders = SENDERS[:10]
    for sender in senders:
        assert post_callback(first.url, body_for(sender=sender))[0] == 200
    app.config.update({name: value for name, value in settings.items() if name != "MESSENTE_REQUESTS_PER_SECOND"})
    with app.app_context():
        with write_transaction():  # committed at once: every runner finds them together
            for n in range(20):
                replies.queue_reply(
                    conversation_of(senders[n % 10]), f"Reply {n}", "sms", None, 1, f"multi-{n:04d}" * 2
                )
    messente.wait_until(lambda requests: len(requests) >= 20, timeout=30, what="20 replies")

    def sent() -> int:
        with app.app_context():
            return db.session.scalar(sa.select(sa.func.count()).select_from(Message).where(Message.status == "sent"))

    wait_until(lambda: sent() == 20, "every reply is recorded sent")
    with app.app_context():
        rows = db.session.scalars(sa.select(Server)).all()
        assert len(rows) == 2 and all(row.runner_seen_at is not None for row in rows)
    texts = sorted(request.json["messages"][0]["text"] for request in messente.requests)
    assert texts == sorted(f"Reply {n}" for n in range(20))  # each once
    times = sorted(request.at for request in messente.requests)
    assert max(sum(1 for other in times if start <= other < start + 1) for start in times) <= 11
