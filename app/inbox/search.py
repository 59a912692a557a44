"""Text search: messages by any part of their text, accents and case aside, on either database.

Every message carries `folded_text`, its text folded by `fold` (accents dropped, case folded),
written by the app in the statement that stores the message (ingest, replies, demo data). The
databases' own trigram indexes then find any part of it:

- SQLite: the FTS5 table `message_fts` (tokenizer `trigram`, see models.MESSAGE_FTS), kept in
  step with `message` by triggers, asked with `GLOB '*part*'`.
- PostgreSQL: a `pg_trgm` GIN index on `message.folded_text`, asked with `LIKE '%part%'`.

Either way the match is exact on the folded text: the index narrows the rows down by the
query's trigrams, the pattern then checks each. A trigram index can't serve a query shorter
than three characters, so `search_messages` finds no messages for those; the inbox then
matches senders' numbers and contact names only.

Forgetting: deleting a message removes it from search by itself (SQLite's triggers,
PostgreSQL's index). Code that erases a message's text but keeps the row calls
`forget_messages` (or `forget_conversation`) in the same transaction.
"""

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from markupsafe import Markup, escape
from sqlalchemy.orm import aliased

from app.db.folding import fold, folded_query
from app.db.models import Conversation, Message
from app.db.unit_of_work import write_transaction
from app.extensions import db

MIN_QUERY = 3  # a trigram index needs three letters or digits to narrow anything down
PAGE = 50
LIKE_ESCAPE = "\\"
# What a hit shows of a long text: this many characters, the first match near the start.
SNIPPET_LENGTH = 240
SNIPPET_LEAD = 60
IDS_PER_STATEMENT = 5_000

# A run of ASCII characters (folded in place), or one other character.
_ASCII_OR_NOT = re.compile(r"[\x00-\x7f]+|.", re.DOTALL)

_FTS = sa.table("message_fts", sa.column("rowid", sa.Integer), sa.column("folded_text", sa.Text))


def searchable(query: str) -> bool:
    """Whether a query has enough letters or digits to search message texts (see MIN_QUERY).

    Counted after folding: punctuation and symbols give a trigram index nothing to narrow down
    (pg_trgm ignores them; FTS5 would read every entry), so `***` or `!!!` is not enough."""
    return sum(char.isalnum() for char in folded_query(query)) >= MIN_QUERY


@dataclass(frozen=True)
class Hit:
    """A message whose text matches, with what the result list shows of it."""

    id: int
    conversation_id: int
    sender: str
    contact_name: str | None
    direction: str
    channel: str
    received_at: datetime  # when it arrived: the order results are in
    text: str


HIT_COLUMNS = sa.select(
    Message.id,
    Message.conversation_id,
    Conversation.sender,
    Conversation.contact_name,
    Message.direction,
    Message.channel,
    Message.received_at,
    Message.text,
).join(Conversation, Conversation.id == Message.conversation_id)


def search_messages(query: str, limit: int = PAGE, before: int | None = None) -> tuple[list[Hit], int | None]:
    """Messages whose text contains the query (accents and case aside), newest first, at most
    `limit`, and the cursor for the next page (None on the last). Keyset paged on the message id:
    `before` is the cursor a previous page gave. A query with fewer than MIN_QUERY letters or
    digits finds nothing (and asks no index).
    """
    if not searchable(query):
        return [], None
    rows = db.session.execute(_newest_matches(HIT_COLUMNS, folded_query(query), limit + 1, before)).all()
    hits = sorted((Hit(*row) for row in rows), key=lambda hit: hit.id, reverse=True)
    next_cursor = hits[limit - 1].id if len(hits) > limit else None
    return hits[:limit], next_cursor


