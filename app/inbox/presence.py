"""Presence: "bob is viewing", "bob is typing…" on a conversation others have open.

Carried by the thread's poll: each poll of a visible page says "I am viewing, typing yes or
no" (`touch`), and reads who else is there (`others`); a page that shows a different `version`
of them gets the presence line alone. Nobody is shown to themselves.

Not durable data: a row takes no change number (idle polls stay 204) and is written outside
`write_transaction`, on an engine of its own, so it never waits for the write lock: on SQLite
a file next to the database (`<name>-presence.sqlite3`, synchronous=OFF), on PostgreSQL an
UNLOGGED table in the app's schema (app/db/presence.py). A row is written only when someone's
state changes, and refreshed every REFRESH_POLLS polls; it expires EXPIRY_POLLS polls after
its last write, so a page closed or hidden (a hidden tab says it is not viewing) drops out of
everyone's line by itself.
"""

import hashlib
import logging
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, current_app

from app.db.models import User
from app.db.presence import TYPING, VIEWING, presence, presence_table
from app.extensions import db, dialect_insert, engine_options, make_private

log = logging.getLogger(__name__)

# In polls (POLL_SECONDS, 4 s by default): a row is rewritten after 2 polls (8 s) and expires
# after 5 (20 s), so a refresh is always well inside its expiry, one late poll or two included.
REFRESH_POLLS, EXPIRY_POLLS = 2, 5
SQLITE_BUSY_MS = 1000  # presence is not worth waiting for: a write that can't get in is skipped
_engines_lock = threading.Lock()


@dataclass(frozen=True, order=True)
class Present:
    user_id: int
    state: str  # VIEWING or TYPING


def _seconds(polls: int) -> timedelta:
    return timedelta(seconds=polls * current_app.config["POLL_SECONDS"])


def touch(conversation_id: int, user_id: int, typing: bool, now: datetime) -> bool:
    """This person has the conversation open (and is typing, or not). Writes only when their
    state changed or the row is due for its refresh; says whether it wrote."""
    state = TYPING if typing else VIEWING
    engine = _engine()
    key = (presence.c.conversation_id == conversation_id) & (presence.c.user_id == user_id)
    with _connect(engine) as connection:
        row = connection.execute(sa.select(presence.c.state, presence.c.expires_at).where(key)).first()
        expiry = _seconds(EXPIRY_POLLS)
        if row and row.state == state and row.expires_at - now > expiry - _seconds(REFRESH_POLLS):
            return False  # written less than a refresh ago, and nothing changed
        insert = dialect_insert(presence, engine.dialect.name).values(
            conversation_id=conversation_id, user_id=user_id, state=state, expires_at=now + expiry
        )
        try:
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[presence.c.conversation_id, presence.c.user_id],
                    set_={"state": insert.excluded.state, "expires_at": insert.excluded.expires_at},
                )
            )
            # Rows of pages closed long ago: a handful, as the table only holds who is here now.
            connection.execute(sa.delete(presence).where(presence.c.expires_at <= now))
        except sa.exc.OperationalError as exc:  # SQLite's file busy beyond SQLITE_BUSY_MS
            log.warning("presence not written: %s", exc)
            return False
    return True


def others(conversation_id: int, user_id: int, now: datetime) -> list[Present]:
    """Who else has the conversation open now, by user id."""
    with _connect(_engine()) as connection:
        rows = connection.execute(
            sa.select(presence.c.user_id, presence.c.state).where(
                presence.c.conversation_id == conversation_id,
                presence.c.user_id != user_id,
                presence.c.expires_at > now,
            )
        ).all()
    return sorted(Present(row.user_id, row.state) for row in rows)


def version(present: list[Present]) -> str:
    """A short fingerprint of who is there doing what: the page sends it back with each poll.
    Empty when nobody is."""
    if not present:
        return ""
    text = ",".join(f"{one.user_id}:{one.state}" for one in present)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def lines(present: list[Present]) -> list[str]:
    """What the page says: "bob is typing…" first, then "carol is viewing"."""
    if not present:
        return []
    names: dict[int, str] = {
        row.id: row.username
        for row in db.session.execute(
            sa.select(User.id, User.username).where(User.id.in_([one.user_id for one in present]))
        )
    }
    ordered = sorted(present, key=lambda one: (one.state != TYPING, names.get(one.user_id, "")))
    return [
        f"{names[one.user_id]} is {'typing…' if one.state == TYPING else 'viewing'}"
        for one in ordered
        if one.user_id in names
    ]


# --- the engine -------------------------------------------------------------------------------


def _connect(engine: sa.Engine) -> sa.Connection:
    # Each statement its own transaction: no BEGIN and ROLLBACK around a one-row read.
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _engine() -> sa.Engine:
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the app itself, for its extensions
    engine = app.extensions.get("presence_engine")
    if engine is None:
        with _engines_lock:
            engine = app.extensions.get("presence_engine")
            if engine is None:
                engine = app.extensions["presence_engine"] = _make_engine(db.engine.url)
                weakref.finalize(app, engine.dispose)
    return engine


def dispose(app: Flask) -> None:
    """Close the app's presence connections (tests, before their database goes)."""
    engine = app.extensions.pop("presence_engine", None)
    if engine is not None:
        engine.dispose()


def side_file(database: str) -> Path:
    """SQLite's presence file: `instance/sms-inbox.sqlite3` keeps it in `instance/sms-inbox-presence.sqlite3`."""
    main = Path(database)
    return main.with_name(f"{main.stem}-presence.sqlite3")


def _make_engine(url: sa.URL) -> sa.Engine:
    if url.get_backend_name() != "sqlite":
        # The app's own database (and schema, by the URL's search_path), in a small pool of its
        # own: a request holding one of the main pool's connections never waits for a second.
        options = engine_options(url.render_as_string(hide_password=False))
        return sa.create_engine(url, pool_size=2, max_overflow=8, **options)
    if url.database in (None, "", ":memory:"):
        engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False})
        path = None
    else:
        path = side_file(url.database)
        engine = sa.create_engine(
            sa.URL.create("sqlite", database=str(path)), connect_args={"check_same_thread": False}
        )

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        if path is not None:
            make_private(str(path))
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        cursor.execute("PRAGMA synchronous=OFF")  # lost in a crash: nothing worth keeping
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.close()

    with engine.begin() as connection:  # every process may be first: IF NOT EXISTS
        connection.execute(sa.schema.CreateTable(presence_table(sa.MetaData()), if_not_exists=True))
    return engine
