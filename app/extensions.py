"""Extensions as module globals, bound to the app by `create_app` through `init_app`.

Also the two database behaviours every backend must share: a write transaction that takes
the write lock up front, and an INSERT that can ignore or merge a conflicting row.
"""
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


db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
csrf = CSRFProtect()
migrate = Migrate()

# Any constant shared by every instance: PostgreSQL writers queue on this advisory lock.
WRITE_LOCK_KEY = 0x5D5_1B0C


def engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        # Wait for the write lock rather than fail with "database is locked".
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    if url.startswith("postgresql+psycopg"):
        # No server-side prepared statements: a generic plan for `sender_key LIKE $1` can't use
        # the trigram index, and PostgreSQL may switch a prepared search to one after five runs.
        return {"connect_args": {"prepare_threshold": None}}
    return {}


def configure_engine(engine: sa.Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # We issue BEGIN ourselves (below), so the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # an acked message is on disk
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection):
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def begin_write() -> None:
    """Start the session's transaction holding the database's write lock.

    Writers then wait their turn instead of failing half-way, and ids are handed out in
    commit order, so "newer than id N" never misses a row that commits late.
    Call it before the transaction writes anything; reads before it are fine.
    """
    if db.session.get_bind().dialect.name == "sqlite":
        if db.session().in_transaction():
            if db.session.connection().get_execution_options().get("sqlite_begin") == "IMMEDIATE":
                return  # this transaction holds the lock already
            # It has only read (say, the logged-in user). A SQLite read snapshot can't become a
            # write once another writer has committed: it fails at once with "database is
            # locked" instead of waiting. So end it and begin again, holding the lock.
            db.session.commit()
        db.session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    else:
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))


def upsert(table, dialect: str | None = None) -> sa.Insert:
    """An INSERT that supports `on_conflict_do_nothing` / `on_conflict_do_update` on our dialects."""
    dialect = dialect or db.session.get_bind().dialect.name
    return {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect](table)
