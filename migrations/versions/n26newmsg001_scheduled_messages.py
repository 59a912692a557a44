"""scheduled messages: a message's send_at, and a conversation's count of those waiting

Revision ID: n26newmsg001
Revises: f7a8b9c0d1e2
Create Date: 2026-12-14 09:00:00

Two new columns and a partial index; nothing existing changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "n26newmsg001"
down_revision = "n25notes0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("message", sa.Column("send_at", sa.DateTime(), nullable=True))
    op.create_index(
        "ix_message_scheduled",
        "message",
        ["conversation_id", "send_at"],
        sqlite_where=sa.text("send_at IS NOT NULL"),
        postgresql_where=sa.text("send_at IS NOT NULL"),
    )
    op.add_column("conversation", sa.Column("scheduled_count", sa.Integer(), server_default="0", nullable=False))


def downgrade():
    op.drop_column("conversation", "scheduled_count")
    op.drop_index("ix_message_scheduled", table_name="message")
    op.drop_column("message", "send_at")
