"""notes and mentions: a message's direction may be "note", and the teammates a note names

Revision ID: n25notes0001
Revises: f7a8b9c0d1e2
Create Date: 2026-12-06 09:30:00

`message.direction` and `conversation.last_direction` widen from 3 to 8 characters ("note" does
not fit in 3, and PostgreSQL enforces the length); a new table, `mention`.

PostgreSQL widens a varchar in its catalog alone (no rewrite). SQLite enforces no length, so
nothing stored changes: only the declared type in each table's CREATE TABLE text, edited in
`sqlite_schema` as SQLite's documentation describes for changes that leave the stored rows as
they are ("Making Other Kinds Of Table Schema Changes", lang_altertable.html): an instant edit
instead of copying the message table.
"""

import sqlalchemy as sa
from alembic import op

revision = "n25notes0001"
down_revision = "n25snooze001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = (("message", "direction"), ("conversation", "last_direction"))


def upgrade():
    widen(3, 8)
    op.create_table(
        "mention",
        sa.Column("id", BigId, nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversation.id"], name=op.f("fk_mention_conversation_id_conversation")
        ),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], name=op.f("fk_mention_message_id_message")),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_mention_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mention")),
        sa.UniqueConstraint("message_id", "user_id", name=op.f("uq_mention_message_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_mention_unread",
        "mention",
        ["user_id", "conversation_id"],
        sqlite_where=sa.text("read_at IS NULL"),
        postgresql_where=sa.text("read_at IS NULL"),
    )
    op.create_index("ix_mention_conversation_id", "mention", ["conversation_id"])


def downgrade():
    op.drop_index("ix_mention_conversation_id", table_name="mention")
    op.drop_index("ix_mention_unread", table_name="mention")
    op.drop_table("mention")
    op.execute("DELETE FROM message WHERE direction = 'note'")
    widen(8, 3)


def widen(old: int, new: int) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR({new})")
        return
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    for table, column in COLUMNS:
        before, after = f"{column} VARCHAR({old}) ", f"{column} VARCHAR({new}) "
        sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        text = sql.scalar_one()
        if text.count(before) != 1:
            raise RuntimeError(f"{table}.{column} is not declared as expected: {text}")
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
            (text.replace(before, after), table),
        )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")
