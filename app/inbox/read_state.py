"""Read state: a conversation's unread count, set when a person reads it or marks it unread.
Each change stamps the conversation's change number, so every open page sees it at its next poll."""

import sqlalchemy as sa

from app.db.models import Conversation, Message
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db


def mark_read(conversation_id: int, through_id: int) -> None:
    """Messages up to `through_id` have been seen; any that arrived after it stay unread."""
    with write_transaction() as session:
        unread = (
            db.select(sa.func.count())
            .where(Message.conversation_id == conversation_id, Message.id > through_id, Message.direction == "in")
            .scalar_subquery()
        )
        session.execute(
            sa.update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.unread_count != unread)
            .values(unread_count=unread, change_seq=change_number())
        )


def mark_unread(conversation_id: int) -> None:
    with write_transaction() as session:
        session.execute(
            sa.update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.unread_count == 0)
            .values(unread_count=1, change_seq=change_number())
        )
