"""The tables. Times are naive UTC datetimes on every backend."""

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import Model

# Longest values we accept; longer ones are rejected at the door (and kept as dead letters).
ID_LENGTH = 255
NUMBER_LENGTH = 64
CHANNEL_LENGTH = 32
PREVIEW_LENGTH = 160
USERNAME_LENGTH = 80
ADDRESS_LENGTH = 64  # an IPv6 address with a zone, or what a proxy says
CONTACT_NAME_LENGTH = 120
CONTACT_KEY_LENGTH = 3 * CONTACT_NAME_LENGTH  # folding can lengthen a name (ß is ss, ﬃ is ffi)
CONTACT_NOTE_LENGTH = 2000
SAVED_REPLY_TITLE_LENGTH = 80
DIRECTION_LENGTH = 8  # "in", "out", "note"


# Ids that count messages (and changes) are 64-bit on PostgreSQL; SQLite's INTEGER already is,
# and only a column declared exactly INTEGER PRIMARY KEY is its auto-incrementing rowid.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


# Tables whose ids people and records refer to (URLs, audit events, a browser's saved drafts):
# on SQLite a plain rowid table hands the largest id out again once its row is deleted (an erased
# conversation's id would go to the next new customer); AUTOINCREMENT never reuses one.
# PostgreSQL's sequences never go back anyway. Listed in migration a1d0e2f3c4b5.
def ids_never_reused() -> dict:
    """Table options; a dict of its own for each table (SQLAlchemy may add to it)."""
    return {"sqlite_autoincrement": True}


class Conversation(Model):
    """One row per sender, kept current in the ingest transaction so lists never scan messages.

    Addressed by its opaque `id` in URLs: a sender may be any text (`a/b`, `../export.csv`).
    """

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sender: Mapped[str] = mapped_column(sa.String(NUMBER_LENGTH), unique=True)
    # The sender without +, spaces, dashes or parentheses, lowercased: what search matches.
    sender_key: Mapped[str] = mapped_column(sa.String(NUMBER_LENGTH))
    channel: Mapped[str] = mapped_column(sa.String(CHANNEL_LENGTH))
    # Empty only inside the transaction that creates the conversation with its first message.
    last_message_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_sent_at: Mapped[datetime]
    last_text: Mapped[str] = mapped_column(sa.String(PREVIEW_LENGTH))
    message_count: Mapped[int]
    unread_count: Mapped[int]
    # The change number of the last write that changed what the list or the thread shows.
    change_seq: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    # "in" when the newest message came from the customer, "out" when it is our reply ("You: ...");
    # never "note": notes leave the list's preview to the customer-facing conversation.
    last_direction: Mapped[str] = mapped_column(sa.String(DIRECTION_LENGTH), server_default="in")
    # When the customer last wrote: WhatsApp takes free text only within 24 hours of it.
    last_inbound_at: Mapped[datetime | None]
    opted_out: Mapped[bool] = mapped_column(server_default=sa.false())
    # Messente's account blacklist, kept in step with opt-outs when MESSENTE_BLACKLIST_SYNC is on:
    # "add" or "remove" while a call is due, "added" once this app added the number.
    blacklist: Mapped[str | None] = mapped_column(sa.String(8))
    blacklist_problem: Mapped[str | None] = mapped_column(sa.String(500))
    # Who the customer is, as the team knows them: shown instead of the bare number, searched.
    contact_name: Mapped[str | None] = mapped_column(sa.String(CONTACT_NAME_LENGTH))
    contact_note: Mapped[str | None] = mapped_column(sa.Text)
    # "open" or "done" (put aside); a new inbound message opens it again.
    status: Mapped[str] = mapped_column(sa.String(4), server_default="open")
    # The name as search compares it (folding.fold: accents and case aside), None without a name.
    contact_key: Mapped[str | None] = mapped_column(sa.String(CONTACT_KEY_LENGTH))
    # Who owns it (app/contacts/owners.py); None: unassigned.
    assignee_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    # Snoozed (app/contacts/snooze.py): out of Open until this time (naive UTC), or until the
    # customer writes again (`snoozed_until_reply`); both empty: not snoozed.
    snoozed_until: Mapped[datetime | None]
    snoozed_until_reply: Mapped[bool] = mapped_column(server_default=sa.false())
    # Scheduled messages waiting in it (scheduled, held or missed: app/replies/scheduled.py):
    # the list row's clock, without a look at its messages.
    scheduled_count: Mapped[int] = mapped_column(server_default="0")
    # When the away reply last went to it (app/hours): at most once per window.
    away_sent_at: Mapped[datetime | None]
    # Its labels' names, sorted (case aside) and joined by ", ", as the export's `labels` column
    # shows them; None without labels. Kept by app/contacts/labels.py with conversation_label.
    label_names: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.Index(
            "ix_conversation_sender_key_trgm",
            "sender_key",
            postgresql_using="gin",
            postgresql_ops={"sender_key": "gin_trgm_ops"},
            # Every message rewrites its conversation row; without a pending list, searches
            # stay fast between vacuums instead of re-reading everything added since the last.
            postgresql_with={"fastupdate": "off"},
        ).ddl_if(dialect="postgresql"),
        # The list's order (newest activity first) and, for sender search, the key it tests:
        # search walks this index alone and reads only the page's matches from the table.
        sa.Index("uq_conversation_last_message_id_sender_key", "last_message_id", "sender_key", unique=True),
        # The Open and Done views, newest activity first; with the sender key, so that a search
        # in them, like one in all conversations, reads the index alone.
        sa.Index("ix_conversation_status_last_message_id", "status", "last_message_id", "sender_key"),
        # The views by owner (Mine, Unassigned, a teammate's), newest activity first, and their
        # counts: each reads only the owner's conversations, however deep the page.
        sa.Index("ix_conversation_assignee_id_last_message_id", "assignee_id", "last_message_id"),
        # The channel filter, newest activity first; and the channels there are, from it alone.
        sa.Index("ix_conversation_channel_last_message_id", "channel", "last_message_id"),
        # The Unread and Opted out views, newest activity first, and their counts: each reads
        # only the conversations it shows.
        sa.Index(
            "ix_conversation_unread_last_message_id",
            "last_message_id",
            sqlite_where=sa.text("unread_count > 0"),
            postgresql_where=sa.text("unread_count > 0"),
        ),
        sa.Index(
            "ix_conversation_opted_out_last_message_id",
            "last_message_id",
            sqlite_where=sa.text("opted_out = 1"),
            postgresql_where=sa.text("opted_out"),
        ),
        # The Snoozed view, newest activity first, and its count: only the snoozed ones.
        sa.Index(
            "ix_conversation_snoozed_last_message_id",
            "last_message_id",
            sqlite_where=sa.text("snoozed_until IS NOT NULL OR snoozed_until_reply = 1"),
            postgresql_where=sa.text("snoozed_until IS NOT NULL OR snoozed_until_reply"),
        ),
        # Search by name reads only the conversations that have one.
        sa.Index(
            "ix_conversation_contact_key",
            "contact_key",
            sqlite_where=sa.text("contact_key IS NOT NULL"),
            postgresql_where=sa.text("contact_key IS NOT NULL"),
        ),
        # ... and on PostgreSQL finds the names containing a query (SQLite: CONVERSATION_FTS).
        sa.Index(
            "ix_conversation_contact_key_trgm",
            "contact_key",
            postgresql_using="gin",
            postgresql_ops={"contact_key": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
        ).ddl_if(dialect="postgresql"),
        # Counting unread conversations (the page title) reads only the unread ones.
        sa.Index(
            "ix_conversation_unread",
            "unread_count",
            sqlite_where=sa.text("unread_count > 0"),
            postgresql_where=sa.text("unread_count > 0"),
        ),
        ids_never_reused(),
    )

    # The owner's name, read with a list page (app/inbox/queries.py: with_owners): not stored.
    if TYPE_CHECKING:
        owner_name: str | None
    owner_name = None
    # Its labels, read with a list page (app/inbox/queries.py: with_labels): not stored.
    if TYPE_CHECKING:
        label_chips: Sequence
    label_chips = ()


