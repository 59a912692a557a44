"""Helpers shared by several test modules (their fixtures are in conftest.py)."""

import http.client
import json
import re
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html import unescape

import sqlalchemy as sa

from app import replies
from app.db.models import Conversation, DailyCount, Message, User
from app.extensions import db
from conftest import AuthActions, body_for, conversation_of, signed_headers, wait_until

# --- a clock and a login from an address ------------------------------------


class Clock:
    """A clock a test moves by hand: app.config["CLOCK"]."""

    def __init__(self):
        self.moment = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta) -> None:
        self.moment += timedelta(**delta)


def from_address(app, address: str, forwarded_for: str | None = None) -> AuthActions:
    """Log in as a client at `address` (the socket's), perhaps claiming an X-Forwarded-For."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    if forwarded_for is not None:
        client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return AuthActions(client)


# --- admin forms -----------------------------------------------------------


def post(actions: AuthActions, url: str, page: str = "/account", **form):
    return actions.client.post(url, data={"csrf_token": actions.csrf(page), **form})


def user_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(User.id).where(User.username == name))


# --- replies through the fake Messente -----------------------------------

CUSTOMER = "+37255512345"
OUR_NUMBER = "+37250000000"


def deliver(app, **fields) -> None:
    body = body_for(**{"sender": CUSTOMER, "recipient": OUR_NUMBER, **fields})
    response = app.test_client().post("/callbacks/inbound", data=body, headers=signed_headers(body))
    assert response.status_code == 200, response.json


def thread_path(app, sender: str = CUSTOMER) -> str:
    with app.app_context():
        return f"/conversations/{conversation_of(sender).id}"


def reply_form(html: str) -> dict:
    form = re.search(r'<form method="post" action="([^"]+/replies)".*?</form>', html, re.S)
    assert form, "no reply box on the page"
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(0)))
    return {"action": unescape(form.group(1)), **{name: unescape(value) for name, value in fields.items()}}


def send_reply(person, app, text: str, **choices) -> dict:
    path = thread_path(app)
    form = reply_form(person.get(path).text)
    action = form.pop("action")
    response = person.post(action, data={**form, "text": text, **choices}, headers={"HX-Request": "true"})
    assert response.status_code == 200, response.text
    return form


def replies_in(app) -> list[Message]:
    with app.app_context():
        found = db.session.scalars(sa.select(Message).where(Message.direction == "out").order_by(Message.id)).all()
        db.session.expunge_all()
        return found


def wait_for_status(app, status: str, count: int = 1, timeout: float = 10.0) -> list[Message]:
    def became() -> list[Message] | None:
        found = replies_in(app)
        return found if len(found) >= count and all(reply.status == status for reply in found[:count]) else None

    return wait_until(
        became,
        lambda: f"replies become {status!r}: {[(r.status, r.problem) for r in replies_in(app)]}",
        timeout=timeout,
        interval=0.02,
    )


# --- delivery reports ---------------------------------------------------


def a_sent_reply(app, omnimessage_id: str = "omni-1") -> int:
    """A reply as its send job leaves it after Messente's 201 (the sending itself is tested elsewhere)."""
    body = body_for(sender=CUSTOMER, recipient="+37250000000")
    assert app.test_client().post("/callbacks/inbound", data=body, headers=signed_headers(body)).status_code == 200
    with app.app_context():
        conversation = conversation_of(CUSTOMER)
        reply_id = replies.queue_reply(conversation, "Your order is on its way", "sms", None, 1, "x" * 16)
        replies.record(reply_id, conversation.id, "sent", omnimessage_id=omnimessage_id)
    return reply_id


# --- a storm of callbacks over many connections ----------------------


def storm_plan(requests: int, prefix: str, senders: int = 40) -> list[tuple[str, bytes]]:
    """`requests` signed callbacks, a fifth of them repeats of a msg_id.

    Each repeat comes right after its original, so the two are dealt to neighbouring
    connections at the same position and arrive at the same time.
    """
    repeats = requests // 5
    plan = []
    for n in range(requests - repeats):
        msg_id = f"{prefix}-{n}"
        body = body_for(msg_id=msg_id, sender=f"+3725{n % senders:05d}", text=f"storm message {n}")
        plan.append((msg_id, body))
        if n % 4 == 0 and n // 4 < repeats:
            plan.append((msg_id, body))  # the provider's retry, byte for byte
    assert len(plan) == requests
    return plan


