"""Retention by age: the purge, its settings, its daily run by one process, and `flask purge`."""

import random
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import jobs
from app.contacts import optouts
from app.db.models import (
    AuditEvent,
    Conversation,
    DeadLetter,
    LoginThrottle,
    Message,
    OptOut,
    Suppression,
    UnmatchedDeliveryReport,
)
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.inbox import queries
from app.jobs import leases
from app.ops import demo
from app.privacy import purge, settings
from conftest import body_for, close_app, conversation_of, make_app, signed_headers
from helpers import Clock, from_address, post

OLD, BOTH, NEW = "+37255500001", "+37255500002", "+37255500003"


@pytest.fixture
def clock(app):
    app.config["CLOCK"] = Clock()
    return app.config["CLOCK"]


@pytest.fixture
def history(app, clock, deliver, user):
    """OLD wrote 100 days ago (and opted out), BOTH then and now, NEW only now; a reply and a
    delivery report from back then, a dead letter and a login failure too."""
    for sender in (OLD, OLD, BOTH):
        assert deliver(body_for(sender=sender, text="long ago")).status_code == 200
    with app.app_context():
        old = conversation_of(OLD)
        now = clock().replace(tzinfo=None)
        with write_transaction() as session:
            session.add(
                Message(
                    conversation_id=old.id,
                    msg_id="reply-old",
                    channel="sms",
                    sender="Shop",
                    recipient=OLD,
                    text="an old reply",
                    sent_at=now,
                    received_at=now,
                    raw_body=b"{}",
                    change_seq=0,
                    direction="out",
                    status="sent",
                    omnimessage_id="omni-old",
                )
            )
            session.add(UnmatchedDeliveryReport(omnimessage_id="omni-old", status="DELIVRD", received_at=now))
            session.add(DeadLetter(received_at=now, reason="old", raw_body=b"{}", body_sha256="c" * 64))
            session.get(Conversation, old.id).message_count += 1  # as storing a reply counts it
        from app.contacts import optouts

        optouts.set_opted_out(old.id, True, 1)
    clock.advance(days=100)
    for sender in (BOTH, NEW):
        assert deliver(body_for(sender=sender, text="this week")).status_code == 200
    return clock().replace(tzinfo=None)


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_a_purge_deletes_what_is_older_than_the_days_and_lists_follow(app, history):
    with app.app_context():
        before = queries.latest_change()
        result = purge.purge(history, days=30, audit_days=365, batch_size=2)
        assert (result.messages, result.conversations_removed, result.delivery_reports, result.dead_letters) == (
            4,
            1,
            1,
            1,
        )
        assert conversation_of(OLD) is None
        both = conversation_of(BOTH)
        assert (both.message_count, both.unread_count, both.last_text) == (1, 1, "this week")
        assert both.change_seq > before and queries.latest_change() > before  # lists redraw
        assert conversation_of(NEW).message_count == 1
        assert [m.text for m in db.session.scalars(sa.select(Message))] == ["this week", "this week"]
        # OLD had opted out: its number stays blocked, as a keyed hash only.
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 1
        assert optouts.is_suppressed(OLD)
    assert count(app, UnmatchedDeliveryReport) == count(app, DeadLetter) == count(app, OptOut) == 0


def test_without_days_messages_are_kept_for_ever(app, history):
    with app.app_context():
        result = purge.purge(history, days=None, audit_days=365)
    assert result.messages == 0 and count(app, Message) == 6


def test_a_dry_run_counts_and_deletes_nothing(app, history):
    with app.app_context():
        result = purge.purge(history, days=30, audit_days=365, dry_run=True)
    assert (result.messages, result.dead_letters) == (4, 1)
    assert count(app, Message) == 6


def test_an_interrupted_purge_resumes_where_it_stopped(app, history):
    batches = []

    def stop_after_one(deleted: int):
        batches.append(deleted)
        raise KeyboardInterrupt

    with app.app_context(), pytest.raises(KeyboardInterrupt):
        purge.purge(history, days=30, audit_days=365, batch_size=2, progress=stop_after_one)
    assert batches == [2] and count(app, Message) == 4  # the first batch stays done
    with app.app_context():
        assert conversation_of(OLD).message_count == 1  # and its counts are right meanwhile
        assert purge.purge(history, days=30, audit_days=365, batch_size=2).messages == 2
    assert count(app, Message) == 2


def test_the_audit_trail_keeps_its_own_days_and_records_each_purge(app, clock, user):
    from app import audit

    with app.app_context():
        audit.record("login", username="alice", address="192.0.2.1")
        clock.advance(days=200)
        audit.record("login", username="alice", address="192.0.2.2")
        result = purge.purge(clock().replace(tzinfo=None), days=None, audit_days=180)
        assert result.audit_events == 1
        events = db.session.execute(
            sa.select(AuditEvent.action, AuditEvent.address, AuditEvent.username).order_by(AuditEvent.id)
        ).all()
    assert events == [("login", "192.0.2.2", "alice"), ("retention_purge", None, None)]