class Message(Model):
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("conversation.id"))
    msg_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), unique=True)
    sub_msg_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH))
    channel: Mapped[str] = mapped_column(sa.String(CHANNEL_LENGTH))
    sender: Mapped[str] = mapped_column(sa.String(NUMBER_LENGTH))
    recipient: Mapped[str | None] = mapped_column(sa.String(NUMBER_LENGTH))
    text: Mapped[str] = mapped_column(sa.Text)
    sent_at: Mapped[datetime]  # the provider's `time`
    received_at: Mapped[datetime]
    raw_body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    change_seq: Mapped[int] = mapped_column(sa.BigInteger)
    # Replies are messages too: "out", with who wrote them and how far they got. For a reply,
    # `sender` is our sender (a number or a name), `recipient` the customer, `msg_id` our own
    # "reply-<key>" (the form's one-time key: a resubmitted form cannot store it twice).
    # A team's private note is a message too: "note", with its author, never sent (no status, no
    # legs), `msg_id` "note-<key>", `channel` "note" (app/replies/notes.py).
    direction: Mapped[str] = mapped_column(sa.String(DIRECTION_LENGTH), server_default="in")
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    # queued -> sending -> sent | failed | unconfirmed | retrying (see replies.py); None for inbound.
    status: Mapped[str | None] = mapped_column(sa.String(12))
    # The best delivery report so far (DELIVRD, SEEN, FAILED, ...): see DELIVERY_RANK.
    delivery: Mapped[str | None] = mapped_column(sa.String(8))
    problem: Mapped[str | None] = mapped_column(sa.String(500))  # why it failed, in the API's words
    omnimessage_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), index=True)
    claimed_at: Mapped[datetime | None]  # when a process took it to send
    # What text search matches: the text without accents, case folded (folding.fold). Written by
    # the app with the text, so the indexes below need no accent-stripping function in SQL (SQLite's
    # trigram tokenizer can't drop them before 3.45; PostgreSQL's unaccent is not IMMUTABLE).
    # Empty: not searchable (a text erased).
    folded_text: Mapped[str] = mapped_column(sa.Text, server_default="")
    # A reply's channel legs, tried in order: [{"channel": ..., "sender": ...}]; None for inbound
    # messages. SQL NULL, not JSON null, when there are none (copy-db inserts None explicitly).
    legs: Mapped[list | None] = mapped_column(sa.JSON(none_as_null=True))
    # A message to send later (app/replies/scheduled.py): when, naive UTC. A scheduled row waits
    # with status scheduled | held | missed | cancelled; when it is sent, a reply row takes its
    # place at the end of the thread and keeps its `send_at`. None for everything else.
    send_at: Mapped[datetime | None]
    # An automatic reply's source ("away": the away reply, app/hours); None for a person's reply
    # and for inbound messages.
    via: Mapped[str | None] = mapped_column(sa.String(16))
    # A reply sent through the API (app/api/): the token that sent it, shown as "API: <its name>".
    api_token_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_token.id"))
    # What a reply cost, from its delivery reports' price_info (app/replies/delivery.py), in the
    # account's currency (app/team/currency.py): the sum over its legs of each leg's price in that
    # leg's latest report, and of their parts. None until a report brings a price.
    price: Mapped[Decimal | None] = mapped_column(sa.Numeric(14, 6))
    parts: Mapped[int | None]
    # Each priced leg's latest report, which later reports are compared with (they repeat and come
    # out of order): {omnimessage_id: {channel: {"at": report time or None, "price": "0.1",
    # "parts": 1 or None}}}; by omnimessage_id too, as a reply sent again is charged again.
    price_legs: Mapped[dict | None] = mapped_column(sa.JSON(none_as_null=True))

    __table_args__ = (
        sa.Index("ix_message_conversation_id_id", "conversation_id", "id"),
        # A thread's total cost: only the priced replies, their prices in the index.
        sa.Index(
            "ix_message_priced",
            "conversation_id",
            "price",
            sqlite_where=sa.text("price IS NOT NULL"),
            postgresql_where=sa.text("price IS NOT NULL"),
        ),
        # A thread's scheduled messages: only the rows that ever were scheduled.
        sa.Index(
            "ix_message_scheduled",
            "conversation_id",
            "send_at",
            sqlite_where=sa.text("send_at IS NOT NULL"),
            postgresql_where=sa.text("send_at IS NOT NULL"),
        ),
        # The messages scheduled for one moment (its one send job): the same rows, by their time.
        sa.Index(
            "ix_message_send_at",
            "send_at",
            sqlite_where=sa.text("send_at IS NOT NULL"),
            postgresql_where=sa.text("send_at IS NOT NULL"),
        ),
        # A thread's poll: its messages changed after the number the page last saw.
        sa.Index("ix_message_conversation_id_change_seq", "conversation_id", "change_seq"),
        # Text search on PostgreSQL: LIKE '%part%' through pg_trgm (SQLite: MESSAGE_FTS below).
        sa.Index(
            "ix_message_folded_text_trgm",
            "folded_text",
            postgresql_using="gin",
            postgresql_ops={"folded_text": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
        ids_never_reused(),
    )


def trigram_index(table: sa.Table, columns: list[str]) -> tuple[str, ...]:
    """SQLite text search over some of a table's columns: an FTS5 trigram table `<table>_fts` with
    external content (the text is stored once, in the table), kept in step by triggers that fire
    only when those columns change, so that a deleted row leaves the index with it. detail=none
    keeps the index about half the size of detail=full; search asks it with GLOB, which the
    trigram index serves and SQLite then checks against the text itself. Made when the table is
    (the migrations that add one to an existing database keep the same SQL)."""
    name, index, listed = table.name, f"{table.name}_fts", ", ".join(columns)
    new, old = (", ".join(f"{row}.{column}" for column in columns) for row in ("new", "old"))
    insert = f"INSERT INTO {index} (rowid, {listed}) VALUES (new.id, {new}); "
    delete = f"INSERT INTO {index} ({index}, rowid, {listed}) VALUES ('delete', old.id, {old}); "
    statements = (
        f"CREATE VIRTUAL TABLE {index} USING fts5({listed}, content='{name}', content_rowid='id', "
        "tokenize='trigram', detail='none')",
        f"CREATE TRIGGER {index}_insert AFTER INSERT ON {name} BEGIN {insert}END",
        f"CREATE TRIGGER {index}_delete AFTER DELETE ON {name} BEGIN {delete}END",
        f"CREATE TRIGGER {index}_update AFTER UPDATE OF {listed} ON {name} BEGIN {delete}{insert}END",
    )
    for statement in statements:
        sa.event.listen(table, "after_create", sa.DDL(statement).execute_if(dialect="sqlite"))
    sa.event.listen(table, "before_drop", sa.DDL(f"DROP TABLE IF EXISTS {index}").execute_if(dialect="sqlite"))
    return statements


# Message texts (app/inbox/search.py), folded.
MESSAGE_FTS = trigram_index(Message.__table__, ["folded_text"])
# Conversations by number or contact name: a rare match found without walking every conversation.
# Its triggers fire when a key changes (a new conversation, a contact named, a merge), never on
# the updates every message makes to its conversation.
CONVERSATION_FTS = trigram_index(Conversation.__table__, ["sender_key", "contact_key"])


# Number search (app/inbox/queries.py) for a query of NUMBER_PART characters or more: every
# NUMBER_PART-character stretch of each conversation's sender_key, one row each (a twelve-digit
# number has seven). A query's last stretch is then one equality lookup, however many senders
# share its digits, where a trigram index would intersect lists that grow with the senders
# ("372" is in most numbers). Kept by triggers on conversation, on both databases: written when
# a conversation is made, or its key changes, never on the updates every message makes.
NUMBER_PART = 6


class ConversationNumberPart(Model):
    """One NUMBER_PART-character stretch of a conversation's sender_key (see NUMBER_PART)."""

    part: Mapped[str] = mapped_column(sa.String(NUMBER_PART), primary_key=True)
    # No foreign key: the triggers that fill it take its rows away with the conversation.
    conversation_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)

    __table_args__ = ({"sqlite_with_rowid": False},)


def _number_parts(key: str, dialect: str) -> str:
    """SQL: the distinct NUMBER_PART-character stretches of the text `key` (e.g. new.sender_key),
    as rows of one column `part`."""
    if dialect == "sqlite":  # no WITH in a trigger: the positions a key of NUMBER_LENGTH can have
        positions = " UNION ALL ".join(f"SELECT {n} AS n" for n in range(1, NUMBER_LENGTH - NUMBER_PART + 2))
        source = f"({positions}) AS position WHERE position.n <= length({key}) - {NUMBER_PART - 1}"
    else:
        source = f"generate_series(1, length({key}) - {NUMBER_PART - 1}) AS position(n)"
    return f"SELECT DISTINCT substr({key}, position.n, {NUMBER_PART}) AS part FROM {source}"


def _number_index() -> dict[str, tuple[str, ...]]:
    """The triggers that keep conversation_number_part, as SQL per dialect (the migration that
    adds the table runs the same)."""
    table = "conversation_number_part"

    def insert(row: str, dialect: str) -> str:
        return f"INSERT INTO {table} (part, conversation_id) SELECT part, {row}.id FROM ({_number_parts(f'{row}.sender_key', dialect)}) AS parts"

    def delete(row: str, dialect: str) -> str:
        return (
            f"DELETE FROM {table} WHERE conversation_id = {row}.id "
            f"AND part IN (SELECT part FROM ({_number_parts(f'{row}.sender_key', dialect)}) AS parts)"
        )

    sqlite = (
        f"CREATE TRIGGER {table}_insert AFTER INSERT ON conversation BEGIN {insert('new', 'sqlite')}; END",
        f"CREATE TRIGGER {table}_delete AFTER DELETE ON conversation BEGIN {delete('old', 'sqlite')}; END",
        f"CREATE TRIGGER {table}_update AFTER UPDATE OF sender_key ON conversation "
        f"WHEN old.sender_key IS NOT new.sender_key BEGIN {delete('old', 'sqlite')}; {insert('new', 'sqlite')}; END",
    )
    postgresql = (
        f"CREATE FUNCTION {table}_keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP <> 'INSERT' THEN {delete('OLD', 'postgresql')}; END IF; "
        f"IF TG_OP <> 'DELETE' THEN {insert('NEW', 'postgresql')}; END IF; "
        "RETURN NULL; END $$",
        f"CREATE TRIGGER {table}_insert_delete AFTER INSERT OR DELETE ON conversation "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_keep()",
        f"CREATE TRIGGER {table}_update AFTER UPDATE OF sender_key ON conversation "
        f"FOR EACH ROW WHEN (OLD.sender_key IS DISTINCT FROM NEW.sender_key) EXECUTE FUNCTION {table}_keep()",
    )
    # With the conversation table (the triggers are on it; neither dialect looks for the table
    # their bodies write before they run), so a second create_all adds nothing; dropping
    # conversation drops its triggers, and on PostgreSQL the function goes after it.
    for dialect, statements in (("sqlite", sqlite), ("postgresql", postgresql)):
        for statement in statements:
            sa.event.listen(Conversation.__table__, "after_create", sa.DDL(statement).execute_if(dialect=dialect))
    sa.event.listen(
        Model.metadata,
        "after_drop",
        sa.DDL(f"DROP FUNCTION IF EXISTS {table}_keep()").execute_if(dialect="postgresql"),
    )
    return {"sqlite": sqlite, "postgresql": postgresql}


NUMBER_INDEX = _number_index()


# On SQLite, the rows the insert trigger writes, for every conversation whose id is :first_id or
# more, in one statement: for conversations inserted while that trigger was set aside
# (app/ops/demo.py). Sorted by the table's key, so each of its pages is written once.
NUMBER_PARTS_FROM = (
    "INSERT INTO conversation_number_part (part, conversation_id) "
    f"SELECT DISTINCT substr(conversation.sender_key, position.n, {NUMBER_PART}), conversation.id "
    "FROM conversation JOIN ("
    + " UNION ALL ".join(f"SELECT {n} AS n" for n in range(1, NUMBER_LENGTH - NUMBER_PART + 2))
    + f") AS position ON position.n <= length(conversation.sender_key) - {NUMBER_PART - 1} "
    "WHERE conversation.id >= :first_id ORDER BY 1, 2"
)


# Delivery statuses by how far they got: a report never moves a reply backwards, and with
# fallback channels the best leg wins (WhatsApp FAILED, then SMS DELIVRD: delivered).
DELIVERY_RANK = {
    "ACCEPTD": 1,
    "ACK": 2,
    "UNKNOWN": 3,
    "NACK": 3,
    "REJECTD": 3,
    "UNDELIV": 3,
    "FAILED": 3,
    "EXPIRED": 3,
    "DELETED": 3,
    "DELIVRD": 4,
    "SEEN": 5,
}


DELIVERY_FAILURES = tuple(status for status, rank in DELIVERY_RANK.items() if rank == 3)


def better_delivery(current: str | None, reported: str) -> bool:
    return DELIVERY_RANK.get(reported, 0) > DELIVERY_RANK.get(current or "", 0)


class ConversationRecipient(Model):
    """Which of our numbers a conversation's customer wrote to: what the "to our number" filter
    reads, kept by ingest (one row per pair, however many messages)."""

    # A surrogate key: `flask copy-db` copies every table in the order of a one-column key.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    recipient: Mapped[str] = mapped_column(sa.String(NUMBER_LENGTH))
    conversation_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("conversation.id"), index=True)

    __table_args__ = (sa.UniqueConstraint("recipient", "conversation_id"),)


