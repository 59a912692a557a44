"""number parts: six-character stretches of each sender's key, for number search

Revision ID: n29search001
Revises: n28costs0001
Create Date: 2026-12-06 13:00:00

A new table, filled from the stored conversations, then kept by triggers on conversation
(app/db/models.py: NUMBER_PART, NUMBER_INDEX).
"""

import sqlalchemy as sa
from alembic import op

from app.db.models import NUMBER_INDEX

revision = "n29search001"
down_revision = "n28costs0001"
branch_labels = None
depends_on = None

# The stretches of every stored key, as the insert trigger writes them (generate_series on
# PostgreSQL; on SQLite the positions a key of 64 characters can have).
FILL = {
    "sqlite": (
        "INSERT INTO conversation_number_part (part, conversation_id) "
        "SELECT DISTINCT substr(conversation.sender_key, position.n, 6), conversation.id "
        "FROM conversation JOIN ({}) AS position ON position.n <= length(conversation.sender_key) - 5".format(
            " UNION ALL ".join(f"SELECT {n} AS n" for n in range(1, 60))
        )
    ),
    "postgresql": (
        "INSERT INTO conversation_number_part (part, conversation_id) "
        "SELECT DISTINCT substr(conversation.sender_key, position.n, 6), conversation.id "
        "FROM conversation, generate_series(1, length(conversation.sender_key) - 5) AS position(n)"
    ),
}


def upgrade():
    op.create_table(
        "conversation_number_part",
        sa.Column("part", sa.String(length=6), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("part", "conversation_id", name=op.f("pk_conversation_number_part")),
        sqlite_with_rowid=False,
    )
    dialect = op.get_bind().dialect.name
    op.execute(FILL[dialect])
    for statement in NUMBER_INDEX[dialect]:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER conversation_number_part_{name}")
    else:
        op.execute("DROP TRIGGER conversation_number_part_insert_delete ON conversation")
        op.execute("DROP TRIGGER conversation_number_part_update ON conversation")
        op.execute("DROP FUNCTION conversation_number_part_keep()")
    op.drop_table("conversation_number_part")
