"""contact name trigram index (PostgreSQL)

Revision ID: f3a8d2c5b9e7
Revises: e1f4c7a9b2d6
Create Date: 2026-12-02 15:40:00

On PostgreSQL, a pg_trgm index on the contact names' search key, so that search finds the names
containing a query without reading every named conversation (SQLite's conversation_fts already
covers names). Nothing changes on SQLite.
"""

from alembic import op

revision = "f3a8d2c5b9e7"
down_revision = "e1f4c7a9b2d6"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_conversation_contact_key_trgm",
            "conversation",
            ["contact_key"],
            postgresql_using="gin",
            postgresql_ops={"contact_key": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_conversation_contact_key_trgm", table_name="conversation")
