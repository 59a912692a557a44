"""presence: who has a conversation open, UNLOGGED (PostgreSQL only)

Revision ID: d5e6f7a8b9c0
Revises: c4d5e6f7a8b9
Create Date: 2026-12-08 09:00:00

Rows that live for seconds (app/db/presence.py): on PostgreSQL an UNLOGGED table, never written
to the WAL nor replicated, emptied by a crash, which loses nothing worth keeping. SQLite keeps
presence in a file of its own next to the database (app/inbox/presence.py makes it), so on
SQLite this revision does nothing. The table is not among the models: test_migrations.py
compares it by the catalogs (create_all makes it too), not by the models' metadata.
"""

import sqlalchemy as sa
from alembic import op

revision = "d5e6f7a8b9c0"
down_revision = "c4d5e6f7a8b9"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_table(
        "presence",
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "user_id", name="pk_presence"),
        prefixes=["UNLOGGED"],
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_table("presence")
