"""Keeping personal data only as long as allowed: retention by age, and erasure on request.

`purge` deletes what arrived more than the configured days ago (messages both ways, their
delivery reports, dead letters, stale login rows and sessions, and audit events past their own
limit) in small batches, each its own write transaction: callbacks wait at most one batch, and
an interrupted purge resumes by simply running again. `erase_conversation` deletes one
conversation and everything about its number at once. Both count on SQLite's `secure_delete`
(freed pages zeroed) and a WAL checkpoint so that no copy stays in the files; see docs/privacy.md.

The app purges by itself once a day (the periodic `daily_purge` job, app/jobs/; a lease,
app/jobs/leases.py, lets one process at a time purge); `flask --app app purge` runs it by hand.
"""

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from app import audit, clock, jobs
from app.db import folding, numbers
from app.db.models import (
    AuditEvent,
    Conversation,
    DeadLetter,
    LoginSession,
    LoginThrottle,
    Message,
    Setting,
    Suppression,
    UnmatchedDeliveryReport,
)
from app.db.unit_of_work import change_number, rows_matched, write_transaction
from app.extensions import db
from app.inbox import queries, search
from app.jobs import leases

log = logging.getLogger(__name__)

RETENTION_DAYS, AUDIT_RETENTION_DAYS = "retention_days", "audit_retention_days"
LAST_PURGE = "last_purge_at"
PURGE_LEASE = "retention_purge"  # the lease's name (app/jobs/leases.py): one purge at a time
FOREVER = ""  # the stored value for "keep for ever"
PURGE_INTERVAL = timedelta(days=1)
LEASE = timedelta(minutes=10)  # renewed after every batch; a crashed holder's lease runs out
CHECK_SECONDS = 15 * 60
# Messages per purge transaction: each holds the write lock while it deletes, so callbacks
# arriving meanwhile wait up to one batch (see docs/performance.md for what it costs them).
BATCH_SIZE = 50
# SQLite's text indexes (app/db/models.py, trigram_index), merged after a deletion in steps of pages.
TEXT_INDEXES = ("message_fts", "conversation_fts")
FTS_MERGE_PAGES = 200


# --- settings ----------------------------------------------------------------------------


def _setting(name: str) -> str | None:
    return db.session.scalar(sa.select(Setting.value).where(Setting.name == name))


def _store(name: str, value: str) -> None:
    row = db.session.get(Setting, name)
    if row is None:
        db.session.add(Setting(name=name, value=value))
    else:
        row.value = value


def days() -> int | None:
    """Days to keep messages: the admin's setting, else RETENTION_DAYS; None keeps them for ever."""
    stored = _setting(RETENTION_DAYS)
    if stored is None:
        return current_app.config["RETENTION_DAYS"]
    return int(stored) if stored != FOREVER else None


def audit_days() -> int | None:
    """Days to keep audit events: the admin's setting, else AUDIT_RETENTION_DAYS; None keeps them for ever."""
    stored = _setting(AUDIT_RETENTION_DAYS)
    if stored is None:
        return current_app.config["AUDIT_RETENTION_DAYS"] or None
    return int(stored) if stored != FOREVER else None


def set_days(message_days: int | None, audit_event_days: int | None) -> None:
    """In a write transaction (the caller's, if open); None (or 0) keeps for ever."""
    with write_transaction():
        _store(RETENTION_DAYS, str(message_days) if message_days else FOREVER)
        _store(AUDIT_RETENTION_DAYS, str(audit_event_days) if audit_event_days else FOREVER)


def last_purge() -> datetime | None:
    stored = _setting(LAST_PURGE)
    return datetime.fromisoformat(stored) if stored else None


# --- the SQLite files keep no copy ---------------------------------------------------------


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


# --- erasure on request ------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    sender: str
    name: str | None
    messages: int
    opted_out: bool


def conversation_summary(conversation_id: int) -> ConversationSummary | None:
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    count = db.session.scalar(sa.select(sa.func.count()).where(Message.conversation_id == conversation_id)) or 0
    return ConversationSummary(
        conversation.id, conversation.sender, getattr(conversation, "contact_name", None), count, conversation.opted_out
    )


