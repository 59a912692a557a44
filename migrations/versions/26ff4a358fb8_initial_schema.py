"""initial schema

Revision ID: 26ff4a358fb8
Revises:
Create Date: 2026-11-25 04:25:30.427134

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "26ff4a358fb8"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        # Sender search matches any part of the number: a trigram index serves that.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "conversation",
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("sender_key", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("last_message_id", sa.Integer(), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(), nullable=False),
        sa.Column("last_text", sa.String(length=160), nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("unread_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sender", name=op.f("pk_conversation")),
        sa.UniqueConstraint("last_message_id", name=op.f("uq_conversation_last_message_id")),
    )
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversation_last_message_id_sender_key", ["last_message_id", "sender_key"], unique=False
        )
        batch_op.create_index(
            "ix_conversation_unread",
            ["unread_count"],
            unique=False,
            sqlite_where=sa.text("unread_count > 0"),
            postgresql_where=sa.text("unread_count > 0"),
        )

    op.create_table(
        "daily_count",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_daily_count")),
    )
    op.create_table(
        "dead_letter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("raw_body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter")),
    )
    op.create_table(
        "login_throttle",
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_login_throttle")),
    )
    op.create_table(
        "message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("msg_id", sa.String(length=255), nullable=False),
        sa.Column("sub_msg_id", sa.String(length=255), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("raw_body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message")),
        sa.UniqueConstraint("msg_id", name=op.f("uq_message_msg_id")),
    )
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.create_index("ix_message_sender_id", ["sender", "id"], unique=False)

    op.create_table(
        "user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("session_token", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user")),
        sa.UniqueConstraint("username", name=op.f("uq_user_username")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_conversation_sender_key_trgm",
            "conversation",
            ["sender_key"],
            postgresql_using="gin",
            postgresql_ops={"sender_key": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
        )


def downgrade():
    op.drop_table("user")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index("ix_message_sender_id")

    op.drop_table("message")
    op.drop_table("login_throttle")
    op.drop_table("dead_letter")
    op.drop_table("daily_count")
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_index("ix_conversation_last_message_id_sender_key")
        batch_op.drop_index(
            "ix_conversation_unread",
            sqlite_where=sa.text("unread_count > 0"),
            postgresql_where=sa.text("unread_count > 0"),
        )

    op.drop_table("conversation")
