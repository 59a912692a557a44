"""scheduled by moment: messages found by their send time

Revision ID: n29sched001
Revises: n29search001
Create Date: 2026-12-06 16:00:00

One `send_scheduled` job per moment sends every message scheduled for it (app/replies/scheduled.py),
so the messages of a moment are found by `send_at` alone: an index of the rows that ever were
scheduled (waiting ones, and the replies that keep their time), as app/db/models.py has it.
"""

import sqlalchemy as sa
from alembic import op

revision = "n29sched001"
down_revision = "n29search001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_message_send_at",
        "message",
        ["send_at"],
        sqlite_where=sa.text("send_at IS NOT NULL"),
        postgresql_where=sa.text("send_at IS NOT NULL"),
    )


def downgrade():
    op.drop_index("ix_message_send_at", table_name="message")
