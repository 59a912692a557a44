"""ingest.store_messages on a batch, as group commit hands it over."""
import sqlalchemy as sa

from app import ingest
from app.extensions import db
from app.models import Conversation, DailyCount, Message

from conftest import body_for


def test_a_batch_with_repeats_and_shared_senders_is_filed_exactly(app):
    batch = [ingest.parse_payload(body) for body in (
        body_for(msg_id="a", sender="+1", text="first"),
        body_for(msg_id="a", sender="+1", text="first again"),
        body_for(msg_id="b", sender="+1", text="second"),
        body_for(msg_id="c", sender="+2", text="other"),
    )]
    with app.app_context():
        assert ingest.store_messages(batch) == [True, False, True, True]
        db.session.commit()
        assert ingest.store_messages(batch[:1]) == [False]
        db.session.commit()

        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 3
        one = db.session.get(Conversation, "+1")
        assert (one.message_count, one.unread_count, one.last_text) == (2, 2, "second")
        newest_of_one = db.session.scalar(sa.select(sa.func.max(Message.id)).where(Message.sender == "+1"))
        assert one.last_message_id == newest_of_one
        assert db.session.get(Conversation, "+2").message_count == 1
        assert db.session.scalar(sa.select(sa.func.sum(DailyCount.count))) == 3