def erase_conversation(conversation_id: int) -> int:
    """Delete a conversation and everything about its number; returns the messages deleted.

    The audit trail keeps that it happened, with the number as a keyed hash; what the trail and
    the dead letters held about the person goes (see `ErasedPerson`). A number that had opted out
    stays blocked from replies by a hashed suppression entry, until it opts back in.
    """
    with write_transaction() as session:
        secure_delete()
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            return 0
        number, opted_out = conversation.sender, conversation.opted_out
        # Found while the person's messages are still there: a search matched "only them".
        person = ErasedPerson.of(conversation)
        redacted = redact_audit_trail(person)
        ids = list(session.scalars(sa.select(Message.id).where(Message.conversation_id == conversation_id)))
        omnimessage_ids = [
            value
            for value in session.scalars(
                sa.select(Message.omnimessage_id).where(
                    Message.conversation_id == conversation_id, Message.omnimessage_id.is_not(None)
                )
            )
        ]
        for chunk in chunks(omnimessage_ids):
            session.execute(sa.delete(UnmatchedDeliveryReport).where(UnmatchedDeliveryReport.omnimessage_id.in_(chunk)))
        for chunk in chunks(ids):
            for column in referring_columns(Message.__table__):
                session.execute(sa.delete(column.table).where(column.in_(chunk)))
        delete_rows_referring_to(conversation_id)
        session.execute(sa.delete(Message).where(Message.conversation_id == conversation_id))
        session.execute(sa.delete(Conversation).where(Conversation.id == conversation_id))
        dead_letters = delete_dead_letters_mentioning(person)
        number_hash = audit.number_hash(number)
        if opted_out and session.get(Suppression, number_hash) is None:
            session.add(Suppression(number_hash=number_hash, created_at=clock.now()))
        change_number()  # lists polling for changes redraw without it
        audit.record(
            "conversation_deleted",
            {
                "conversation": conversation_id,
                "number_hash": number_hash,
                "messages": len(ids),
                "dead_letters": dead_letters,
                "was_opted_out": opted_out,
                "audit_events_redacted": redacted,
            },
        )
    scrub_files()
    return len(ids)


ERASED = "[erased]"
# Audit details that hold what a person typed (an export's searches, why a STOP was lifted):
# the only ones that can hold a customer's number, name or words. Every other detail is the
# app's own (a role, a format, a username, who acted), which an erasure never touches.
TYPED_DETAILS = ("q", "text", "reason")
WORD = re.compile(r"\w+")
# Searches recorded with the few conversations they matched (see search_subjects).
MATCHED = "matched_conversations"
FEW_SUBJECTS = 3


@dataclass
class ErasedPerson:
    """Everything that identifies a person being erased, and the tests that find it elsewhere:
    their number however written, their contact name, and searches that matched only them.

    Past contact names are stored nowhere (editing a contact records only the conversation's
    id); a search by one is found through the conversations it matched when it ran (MATCHED).
    """

    conversation_id: int
    number_key: str  # the conversation's sender (numbers.normalise)
    sender_key: str
    folded_name: str | None
    folded_texts: list[str]

    @classmethod
    def of(cls, conversation: Conversation) -> "ErasedPerson":
        texts = db.session.scalars(
            sa.select(Message.folded_text).where(Message.conversation_id == conversation.id, Message.folded_text != "")
        )
        name = folding.fold(conversation.contact_name.strip()) if conversation.contact_name else None
        return cls(
            conversation.id,
            conversation.sender,
            conversation.sender_key,
            name if name and len(name) >= search.MIN_QUERY else None,
            list(texts),
        )

    def __post_init__(self):
        self.mentions_number = numbers.mentions(self.number_key)
        self.name_words = words(self.folded_name) if self.folded_name else []

    def mentioned_in(self, value: str) -> bool:
        """Whether a text holds the number (any spelling that dials it) or the contact's name."""
        return self.mentions_number(value.encode("utf-8", "surrogatepass")) or self.names(value)

    def names(self, value: str) -> bool:
        """Whether a text holds the contact's name as whole words, accents and case aside:
        "Ann" is in "ann called" and "Mari Tamm" in "mari  tamm!", but not in "channel" or
        "Joanna", nor "Mari" in "primary"."""
        if not self.name_words:
            return False
        found, size = words(folding.fold(value)), len(self.name_words)
        return any(found[start : start + size] == self.name_words for start in range(len(found) - size + 1))

    def only_match_of(self, field: str, query: str) -> bool:
        """Whether an export's search (`q`: numbers and names; `text`: message texts) matches
        this person and nobody else now."""
        if field == "q":
            folded = folding.fold(query.strip())
            number = queries.searched_number(query)
            if not (
                (len(number) >= search.MIN_QUERY and number in self.sender_key)
                or (self.folded_name is not None and len(folded) >= search.MIN_QUERY and folded in self.folded_name)
            ):
                return False
            others = sa.select(Conversation.id).where(
                queries.conversation_matches(query), Conversation.id != self.conversation_id
            )
        elif field == "text":
            folded = folding.folded_query(query)
            if len(folded) < search.MIN_QUERY or not any(folded in text for text in self.folded_texts):
                return False
            others = sa.select(Message.id).where(
                search.text_matches(query, db.session.get_bind().dialect.name),
                Message.conversation_id != self.conversation_id,
            )
        else:
            return False
        return not db.session.scalar(sa.select(sa.exists(others.limit(1))))

    def erase_from(self, details: dict) -> bool:
        """Erase what identifies this person from an audit event's details, in place; True if
        anything was."""
        about_them = self.conversation_id in (details.get("conversation"), details.get("conversation_id"))
        matched = details.get(MATCHED) or []
        changed = False
        for name, value in details.items():
            if name not in TYPED_DETAILS or not isinstance(value, str) or not value or value == ERASED:
                continue
            if self.mentioned_in(value) or (
                name in TYPED_DETAILS
                and (about_them or matched == [self.conversation_id] or self.only_match_of(name, value))
            ):
                details[name] = ERASED
                changed = True
        return changed


