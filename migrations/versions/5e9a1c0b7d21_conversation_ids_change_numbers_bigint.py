"""conversation ids, change numbers, 64-bit message ids, one dead letter per body

Revision ID: 5e9a1c0b7d21
Revises: 26ff4a358fb8
Create Date: 2026-11-25 15:40:00

Conversations get an opaque id (a sender may be any text, so it cannot be a URL part) that
messages refer to; list and thread rows get the change number of their last change; message
ids become BIGINT on PostgreSQL, sequence included. On PostgreSQL the id type change rewrites
the message table under an exclusive lock (see docs/deploy.md); on SQLite both tables are
rebuilt by copying.
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "5e9a1c0b7d21"
down_revision = "26ff4a358fb8"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "change_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_counter")),
    )
    op.execute("INSERT INTO change_counter (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        upgrade_postgresql()
    else:
        upgrade_sqlite()
    op.create_index(op.f("ix_conversation_change_seq"), "conversation", ["change_seq"])
    op.create_index(
        "uq_conversation_last_message_id_sender_key", "conversation", ["last_message_id", "sender_key"], unique=True
    )
    op.create_index(
        "ix_conversation_unread",
        "conversation",
        ["unread_count"],
        sqlite_where=sa.text("unread_count > 0"),
        postgresql_where=sa.text("unread_count > 0"),
    )
    op.create_index("ix_message_conversation_id_id", "message", ["conversation_id", "id"])
    op.create_index("ix_message_conversation_id_change_seq", "message", ["conversation_id", "change_seq"])
    one_dead_letter_per_body()


def upgrade_postgresql():
    op.execute("ALTER TABLE message ALTER COLUMN id TYPE bigint")
    # The column alone would leave the sequence capped at 2,147,483,647.
    op.execute("ALTER SEQUENCE message_id_seq AS bigint")

    op.drop_index("ix_conversation_last_message_id_sender_key", table_name="conversation")
    op.drop_index("ix_conversation_unread", table_name="conversation")
    op.drop_constraint("uq_conversation_last_message_id", "conversation", type_="unique")
    op.drop_constraint("pk_conversation", "conversation", type_="primary")
    op.execute("ALTER TABLE conversation ADD COLUMN id BIGSERIAL NOT NULL")
    op.create_primary_key("pk_conversation", "conversation", ["id"])
    op.create_unique_constraint(op.f("uq_conversation_sender"), "conversation", ["sender"])
    op.execute(
        "ALTER TABLE conversation ALTER COLUMN last_message_id TYPE bigint, ALTER COLUMN last_message_id DROP NOT NULL"
    )
    op.execute("ALTER TABLE conversation ADD COLUMN change_seq bigint NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE conversation ALTER COLUMN change_seq DROP DEFAULT")

    op.drop_index("ix_message_sender_id", table_name="message")
    op.execute("ALTER TABLE message ADD COLUMN conversation_id bigint, ADD COLUMN change_seq bigint NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE message ALTER COLUMN change_seq DROP DEFAULT")
    op.execute(
        "UPDATE message SET conversation_id = conversation.id FROM conversation "
        "WHERE conversation.sender = message.sender"
    )
    op.execute("ALTER TABLE message ALTER COLUMN conversation_id SET NOT NULL")
    op.create_foreign_key(
        op.f("fk_message_conversation_id_conversation"), "message", "conversation", ["conversation_id"], ["id"]
    )


def upgrade_sqlite():
    # SQLite cannot change a primary key in place: build each table anew, copy, swap.
    op.create_table(
        "conversation_new",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("sender_key", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("last_message_id", sa.BigInteger(), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(), nullable=False),
        sa.Column("last_text", sa.String(length=160), nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("unread_count", sa.Integer(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversation"),
        sa.UniqueConstraint("sender", name="uq_conversation_sender"),
    )
    op.execute("""
        INSERT INTO conversation_new (sender, sender_key, channel, last_message_id, last_sent_at,
                                      last_text, message_count, unread_count, change_seq)
        SELECT sender, sender_key, channel, last_message_id, last_sent_at, last_text,
               message_count, unread_count, 0
        FROM conversation ORDER BY last_message_id""")
    op.drop_table("conversation")
    op.rename_table("conversation_new", "conversation")

    op.create_table(
        "message_new",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("msg_id", sa.String(length=255), nullable=False),
        sa.Column("sub_msg_id", sa.String(length=255), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("raw_body", sa.LargeBinary(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversation.id"], name="fk_message_conversation_id_conversation"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_message"),
        sa.UniqueConstraint("msg_id", name="uq_message_msg_id"),
    )
    op.execute("""
        INSERT INTO message_new (id, conversation_id, msg_id, sub_msg_id, channel, sender, recipient,
                                 text, sent_at, received_at, raw_body, change_seq)
        SELECT message.id, conversation.id, msg_id, sub_msg_id, message.channel, message.sender,
               recipient, text, sent_at, received_at, raw_body, 0
        FROM message JOIN conversation ON conversation.sender = message.sender
        ORDER BY message.id""")
    op.drop_table("message")
    op.rename_table("message_new", "message")


def one_dead_letter_per_body():
    bind = op.get_bind()
    with op.batch_alter_table("dead_letter") as batch_op:
        batch_op.add_column(sa.Column("body_sha256", sa.String(length=64), nullable=True))
    dead_letter = sa.table(
        "dead_letter",
        sa.column("id", sa.Integer),
        sa.column("raw_body", sa.LargeBinary),
        sa.column("body_sha256", sa.String),
    )
    seen = set()
    for row_id, raw_body in bind.execute(
        sa.select(dead_letter.c.id, dead_letter.c.raw_body).order_by(dead_letter.c.id)
    ).all():
        digest = hashlib.sha256(raw_body).hexdigest()
        if digest in seen:  # a retry of a body already kept
            bind.execute(sa.delete(dead_letter).where(dead_letter.c.id == row_id))
        else:
            seen.add(digest)
            bind.execute(sa.update(dead_letter).where(dead_letter.c.id == row_id).values(body_sha256=digest))
    with op.batch_alter_table("dead_letter") as batch_op:
        batch_op.alter_column("body_sha256", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_dead_letter_body_sha256"), ["body_sha256"])


def downgrade():
    raise NotImplementedError("restore the backup taken before upgrading; see docs/deploy.md")
