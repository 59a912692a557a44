"""number parts: six-character stretches of each sender's key, for number search

Revision ID: n29search001
Revises: n28report001
Create Date: 2026-12-06 13:00:00

A new table, filled from the stored conversations, then kept by triggers on conversation
(app/db/models.py: NUMBER_PART, NUMBER_INDEX; the SQL as it was then).
"""

import sqlalchemy as sa
from alembic import op

revision = "n29search001"
down_revision = "n28report001"
branch_labels = None
depends_on = None

TABLE = "conversation_number_part"


def _parts(key: str, dialect: str) -> str:
    """As app.db.models._number_parts at the time of writing (six characters, keys of up to 64)."""
    if dialect == "sqlite":
        positions = " UNION ALL ".join(f"SELECT {n} AS n" for n in range(1, 60))
        source = f"({positions}) AS position WHERE position.n <= length({key}) - 5"
    else:
        source = f"generate_series(1, length({key}) - 5) AS position(n)"
    return f"SELECT DISTINCT substr({key}, position.n, 6) AS part FROM {source}"


def _insert(row: str, dialect: str) -> str:
    return (
        f"INSERT INTO {TABLE} (part, conversation_id) SELECT part, {row}.id "
        f"FROM ({_parts(f'{row}.sender_key', dialect)}) AS parts"
    )


def _delete(row: str, dialect: str) -> str:
    return (
        f"DELETE FROM {TABLE} WHERE conversation_id = {row}.id "
        f"AND part IN (SELECT part FROM ({_parts(f'{row}.sender_key', dialect)}) AS parts)"
    )


# As app.db.models.NUMBER_INDEX at the time of writing.
NUMBER_INDEX = {
    "sqlite": (
        f"CREATE TRIGGER {TABLE}_insert AFTER INSERT ON conversation BEGIN {_insert('new', 'sqlite')}; END",
        f"CREATE TRIGGER {TABLE}_delete AFTER DELETE ON conversation BEGIN {_delete('old', 'sqlite')}; END",
        f"CREATE TRIGGER {TABLE}_update AFTER UPDATE OF sender_key ON conversation "
        f"WHEN old.sender_key IS NOT new.sender_key BEGIN {_delete('old', 'sqlite')}; {_insert('new', 'sqlite')}; END",
    ),
    "postgresql": (
        f"CREATE FUNCTION {TABLE}_keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP <> 'INSERT' THEN {_delete('OLD', 'postgresql')}; END IF; "
        f"IF TG_OP <> 'DELETE' THEN {_insert('NEW', 'postgresql')}; END IF; "
        "RETURN NULL; END $$",
        f"CREATE TRIGGER {TABLE}_insert_delete AFTER INSERT OR DELETE ON conversation "
        f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_keep()",
        f"CREATE TRIGGER {TABLE}_update AFTER UPDATE OF sender_key ON conversation "
        f"FOR EACH ROW WHEN (OLD.sender_key IS DISTINCT FROM NEW.sender_key) EXECUTE FUNCTION {TABLE}_keep()",
    ),
}

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