def search_subjects(q: str, text: str) -> list[int] | None:
    """The conversations an export's search matches, when they are few (up to FEW_SUBJECTS):
    recorded with the export, so that erasing one of them later finds a search that named only
    them, even by a contact name since changed. None without a search or with many matches."""
    conditions = []  # each whole: only the combined query is cut, or a few shared ones go unseen
    if q:
        conditions.append(queries.conversation_matches(q))
    if text:
        matching = sa.select(Message.conversation_id).where(
            search.text_matches(text, db.session.get_bind().dialect.name)
        )
        conditions.append(Conversation.id.in_(matching.scalar_subquery()))
    if not conditions:
        return None
    found = list(
        db.session.scalars(
            sa.select(Conversation.id).where(*conditions).order_by(Conversation.id).limit(FEW_SUBJECTS + 1)
        )
    )
    return found if 0 < len(found) <= FEW_SUBJECTS else None


def referring_columns(table: sa.Table) -> list[sa.Column]:
    """Columns of other tables whose foreign key points at `table` (opt-outs, per-conversation
    rows other modules add), so that deleting a row takes what hangs on it along."""
    return [
        key.parent
        for other in db.metadata.sorted_tables
        if other is not table
        for key in other.foreign_keys
        if key.column.table is table
    ]


def delete_rows_referring_to(conversation_id: int) -> None:
    """Every row of another table that belongs to this conversation, its messages aside."""
    for column in referring_columns(Conversation.__table__):
        if column.table is not Message.__table__:
            db.session.execute(sa.delete(column.table).where(column == conversation_id))


def delete_dead_letters_mentioning(person: ErasedPerson) -> int:
    """Dead letters that mention the person, however the provider wrote the number: in the raw
    bytes, or in any string of the body once decoded as JSON (`"\\u002b372..."` is `+372...`)."""
    found = [
        letter_id
        for letter_id, body in db.session.execute(sa.select(DeadLetter.id, DeadLetter.raw_body))
        if dead_letter_mentions(person, bytes(body))
    ]
    for chunk in chunks(found):
        db.session.execute(sa.delete(DeadLetter).where(DeadLetter.id.in_(chunk)))
    return len(found)


def dead_letter_mentions(person: ErasedPerson, raw: bytes) -> bool:
    """The number anywhere in the body; the name in a JSON body's string values (its keys are
    the provider's field names: a contact named "Text" is not in every body), or anywhere in a
    body that is not JSON."""
    if person.mentions_number(raw):
        return True
    values = json_strings(raw)
    if values is None:
        return person.names(raw.decode("utf-8", "replace"))
    return any(person.mentioned_in(value) for value in values)


