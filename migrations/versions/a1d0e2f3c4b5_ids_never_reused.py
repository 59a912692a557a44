"""ids never reused (SQLite AUTOINCREMENT)

Revision ID: a1d0e2f3c4b5
Revises: f3a8d2c5b9e7
Create Date: 2026-12-06 03:00:00

A plain SQLite rowid table hands its largest id out again once that row is deleted: an erased
conversation's id went to the next new customer, and old audit events then pointed at them.
`AUTOINCREMENT` never reuses an id. It is given to the tables whose ids appear in URLs, audit
events or browsers:

- conversation (URLs, audit events, browsers' reply drafts)
- message (`?around=` links, audit events of replies)
- user, login_session (the account pages and the admin's user pages)
- saved_reply (its edit and delete URLs)
- opt_out, dead_letter, audit_event (the admin pages list them; the audit trail pages by id)

Not to conversation_recipient, unmatched_delivery_report, login_throttle or change_counter,
whose ids nobody sees or keeps.

SQLite cannot add AUTOINCREMENT to a table in place: each is rebuilt (made anew from what the
existing table is, whatever its columns, copied with the same ids, swapped), with foreign keys
off meanwhile, and its indexes and text-search triggers made again from their own SQL. The
text-search tables (message_fts, conversation_fts) index rows by id, and the ids are kept, so they
stay as they are. Each table's `sqlite_sequence` starts above both its largest id and the largest
id of it the audit trail mentions (the ids of rows deleted before this migration). About a minute
per million messages (docs/deploy.md): run it with the app stopped.

PostgreSQL's sequences never hand an id out twice: nothing changes there.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import CreateTable

revision = "a1d0e2f3c4b5"
down_revision = "f3a8d2c5b9e7"
branch_labels = None
depends_on = None

# Referenced tables before the tables that refer to them (not required with foreign keys off,
# but the natural order to read).
TABLES = ("user", "conversation", "message", "login_session", "saved_reply", "opt_out", "dead_letter", "audit_event")

# Where audit events' details (JSON) name a row of a table by its id.
MENTIONED_IN_AUDIT = {
    "conversation": ("$.conversation", "$.conversation_id"),
    "message": ("$.reply", "$.message"),
}


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    with foreign_keys_off(bind):
        existing = set(sa.inspect(bind).get_table_names())
        for name in TABLES:
            if name in existing:
                rebuild_with_autoincrement(bind, name)
        problems = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
        if problems:
            raise RuntimeError(f"rows whose foreign keys point nowhere, nothing changed: {problems[:10]}")
        for name in TABLES:
            if name in existing:
                start_sequence_above_used_ids(bind, name)


class foreign_keys_off:
    """`PRAGMA foreign_keys` only changes outside a transaction (inside one it is silently ignored),
    and the app's connections turn it on: end the migration's transaction, turn it off, do the
    work in a transaction of its own, and leave the connection as it was found.

    With foreign keys on, dropping a table that others refer to would first delete its rows
    one by one and fail on the first one referred to."""

    def __init__(self, bind: sa.Connection):
        # SQLAlchemy's transaction (begun by Alembic) stays open throughout, so that it issues no
        # BEGIN of its own; underneath, the driver's connection commits and begins again.
        assert bind.in_transaction()
        self.driver = bind.connection.driver_connection

    def __enter__(self):
        if self.driver.in_transaction:
            self.driver.execute("COMMIT")  # the revisions before this one, stamped
        self.driver.execute("PRAGMA foreign_keys = OFF")
        self.driver.execute("BEGIN IMMEDIATE")

    def __exit__(self, error_type, error, traceback):
        self.driver.execute("ROLLBACK" if error_type else "COMMIT")
        self.driver.execute("PRAGMA foreign_keys = ON")
        self.driver.execute("BEGIN")  # for Alembic's version stamp, committed as it expects


def rebuild_with_autoincrement(bind: sa.Connection, name: str) -> None:
    table_sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).scalar_one()
    if "AUTOINCREMENT" in table_sql.upper():
        return
    # The table as it is now, whatever columns earlier revisions (or later ones) gave it.
    # (Its metadata also gets the tables it refers to, so that its foreign keys can be written.)
    reflected = sa.MetaData()
    existing = sa.Table(name, reflected, autoload_with=bind, sqlite_autoincrement=True)
    rebuilt = existing.to_metadata(reflected, name=f"{name}__rebuilt")
    for index in list(rebuilt.indexes):  # made again below from their own SQL, partial ones included
        rebuilt.indexes.discard(index)
    # Unique constraints in the order the table has them (reflection sorts them by name): SQLite
    # numbers their indexes (sqlite_autoindex_<table>_<n>) in that order.
    uniques = {
        tuple(constraint.columns.keys()): constraint
        for constraint in rebuilt.constraints
        if isinstance(constraint, sa.UniqueConstraint)
    }
    for constraint in uniques.values():
        rebuilt.constraints.discard(constraint)
    automatic = [row[1] for row in bind.exec_driver_sql(f'PRAGMA index_list("{name}")') if row[3] == "u"]
    for index_name in sorted(automatic, key=lambda index_name: int(index_name.rsplit("_", 1)[1])):
        key = tuple(row[2] for row in bind.exec_driver_sql(f'PRAGMA index_info("{index_name}")'))
        rebuilt.append_constraint(sa.UniqueConstraint(*key, name=uniques[key].name))
    ddl = str(CreateTable(rebuilt).compile(dialect=bind.dialect))
    if "AUTOINCREMENT" not in ddl:
        raise RuntimeError(f"{name}: its primary key is not a single integer column")
    # Indexes and triggers (text search's) go with the table: keep their SQL to make them again.
    dependants = (
        bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type, name",
            (name,),
        )
        .scalars()
        .all()
    )
    columns = ", ".join(bind.dialect.identifier_preparer.quote(column.name) for column in existing.columns)
    quoted = bind.dialect.identifier_preparer.quote(name)
    bind.exec_driver_sql(ddl)
    # In id order: the new table's pages fill in order, as the old ones did.
    bind.exec_driver_sql(f'INSERT INTO "{name}__rebuilt" ({columns}) SELECT {columns} FROM {quoted} ORDER BY id')
    bind.exec_driver_sql(f"DROP TABLE {quoted}")
    bind.exec_driver_sql(f'ALTER TABLE "{name}__rebuilt" RENAME TO {quoted}')
    for statement in dependants:
        bind.exec_driver_sql(statement)


def start_sequence_above_used_ids(bind: sa.Connection, name: str) -> None:
    """The next id above the largest the table holds and the largest the audit trail names."""
    used = [bind.exec_driver_sql(f'SELECT max(id) FROM "{name}"').scalar() or 0]
    for path in MENTIONED_IN_AUDIT.get(name, ()):
        used.append(
            bind.exec_driver_sql(
                "SELECT max(CAST(json_extract(details, ?) AS INTEGER)) FROM audit_event WHERE json_valid(details)",
                (path,),
            ).scalar()
            or 0
        )
    largest = max(used)
    bind.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
    bind.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, largest))


def downgrade():
    raise NotImplementedError("restore the backup taken before upgrading; see docs/deploy.md")
