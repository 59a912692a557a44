"""The presence table: who has a conversation open, and who is typing in it, right now.

Not durable data, so not among the models (whose metadata the migrations are compared with):
rows live for seconds, take no change number and are written outside `write_transaction`.
On PostgreSQL it is an UNLOGGED table in the app's schema, made by migration d5e6f7a8b9c0 and,
for databases made by `create_all` (tests, `copy-db`'s checks), alongside the models' tables.
On SQLite it is a table in a file of its own next to the database (app/inbox/presence.py opens
it), so presence writes never wait for, or hold, the database's write lock.
"""

import sqlalchemy as sa

from app.extensions import Base

VIEWING, TYPING = "viewing", "typing"


def presence_table(metadata: sa.MetaData, *prefixes: str) -> sa.Table:
    """The table's definition, the same for both databases (PostgreSQL's with UNLOGGED)."""
    return sa.Table(
        "presence",
        metadata,
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "user_id", name="pk_presence"),
        prefixes=list(prefixes),
    )


presence = presence_table(sa.MetaData(), "UNLOGGED")


@sa.event.listens_for(Base.metadata, "after_create")
def create_with_the_models(_metadata, connection: sa.Connection, **_kw) -> None:
    """PostgreSQL's presence table, made whenever the models' tables are (`db.create_all()`)."""
    if connection.dialect.name == "postgresql":
        presence.create(connection, checkfirst=True)


@sa.event.listens_for(Base.metadata, "after_drop")
def drop_with_the_models(_metadata, connection: sa.Connection, **_kw) -> None:
    if connection.dialect.name == "postgresql":
        presence.drop(connection, checkfirst=True)
