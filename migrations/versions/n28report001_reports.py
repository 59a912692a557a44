"""reports: one row per conversation opening (first response, done) and conversation events

Revision ID: n28report001
Revises: n28costs0001
Create Date: 2026-12-06 13:00:00

Two new tables, and an index for reading the tallies by range from the index alone. `flask rebuild-reports` fills them (and the tallies)
from the messages already stored.
"""

import sqlalchemy as sa
from alembic import op

revision = "n28report001"
down_revision = "n28costs0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_index("ix_tally_covering", "tally", ["bucket", "metric", "channel", "our_number", "user_id", "value"])
    op.create_table(
        "conversation_opening",
        sa.Column("id", BigId, nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=True),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("reopened", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("our_number", sa.String(length=64), nullable=False),
        sa.Column("first_response_at", sa.DateTime(), nullable=True),
        sa.Column("responder_id", sa.Integer(), nullable=True),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name=op.f("fk_conversation_opening_conversation_id_conversation"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_opening")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_conversation_opening_opened_at", "conversation_opening", ["opened_at"])
    op.create_index("ix_conversation_opening_conversation_id_id", "conversation_opening", ["conversation_id", "id"])
    op.create_table(
        "conversation_event",
        sa.Column("id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=32), server_default="", nullable=False),
        sa.Column("our_number", sa.String(length=64), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversation.id"], name=op.f("fk_conversation_event_conversation_id_conversation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_event")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_conversation_event_at", "conversation_event", ["at"])
    op.create_index("ix_conversation_event_conversation_id", "conversation_event", ["conversation_id"])


def downgrade():
    op.drop_index("ix_tally_covering", table_name="tally")
    op.drop_table("conversation_event")
    op.drop_table("conversation_opening")
