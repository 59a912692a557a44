"""`flask seed-demo`: realistic bulk data whose conversations and chart stay exact."""

import os
import random
import sqlite3
import statistics
import subprocess
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.callbacks import ingest
from app.db import folding
from app.db.models import Conversation, ConversationRecipient, DailyCount, Message
from app.extensions import db
from app.inbox import search
from app.ops import demo
from conftest import body_for, conversation_of, flask_process, signed_headers, wait_until


def assert_consistent() -> None:
    """Conversations and daily counts are what the messages themselves say."""
    per_sender = {
        sender: (count, newest)
        for sender, count, newest in db.session.execute(
            sa.select(Message.sender, sa.func.count(), sa.func.max(Message.id)).group_by(Message.sender)
        )
    }
    conversations = {c.sender: c for c in db.session.scalars(sa.select(Conversation))}
    assert conversations.keys() == per_sender.keys()
    assert (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Message)
            .join(Conversation)
            .where(Conversation.sender != Message.sender)
        )
        == 0
    )
    for sender, conversation in conversations.items():
        count, newest = per_sender[sender]
        last = db.session.get(Message, newest)
        assert (conversation.message_count, conversation.last_message_id) == (count, newest), sender
        assert (conversation.last_sent_at, conversation.channel) == (last.sent_at, last.channel)
        assert conversation.last_text == last.text[:160]
        assert conversation.sender_key == folding.search_key(sender)
        assert 0 <= conversation.unread_count <= count
    received_days = Counter(moment.date() for moment in db.session.scalars(sa.select(Message.received_at)))
    assert dict(db.session.execute(sa.select(DailyCount.day, DailyCount.count)).all()) == received_days
    recipients = set(db.session.execute(sa.select(Message.conversation_id, Message.recipient).distinct()).all())
    assert (
        set(db.session.execute(sa.select(ConversationRecipient.conversation_id, ConversationRecipient.recipient)).all())
        == recipients
    )
    assert_searchable()


def assert_searchable() -> None:
    """Text search finds exactly the messages whose text holds a word, newest first, as for ingested ones."""
    for word in ("tellimus", "спасибо", "aitah"):  # "Aitäh" folds to "aitah"
        expected = [
            id_
            for id_, folded in db.session.execute(
                sa.select(Message.id, Message.folded_text).order_by(Message.id.desc())
            )
            if word in folded
        ][: search.PAGE]
        hits, _ = search.search_messages(word)
        assert [hit.id for hit in hits] == expected, word
    if db.session.get_bind().dialect.name == "sqlite":  # the trigram index holds every message once
        assert db.session.execute(
            sa.text("SELECT count(*) FROM message_fts WHERE message_fts MATCH 'tel'")
        ).scalar() == db.session.scalar(
            sa.select(sa.func.count()).select_from(Message).where(Message.folded_text.contains("tel"))
        )


def test_seed_demo_fills_a_realistic_consistent_inbox(app, runner):
    result = runner.invoke(args=["seed-demo", "--messages", "3000", "--senders", "150"])
    assert result.exit_code == 0, result.output
    assert "Added 3,000 messages from 150 senders" in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 3000
        assert_consistent()
        if db.session.get_bind().dialect.name == "sqlite":  # the text index's build memory is put back
            assert db.session.execute(sa.text("SELECT k FROM message_fts_config WHERE k = 'hashsize'")).all() == []
        counts = sorted(db.session.scalars(sa.select(Conversation.message_count)), reverse=True)
        assert len(counts) == 150
        assert counts[0] >= 20 * statistics.median(counts)  # a few busy senders, most with a handful
        messages = db.session.scalars(sa.select(Message)).all()
        assert {m.channel for m in messages} == {"sms", "viber", "whatsapp", "telegram"}
        texts = " ".join({m.text for m in messages})
        assert "ä" in texts and "Спасибо" in texts and "👍" in texts
        days = {m.received_at.date() for m in messages}
        assert (max(days) - min(days)).days >= 55  # spread over about 60 days: the chart has data
        assert len({m.msg_id for m in messages}) == 3000
        for message in random.Random(1).sample(messages, 50):
            # The stored body is one the callback would have filed as this very row.
            parsed = ingest.parse_payload(message.raw_body)
            assert (parsed.msg_id, parsed.sender, parsed.text, parsed.channel, parsed.sent_at) == (
                message.msg_id,
                message.sender,
                message.text,
                message.channel,
                message.sent_at,
            )
            assert message.sent_at <= message.received_at


def test_seeding_a_database_in_use_merges_and_ingest_carries_on(app, deliver):
    with app.app_context():
        demo.seed(500, 40, rng=random.Random(7))
        # The same generator gives the same senders: their conversations must add up.
        demo.seed(700, 40, rng=random.Random(7))
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Conversation)) == 40
        assert_consistent()
        sender = db.session.scalar(sa.select(Conversation.sender).limit(1))
        newest = db.session.scalar(sa.select(sa.func.max(Message.id)))

    # A real callback afterwards gets the next id (PostgreSQL's sequence was moved past ours).
    response = deliver(body_for(sender=sender, text="after the demo"))
    assert response.json == {"status": "stored"}
    with app.app_context():
        conversation = conversation_of(sender)
        assert conversation.last_message_id > newest and conversation.last_text == "after the demo"
        assert_consistent()


