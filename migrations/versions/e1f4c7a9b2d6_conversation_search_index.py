"""conversation search index (SQLite)

Revision ID: e1f4c7a9b2d6
Revises: b3e58f1c7a62
Create Date: 2026-12-02 07:10:00

On SQLite, an FTS5 trigram index over the conversations' search keys (number and contact name),
built in one pass from the stored keys, then kept in step by triggers. PostgreSQL's pg_trgm index
on the number already serves the same search: nothing changes there.
"""

from alembic import op

revision = "e1f4c7a9b2d6"
down_revision = "b3e58f1c7a62"
branch_labels = None
depends_on = None

# As app.models.CONVERSATION_FTS at the time of writing.
SQLITE_INDEX = (
    "CREATE VIRTUAL TABLE conversation_fts USING fts5(sender_key, contact_key, content='conversation', "
    "content_rowid='id', tokenize='trigram', detail='none')",
    "INSERT INTO conversation_fts (conversation_fts) VALUES ('rebuild')",
    "CREATE TRIGGER conversation_fts_insert AFTER INSERT ON conversation BEGIN "
    "INSERT INTO conversation_fts (rowid, sender_key, contact_key) VALUES (new.id, new.sender_key, new.contact_key); END",
    "CREATE TRIGGER conversation_fts_delete AFTER DELETE ON conversation BEGIN "
    "INSERT INTO conversation_fts (conversation_fts, rowid, sender_key, contact_key) "
    "VALUES ('delete', old.id, old.sender_key, old.contact_key); END",
    "CREATE TRIGGER conversation_fts_update AFTER UPDATE OF sender_key, contact_key ON conversation BEGIN "
    "INSERT INTO conversation_fts (conversation_fts, rowid, sender_key, contact_key) "
    "VALUES ('delete', old.id, old.sender_key, old.contact_key); "
    "INSERT INTO conversation_fts (rowid, sender_key, contact_key) VALUES (new.id, new.sender_key, new.contact_key); END",
)


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_INDEX:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        for name in ("conversation_fts_update", "conversation_fts_delete", "conversation_fts_insert"):
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TABLE conversation_fts")
