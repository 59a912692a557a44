"""notifications: a person's in-app notifications, and the kinds they turned off

Revision ID: f7a8b9c0d1e2
Revises: e6f7a8b9c0d1
Create Date: 2026-12-12 09:00:00

Two new tables; nothing existing changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "f7a8b9c0d1e2"
down_revision = "e6f7a8b9c0d1"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "notification",
        sa.Column("id", BigId, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversation.id"], name=op.f("fk_notification_conversation_id_conversation")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_notification_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notification_user_id_id", "notification", ["user_id", "id"])
    op.create_index(
        "ix_notification_unread",
        "notification",
        ["user_id", "conversation_id"],
        sqlite_where=sa.text("read_at IS NULL"),
        postgresql_where=sa.text("read_at IS NULL"),
    )
    op.create_index("ix_notification_conversation_id", "notification", ["conversation_id"])
    op.create_table(
        "notification_opt_out",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_notification_opt_out_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_opt_out")),
        sa.UniqueConstraint("user_id", "kind", name=op.f("uq_notification_opt_out_user_id")),
    )


def downgrade():
    op.drop_table("notification_opt_out")
    op.drop_index("ix_notification_conversation_id", table_name="notification")
    op.drop_index("ix_notification_unread", table_name="notification")
    op.drop_index("ix_notification_user_id_id", table_name="notification")
    op.drop_table("notification")
