"""Reports' records kept at write time (app/tallies, app/tallies/events.py): tallies, openings and
events are written with each change, equal a full rebuild after a storm, and stay the same when an
erasure or the retention purge deletes what they came from."""

import random
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app import clock, tallies
from app.callbacks import ingest
from app.contacts import owners, set_status, snooze
from app.contacts.optouts import set_opted_out
from app.db.models import ConversationEvent, ConversationOpening, Tally
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.privacy import erasure, purge
from app.replies import delivery, insert_reply, record, retry
from app.reports import rebuild
from conftest import add_user, conversation_of, make_app
from helpers import Clock

OUR = "+37250000000"
OTHER = "+37250000001"


@pytest.fixture
def clocked(database_url):
    moving = Clock()
    app = make_app(database_url, CLOCK=moving)
    app.clock = moving
    with app.app_context():
        db.create_all()
        add_user("alice")
        add_user("bob", role="agent")
        yield app
    from conftest import close_app

    close_app(app)


def arrive(sender: str, text: str = "Hello", recipient: str = OUR, channel: str = "sms") -> int:
    ingest.store_messages(
        [ingest.Inbound(str(uuid.uuid4()), None, channel, recipient, sender, text, clock.now(), b"{}")]
    )
    return conversation_of(sender).id


def reply(conversation_id: int, author_id: int | None, via: str | None = None, sender: str = OUR) -> int:
    with write_transaction() as session:
        return insert_reply(
            session.connection(),
            conversation_id,
            "+3725551",
            "Thanks",
            [{"channel": "sms", "sender": sender}],
            author_id,
            f"reply-{uuid.uuid4()}",
            via=via,
        )


def tally_rows() -> dict:
    return {
        (row.bucket, row.metric, row.channel, row.our_number, row.user_id): row.value
        for row in db.session.scalars(sa.select(Tally))
        if row.value
    }


def opening_rows() -> list:
    return sorted(
        (
            row.conversation_id or 0,
            row.opened_at,
            row.reopened,
            row.channel,
            row.our_number,
            row.first_response_at or row.opened_at.min,
            row.responder_id or 0,
            row.done_at or row.opened_at.min,
        )
        for row in db.session.scalars(sa.select(ConversationOpening))
    )


def test_a_conversations_life_is_counted_as_it_happens(clocked):
    start = clock.now()
    first = arrive("+3725551")
    clocked.clock.advance(minutes=20)
    reply(first, None, via="away")  # the away reply: no first response
    clocked.clock.advance(minutes=10)
    reply(first, 1)
    clocked.clock.advance(minutes=5)
    reply(first, 2)  # the second reply: not the first response
    clocked.clock.advance(minutes=30)
    assert set_status(first, "done", 2)
    clocked.clock.advance(hours=2)
    arrive("+3725551", recipient=OTHER)  # reopened, through our other number
    db.session.remove()

    [opening, reopening] = db.session.scalars(sa.select(ConversationOpening).order_by(ConversationOpening.id))
    assert (opening.opened_at, opening.reopened, opening.our_number) == (start, False, OUR)
    assert (opening.first_response_at, opening.responder_id) == (start + timedelta(minutes=30), 1)
    assert opening.done_at == start + timedelta(minutes=65)
    assert (reopening.reopened, reopening.our_number, reopening.first_response_at) == (True, OTHER, None)
    kinds = db.session.scalars(sa.select(ConversationEvent.kind).order_by(ConversationEvent.id)).all()
    assert kinds == ["opened", "done", "reopened"]

    sums = {
        (row.metric, row.user_id): row.value
        for row in tallies.totals(db.session.connection(), start, start + timedelta(days=1), by=["user_id"])
    }
    assert sums == {
        ("in", 0): 2,
        ("out", 0): 1,
        ("out", 1): 1,
        ("out", 2): 1,
        ("started", 0): 1,
        ("reopened", 0): 1,
        ("done", 2): 1,
    }


def test_delivery_outcomes_move_with_the_reply(clocked):
    conversation_id = arrive("+3725551")
    reply_id = reply(conversation_id, 1)
    start = tallies.bucket_of(clock.now())

    def outcomes() -> dict:
        return {
            row.metric: row.value
            for row in tallies.totals(db.session.connection(), start, start + timedelta(hours=1), metric_prefix="dlv:")
            if row.value
        }

    assert outcomes() == {}
    record(reply_id, conversation_id, "sent", omnimessage_id="omni-1")
    assert outcomes() == {"dlv:sent": 1}
    delivery.apply_report(delivery.Report("omni-1", "DELIVRD", None))
    delivery.apply_report(delivery.Report("omni-1", "DELIVRD", None))  # reports repeat
    assert outcomes() == {"dlv:DELIVRD": 1}
    delivery.apply_report(delivery.Report("omni-1", "SEEN", None))
    assert outcomes() == {"dlv:SEEN": 1}

    failing = reply(conversation_id, 1)
    record(failing, conversation_id, "sent", omnimessage_id="omni-2")
    delivery.apply_report(delivery.Report("omni-2", "UNDELIV", "invalid number"))
    assert outcomes() == {"dlv:SEEN": 1, "dlv:UNDELIV": 1}
    assert retry(conversation_id, failing)
    assert outcomes() == {"dlv:SEEN": 1}
    record(failing, conversation_id, "failed", problem="refused")
    assert outcomes() == {"dlv:SEEN": 1, "dlv:failed": 1}