def test_expired_login_rows_go_too(app, clock, user):
    from_address(app, "192.0.2.7").login("alice", "wrong password")
    assert count(app, LoginThrottle) == 3  # by name and address, by address, by account
    clock.advance(days=2)
    with app.app_context():
        assert purge.purge(clock().replace(tzinfo=None), days=None, audit_days=365).login_rows == 3
    assert count(app, LoginThrottle) == 0


# --- settings ---------------------------------------------------------------------------------


def test_days_come_from_the_environment_until_an_admin_sets_them(database_url, app, admin):
    with app.app_context():
        assert (settings.days(), settings.audit_days()) == (None, 365)
    configured = make_app(database_url, RETENTION_DAYS=90)
    with configured.app_context():
        assert settings.days() == 90
    page = admin.client.get("/admin/retention")
    assert page.status_code == 200 and 'name="audit_days"' in page.text
    assert post(admin, "/admin/retention", "/admin/retention", days="30", audit_days="400").status_code == 200
    with configured.app_context():
        assert (settings.days(), settings.audit_days()) == (30, 400)
    post(admin, "/admin/retention", "/admin/retention", days="", audit_days="400")
    with configured.app_context():
        assert settings.days() is None  # emptied by an admin: for ever, whatever the environment says
    close_app(configured)
    refused = post(admin, "/admin/retention", "/admin/retention", days="-3", audit_days="400")
    assert refused.status_code == 400 and "whole days" in refused.text


def test_an_admin_can_keep_the_audit_trail_for_ever(app, admin, clock, runner):
    from app import audit

    app.config["AUDIT_RETENTION_DAYS"] = 0  # as AUDIT_RETENTION_DAYS=0 in the environment gives
    with app.app_context():
        assert settings.audit_days() is None
        audit.record("login", username="alice", address="192.0.2.1")
    app.config["AUDIT_RETENTION_DAYS"] = 365
    assert post(admin, "/admin/retention", "/admin/retention", days="", audit_days="").status_code == 200
    clock.advance(days=20 * 365)
    with app.app_context():
        assert settings.audit_days() is None
        assert purge.purge(clock().replace(tzinfo=None), settings.days(), settings.audit_days()).audit_events == 0
        assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.address == "192.0.2.1")) == 1
    dry = runner.invoke(args=["purge", "--dry-run"])
    assert "audit events: 0 (none, kept for ever)" in dry.output


def test_the_environment_gives_the_defaults():
    from app import config

    assert config.from_environment({"RETENTION_DAYS": "90", "AUDIT_RETENTION_DAYS": "730"}) == {
        "RETENTION_DAYS": 90,
        "AUDIT_RETENTION_DAYS": 730,
    }


# --- once a day, one process at a time ----------------------------------------------------------


def test_one_holder_at_a_time_and_once_a_day(app, clock, history):
    app.config["RETENTION_DAYS"] = 30
    with app.app_context():
        assert leases.take(purge.PURGE_LEASE, purge.LEASE.total_seconds())  # another process
        assert purge.run_scheduled() is None  # held
        clock.advance(minutes=11)  # that process died holding it: the lease runs out
        result = purge.run_scheduled()
        assert result.messages == 4 and settings.last_purge() == clock().replace(tzinfo=None)
        clock.advance(hours=23)
        assert purge.run_scheduled() is None  # done today
        clock.advance(hours=1)
        assert purge.run_scheduled() is not None


def test_the_daily_purge_is_a_periodic_job_that_runs_once_however_many_runners(app, clock, history):
    """No thread of its own and no `app.testing` skip: the runner's `daily_purge` job, as in production."""
    app.config["RETENTION_DAYS"] = 30
    purges = lambda: count(app, AuditEvent, AuditEvent.action == "retention_purge")  # noqa: E731
    with app.app_context():
        first = clock().replace(tzinfo=None)
        for holder in ("runner-a", "runner-b"):  # two processes' runners, at the same moment
            jobs.run_due(first, holder=holder)
        assert settings.last_purge() == first and purges() == 1
        assert count(app, Message, Message.received_at < first - timedelta(days=30)) == 0
        clock.advance(hours=1)
        jobs.run_due(clock().replace(tzinfo=None))  # its job comes round every 15 minutes: not yet a day
        assert settings.last_purge() == first
        clock.advance(days=1)
        jobs.run_due(clock().replace(tzinfo=None))
        assert settings.last_purge() == clock().replace(tzinfo=None)


# --- flask purge ----------------------------------------------------------------------------------


