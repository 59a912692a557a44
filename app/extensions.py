"""Extensions as module globals, bound to the app by `create_app` through `init_app`.

Also what every backend must share: SQLite set up for durability and explicit BEGINs (the
write lock is taken in `unit_of_work`), and an INSERT that can ignore or merge a conflict.
"""

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import sqlalchemy as sa
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )

    if TYPE_CHECKING:
        # SQLAlchemy declares a FromClause, as a class may be mapped to a join or a subquery;
        # every model here is mapped to a Table, and code reads its name, columns and indexes.
        __table__: ClassVar[sa.Table]


db = SQLAlchemy(model_class=Base)

# The models' base class. At run time it is `db.Model`: a copy of Base that Flask-SQLAlchemy
# builds with its mixins (table names from class names, binds). Flask-SQLAlchemy types that
# attribute as a variable, which mypy cannot subclass, so the type checker sees Base itself:
# the same registry and metadata, and the `Mapped[...]` columns type-check through it.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model

# How long a writer waits for the database's write lock (held by another writer, an export on
# PostgreSQL, an admin's shell) before it gives up: a callback then answers 503 and is retried.
# The default of the WRITE_LOCK_WAIT_SECONDS setting.
WRITE_LOCK_WAIT_SECONDS = 10
login_manager = LoginManager()
csrf = CSRFProtect()
migrate = Migrate()


def engine_options(url: str, lock_wait_seconds: float = WRITE_LOCK_WAIT_SECONDS) -> dict:
    if url.startswith("sqlite"):
        # Wait for the write lock rather than fail with "database is locked", but not for ever.
        return {"connect_args": {"timeout": lock_wait_seconds, "check_same_thread": False}}
    if url.startswith("postgresql+psycopg"):
        # No server-side prepared statements: a generic plan for `sender_key LIKE $1` can't use
        # the trigram index, and PostgreSQL may switch a prepared search to one after five runs.
        # Pre-ping: after a server restart, pooled connections are found dead before use.
        return {"connect_args": {"prepare_threshold": None}, "pool_pre_ping": True}
    return {}


def configure_engine(engine: sa.Engine, lock_wait_seconds: float = WRITE_LOCK_WAIT_SECONDS) -> None:
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, record):
        make_private(engine.url.database)
        # We issue BEGIN ourselves (below), so the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # an acked message is on disk
        record.info["synchronous"] = "FULL"
        cursor.execute(f"PRAGMA busy_timeout={int(lock_wait_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection):
        options = connection.get_execution_options()
        # FULL unless a write says it need not wait for the disk (write_transaction(durable=False));
        # set only when it changes, before BEGIN (never allowed inside a transaction)
        synchronous = options.get("sqlite_synchronous", "FULL")
        if connection.info.get("synchronous") != synchronous:
            connection.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
            connection.info["synchronous"] = synchronous
        connection.exec_driver_sql(f"BEGIN {options.get('sqlite_begin', 'DEFERRED')}")


def make_private(database: str | None) -> None:
    """Messages, password hashes and session tokens: readable by the app's user only.

    SQLite gives the -wal and -shm files the database file's mode, so this covers all three.
    """
    if not database or database == ":memory:":
        return
    for suffix in ("", "-wal", "-shm"):
        path = Path(database + suffix)
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)


def dialect_insert(table, dialect: str | None = None) -> sqlite.Insert | postgresql.Insert:
    """The dialect's own INSERT, which has `on_conflict_do_nothing` / `on_conflict_do_update`."""
    dialect = dialect or db.session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise KeyError(dialect)