def storm(app, rng: random.Random, steps: int = 160) -> None:
    senders = [f"+37255500{index:02d}" for index in range(8)]
    known: list[int] = []
    sent: list[tuple[int, int, str]] = []
    for step in range(steps):
        app.clock.advance(minutes=rng.randint(1, 400))
        action = rng.random()
        if action < 0.35 or not known:
            batch = [
                ingest.Inbound(
                    str(uuid.uuid4()),
                    None,
                    rng.choice(["sms", "whatsapp"]),
                    rng.choice([OUR, OTHER, None]),
                    rng.choice(senders),
                    "STOP" if rng.random() < 0.05 else "Hello",
                    clock.now(),
                    b"{}",
                )
                for _ in range(rng.randint(1, 3))
            ]
            ingest.store_messages(batch)
            known = [conversation_of(sender).id for sender in senders if conversation_of(sender) is not None]
            continue
        conversation_id = rng.choice(known)
        if action < 0.55:
            reply_id = reply(conversation_id, rng.choice([1, 2, None]), via=rng.choice([None, None, "away"]))
            if rng.random() < 0.7:
                omni = f"omni-{step}"
                record(reply_id, conversation_id, rng.choice(["sent", "sent", "failed"]), omnimessage_id=omni)
                sent.append((reply_id, conversation_id, omni))
        elif action < 0.7:
            set_status(conversation_id, rng.choice(["done", "done", "open"]), rng.choice([1, 2, None]))
        elif action < 0.78:
            owners.assign(conversation_id, rng.choice([1, 2, None]), 1)
        elif action < 0.84:
            snooze.snooze(conversation_id, None, True, 2)
        elif action < 0.88:
            set_opted_out(conversation_id, True, 1)
        elif sent:
            reply_id, in_conversation, omni = rng.choice(sent)
            status = rng.choice(["ACCEPTD", "DELIVRD", "SEEN", "FAILED", "UNDELIV"])
            delivery.apply_report(delivery.Report(omni, status, None))
            if status in ("FAILED", "UNDELIV") and rng.random() < 0.5 and retry(in_conversation, reply_id):
                record(reply_id, in_conversation, "sent", omnimessage_id=omni + "-again")
        db.session.remove()


def test_the_running_figures_equal_a_rebuild_after_a_storm_and_survive_erasure_and_purge(clocked):
    storm(clocked, random.Random(28))
    tallies.add(db.session.connection(), clock.now(), "cost", Decimal("0.0450"), channel="sms", our_number=OUR)
    db.session.commit()
    kept_tallies, kept_openings = tally_rows(), opening_rows()
    assert {metric for _, metric, *_ in kept_tallies} >= {"in", "out", "started", "reopened", "done", "opted_out"}
    assert any(opening[5] != opening[1].min for opening in kept_openings)  # some were answered

    result = rebuild.rebuild()
    db.session.remove()
    assert result.openings == len(kept_openings)
    assert tally_rows() == kept_tallies  # the cost tally is kept as it was
    assert opening_rows() == kept_openings

    # An erasure and the purge delete messages and events; the figures stay.
    erasure.erase_conversation(conversation_of("+3725550003").id)
    db.session.remove()
    purge.purge(clock.now() - timedelta(days=5), 1, None)
    db.session.remove()
    assert tally_rows() == kept_tallies
    after = opening_rows()
    assert len(after) == len(kept_openings)
    assert sorted(row[1:] for row in after) == sorted(row[1:] for row in kept_openings)
    assert any(row[0] == 0 for row in after)  # let go of the erased and purged conversations


def test_demo_data_comes_with_its_report_figures(clocked):
    """seed-demo keeps the tallies and openings as ingest would: a rebuild changes nothing."""
    from app.ops import demo

    demo.seed(2_000, 120, rng=random.Random(3))
    db.session.remove()
    kept_tallies, kept_openings = tally_rows(), opening_rows()
    assert sum(value for key, value in kept_tallies.items() if key[1] == "in") == 2_000
    assert len(kept_openings) == 120
    rebuild.rebuild()
    db.session.remove()
    assert (tally_rows(), opening_rows()) == (kept_tallies, kept_openings)


def test_the_rebuild_command_says_what_it_counted(clocked):
    arrive("+3725551")
    reply(conversation_of("+3725551").id, 1)
    db.session.remove()
    db.session.execute(sa.delete(Tally))
    db.session.execute(sa.delete(ConversationOpening))
    db.session.commit()
    result = clocked.test_cli_runner().invoke(args=["rebuild-reports"])
    assert result.exit_code == 0, result.output
    assert "in 1, out 1, started 1" in result.output and "1 openings" in result.output
    db.session.remove()
    assert len(opening_rows()) == 1 and sum(tally_rows().values()) == 3
