"""webhooks: endpoints admins subscribe, the events they report, and each delivery's attempts

Revision ID: n27hooks0001
Revises: f7a8b9c0d1e2
Create Date: 2026-12-06 09:00:00

Three new tables; nothing existing changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "n27hooks0001"
down_revision = "n27tokens001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("previous_secret", sa.String(length=64), nullable=True),
        sa.Column("previous_secret_until", sa.DateTime(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=200), nullable=True),
        sa.Column("disabled_at", sa.DateTime(), nullable=True),
        sa.Column("position", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("failing_since", sa.DateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("paused_until", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoint")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "webhook_event",
        sa.Column("id", BigId, nullable=False),
        sa.Column("uid", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversation.id"], name=op.f("fk_webhook_event_conversation_id_conversation")
        ),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], name=op.f("fk_webhook_event_message_id_message")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_event")),
        sa.UniqueConstraint("uid", name=op.f("uq_webhook_event_uid")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_webhook_event_conversation_id", "webhook_event", ["conversation_id"])
    op.create_index("ix_webhook_event_message_id", "webhook_event", ["message_id"])
    op.create_index("ix_webhook_event_created_at", "webhook_event", ["created_at"])
    op.create_table(
        "webhook_delivery",
        sa.Column("id", BigId, nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_at", sa.DateTime(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoint.id"],
            name=op.f("fk_webhook_delivery_endpoint_id_webhook_endpoint"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["webhook_event.id"],
            name=op.f("fk_webhook_delivery_event_id_webhook_event"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
        sa.UniqueConstraint("endpoint_id", "event_id", name=op.f("uq_webhook_delivery_endpoint_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_webhook_delivery_endpoint_id_status_event_id", "webhook_delivery", ["endpoint_id", "status", "event_id"]
    )
    op.create_index(
        "ix_webhook_delivery_endpoint_id_conversation_id_event_id",
        "webhook_delivery",
        ["endpoint_id", "conversation_id", "event_id"],
    )
    op.create_index("ix_webhook_delivery_event_id", "webhook_delivery", ["event_id"])


def downgrade():
    op.drop_index("ix_webhook_delivery_event_id", table_name="webhook_delivery")
    op.drop_index("ix_webhook_delivery_endpoint_id_conversation_id_event_id", table_name="webhook_delivery")
    op.drop_index("ix_webhook_delivery_endpoint_id_status_event_id", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
    op.drop_index("ix_webhook_event_created_at", table_name="webhook_event")
    op.drop_index("ix_webhook_event_message_id", table_name="webhook_event")
    op.drop_index("ix_webhook_event_conversation_id", table_name="webhook_event")
    op.drop_table("webhook_event")
    op.drop_table("webhook_endpoint")