class SavedReply(Model):
    """A team's canned response; `{name}` in its text becomes the contact's name."""

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(SAVED_REPLY_TITLE_LENGTH), unique=True)
    text: Mapped[str] = mapped_column(sa.Text)

    __table_args__ = ids_never_reused()


class OptOut(Model):
    """Each time a conversation was opted out or back in, and who or what did it."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("conversation.id"), index=True)
    opted_out: Mapped[bool]
    at: Mapped[datetime]
    # The customer's keyword message, or the person who changed it by hand.
    message_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("message.id"))
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))

    __table_args__ = ids_never_reused()


class UnmatchedDeliveryReport(Model):
    """A report for a reply we don't know yet (it can beat the send call's answer); a day at most."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    omnimessage_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), index=True)
    status: Mapped[str] = mapped_column(sa.String(8))
    problem: Mapped[str | None] = mapped_column(sa.String(500))
    received_at: Mapped[datetime] = mapped_column(index=True)
    # The rest of the report, applied with it once the reply is known: the leg it is about, our
    # sender, Messente's time of the report, and its price_info (None when it had none, or invalid).
    channel: Mapped[str | None] = mapped_column(sa.String(CHANNEL_LENGTH))
    sender: Mapped[str | None] = mapped_column(sa.String(NUMBER_LENGTH))
    reported_at: Mapped[datetime | None]
    price: Mapped[Decimal | None] = mapped_column(sa.Numeric(14, 6))
    parts: Mapped[int | None]


