"""After a deletion the SQLite files keep no copy: `secure_delete` zeroes the pages a
transaction frees, `scrub_files` rewrites the text indexes without the deleted entries and empties
the WAL (see docs/privacy.md). On PostgreSQL both do nothing.
"""

import logging

import sqlalchemy as sa

from app.db.unit_of_work import write_transaction
from app.extensions import db

log = logging.getLogger(__name__)

# SQLite's text indexes (app/db/models.py, trigram_index), merged after a deletion in steps of pages.
TEXT_INDEXES = ("message_fts", "conversation_fts")
FTS_MERGE_PAGES = 200


def is_sqlite() -> bool:
    return db.engine.dialect.name == "sqlite"


def secure_delete() -> None:
    """Zero what this transaction deletes (SQLite; a connection setting, harmless to leave on)."""
    if is_sqlite():
        db.session.execute(sa.text("PRAGMA secure_delete = ON"))


def scrub_files() -> None:
    """After deleting on SQLite: rewrite the text indexes (messages', conversations') without the
    deleted entries, then copy the WAL into the database and empty it, so the deleted rows' old
    pages are gone from both files.

    FTS5 keeps a deleted entry's trigrams in its old segment until segments merge (SQLite 3.42's
    secure-delete option would drop them at each delete; this is 3.40). Merging everything into
    one segment at once ('optimize') would hold the write lock for as long as rewriting the
    whole index takes; 'merge' with a negative amount does the same work in steps of
    FTS_MERGE_PAGES pages, each its own transaction, so callbacks go in between.
    A reader holding an old snapshot (a long export) keeps the checkpoint from finishing:
    then the WAL is emptied at a later checkpoint.
    """
    if not is_sqlite():
        return
    for index in TEXT_INDEXES:
        while True:
            with write_transaction() as session:
                secure_delete()
                before = session.scalar(sa.text("SELECT total_changes()"))
                session.execute(
                    sa.text(f"INSERT INTO {index} ({index}, rank) VALUES ('merge', :pages)"),
                    {"pages": -FTS_MERGE_PAGES},
                )
                if session.scalar(sa.text("SELECT total_changes()")) - before < 2:  # SQLite's "nothing left"
                    break
    with db.engine.connect() as connection:
        busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    if busy:
        log.warning("WAL checkpoint after a deletion was held back by a reader; a later one completes it")