class Storm:
    """Send a plan over `connections` concurrent keep-alive connections; record every answer.

    An answer is (msg_id, HTTP status or None when none came, "stored"/"duplicate" or the error).
    A connection that breaks is replaced and the storm goes on, as the provider would.
    """

    def __init__(self, port: int, plan: list[tuple[str, bytes]], connections: int = 32, timeout: float = 30.0):
        self.port, self.timeout = port, timeout
        self.lanes = [plan[lane::connections] for lane in range(connections)]
        self.answers: list[tuple[str, int | None, str]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.send_lane, args=(lane,)) for lane in self.lanes]
        self.seconds = 0.0
        self.latencies: list[float] = []  # of the requests that got an answer

    def latency(self, share: float) -> float:
        """The time within which `share` of the answered requests were answered, in seconds."""
        ordered = sorted(self.latencies)
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)

    def start(self) -> "Storm":
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> "Storm":
        for thread in self.threads:
            thread.join(timeout=300)
            assert not thread.is_alive(), "a storm connection hung"
        self.seconds = time.monotonic() - self.started
        return self

    def run(self) -> "Storm":
        return self.start().join()

    def answered(self) -> int:
        with self.lock:
            return len(self.answers)

    def wait_until_answered(self, count: int, limit: float = 120):
        self.wait_until(lambda answers: len(answers) >= count, limit)

    def wait_until(self, condition, limit: float = 120):
        """Until condition(answers so far) holds; AssertionError after `limit` seconds."""

        def holds() -> bool:
            with self.lock:
                return condition(list(self.answers))

        wait_until(
            holds, lambda: f"the storm's condition, with {self.answered()} answers", timeout=limit, interval=0.01
        )

    def send_lane(self, lane):
        connection = None
        for msg_id, body in lane:
            started = time.monotonic()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                answer = post_callback(connection, msg_id, body)
                self.latencies.append(time.monotonic() - started)
            except (OSError, http.client.HTTPException) as exc:
                if connection is not None:
                    connection.close()
                connection = None
                answer = (msg_id, None, exc.__class__.__name__)
            with self.lock:
                self.answers.append(answer)
        if connection is not None:
            connection.close()


def post_callback(connection: http.client.HTTPConnection, msg_id: str, body: bytes):
    connection.request("POST", "/callbacks/inbound", body, signed_headers(body))
    response = connection.getresponse()
    payload = response.read()
    if response.status == 200:
        return msg_id, 200, json.loads(payload)["status"]
    return msg_id, response.status, payload[:200].decode(errors="replace")


def replay_unacked(port: int, plan: list[tuple[str, bytes]], answers) -> list[tuple[str, int | None, str]]:
    """Send again, one by one, every msg_id that never got a 200: what the provider's retries do."""
    acked = {msg_id for msg_id, status, _ in answers if status == 200}
    bodies = dict(plan)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        return [post_callback(connection, msg_id, bodies[msg_id]) for msg_id in bodies if msg_id not in acked]
    finally:
        connection.close()


def stored_msg_ids(app) -> Counter:
    with app.app_context():
        return Counter(db.session.scalars(sa.select(Message.msg_id)))


def assert_counters_match_messages(app, unread_untouched: bool = True):
    """Each conversation's counters and latest message agree with its messages; so does the chart."""
    with app.app_context():
        actual = {
            sender: (count, newest)
            for sender, count, newest in db.session.execute(
                sa.select(Message.sender, sa.func.count(), sa.func.max(Message.id)).group_by(Message.sender)
            )
        }
        conversations = list(db.session.scalars(sa.select(Conversation)))
        daily_total = db.session.scalar(sa.select(sa.func.sum(DailyCount.count))) or 0
    assert {c.sender for c in conversations} == set(actual)
    for conversation in conversations:
        count, newest = actual[conversation.sender]
        assert conversation.message_count == count, conversation.sender
        assert conversation.last_message_id == newest, conversation.sender
        if unread_untouched:
            assert conversation.unread_count == count, conversation.sender
    total = sum(count for count, _ in actual.values())
    if unread_untouched:
        assert sum(c.unread_count for c in conversations) == total
    assert daily_total == total


# --- the statements a request runs and their query plans -------------


@contextmanager
def statements_run(app):
    """The SQL statements (and their parameters) the app sends to the database in the block."""
    with app.app_context():
        engine = db.engine
    statements = []

    def capture(_connection, _cursor, statement, parameters, _context, _executemany):
        if re.match(r"\s*(SELECT|UPDATE|INSERT|DELETE)\b", statement, re.IGNORECASE):
            statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)


def sqlite_plan(app, statement: str, parameters) -> list[str]:
    with app.app_context():
        rows = db.session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return [row[-1] for row in rows]


def postgresql_plan(app, statement: str, parameters) -> str:
    with app.app_context():
        return "\n".join(row[0] for row in db.session.connection().exec_driver_sql("EXPLAIN " + statement, parameters))


def unindexed_reads(plan: list[str], scannable: tuple[str, ...] = ()) -> list[str]:
    """Plan lines that read a whole table or sort a whole result.

    "SCAN t USING INDEX" walks an index in order and stops at the LIMIT: fine, except on
    message, which only a full export may read from end to end.
    """
    bad = []
    for line in plan:
        scan = re.match(r"SCAN (\w+)", line)
        if scan and scan.group(1) not in scannable and (scan.group(1) == "message" or "INDEX" not in line):
            bad.append(line)
        if "TEMP B-TREE" in line:
            bad.append(line)
    return bad


def plans_of_requests(app, client, paths: list[tuple[str, int]], scannable: tuple[str, ...] = ()) -> dict:
    """For each path (and the status it must answer), the plan lines of its statements that
    are not index reads."""
    found = {}
    for path, status in paths:
        with statements_run(app) as statements:
            assert client.get(path).status_code == status, path
        assert statements, f"{path} ran no query"
        for statement, parameters in statements:
            bad = unindexed_reads(sqlite_plan(app, statement, parameters), scannable)
            if bad:
                found[(path, " ".join(statement.split()))] = bad
    return found


def text_index_reads(plan: list[str]) -> list[str]:
    """Plan lines that read the conversation text index, and the sorts of what it found."""
    return [
        line
        for line in plan
        if "conversation_fts VIRTUAL TABLE INDEX" in line
        or "TEMP B-TREE" in line
        or line.startswith(("SCAN anon_", "COMPOUND", "LEFT-MOST"))
        or line == "SCAN CONSTANT ROW"
    ]  # none found: an empty list of ids
