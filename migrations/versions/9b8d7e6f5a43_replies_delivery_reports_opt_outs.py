"""replies, delivery reports and opt-outs

Revision ID: 9b8d7e6f5a43
Revises: 7c3f2a9d4e10
Create Date: 2026-11-25 15:40:00

Replies are rows of `message` with direction "out"; conversations learn whether the customer
opted out and when they last wrote. Only new columns and tables: no table is rewritten.
"""

import sqlalchemy as sa
from alembic import op

revision = "9b8d7e6f5a43"
down_revision = "7c3f2a9d4e10"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMNs, on SQLite too: rebuilding `conversation` there would have to drop a
    # table that messages refer to.
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("message", sa.Column("direction", sa.String(length=3), server_default="in", nullable=False))
    if sqlite:  # SQLite adds a foreign key only with its column
        op.execute('ALTER TABLE message ADD COLUMN author_id INTEGER REFERENCES "user" (id)')
    else:
        op.add_column("message", sa.Column("author_id", sa.Integer(), nullable=True))
    op.add_column("message", sa.Column("status", sa.String(length=12), nullable=True))
    op.add_column("message", sa.Column("delivery", sa.String(length=8), nullable=True))
    op.add_column("message", sa.Column("problem", sa.String(length=500), nullable=True))
    op.add_column("message", sa.Column("omnimessage_id", sa.String(length=255), nullable=True))
    op.add_column("message", sa.Column("claimed_at", sa.DateTime(), nullable=True))
    if not sqlite:
        op.create_foreign_key(op.f("fk_message_author_id_user"), "message", "user", ["author_id"], ["id"])
    op.create_index(op.f("ix_message_omnimessage_id"), "message", ["omnimessage_id"])
    op.add_column("conversation", sa.Column("last_direction", sa.String(length=3), server_default="in", nullable=False))
    op.add_column("conversation", sa.Column("last_inbound_at", sa.DateTime(), nullable=True))
    op.add_column("conversation", sa.Column("opted_out", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("conversation", sa.Column("blacklist", sa.String(length=8), nullable=True))
    op.add_column("conversation", sa.Column("blacklist_problem", sa.String(length=500), nullable=True))
    op.execute("UPDATE conversation SET last_inbound_at = last_sent_at")

    op.create_table(
        "opt_out",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversation.id"], name=op.f("fk_opt_out_conversation_id_conversation")
        ),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], name=op.f("fk_opt_out_message_id_message")),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_opt_out_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opt_out")),
    )
    op.create_index(op.f("ix_opt_out_conversation_id"), "opt_out", ["conversation_id"])
    op.create_table(
        "unmatched_delivery_report",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("omnimessage_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("problem", sa.String(length=500), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unmatched_delivery_report")),
    )
    op.create_index(
        op.f("ix_unmatched_delivery_report_omnimessage_id"), "unmatched_delivery_report", ["omnimessage_id"]
    )
    op.create_index(op.f("ix_unmatched_delivery_report_received_at"), "unmatched_delivery_report", ["received_at"])


def downgrade():
    raise NotImplementedError("restore the backup taken before upgrading; see docs/deploy.md")
