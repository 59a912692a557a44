"""ingest.store_messages on a batch, as group commit hands it over."""

import sqlalchemy as sa

from app.callbacks import ingest
from app.db.models import DailyCount, Message
from app.extensions import db
from conftest import body_for, conversation_of


def test_a_batch_with_repeats_and_shared_senders_is_filed_exactly(app):
    batch = [
        ingest.parse_payload(body)
        for body in (
            body_for(msg_id="a", sender="+1", text="first"),
            body_for(msg_id="a", sender="+1", text="first again"),
            body_for(msg_id="b", sender="+1", text="second"),
            body_for(msg_id="c", sender="+2", text="other"),
        )
    ]
    with app.app_context():
        assert ingest.store_messages(batch) == [True, False, True, True]
        assert ingest.store_messages(batch[:1]) == [False]

        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 3
        one = conversation_of("+1")
        assert (one.message_count, one.unread_count, one.last_text) == (2, 2, "second")
        newest_of_one = db.session.scalar(sa.select(sa.func.max(Message.id)).where(Message.sender == "+1"))
        assert one.last_message_id == newest_of_one
        assert conversation_of("+2").message_count == 1
        assert db.session.scalar(sa.select(sa.func.sum(DailyCount.count))) == 3


def test_a_batch_stamps_its_rows_with_one_new_change_number(app):
    with app.app_context():
        ingest.store_messages([ingest.parse_payload(body_for(sender="+1"))])
        first = conversation_of("+1").change_seq
        ingest.store_messages([ingest.parse_payload(body) for body in (body_for(sender="+1"), body_for(sender="+2"))])
        assert conversation_of("+1").change_seq == conversation_of("+2").change_seq == first + 1
        stamps = db.session.scalars(sa.select(Message.change_seq).order_by(Message.id)).all()
        assert stamps == [first, first + 1, first + 1]


def test_a_batch_of_repeats_only_changes_nothing(app):
    with app.app_context():
        message = ingest.parse_payload(body_for(sender="+1"))
        ingest.store_messages([message])
        before = conversation_of("+1").change_seq
        assert ingest.store_messages([message, message]) == [False, False]
        assert conversation_of("+1").change_seq == before
