"""message text search

Revision ID: c9f2d4a6e81b
Revises: a7c41e2b9d30
Create Date: 2026-11-25 18:00:00

Messages get `folded_text` (the text without accents, case folded: app.db.folding.fold), filled in
for the messages already stored, in batches of ids so a large table is never held in memory.
Then the index over it: on SQLite an FTS5 trigram table built in one pass from the filled column
(then triggers keep it in step), on PostgreSQL a pg_trgm GIN index. On a large database this takes
a while (about a minute per million messages on SQLite): run it with the app stopped.
"""

import sqlalchemy as sa
from alembic import op

from app.db.folding import fold

revision = "c9f2d4a6e81b"
down_revision = "a7c41e2b9d30"
branch_labels = None
depends_on = None

BATCH = 5000

message = sa.table(
    "message", sa.column("id", sa.BigInteger), sa.column("text", sa.Text), sa.column("folded_text", sa.Text)
)

# As app.models.MESSAGE_FTS at the time of writing.
SQLITE_INDEX = (
    "CREATE VIRTUAL TABLE message_fts USING fts5(folded_text, content='message', content_rowid='id', "
    "tokenize='trigram', detail='none')",
    "INSERT INTO message_fts (message_fts) VALUES ('rebuild')",
    "CREATE TRIGGER message_fts_insert AFTER INSERT ON message BEGIN "
    "INSERT INTO message_fts (rowid, folded_text) VALUES (new.id, new.folded_text); END",
    "CREATE TRIGGER message_fts_delete AFTER DELETE ON message BEGIN "
    "INSERT INTO message_fts (message_fts, rowid, folded_text) VALUES ('delete', old.id, old.folded_text); END",
    "CREATE TRIGGER message_fts_update AFTER UPDATE OF folded_text ON message BEGIN "
    "INSERT INTO message_fts (message_fts, rowid, folded_text) VALUES ('delete', old.id, old.folded_text); "
    "INSERT INTO message_fts (rowid, folded_text) VALUES (new.id, new.folded_text); END",
)


def upgrade():
    op.add_column("message", sa.Column("folded_text", sa.Text(), server_default="", nullable=False))
    connection = op.get_bind()
    after = 0
    while True:
        rows = connection.execute(
            sa.select(message.c.id, message.c.text).where(message.c.id > after).order_by(message.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        updates = [{"message_id": id_, "folded": fold(text)} for id_, text in rows if text]
        updates = [update for update in updates if update["folded"]]
        if updates:
            connection.execute(
                sa.update(message)
                .where(message.c.id == sa.bindparam("message_id"))
                .values(folded_text=sa.bindparam("folded")),
                updates,
            )
        after = rows[-1].id
    # The index is built after the column is filled: once, rather than row by row.
    if connection.dialect.name == "sqlite":
        for statement in SQLITE_INDEX:
            op.execute(statement)
    else:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index(
            "ix_message_folded_text_trgm",
            "message",
            ["folded_text"],
            postgresql_using="gin",
            postgresql_ops={"folded_text": "gin_trgm_ops"},
        )


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("message_fts_insert", "message_fts_delete", "message_fts_update"):
            op.execute(f"DROP TRIGGER {trigger}")
        op.execute("DROP TABLE message_fts")
    else:
        op.drop_index("ix_message_folded_text_trgm", table_name="message")
    with op.batch_alter_table("message") as batch_op:
        batch_op.drop_column("folded_text")