class ChangeCounter(Model):
    """One row: the last change number handed out (see unit_of_work.change_number)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger)


sa.event.listen(ChangeCounter.__table__, "after_create", sa.DDL("INSERT INTO change_counter (id, value) VALUES (1, 0)"))


class DailyCount(Model):
    """Messages received per UTC day, for the inbox chart."""

    day: Mapped[date] = mapped_column(primary_key=True)
    count: Mapped[int]


class DeadLetter(Model):
    """A correctly signed body we could not file, kept once with the reason."""

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(sa.String(500))
    raw_body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # A provider retries a body we refused: one row per distinct body, however often it comes.
    body_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)

    __table_args__ = ids_never_reused()


ROLES = ("admin", "agent")
TOKEN_HASH_LENGTH = 64  # a sha256 in hex
USER_AGENT_LENGTH = 120


class User(UserMixin, Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(USERNAME_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    # "admin" (users, settings, audit trail, erasure) or "agent" (the inbox: read, reply, export).
    role: Mapped[str] = mapped_column(sa.String(8), server_default="agent")
    # A disabled account cannot log in and has no sessions; it stays as the author of its replies.
    disabled: Mapped[bool] = mapped_column(server_default=sa.false())
    # A one-time link to set a password (reset or new account): the sha256 of its token only,
    # so a copy of the database opens nothing; and until when it works.
    reset_token_hash: Mapped[str | None] = mapped_column(sa.String(TOKEN_HASH_LENGTH), unique=True)
    reset_expires_at: Mapped[datetime | None]
    # Two-factor sign-in (see two_factor.py): the TOTP key (base32) while it is on, and the time
    # step of the last code used, so that no code works twice.
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Working now: set by the person (the switch in the site's bar), read by auto-assignment.
    on_shift: Mapped[bool] = mapped_column(server_default=sa.false())
    # The change number of the last conversation auto-assignment gave them: ties go in turn by it.
    auto_assigned_seq: Mapped[int | None] = mapped_column(sa.BigInteger)

    __table_args__ = ids_never_reused()

    # The token of the login this request belongs to (see accounts.sessions.load_session_user): not stored.
    # (Declared for the type checker only: a plain annotation here would be taken for a column.)
    if TYPE_CHECKING:
        login_token: str | None
    login_token = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_active(self) -> bool:
        return not self.disabled

    def get_id(self) -> str:
        return f"{self.id}:{self.login_token}"


class LoginSession(Model):
    """One row per login; the cookie holds its random token, this table only the token's sha256.

    Deleting a row ends that login at its next request: logout, "Sign out everywhere",
    a disabled account, a password reset.
    """

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(TOKEN_HASH_LENGTH), unique=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    address: Mapped[str] = mapped_column(sa.String(ADDRESS_LENGTH))
    user_agent: Mapped[str] = mapped_column(sa.String(USER_AGENT_LENGTH))

    __table_args__ = ids_never_reused()


class AuditEvent(Model):
    """Who did what, when, from where: appended by the app, never changed; see app/audit/__init__.py."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    # The username at the time (accounts are disabled, never deleted); None for the app itself.
    username: Mapped[str | None] = mapped_column(sa.String(USERNAME_LENGTH))
    address: Mapped[str | None] = mapped_column(sa.String(ADDRESS_LENGTH))
    action: Mapped[str] = mapped_column(sa.String(32))
    details: Mapped[str] = mapped_column(sa.Text)  # JSON

    __table_args__ = (sa.Index("ix_audit_event_action_at", "action", "at"), ids_never_reused())


