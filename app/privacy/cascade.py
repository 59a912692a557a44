"""What goes along when an erasure or the purge deletes a conversation or a message: the rows of
other tables whose foreign key points at it."""

import sqlalchemy as sa

from app.db.models import Conversation, Message
from app.extensions import db


def referring_columns(table: sa.Table) -> list[sa.Column]:
    """Columns of other tables whose foreign key points at `table` (opt-outs, per-conversation
    rows other modules add), so that deleting a row takes what hangs on it along."""
    return [
        key.parent
        for other in db.metadata.sorted_tables
        if other is not table
        for key in other.foreign_keys
        if key.column.table is table
    ]


def delete_rows_referring_to(conversation_id: int) -> None:
    """Every row of another table that belongs to this conversation, its messages aside; a row
    whose key says ON DELETE SET NULL (a report's conversation opening) stays, without the pointer."""
    for column in referring_columns(Conversation.__table__):
        if column.table is Message.__table__:
            continue
        if any(key.ondelete == "SET NULL" for key in column.foreign_keys):
            db.session.execute(sa.update(column.table).where(column == conversation_id).values({column.name: None}))
        else:
            db.session.execute(sa.delete(column.table).where(column == conversation_id))