def json_strings(raw: bytes) -> list[str] | None:
    """Every string value in a JSON body, once decoded; None if the body is not JSON."""
    try:
        document = json.loads(raw)
    except ValueError:
        return None
    texts, pending = [], [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return texts


def words(folded: str) -> list[str]:
    return WORD.findall(folded)


def redact_audit_trail(person: ErasedPerson, batch_size: int = 1000) -> int:
    """The one change the app makes to recorded events: what identifies an erased person goes
    from their details (the event itself stays); returns how many events changed. Reads every
    event's details: an erasure is rare, and the trail is kept a year by default."""
    redacted, after = 0, 0
    while True:
        rows = db.session.execute(
            sa.select(AuditEvent.id, AuditEvent.details)
            .where(AuditEvent.id > after)
            .order_by(AuditEvent.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return redacted
        for event_id, text in rows:
            details = json.loads(text)
            if isinstance(details, dict) and person.erase_from(details):
                db.session.execute(
                    sa.update(AuditEvent)
                    .where(AuditEvent.id == event_id)
                    .values(details=json.dumps(details, ensure_ascii=False, sort_keys=True, default=str))
                )
                redacted += 1
        after = rows[-1].id


def chunks(values: list, size: int = 500):
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --- retention by age --------------------------------------------------------------------


@dataclass
class PurgeResult:
    messages: int = 0
    conversations_removed: int = 0
    delivery_reports: int = 0
    dead_letters: int = 0
    login_rows: int = 0
    sessions: int = 0
    audit_events: int = 0
    dry_run: bool = False
    cutoff: datetime | None = None
    audit_cutoff: datetime | None = None

    def as_dict(self) -> dict:
        return {
            name: value for name, value in self.__dict__.items() if name not in ("dry_run", "cutoff", "audit_cutoff")
        }


def old_messages(cutoff: datetime) -> sa.Select:
    return sa.select(Message.id).where(Message.received_at < cutoff)


def purge(
    now: datetime,
    days: int | None,
    audit_days: int | None,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
    progress=None,
    between_batches=None,
) -> PurgeResult:
    """Delete what arrived before now minus `days` (None: keep messages), and audit events
    older than `audit_days`. `progress(n)` is told each batch's messages; `between_batches()`
    is called after each batch (the daily purge renews its lease there)."""
    result = PurgeResult(dry_run=dry_run)
    result.cutoff = now - timedelta(days=days) if days else None
    result.audit_cutoff = now - timedelta(days=audit_days) if audit_days else None
    lifetime = timedelta(seconds=current_app.config["SESSION_LIFETIME_SECONDS"])
    if dry_run:

        def count(query: sa.Select) -> int:
            return db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0

        if result.cutoff:
            result.messages = count(old_messages(result.cutoff))
            result.dead_letters = count(sa.select(DeadLetter.id).where(DeadLetter.received_at < result.cutoff))
        if result.audit_cutoff:
            result.audit_events = count(sa.select(AuditEvent.id).where(AuditEvent.at < result.audit_cutoff))
        return result

    if result.cutoff:
        while True:
            deleted = _purge_message_batch(result, batch_size)
            if progress:
                progress(deleted)
            if between_batches:
                between_batches()
            if deleted < batch_size:
                break
        result.dead_letters = _delete_in_batches(DeadLetter, DeadLetter.received_at < result.cutoff, batch_size)
    result.login_rows = _delete_in_batches(LoginThrottle, LoginThrottle.expires_at <= now, batch_size)
    result.sessions = _delete_in_batches(LoginSession, LoginSession.created_at < now - lifetime, batch_size)
    if result.audit_cutoff:
        result.audit_events = _delete_in_batches(AuditEvent, AuditEvent.at < result.audit_cutoff, batch_size)
    if any(result.as_dict().values()):  # a day with nothing to delete leaves no event
        audit.record(
            "retention_purge",
            {"older_than": clock.utc_iso(result.cutoff) if result.cutoff else "kept for ever", **result.as_dict()},
        )
        scrub_files()
    return result


def _purge_message_batch(result: PurgeResult, batch_size: int) -> int:
    """Delete one batch of old messages and bring their conversations up to date.

    The batch is found by a read before the write lock is taken (finding the last few can mean
    reading the whole table: no index on arrival time), then deleted holding it; a message is
    only deleted if it is still old, whatever happened between.
    """
    candidates = (
        db.session.execute(
            sa.select(Message.id).where(Message.received_at < result.cutoff).order_by(Message.id).limit(batch_size)
        )
        .scalars()
        .all()
    )
    if not candidates:
        return 0
    with write_transaction() as session:
        secure_delete()
        rows = session.execute(
            sa.select(Message.id, Message.conversation_id, Message.omnimessage_id).where(
                Message.id.in_(candidates), Message.received_at < result.cutoff
            )
        ).all()
        ids = [row.id for row in rows]
        omnimessage_ids = [row.omnimessage_id for row in rows if row.omnimessage_id]
        if omnimessage_ids:
            result.delivery_reports += rows_matched(
                session.execute(
                    sa.delete(UnmatchedDeliveryReport).where(
                        UnmatchedDeliveryReport.omnimessage_id.in_(omnimessage_ids)
                    )
                )
            )
        # Rows that point at a message lose the pointer when they can (an opt-out stays recorded
        # without its keyword message), else go with it.
        for column in referring_columns(Message.__table__):
            matching = column.in_(ids)
            session.execute(
                sa.update(column.table).where(matching).values({column.name: None})
                if column.nullable
                else sa.delete(column.table).where(matching)
            )
        session.execute(sa.delete(Message).where(Message.id.in_(ids)))
        result.messages += len(ids)
        deleted = Counter(row.conversation_id for row in rows)
        if deleted:
            result.conversations_removed += _recount(deleted, change_number())
    return len(candidates)


def _recount(deleted: Counter, change: int) -> int:
    """Conversations after some of their (oldest) messages went: the counts shrink (the newest
    messages are the ones kept, so previews stay); those left with none go, an opted-out one
    leaving a hashed suppression entry. Returns how many went. A few statements per batch,
    however many conversations it touched."""
    session = db.session
    table = Conversation.__table__  # Core, so the statement runs once per conversation (executemany)
    inbound_left = (
        sa.select(sa.func.count())
        .where(Message.conversation_id == table.c.id, Message.direction == "in")
        .scalar_subquery()
    )
    session.execute(
        sa.update(table)
        .where(table.c.id == sa.bindparam("conversation"))
        .values(
            message_count=table.c.message_count - sa.bindparam("gone"),
            unread_count=sa.case(
                (table.c.unread_count == 0, 0),
                (table.c.unread_count <= inbound_left, table.c.unread_count),
                else_=inbound_left,
            ),
            change_seq=change,
        ),
        [{"conversation": conversation_id, "gone": gone} for conversation_id, gone in deleted.items()],
    )
    emptied = session.execute(
        sa.select(Conversation.id, Conversation.sender, Conversation.opted_out).where(
            Conversation.id.in_(list(deleted)), ~sa.exists().where(Message.conversation_id == Conversation.id)
        )
    ).all()
    for conversation_id, sender, opted_out in emptied:
        if opted_out:
            number_hash = audit.number_hash(sender)
            if session.get(Suppression, number_hash) is None:
                session.add(Suppression(number_hash=number_hash, created_at=clock.now()))
        delete_rows_referring_to(conversation_id)
        session.execute(sa.delete(Conversation).where(Conversation.id == conversation_id))
    return len(emptied)


def _delete_in_batches(model, condition, batch_size: int) -> int:
    total = 0
    key = sa.inspect(model).primary_key[0]
    while True:
        with write_transaction() as session:
            secure_delete()
            batch = sa.select(key).where(condition).limit(batch_size)
            deleted = rows_matched(
                session.execute(
                    sa.delete(model).where(key.in_(batch.scalar_subquery())),
                    execution_options={"synchronize_session": False},
                )
            )
        total += deleted
        if deleted < batch_size:
            return total


# --- once a day, by itself ---------------------------------------------------------------


def run_scheduled(force: bool = False, **options) -> PurgeResult | None:
    """The purge with the configured days, unless another process is purging (the lease) or,
    without `force`, the last purge was less than a day ago; then None."""
    if not force and _purged_lately():
        return None
    lease = leases.take(PURGE_LEASE, LEASE.total_seconds())
    if lease is None:
        return None
    finished = None
    try:
        if not force and _purged_lately():  # by the process that held the lease a moment ago
            return None
        result = purge(clock.now(), days(), audit_days(), between_batches=lease.keep, **options)
        finished = clock.now()
        return result
    finally:
        with write_transaction():
            if finished is not None:
                _store(LAST_PURGE, finished.isoformat())
            lease.release()


def _purged_lately() -> bool:
    last = last_purge()
    db.session.rollback()  # the read ends here
    return last is not None and clock.now() - last < PURGE_INTERVAL


@jobs.kind("daily_purge", every=timedelta(seconds=CHECK_SECONDS))
def scheduled_purge(payload: dict, attempt: "jobs.Attempt") -> None:
    """A periodic job: whichever runner claims it checks whether a day has passed since the last
    purge, and if so purges (holding the purge lease, which `flask purge` respects too)."""
    run_scheduled()