class Setting(Model):
    """Settings an admin changes in the app (retention days), and the purge's lease."""

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(255))


class Suppression(Model):
    """A number erased after it had opted out: kept only as a keyed hash, so replies stay blocked."""

    number_hash: Mapped[str] = mapped_column(sa.String(TOKEN_HASH_LENGTH), primary_key=True)
    created_at: Mapped[datetime]


class LoginThrottle(Model):
    """Recent failed logins, shared by every worker and instance (see accounts.throttle.authenticate).

    One row per (username, client address), the username known or not; and one per address
    across all usernames, with `username` empty. A row whose `expires_at` has passed no longer
    counts, and is deleted by a later attempt.
    """

    # A surrogate key: `flask copy-db` copies every table in the order of a one-column key.
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(USERNAME_LENGTH))
    address: Mapped[str] = mapped_column(sa.String(ADDRESS_LENGTH))
    failures: Mapped[int]
    locked_until: Mapped[datetime | None]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # "address": a (username, address) row or an address's row across usernames; "account": the
    # failures of a username from unknown devices, any address (`address` empty); "device": the
    # failures of one device cookie (`address` the sha256 of its nonce).
    kind: Mapped[str] = mapped_column(sa.String(8), server_default="address")

    __table_args__ = (sa.UniqueConstraint("username", "address"),)


