"""`flask copy-db`: from a SQLite database filled through the real callback to PostgreSQL.

The copy is killed half-way, at a known batch, and resumed; the end result must be the same
rows in every table, and the app must keep working on the copy.
"""

import subprocess
from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app import jobs, tallies
from app.contacts import labels
from app.db.models import Conversation, Message, User
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.inbox import queries
from app.ops import copying
from conftest import (
    AuthActions,
    body_for,
    flask_command,
    flask_process,
    make_app,
    password_hash,
    signed_headers,
    wait_until,
)

# The target of every copy here is a fresh PostgreSQL schema (conftest's database_url).
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

BATCH_SIZE = 20
SENDERS = [
    "+37255512345",
    "+372 5551 2346",
    "+44 (20) 7946-0958",
    "+4915112345678",
    "Ülle",
    "ABC",
    "abc",
    "Zürich",
    "東京",
    "Привет",
    "+15550100",
    "+15550101",
]
TEXTS = ["Tere! 👋", "Привет, мир", "日本語のメッセージ", "", "two\nlines", 'a "quote" and \\', "Ω≈ç√∫ 🇪🇪", "x" * 500]
MESSAGES = 300


def run(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return flask_command(database_url, *args)


@pytest.fixture(scope="module")
def source_url(tmp_path_factory):
    """A SQLite database as `make run` makes it, filled through the signed callback."""
    url = f"sqlite:///{tmp_path_factory.mktemp('copy') / 'source.sqlite3'}"
    migrated = run(url, "init-db")
    assert migrated.returncode == 0, migrated.stderr

    app = make_app(url)
    with app.app_context():
        db.session.add(User(username="alice", password_hash=password_hash()))
        db.session.commit()
    client = app.test_client()
    assert AuthActions(client).login("mallory", "wrong password").status_code == 401  # a throttle row

    def deliver(body: bytes):
        return client.post("/callbacks/inbound", data=body, headers=signed_headers(body))

    for n in range(MESSAGES):
        body = body_for(
            msg_id=f"msg-{n:04d}",
            sender=SENDERS[n % len(SENDERS)],
            text=TEXTS[n % len(TEXTS)],
            time=f"2024-06-{1 + n % 28:02d}T08:{n % 60:02d}:00.123456Z",
            channel=["sms", "viber", "whatsapp"][n % 3],
        )
        assert deliver(body).json == {"status": "stored"}
    assert deliver(body_for(msg_id="msg-0007")).json == {"status": "duplicate"}
    assert deliver(body_for(sender=None)).status_code == 400  # dead letters
    assert deliver(b'{"msg_id": "\xff\xfe not UTF-8"}').status_code == 400
    with app.app_context():
        with write_transaction():  # work waiting to be done goes with the data
            jobs.enqueue("prune_jobs", key="copied")
        # Labels on every conversation: more rows than a batch in a table keyed by two columns.
        conversation_ids = db.session.scalars(sa.select(Conversation.id)).all()
        for name in ("Refund", "VIP", "Später"):
            label_id = labels.create(name)
            for conversation_id in conversation_ids:
                labels.add_to(conversation_id, label_id)
        with write_transaction() as session:
            tallies.add(session.connection(), datetime(2024, 6, 1, 8, 7), "cost", Decimal("0.045600"), channel="sms")
        db.engine.dispose()
    return url


def all_rows(url: str) -> dict[str, list[tuple]]:
    """Every row of every table copy-db copies, in primary-key order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table.name: sorted(tuple(row) for row in connection.execute(sa.select(table)))
                for table in copying.TABLES
            }
    finally:
        engine.dispose()


def message_ids(url: str) -> list[int]:
    return [row[0] for row in all_rows(url)["message"]]


def test_interrupted_copy_resumes_and_ends_with_identical_data(source_url, database_url):
    target_url = database_url
    assert run(target_url, "init-db").returncode == 0
    source = all_rows(source_url)
    assert len(source["message"]) == MESSAGES and len(source["dead_letter"]) == 2
    assert source["user"] and source["daily_count"] and source["change_counter"] != [(1, 0)]
    assert len(source["conversation_label"]) > BATCH_SIZE and source["tally"]

    # Hold the id of a message in the middle in an open transaction: the copy blocks on that
    # batch, the batches before it are committed, and it is killed right there.
    ids = message_ids(source_url)
    held = ids[len(ids) // 2]
    committed = ids.index(held) // BATCH_SIZE * BATCH_SIZE
    target = sa.create_engine(target_url)
    blocker = target.connect()
    try:
        # Its conversation is not there yet: this session skips foreign-key checks (superuser).
        blocker.exec_driver_sql("SET session_replication_role = replica")
        blocker.execute(
            sa.insert(Message).values(
                id=held,
                conversation_id=0,
                msg_id="holds-a-key",
                channel="sms",
                sender="x",
                text="",
                raw_body=b"",
                sent_at=sa.func.now(),
                received_at=sa.func.now(),
                change_seq=0,
            )
        )
        blocker_pid = blocker.scalar(sa.select(sa.func.pg_backend_pid()))
        copy = subprocess.Popen(
            **flask_process(source_url, "copy-db", "--to", target_url, "--batch-size", str(BATCH_SIZE)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_blocked_by(target, blocker_pid, copy)
        finally:
            copy.kill()
            copy.wait()
        blocker.rollback()
    finally:
        blocker.close()
        target.dispose()

    interrupted = all_rows(target_url)
    assert interrupted["user"] == source["user"]
    assert interrupted["message"] == source["message"][:committed]
    assert 0 < committed < MESSAGES
    assert interrupted["conversation"] == source["conversation"]  # copied before messages
    assert interrupted["dead_letter"] == [] and interrupted["change_counter"] == [(1, 0)]

    resumed = run(source_url, "copy-db", "--to", target_url, "--batch-size", str(BATCH_SIZE))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"message: {MESSAGES - committed} rows copied, {committed} were already there" in resumed.stdout
    assert "Copy verified" in resumed.stdout
    assert all_rows(target_url) == source

    the_app_works_on_the_copy(target_url, highest_copied_id=max(ids))


def wait_until_blocked_by(engine: sa.Engine, blocker_pid: int, process: subprocess.Popen) -> None:
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")

    def blocked() -> bool:
        assert process.poll() is None, "copy-db ended before it reached the held row"
        with engine.connect() as connection:
            return connection.scalar(query, {"pid": blocker_pid}) > 0

    wait_until(blocked, "copy-db reaches the held row", timeout=60)


def the_app_works_on_the_copy(target_url: str, highest_copied_id: int) -> None:
    app = make_app(target_url)
    try:
        client = app.test_client()
        assert AuthActions(client).login().status_code == 302  # the copied password hash works
        inbox = client.get("/").text
        for sender in ("+37255512345", "Ülle", "東京", "Привет"):
            assert sender in inbox

        with app.app_context():
            copied_change = queries.latest_change()
        body = body_for(msg_id="after-the-move", sender="+37255599999", text="Hello again")
        assert client.post("/callbacks/inbound", data=body, headers=signed_headers(body)).json == {"status": "stored"}
        with app.app_context():
            new_id = db.session.scalar(sa.select(Message.id).where(Message.msg_id == "after-the-move"))
            new_change = queries.latest_change()
        assert new_id == highest_copied_id + 1  # the sequence continues after the copied ids
        # Change numbers go on after the copied ones: a browser that saw the last copied change
        # learns that there is something new.
        assert new_change == copied_change + 1
        assert client.get(f"/?since={copied_change}").status_code == 200
        assert client.get(f"/?since={new_change}").status_code == 204
    finally:
        with app.app_context():
            db.engine.dispose()


def test_copy_creates_the_schema_and_fails_when_the_target_differs(source_url, database_url):
    first = run(source_url, "copy-db", "--to", database_url.replace("postgresql+psycopg://", "postgres://"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Copy verified" in first.stdout
    assert all_rows(database_url) == all_rows(source_url)

    target = sa.create_engine(database_url)
    with target.begin() as connection:
        connection.execute(sa.update(Message).where(Message.msg_id == "msg-0042").values(text="changed"))
    target.dispose()

    again = run(source_url, "copy-db", "--to", database_url)
    assert again.returncode == 1
    [message_line] = [line for line in again.stdout.splitlines() if line.strip().startswith("message ")]
    assert "DIFFERENT" in message_line
    assert again.stdout.count(" same") == len(copying.TABLES) - 1
    assert "differs from the source in: message" in again.stderr


def test_ids_of_rows_deleted_before_the_copy_are_not_handed_out_again(tmp_path, database_url):
    """The newest conversation was erased on SQLite before the move: on PostgreSQL the next
    conversation and message get new ids, not the erased ones (which audit events still name)."""
    url = f"sqlite:///{tmp_path / 'erased.sqlite3'}"
    assert run(url, "init-db").returncode == 0
    app = make_app(url)
    client = app.test_client()
    for n, sender in enumerate(["+37255510001", "+37255510002", "+37255510003"]):
        body = body_for(msg_id=f"m{n}", sender=sender)
        assert client.post("/callbacks/inbound", data=body, headers=signed_headers(body)).json == {"status": "stored"}
    with app.app_context():
        from app.db.models import Conversation
        from app.privacy import erasure

        erased = db.session.scalar(sa.select(Conversation.id).where(Conversation.sender == "+37255510003"))
        erasure.erase_conversation(erased)
        db.engine.dispose()
    copied = run(url, "copy-db", "--to", database_url)
    assert copied.returncode == 0, copied.stdout + copied.stderr

    target = make_app(database_url)
    try:
        body = body_for(msg_id="after-the-move", sender="+37255510004")
        target_client = target.test_client()
        assert target_client.post("/callbacks/inbound", data=body, headers=signed_headers(body)).json == {
            "status": "stored"
        }
        with target.app_context():
            from app.db.models import Conversation

            new = db.session.execute(
                sa.select(Conversation.id, Conversation.last_message_id).where(Conversation.sender == "+37255510004")
            ).one()
        assert new == (erased + 1, 4)  # neither the erased conversation's id nor its message's (3)
    finally:
        with target.app_context():
            db.engine.dispose()
