"""snooze: a conversation out of Open until a time or the customer's next message

Revision ID: n25snooze001
Revises: f7a8b9c0d1e2
Create Date: 2026-12-16 09:00:00

Two columns on `conversation` (empty and false: not snoozed) and a partial index for the Snoozed
view. The team's time zone is a row of `setting`, which needs no migration.
"""

import sqlalchemy as sa
from alembic import op

revision = "n25snooze001"
down_revision = "f7a8b9c0d1e2"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("conversation", sa.Column("snoozed_until", sa.DateTime(), nullable=True))
    op.add_column(
        "conversation", sa.Column("snoozed_until_reply", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_index(
        "ix_conversation_snoozed_last_message_id",
        "conversation",
        ["last_message_id"],
        sqlite_where=sa.text("snoozed_until IS NOT NULL OR snoozed_until_reply = 1"),
        postgresql_where=sa.text("snoozed_until IS NOT NULL OR snoozed_until_reply"),
    )


def downgrade():
    op.drop_index("ix_conversation_snoozed_last_message_id", table_name="conversation")
    op.drop_column("conversation", "snoozed_until_reply")
    op.drop_column("conversation", "snoozed_until")
