"""Reading the inbox: conversations, search, threads, what is new, read state, the chart."""
from datetime import date, timedelta

import sqlalchemy as sa

from .extensions import begin_write, db
from .ingest import clean_text, search_key, utcnow
from .models import Conversation, DailyCount, Message

THREAD_PAGE = 500
LIKE_ESCAPE = "\\"


def sender_matches(q: str) -> sa.ColumnElement[bool]:
    """Senders whose number contains q, ignoring +, spaces, dashes, parentheses and case.

    `%` and `_` in q are matched literally, never as wildcards.
    """
    key = search_key(clean_text(q))
    for special in (LIKE_ESCAPE, "%", "_"):
        key = key.replace(special, LIKE_ESCAPE + special)
    return Conversation.sender_key.like(f"%{key}%", escape=LIKE_ESCAPE)


def conversations(q: str = "", before: int | None = None, limit: int = 50) -> tuple[list, int | None]:
    """One page of conversations, newest activity first, and the cursor for the next page.

    Keyset pagination on the last message id: page 500 costs what page 1 costs.
    """
    query = db.select(Conversation).order_by(Conversation.last_message_id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(Conversation.last_message_id < before)
    if q:
        # LIKE '%q%' can use no B-tree index. Pick the page's ids from the index on
        # (last_message_id, sender_key) alone, then read just those rows: testing every row
        # in list order would read the whole table, row by row, when few senders match.
        page_ids = query.with_only_columns(Conversation.last_message_id).where(sender_matches(q))
        query = query.where(Conversation.last_message_id.in_(page_ids.scalar_subquery()))
    rows = list(db.session.scalars(query))
    next_cursor = rows[limit - 1].last_message_id if len(rows) > limit else None
    return rows[:limit], next_cursor


def unread_conversations() -> int:
    return db.session.scalar(
        db.select(sa.func.count()).select_from(Conversation).where(Conversation.unread_count > 0)
    )


def newest_message_id(sender: str | None = None) -> int:
    """The highest message id, overall or for one sender: what a poll compares with."""
    query = db.select(sa.func.max(Message.id))
    if sender is not None:
        query = query.where(Message.sender == sender)
    return db.session.scalar(query) or 0


def conversation(sender: str) -> Conversation | None:
    # Cleaned as stored senders were (no NUL, no lone surrogate), so any URL is a valid lookup.
    return db.session.get(Conversation, clean_text(sender))


# What a thread shows of each message. Plain rows, not ORM objects: the views commit (mark
# read) before rendering, and a commit would expire 500 objects into 500 reloading SELECTs.
THREAD_COLUMNS = (Message.id, Message.sent_at, Message.channel, Message.recipient, Message.text)


def thread(sender: str, before: int | None = None, after: int | None = None,
           limit: int = THREAD_PAGE) -> tuple[list[sa.Row], bool]:
    """Messages of one sender, oldest first: the latest `limit` (before an id), or all after an id.

    Also says whether older messages exist beyond this page.
    """
    query = db.select(*THREAD_COLUMNS).where(Message.sender == sender)
    if after is not None:
        return list(db.session.execute(query.where(Message.id > after).order_by(Message.id))), False
    if before is not None:
        query = query.where(Message.id < before)
    newest_first = list(db.session.execute(query.order_by(Message.id.desc()).limit(limit + 1)))
    return newest_first[:limit][::-1], len(newest_first) > limit


def mark_read(sender: str) -> None:
    begin_write()
    db.session.execute(
        sa.update(Conversation).where(Conversation.sender == sender, Conversation.unread_count != 0)
        .values(unread_count=0)
    )


def mark_unread(sender: str) -> None:
    begin_write()
    db.session.execute(
        sa.update(Conversation).where(Conversation.sender == sender, Conversation.unread_count == 0)
        .values(unread_count=1)
    )


def daily_counts(days: int = 30, today: date | None = None) -> list[tuple[date, int]]:
    """Messages received per UTC day over the last `days` days, oldest first, zeros included."""
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    counts = dict(db.session.execute(
        db.select(DailyCount.day, DailyCount.count).where(DailyCount.day >= first)
    ).all())
    return [(first + timedelta(n), counts.get(first + timedelta(n), 0)) for n in range(days)]