class Server(Model):
    """A running server process (the gunicorn master `make run` starts), where it listens: commands
    sharing the database find the server by it (app/jobs/servers.py). Written when the server is ready,
    deleted when it stops cleanly; a crashed server's row stays until a server on its host starts."""

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(255))  # socket.gethostname()
    pid: Mapped[int]
    bind: Mapped[str] = mapped_column(sa.String(255))  # host:port, as BIND is written
    public_url: Mapped[str | None] = mapped_column(sa.String(2000))
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    # "server" (a gunicorn master; its workers run jobs) or "worker" (`flask --app app worker`,
    # which serves nothing: its bind is empty). Commands look for a server's address only.
    kind: Mapped[str] = mapped_column(sa.String(10), server_default="server")
    # Its job runners' latest heartbeat (app/jobs/runner.py); None when none has run.
    runner_seen_at: Mapped[datetime | None]


class Job(Model):
    """Background work, committed with the change that causes it (app/jobs/). The payload holds
    ids only, never personal data: an erasure has nothing to find here."""

    __table_args__ = (
        sa.Index("ix_job_state_due_at", "state", "due_at"),
        sa.Index("ix_job_key_id", "key", "id"),
        ids_never_reused(),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    payload: Mapped[str] = mapped_column(sa.Text, server_default="{}")  # JSON: ids only
    # Jobs with one key run one at a time, in the order they were enqueued (None: no order).
    key: Mapped[str | None] = mapped_column(sa.String(80))
    state: Mapped[str] = mapped_column(sa.String(8), server_default="due")  # due | running | done | dead
    due_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(server_default="0")
    leased_until: Mapped[datetime | None]  # while running: the holder's; past it the holder is gone
    holder: Mapped[str | None] = mapped_column(sa.String(64))
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class RateBudget(Model):
    """Calls to an API spaced across every process and instance: the earliest moment (seconds
    since the epoch) the next call may start (app/jobs/rate_budget.py)."""

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    next_at: Mapped[float] = mapped_column(sa.Float)


class BackupCode(Model):
    """One-time codes for two-factor sign-in without the phone: their sha256 only, deleted when used."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(TOKEN_HASH_LENGTH))


class Notification(Model):
    """Something for one person to look at (app/notifications/): a conversation assigned to them,
    a new message in one they own. Unread while `read_at` is empty; a person has at most one
    unread "message" notification per conversation (new messages join it)."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id"))
    # "assigned", "message" or "mention": what happened, in app/notifications.KINDS.
    kind: Mapped[str] = mapped_column(sa.String(16))
    conversation_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("conversation.id"))
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]

    __table_args__ = (
        # A person's page, newest first.
        sa.Index("ix_notification_user_id_id", "user_id", "id"),
        # The bell's count and "is one unread for this conversation already" (ingest's coalescing):
        # only the unread ones.
        sa.Index(
            "ix_notification_unread",
            "user_id",
            "conversation_id",
            sqlite_where=sa.text("read_at IS NULL"),
            postgresql_where=sa.text("read_at IS NULL"),
        ),
        # An erasure or the purge deletes a conversation's notifications with it (app/privacy/cascade.py).
        sa.Index("ix_notification_conversation_id", "conversation_id"),
        ids_never_reused(),
    )


class NotificationOptOut(Model):
    """A kind of notification a person turned off on their account page; every kind is on
    without a row, so a kind added later starts on for everyone."""

    # A surrogate key: `flask copy-db` copies every table in the order of a one-column key.
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id"))
    kind: Mapped[str] = mapped_column(sa.String(16))

    __table_args__ = (sa.UniqueConstraint("user_id", "kind"),)