def test_seeding_after_a_test_message_still_spreads_over_60_days(app, runner, deliver):
    """After a test message the demo still spreads its messages over the last 60 days (it used to
    squeeze them into the seconds after it: every row the same minute, one bar in the chart)."""
    test_message = body_for(sender="+37255664418", text="the test message")
    assert deliver(test_message).json == {"status": "stored"}
    result = runner.invoke(args=["seed-demo", "--messages", "2000", "--senders", "100"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        demo_arrivals = list(
            db.session.scalars(
                sa.select(Message.received_at).where(Message.sender != "+37255664418").order_by(Message.id)
            )
        )
        assert len(demo_arrivals) == 2000
        assert len({moment.date() for moment in demo_arrivals}) >= 50  # of the 61 days the 60 touch
        assert (max(demo_arrivals) - min(demo_arrivals)).days >= 55
        assert demo_arrivals == sorted(demo_arrivals)  # the demo's ids follow its arrivals
        assert len(list(db.session.scalars(sa.select(DailyCount.day)))) >= 50  # the chart's bars
        assert conversation_of("+37255664418").message_count == 1
        assert_consistent()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_seeding_an_empty_inbox_while_another_connection_has_the_file_open(app):
    """SQLite refuses to leave WAL mode at once while another connection has the file open: the
    seeding stays in WAL mode instead of failing with "database is locked"."""
    path = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
    other = sqlite3.connect(path)
    try:
        assert other.execute("SELECT count(*) FROM message").fetchone() == (0,)
        with app.app_context():
            demo.seed(500, 20, rng=random.Random(2))
            assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 500
            assert_consistent()
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        other.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_seed_demo_into_an_empty_inbox_while_the_server_serves_and_writes(app, server_factory):
    """`make run` serving the same file, and a writer holding the write lock for a moment:
    seed-demo waits its turn as the server's writers do, and the server carries on."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    path = Path(sa.make_url(url).database)
    server = server_factory(workers=1)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # what a callback's transaction holds, for longer
    writer.execute("UPDATE change_counter SET value = value")
    seeding = subprocess.Popen(
        **flask_process(url, "seed-demo", "--messages", "2000", "--senders", "100"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # seed-demo meets the lock: it is inside its write transaction (it has the write-lock file
        # open, app/db/unit_of_work.py), and SQLite's busy handler has it sleeping until the lock is free.
        wait_until(
            lambda: (
                seeding.poll() is not None
                or (has_open(seeding.pid, path.with_suffix(".write-lock")) and sleeping(seeding.pid))
            ),
            "seed-demo waits for the write lock",
            timeout=60,
        )
        assert seeding.poll() is None, seeding.communicate()
    finally:
        writer.execute("COMMIT")
        writer.close()
    out, err = seeding.communicate(timeout=120)
    assert seeding.returncode == 0, err
    assert "Traceback" not in err
    assert "Added 2,000 messages from 100 senders" in out
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 2000
        assert_consistent()
    # The server stores callbacks as before.
    body = body_for(text="after the demo")
    request = urllib.request.Request(server.url + "/callbacks/inbound", data=body, headers=signed_headers(body))
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert "Traceback" not in server.output()


def sleeping(pid: int) -> bool:
    """Whether process `pid` is in a timed sleep, as SQLite's busy handler between tries (Linux)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "hrtimer_nanosleep"
    except FileNotFoundError:
        return False


def has_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has the file open (Linux)."""
    descriptors = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(descriptor) == str(path.resolve()) for descriptor in descriptors.iterdir())
    except FileNotFoundError:  # it exited (the test then reads why) or a descriptor closed meanwhile
        return False


def test_an_interrupted_seeding_leaves_the_inbox_consistent(app, monkeypatch):
    class Interrupted(Exception):
        pass

    def interrupt_after_some_inserts(count: int) -> None:
        inserted.append(count)
        if len(inserted) == 3:
            raise Interrupted  # as Ctrl-C would, half-way through a transaction

    inserted: list[int] = []
    monkeypatch.setattr(demo, "ROWS_PER_INSERT", 100)
    with app.app_context():
        # Into the empty inbox (indexes dropped and built at the end): stopped, nothing is left
        # of it, and every index is back.
        indexes = index_names()
        with pytest.raises(Interrupted):
            demo.seed(1_000, 20, progress=interrupt_after_some_inserts)
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0
        assert index_names() == indexes
        inserted.clear()
        demo.seed(300, 20, rng=random.Random(3))
    with app.app_context():
        with pytest.raises(Interrupted):
            demo.seed(1_000, 20, progress=interrupt_after_some_inserts)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 300
        assert_consistent()


def index_names() -> set[str]:
    """The message table's indexes and triggers, and the conversation table's triggers (the
    seeding sets those that file new rows aside), as the database lists them."""
    if db.session.get_bind().dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE tbl_name IN ('message', 'message_fts', 'conversation')"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE tablename = 'message' AND schemaname = current_schema()"
    return set(db.session.scalars(sa.text(query)))