def test_purge_command_dry_run_confirmation_and_yes(app, history, runner):
    app.config["RETENTION_DAYS"] = 30
    dry = runner.invoke(args=["purge", "--dry-run"])
    assert dry.exit_code == 0 and "Messages to delete: 4 (older than 30 days)" in dry.output
    refused = runner.invoke(args=["purge"], input="n\n")
    assert refused.exit_code == 1 and "Not confirmed" in refused.output
    assert count(app, Message) == 6
    done = runner.invoke(args=["purge"], input="y\n")
    assert done.exit_code == 0, done.output
    assert "Deleted 4 messages (1 conversations left empty and removed), 1 dead letters" in done.output
    assert count(app, Message) == 2
    again = runner.invoke(args=["purge", "--yes"])
    assert again.exit_code == 0 and "Deleted 0 messages" in again.output


# --- nothing new is lost ----------------------------------------------------------------------------


def test_a_purge_during_a_callback_storm_loses_no_new_message(app, clock, deliver, server_factory):
    """Old messages from the same senders the storm writes as: a conversation may empty and
    come back while new messages arrive; every new one must stay, with counts that match."""
    senders = [f"+3725560{n:04d}" for n in range(20)]
    for n in range(300):
        assert deliver(body_for(sender=senders[n % 20], text=f"old {n}")).status_code == 200
    server = server_factory(workers=2, threads=4)
    stored, stop = [], threading.Event()

    def storm(worker: int):
        n = 0
        while not stop.is_set() or n < 20:
            body = body_for(sender=senders[(n + worker) % 20], text=f"new {worker}-{n}")
            request = urllib.request.Request(server.url + "/callbacks/inbound", data=body, headers=signed_headers(body))
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
            stored.append(f"new {worker}-{n}")
            n += 1

    threads = [threading.Thread(target=storm, args=(worker,)) for worker in range(3)]
    for thread in threads:
        thread.start()
    try:
        app.config["CLOCK"] = None  # the server's and this purge's: the real one, months after the old messages
        with app.app_context():
            result = purge.purge(datetime.now(UTC).replace(tzinfo=None), days=30, audit_days=365, batch_size=25)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    with app.app_context():
        texts = list(db.session.scalars(sa.select(Message.text)))
        assert result.messages >= 300
        assert not any(text.startswith("old") for text in texts)
        assert sorted(stored) == sorted(text for text in texts if text.startswith("new"))
        for conversation in db.session.scalars(sa.select(Conversation)):
            actual = db.session.scalar(sa.select(sa.func.count()).where(Message.conversation_id == conversation.id))
            assert conversation.message_count == actual, conversation.sender


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: autovacuum's job
def test_on_sqlite_the_space_purged_is_reused_so_the_file_does_not_grow_without_bound(app):
    """Freed pages go on SQLite's free list and the next messages fill them (no VACUUM needed)."""
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    sizes = []
    moment = datetime(2026, 1, 1)
    with app.app_context():
        for cycle in range(4):
            demo.seed(2000, 100, now=moment, rng=random.Random(cycle))
            moment += timedelta(days=100)
            assert purge.purge(moment, days=30, audit_days=365, batch_size=1000).messages == 2000
            # Reports' running totals and openings stay by design (no personal data, app/tallies):
            # what must not grow is the rest.
            kept = db.session.execute(
                sa.text(
                    "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN (SELECT name FROM sqlite_schema"
                    " WHERE tbl_name IN ('tally', 'conversation_opening', 'conversation_event'))"
                )
            ).scalar()
            sizes.append(Path(url.database).stat().st_size - kept)
            free = db.session.execute(sa.text("PRAGMA freelist_count")).scalar()
    assert free > 0  # the purged pages wait on the free list for the next messages
    # The first refill may settle the file a little larger (page layout); after that it stays
    # within a few percent (the text indexes' layout varies with the data). Without reuse each
    # cycle would add the whole seed again: about +100 % a cycle here.
    assert sizes[-1] <= sizes[1] * 1.15 and sizes[1] <= sizes[0] * 1.1, sizes


def test_a_reply_scheduled_past_the_cutoff_waits_for_its_time_however_long_ago_it_was_written(app, clock, history):
    """Written 100 days ago for ten days from now: neither the purge nor its dry run counts it."""
    written = history - timedelta(days=100)
    with app.app_context():
        both = conversation_of(BOTH)
        with write_transaction() as session:
            session.add(
                Message(
                    conversation_id=both.id,
                    msg_id="reply-later",
                    channel="sms",
                    sender="Shop",
                    recipient=BOTH,
                    text="your yearly check-up is due",
                    sent_at=written,
                    received_at=written,
                    raw_body=b"{}",
                    change_seq=0,
                    direction="out",
                    status="scheduled",
                    send_at=history + timedelta(days=10),
                )
            )
        assert purge.purge(history, days=30, audit_days=365, dry_run=True).messages == 4
        assert purge.purge(history, days=30, audit_days=365, batch_size=2).messages == 4
        assert db.session.scalar(sa.select(Message.status).where(Message.msg_id == "reply-later")) == "scheduled"