class Mention(Model):
    """A teammate named in a note (`@username`, app/replies/notes.py): the conversation is in
    their Mentions view until they read it (`read_at`). One row per note and person."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("message.id"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id"))
    conversation_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("conversation.id"))
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]

    __table_args__ = (
        # A note names a person once, however often its text does; an erasure or the purge finds
        # a message's mentions by it (app/privacy/cascade.py).
        sa.UniqueConstraint("message_id", "user_id"),
        # The Mentions view and its count: a person's unread ones only.
        sa.Index(
            "ix_mention_unread",
            "user_id",
            "conversation_id",
            sqlite_where=sa.text("read_at IS NULL"),
            postgresql_where=sa.text("read_at IS NULL"),
        ),
        # An erasure or the purge deletes a conversation's mentions with it.
        sa.Index("ix_mention_conversation_id", "conversation_id"),
        ids_never_reused(),
    )


class Lease(Model):
    """A named lease, shared by every process: one holder at a time until it releases it or
    `expires_at` passes (the holder renews it while it works; a process that died lets it lapse).
    See app/jobs/leases.py."""

    name: Mapped[str] = mapped_column(sa.String(100), primary_key=True)  # what it guards: "export:7"
    holder: Mapped[str] = mapped_column(sa.String(64))  # a token the holder picked
    expires_at: Mapped[datetime]


class BusinessHours(Model):
    """The team's opening hours (app/hours): one row for all our numbers (`recipient` empty), and
    one for each number with hours of its own. `weekly`: seven lists, Monday first, of open
    intervals as "HH:MM" pairs in the team's zone ("00:00" as a close is midnight); `closed`:
    {"YYYY-MM-DD": "what it is"} for the days it stays closed; `away_text`: the away reply from
    this number (None: the shared one)."""

    recipient: Mapped[str] = mapped_column(sa.String(NUMBER_LENGTH), primary_key=True)
    weekly: Mapped[list] = mapped_column(sa.JSON)
    closed: Mapped[dict] = mapped_column(sa.JSON)
    away_text: Mapped[str | None] = mapped_column(sa.Text)


# --- labels (app/contacts/labels.py) ---------------------------------------------------------

LABEL_NAME_LENGTH = 40
LABEL_KEY_LENGTH = 3 * LABEL_NAME_LENGTH  # folding can lengthen a name (ß is ss)
# The colours a label can have: names, each styled in static/style.css for both schemes with AA
# contrast (tests/test_labels.py measures it). A name, not a hex value: no colour can be unreadable.
LABEL_COLOURS = ("grey", "red", "orange", "green", "teal", "blue", "purple", "pink")


class Label(Model):
    """One of the team's labels for conversations ("refund", "VIP"); admins keep the set."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(LABEL_NAME_LENGTH), unique=True)
    # The name as it is compared (folding.fold: case and accents aside): "VIP" and "vip" are one label.
    name_key: Mapped[str] = mapped_column(sa.String(LABEL_KEY_LENGTH), unique=True)
    colour: Mapped[str] = mapped_column(sa.String(8), server_default="grey")

    __table_args__ = ids_never_reused()


class ConversationLabel(Model):
    """A label on a conversation: one row per pair."""

    # A surrogate key: `flask copy-db` copies every table in the order of a one-column key.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("conversation.id"))
    label_id: Mapped[int] = mapped_column(sa.ForeignKey("label.id"))

    __table_args__ = (
        # A conversation's labels (rows, the header, the export's column); each pair once.
        sa.UniqueConstraint("conversation_id", "label_id"),
        # The list filtered by a label, and the counts per label: the label's conversations alone.
        sa.Index("ix_conversation_label_label_id_conversation_id", "label_id", "conversation_id"),
    )


API_TOKEN_NAME_LENGTH = 80
IDEMPOTENCY_KEY_LENGTH = 255


class ApiToken(Model):
    """A token for /api/v1 (app/api/tokens.py), made by an admin: the sha256 of its secret only,
    its scopes ("read", "send", "admin", comma-separated), an optional expiry; revoked, never
    deleted (messages and audit events name it)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(API_TOKEN_NAME_LENGTH), unique=True)
    token_hash: Mapped[str] = mapped_column(sa.String(TOKEN_HASH_LENGTH), unique=True)
    # The token's first characters, shown on the admin page to tell tokens apart (not a secret).
    prefix: Mapped[str] = mapped_column(sa.String(16))
    scopes: Mapped[str] = mapped_column(sa.String(40))
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(sa.String(USERNAME_LENGTH))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Written at most once a minute per token (app/api/tokens.py: touch).
    last_used_at: Mapped[datetime | None]

    __table_args__ = ids_never_reused()


class ApiIdempotency(Model):
    """The first answer to an API request made with an `Idempotency-Key`: a retry with the same
    key (and body) gets it again and does nothing; kept 24 hours (app/api/idempotency.py)."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_id: Mapped[int] = mapped_column(sa.ForeignKey("api_token.id"))
    key: Mapped[str] = mapped_column(sa.String(IDEMPOTENCY_KEY_LENGTH))
    body_hash: Mapped[str] = mapped_column(sa.String(TOKEN_HASH_LENGTH))  # the request's method, path and body
    status: Mapped[int]
    response: Mapped[str] = mapped_column(sa.Text)  # the JSON answered
    created_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (sa.UniqueConstraint("token_id", "key"), ids_never_reused())


class ApiRateWindow(Model):
    """Requests a token made in the current minute, shared by every process and instance
    (app/api/rate_limit.py); one row per token, its window moved on as minutes pass."""

    token_id: Mapped[int] = mapped_column(sa.ForeignKey("api_token.id"), primary_key=True)
    window: Mapped[int] = mapped_column(sa.BigInteger)  # minutes since the epoch
    used: Mapped[int]


@sa.event.listens_for(Model.metadata, "before_create")
def _create_trigram_extension(_metadata, connection, **_kw):
    # The sender search index needs pg_trgm (a trusted extension since PostgreSQL 13).
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")


# --- webhooks (app/webhooks/) ---------------------------------------------------------------

WEBHOOK_URL_LENGTH = 2000
WEBHOOK_EVENT_TYPE_LENGTH = 40