def _newest_matches(columns: sa.Select, folded: str, limit: int, before: int | None) -> sa.Select:
    """`columns` (a select from message) of the newest `limit` messages whose text holds `folded`,
    below the id `before`; in no particular order on SQLite (sort them by id)."""
    if db.session.get_bind().dialect.name == "sqlite":
        ids = (
            sa.select(_FTS.c.rowid)
            .where(_FTS.c.folded_text.op("GLOB")(f"*{glob_escape(folded)}*"))
            .order_by(_FTS.c.rowid.desc())
            .limit(limit)
        )
        if before is not None:
            ids = ids.where(_FTS.c.rowid < before)
        # The FTS table picks the page's ids, newest first; the messages are then read by primary
        # key (and put in order by the caller: sorting in SQL could make SQLite walk the message table).
        return columns.where(Message.id.in_(ids.scalar_subquery()))
    query = (
        columns.where(Message.folded_text.like(f"%{like_escape(folded)}%", escape=LIKE_ESCAPE))
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return query.where(Message.id < before) if before is not None else query


@dataclass(frozen=True)
class Found:
    """A conversation with messages whose text matches: how many, and the newest of them."""

    newest: Hit
    matches: int
    # Whether the conversation has older messages than those counted (MESSAGES_COUNTED): then it
    # holds `matches` or more, shown as "12+".
    at_least: bool = False

    @property
    def matches_shown(self) -> str:
        return f"{self.matches}+" if self.at_least else str(self.matches)


# Matching messages read per statement while gathering a page of conversations, and at most this
# many per page: a conversation with thousands of matches must not make one page read them all
# (the page then holds the conversations found so far, and the next goes on from there).
WALK_BATCH = 200
WALK_MOST = 2_000
# A conversation's matches are counted among its newest this many messages from the match shown
# down: each text is read from the message table, so a busy conversation must not make its entry
# read all of them, whether a word is in most of its messages or in few ("50+ messages").
MESSAGES_COUNTED = 50


def search_conversations(query: str, limit: int = PAGE, before: int | None = None) -> tuple[list[Found], int | None]:
    """Conversations with messages whose text contains the query, one entry each, ordered by their
    newest matching message (newest first): at most `limit`, and the cursor for the next page
    (None on the last).

    Keyset paged on the message id like search_messages: a page walks the matching messages below
    `before`, newest first, through the text index, and keeps each conversation the first time it
    meets it; a conversation with a match at or above `before` was on an earlier page and is
    skipped. When the walk reads every match below `before` (few match), it counts them itself;
    otherwise each conversation's matches are counted in its own newest messages from the one
    shown down (its index on (conversation_id, id)), not in the text index: at most
    MESSAGES_COUNTED of them, so a busy conversation shows "12+" (see Found). A query
    with fewer than MIN_QUERY letters or digits finds nothing (and asks no index).
    """
    if not searchable(query):
        return [], None
    folded = folded_query(query)
    newest_of: dict[int, int] = {}  # conversation id: its newest matching message id, in page order
    counts: dict[int, tuple[int, bool]] = {}
    skipped: set[int] = set()  # conversations an earlier page showed
    walk_from, walked, exhausted = before, 0, False
    fetched: Counter[int] = Counter()  # matches read so far, per conversation
    every_match = False  # whether those are all the matches below `before`: then they are the counts
    # The first batch reads about what fills a page (each match a message row to test), later ones more.
    batch_size = min(WALK_BATCH, 2 * (limit + 1))
    while len(newest_of) <= limit and walked < WALK_MOST:
        batch = sorted(
            db.session.execute(
                _newest_matches(sa.select(Message.id, Message.conversation_id), folded, batch_size, walk_from)
            ).all(),
            reverse=True,
        )
        fetched.update(conversation_id for _, conversation_id in batch)
        every_match = len(batch) < batch_size
        new: dict[int, int] = {}
        examined = 0
        for message_id, conversation_id in batch:
            if len(newest_of) + len(new) > limit:  # enough to fill the page: count no more
                break
            examined += 1
            walk_from = message_id
            if conversation_id not in newest_of and conversation_id not in skipped and conversation_id not in new:
                new[conversation_id] = message_id
        walked += examined
        if new and every_match and before is None:  # few matches: all read, nothing to count
            newest_of.update(new)
        elif new:
            # Below the first page, a conversation met here may have newer matches above the cursor.
            for conversation_id, (matches, more, newest) in _match_counts(new, folded, before is not None).items():
                if newest is not None and newest > new[conversation_id]:  # shown on an earlier page
                    skipped.add(conversation_id)
                else:
                    newest_of[conversation_id], counts[conversation_id] = new[conversation_id], (matches, more)
        if len(batch) < batch_size and examined == len(batch):
            exhausted = True
            break
        batch_size = min(WALK_BATCH, batch_size * 4)
    if every_match:  # a conversation not skipped has no match above `before`: these are all of its
        counts = {conversation_id: (fetched[conversation_id], False) for conversation_id in newest_of}
    page = sorted(newest_of.items(), key=lambda item: item[1], reverse=True)
    next_cursor: int | None
    if len(page) > limit:
        next_cursor = page[limit - 1][1]
    else:
        next_cursor = None if exhausted else walk_from
    page = page[:limit]
    hits = (
        {
            row.id: Hit(*row)
            for row in db.session.execute(HIT_COLUMNS.where(Message.id.in_([message_id for _, message_id in page])))
        }
        if page
        else {}
    )
    return [
        Found(hits[message_id], *counts[conversation_id]) for conversation_id, message_id in page if message_id in hits
    ], next_cursor


def _match_counts(newest_of: dict[int, int], folded: str, newest: bool) -> dict[int, tuple[int, bool, int | None]]:
    """For each conversation (with the id of a matching message of it, the one a page shows): how
    many of its newest MESSAGES_COUNTED messages from that one down hold `folded`, whether it has
    older messages than those, and with `newest` the id of its newest match (else None).

    One statement from the shown messages' rows: each conversation's messages are read newest
    first by its (conversation_id, id) index, at most MESSAGES_COUNTED of them (and whether there
    are more, from the index alone), never every match of a busy conversation."""
    matches = matches_in(Message.folded_text, folded)
    shown = aliased(Message, name="shown")
    its_messages = (
        sa.select(Message.id)
        .where(Message.conversation_id == shown.conversation_id, Message.id <= shown.id)
        .order_by(Message.id.desc())
        .correlate(shown)
    )
    # The counted stretch is bounded by ids, its oldest found on the index alone: asked for "the
    # newest 50 texts", PostgreSQL (expecting a conversation's average few messages) read a busy
    # conversation's every text and sorted them.
    oldest_counted = _first(its_messages, 1).offset(sa.literal_column(str(MESSAGES_COUNTED - 1))).scalar_subquery()
    columns = [
        shown.conversation_id,
        sa.select(sa.func.count())
        .where(
            Message.conversation_id == shown.conversation_id,
            Message.id <= shown.id,
            Message.id >= sa.func.coalesce(oldest_counted, sa.literal_column("0")),
            matches,
        )
        .correlate(shown)
        .scalar_subquery(),
        sa.select(sa.func.count()).select_from(_first(its_messages, MESSAGES_COUNTED + 1).subquery()).scalar_subquery()
        > sa.literal_column(str(MESSAGES_COUNTED)),
    ]
    if newest:
        its_matches = (
            sa.select(Message.id)
            .where(Message.conversation_id == shown.conversation_id, matches)
            .order_by(Message.id.desc())
            .correlate(shown)
        )
        columns.append(_first(its_matches, 1).scalar_subquery())
    rows = db.session.execute(sa.select(*columns).where(shown.id.in_(list(newest_of.values()))))
    return {row[0]: (row[1], bool(row[2]), row[3] if newest else None) for row in rows}


def matches_in(column: sa.SQLColumnExpression[str], folded: str) -> sa.ColumnElement[bool]:
    """`column` (a folded text) holds `folded`: GLOB on SQLite, LIKE on PostgreSQL, wildcards escaped."""
    if db.session.get_bind().dialect.name == "sqlite":
        return column.op("GLOB")(f"*{glob_escape(folded)}*")
    return column.like(f"%{like_escape(folded)}%", escape=LIKE_ESCAPE)


def _first(select: sa.Select, count: int) -> sa.Select:
    """`select` limited to its first `count` rows, written into the statement: a constant, not one
    more parameter per conversation."""
    return select.limit(sa.literal_column(str(int(count)))).offset(sa.literal_column("0"))


def text_matches(query: str, dialect: str) -> sa.ColumnElement[bool]:
    """Messages whose text contains the query, as a condition on `message` (for the export);
    none for a query with fewer than MIN_QUERY letters or digits."""
    if not searchable(query):
        return sa.false()
    folded = folded_query(query)
    if dialect == "sqlite":
        return Message.id.in_(
            sa.select(_FTS.c.rowid).where(_FTS.c.folded_text.op("GLOB")(f"*{glob_escape(folded)}*")).scalar_subquery()
        )
    return Message.folded_text.like(f"%{like_escape(folded)}%", escape=LIKE_ESCAPE)


def glob_escape(text: str) -> str:
    """`*`, `?` and `[` in a GLOB pattern as themselves."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in text)


def like_escape(text: str) -> str:
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return text


def highlight(text: str, query: str, length: int = SNIPPET_LENGTH) -> Markup:
    """The text, escaped, with each match of the query (as search compares) in <mark>; a long
    text is cut to `length` characters around its first match, with … where it was cut."""
    needle = folded_query(query)
    origin: Sequence[int]
    if text.isascii():  # folding keeps every character in its place
        folded, origin = text.lower(), range(len(text))
    else:
        # Fold stretch by stretch, remembering which character of the text each folded one came
        # from: folding can change lengths ("ß" is "ss", "é" one character either way). A stretch
        # of ASCII folds in place at once; each other character alone.
        parts: list[str] = []
        positions: list[int] = []
        for stretch in _ASCII_OR_NOT.finditer(text):
            start, end = stretch.span()
            part = fold(stretch[0])
            parts.append(part)
            if end - start > 1:
                positions.extend(range(start, end))
            else:
                positions.extend([start] * len(part))
        folded, origin = "".join(parts), positions
    spans, start = [], folded.find(needle) if needle else -1
    while start >= 0:
        end = start + len(needle)
        span_end = origin[end - 1] + 1
        while span_end < len(text) and not fold(text[span_end]):  # the accents on its last letter
            span_end += 1
        spans.append((origin[start], span_end))
        start = folded.find(needle, end)

    first = max(0, spans[0][0] - min(SNIPPET_LEAD, length // 4)) if spans and len(text) > length else 0
    last = min(len(text), first + length)
    parts = [Markup("…")] if first else []
    position = first
    for span_start, span_end in spans:
        if span_end <= first or span_start >= last:
            continue
        span_start, span_end = max(span_start, first), min(span_end, last)
        parts += [escape(text[position:span_start]), Markup("<mark>%s</mark>") % text[span_start:span_end]]
        position = span_end
    parts.append(escape(text[position:last]))
    if last < len(text):
        parts.append(Markup("…"))
    return Markup("").join(parts)


def forget_messages(ids: list[int]) -> None:
    """Take these messages out of search, keeping the rows: for erasing a text in place.

    Joins the caller's write transaction. Deleting messages needs no call: the index follows.
    """
    with write_transaction() as session:
        for start in range(0, len(ids), IDS_PER_STATEMENT):
            session.execute(
                sa.update(Message).where(Message.id.in_(ids[start : start + IDS_PER_STATEMENT])).values(folded_text="")
            )


def forget_conversation(conversation_id: int) -> None:
    """Take a conversation's messages out of search (see forget_messages)."""
    with write_transaction() as session:
        session.execute(sa.update(Message).where(Message.conversation_id == conversation_id).values(folded_text=""))