class WebhookEndpoint(Model):
    """An admin's subscription: a URL, the event types it gets, the secret its deliveries are
    signed with, and its position in the event stream (the last event it has taken)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(WEBHOOK_URL_LENGTH))
    events: Mapped[str] = mapped_column(sa.String(500))  # event types, space-separated
    secret: Mapped[str] = mapped_column(sa.String(64))  # whsec_ and the base64 of 32 random bytes
    # After a rotation, the secret before it: deliveries carry both signatures until then.
    previous_secret: Mapped[str | None] = mapped_column(sa.String(64))
    previous_secret_until: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(server_default=sa.true())
    # Why it is off when the app turned it off ("failing"); None when an admin did, or it is on.
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(200))
    disabled_at: Mapped[datetime | None]
    position: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    # Since when no attempt has succeeded (None: the last one did), and how many failed in a row.
    failing_since: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(server_default="0")
    # No attempt before this, after a timeout, a refused connection or a 429.
    paused_until: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = ids_never_reused()


class WebhookEvent(Model):
    """One change webhooks report, committed with the change: its body as sent (JSON), and the
    id every attempt sends as `webhook-id`. Kept WEBHOOK_EVENT_RETENTION_DAYS; deleted with its
    conversation (an erasure) or its message (the retention purge)."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(sa.String(40), unique=True)
    type: Mapped[str] = mapped_column(sa.String(WEBHOOK_EVENT_TYPE_LENGTH))
    conversation_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("conversation.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("message.id"), index=True)
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = ids_never_reused()


class WebhookDelivery(Model):
    """One event for one endpoint: pending until it is delivered (2xx) or given up (failed)."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_endpoint.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("webhook_event.id", ondelete="CASCADE"))
    # The event's conversation: an endpoint gets one conversation's events in order.
    conversation_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(10))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(server_default="0")
    next_at: Mapped[datetime]
    last_attempt_at: Mapped[datetime | None]
    response_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]

    __table_args__ = (
        sa.UniqueConstraint("endpoint_id", "event_id"),
        # What is ready to go, in event order; and what waits ahead of it in its conversation.
        sa.Index("ix_webhook_delivery_endpoint_id_status_event_id", "endpoint_id", "status", "event_id"),
        sa.Index(
            "ix_webhook_delivery_endpoint_id_conversation_id_event_id", "endpoint_id", "conversation_id", "event_id"
        ),
        sa.Index("ix_webhook_delivery_event_id", "event_id"),  # deleted with their event
        ids_never_reused(),
    )


class Tally(Model):
    """What reports sum, kept as the figures change (app/tallies/): one running value per
    15-minute bucket (UTC), metric and what reports filter by. No personal data, so an erasure or
    a retention purge leaves it as it is: last year's costs and counts stay right."""

    bucket: Mapped[datetime] = mapped_column(primary_key=True)  # naive UTC, on a quarter hour
    metric: Mapped[str] = mapped_column(sa.String(24), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(CHANNEL_LENGTH), primary_key=True)  # "" for none
    our_number: Mapped[str] = mapped_column(sa.String(NUMBER_LENGTH), primary_key=True)  # "" for none
    user_id: Mapped[int] = mapped_column(primary_key=True)  # 0: no person (the API, an away reply)
    value: Mapped[Decimal] = mapped_column(sa.Numeric(20, 6))

    __table_args__ = (
        # A report's range read from the index alone (app/reports): its rows hold every column.
        sa.Index("ix_tally_covering", "bucket", "metric", "channel", "our_number", "user_id", "value"),
    )


# --- reports (app/tallies/events.py, app/reports/) -----------------------------------------

EVENT_KINDS = ("opened", "reopened", "assigned", "done", "snoozed", "opted_out")


class ConversationOpening(Model):
    """One customer message that opened a conversation (its first) or reopened it (it was done),
    and what followed: the first reply a person sent (away replies, API replies and notes aside),
    and when it was next marked done. Written with each change; no personal data, so an erasure
    or the purge only lets go of the conversation (`conversation_id` NULL): medians stay right."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("conversation.id", ondelete="SET NULL")
    )
    opened_at: Mapped[datetime]  # the customer's message's arrival (received_at)
    reopened: Mapped[bool] = mapped_column(server_default=sa.false())
    channel: Mapped[str] = mapped_column(sa.String(CHANNEL_LENGTH))
    our_number: Mapped[str] = mapped_column(sa.String(NUMBER_LENGTH))  # "" when the message named none
    first_response_at: Mapped[datetime | None]
    responder_id: Mapped[int | None]  # a user id; no key: it names no one once the account goes
    done_at: Mapped[datetime | None]

    __table_args__ = (
        sa.Index("ix_conversation_opening_opened_at", "opened_at"),
        # A conversation's latest opening (a reply or done fills it in).
        sa.Index("ix_conversation_opening_conversation_id_id", "conversation_id", "id"),
        ids_never_reused(),
    )


class ConversationEvent(Model):
    """What happened to a conversation, for reports and the events export: opened, reopened,
    assigned (user: the new owner, None: unassigned), done, snoozed, opted_out (user: who did
    it; None: the customer or the app). Deleted with its conversation, and by the retention purge."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(12))
    at: Mapped[datetime]
    conversation_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("conversation.id"))
    user_id: Mapped[int | None]
    channel: Mapped[str] = mapped_column(sa.String(CHANNEL_LENGTH), server_default="")
    our_number: Mapped[str] = mapped_column(sa.String(NUMBER_LENGTH), server_default="")

    __table_args__ = (
        sa.Index("ix_conversation_event_at", "at"),
        sa.Index("ix_conversation_event_conversation_id", "conversation_id"),
        ids_never_reused(),
    )
