"""Reading and working the inbox: conversations, search, threads, what changed, read state, chart."""

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa

from app import clock
from app.contacts import labels
from app.db import folding, numbers
from app.db.folding import clean_text, search_key
from app.db.models import NUMBER_PART, ApiToken, Conversation, ConversationNumberPart, DailyCount, Message, User
from app.extensions import db
from app.inbox import search
from app.inbox.list_views import ListFilter
from app.replies import scheduled

THREAD_PAGE = 100
# Up to this many conversations found through the text index are read by id and sorted into list
# order; more, and walking the list's index in order finds a page of them sooner (measured at
# 50,000 senders: a three-digit query matching 450 took 61 ms by id, 41 ms by the walk).
FEW_MATCHES = 200
_CONVERSATION_FTS = sa.table(
    "conversation_fts",
    sa.column("rowid", sa.Integer),
    sa.column("sender_key", sa.String),
    sa.column("contact_key", sa.String),
)


def searched_number(q: str) -> str:
    """The part of a sender's key a search looks for: q without +, spaces, dashes, parentheses
    and case; a number written for dialling without its leading zeros (`0044 7700 900123`,
    `+44 (0)7700 900123` and `07700 900123` look for `447700900123` or `7700900123`).

    Keys hold numbers without an international prefix or trunk 0, and a shorter start finds all
    that the longer one did.
    """
    if numbers.DIALLED.fullmatch(q):
        digits = search_key(q.replace("(0)", "")).lstrip("0")
        if len(digits) >= search.MIN_QUERY:
            return digits
    return search_key(clean_text(q))


def sender_matches(q: str) -> sa.ColumnElement[bool]:
    """Senders whose number contains q (see searched_number).

    `%` and `_` in q are matched literally, never as wildcards.
    """
    return Conversation.sender_key.like(f"%{search.like_escape(searched_number(q))}%", escape=search.LIKE_ESCAPE)


def name_matches(q: str) -> sa.ColumnElement[bool]:
    """Conversations whose contact's name contains q, accents and case aside ("ulle" finds "Ülle Tamm")."""
    key = search.like_escape(folding.fold(clean_text(q).strip()))
    return sa.and_(
        Conversation.contact_key.is_not(None), Conversation.contact_key.like(f"%{key}%", escape=search.LIKE_ESCAPE)
    )


def conversation_matches(q: str) -> sa.ColumnElement[bool]:
    """Conversations whose number contains q (see sender_matches) or whose contact's name does."""
    named = db.select(Conversation.id).where(name_matches(q))
    return sa.or_(sender_matches(q), Conversation.id.in_(named.scalar_subquery()))


def few_matching_conversations(q: str) -> tuple[list[int] | None, list[int] | None]:
    """The ids of the conversations whose number contains q, and of those whose contact name does,
    found through the trigram indexes (SQLite: the conversation text index; PostgreSQL: pg_trgm on
    both keys). Either is None when more than FEW_MATCHES match; both are for a query with fewer
    than three letters or digits (`ab`, `***`), which a trigram index cannot narrow down."""
    number, name = searched_number(q), folding.fold(clean_text(q).strip())
    if not (search.searchable(number) and search.searchable(name)):
        return None, None
    sqlite = db.session.get_bind().dialect.name == "sqlite"
    if len(number) >= NUMBER_PART:
        by_number = numbers_with_part(q, number)
    elif sqlite:
        fts = _CONVERSATION_FTS
        by_number = sa.select(fts.c.rowid.label("id")).where(
            fts.c.sender_key.op("GLOB")(f"*{search.glob_escape(number)}*")
        )
    else:
        # One OR over both keys would make PostgreSQL walk the list instead of either index.
        by_number = sa.select(Conversation.id).where(sender_matches(q))
    if sqlite:
        fts = _CONVERSATION_FTS
        by_name = sa.select(fts.c.rowid.label("id")).where(
            fts.c.contact_key.op("GLOB")(f"*{search.glob_escape(name)}*")
        )
    else:
        by_name = sa.select(Conversation.id).where(name_matches(q))
    # One statement; each key's LIMIT stops its index read early when many match.
    parts = [
        sa.select(sa.literal(key).label("key"), lookup.c.id)
        for key, lookup in enumerate(part.limit(FEW_MATCHES + 1).subquery() for part in (by_number, by_name))
    ]
    found: tuple[list[int], list[int]] = ([], [])
    for key, conversation_id in db.session.execute(sa.union_all(*parts)):
        found[key].append(conversation_id)
    numbers, names = (ids if len(ids) <= FEW_MATCHES else None for ids in found)
    return numbers, names


def numbers_with_part(q: str, number: str) -> sa.Select:
    """The conversations whose number contains `number` (q as searched_number makes it), for one of
    NUMBER_PART characters or more: those that have its last NUMBER_PART characters, by equality on
    conversation_number_part's key, each then read by id and its whole key tested. The last
    stretch rather than the first: a number's end is its subscriber's own digits, its start a
    country code that many share."""
    part = ConversationNumberPart
    return (
        sa.select(part.conversation_id.label("id"))
        .join(Conversation, Conversation.id == part.conversation_id)
        .where(part.part == number[-NUMBER_PART:], sender_matches(q))
    )


def conversations(
    q: str = "",
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
    list_filter: ListFilter | None = None,
) -> "ConversationPage":
    """One page of conversations, newest arrival first, with the cursors to the pages around it.

    Keyset pagination on the last message id (the order messages arrived in): page 500 costs
    what page 1 costs. `before` pages towards older conversations, `after` towards newer ones;
    an `after` page that reaches the newest is the first page, live again.
    Each row carries `arrived_at`, when its last message arrived: the time the order follows.
    `list_filter` picks a view (Open, Done, ...) and narrows it to a channel or one of our numbers.
    """
    in_view = list_filter.conditions() if list_filter is not None else []
    query = (
        db.select(Conversation, Message.received_at)
        .join(Message, Message.id == Conversation.last_message_id)
        .where(*in_view)
    )
    if q:
        keys = matching_page_keys(q, in_view, before, after, limit)
        if keys is None:  # no number or name matches: nothing to walk the list for
            return ConversationPage([], older=None, newer=before)
        query = query.where(Conversation.last_message_id.in_(keys.scalar_subquery()))
    # Each bound is also put on the joined message's id (the same value): PostgreSQL then starts
    # its walk of the message key there instead of at the newest message.
    if after is not None:
        rows = list(
            db.session.execute(
                query.where(Conversation.last_message_id > after, Message.id > after)
                .order_by(Conversation.last_message_id.asc())
                .limit(limit + 1)
            )
        )
        if len(rows) <= limit:
            return conversations(q, limit=limit, list_filter=list_filter)
        rows = rows[:limit][::-1]
        return ConversationPage(with_arrival(rows), older=rows[-1][0].last_message_id, newer=rows[0][0].last_message_id)
    if before is not None:
        query = query.where(Conversation.last_message_id < before, Message.id < before)
    rows = list(db.session.execute(query.order_by(Conversation.last_message_id.desc()).limit(limit + 1)))
    older = rows[limit - 1][0].last_message_id if len(rows) > limit else None
    rows = rows[:limit]
    newer = None if before is None else rows[0][0].last_message_id if rows else before
    return ConversationPage(with_arrival(rows), older=older, newer=newer)


def matching_page_keys(q: str, in_view: list, before: int | None, after: int | None, limit: int) -> sa.Select | None:
    """The list keys (last message ids) of a search's page; None when nothing matches.

    Few matches, found by the text index, are read by id and sorted (the `+ 0` keeps SQLite from
    walking the list's index instead, testing every conversation). LIKE '%q%' can use no B-tree
    index, so many matching numbers walk the list in order, stopping at a page, on its index on
    (..., last_message_id, sender_key) alone, and the few names found join that page. Only when
    names are many too (or the query too short to look up) does one walk test both keys, reading
    each walked conversation for its name on PostgreSQL.
    """

    def walked(matches: sa.ColumnElement[bool]) -> sa.Select:
        return in_page_order(
            db.select(Conversation.last_message_id).where(matches, *in_view),
            Conversation.last_message_id,
            before,
            after,
            limit,
        )

    def by_id(ids: list[int]) -> sa.Select:
        # Read by their ids, the view tested on each row (inside a CASE, where no index can take
        # it): SQLite without statistics would rather walk the view's index, every open
        # conversation, testing each for its id.
        tested = [sa.case((sa.and_(*in_view), True), else_=False)] if in_view else []
        return in_page_order(
            db.select(Conversation.last_message_id).where(Conversation.id.in_(sorted(set(ids))), *tested),
            Conversation.last_message_id + 0,
            before,
            after,
            limit,
        )

    numbers, names = few_matching_conversations(q)
    if numbers == [] and names == []:
        return None
    if numbers is not None and names is not None:
        return by_id(numbers + names)
    if names is None:
        return walked(conversation_matches(q))
    if not names:
        return walked(sender_matches(q))
    merged = sa.union(
        *(sa.select(part.subquery().c.last_message_id) for part in (walked(sender_matches(q)), by_id(names)))
    ).subquery()
    return in_page_order(sa.select(merged.c.last_message_id), merged.c.last_message_id, None, after, limit)


def in_page_order(
    select: sa.Select, key: sa.SQLColumnExpression[int | None], before: int | None, after: int | None, limit: int
) -> sa.Select:
    """A page's keys: past the cursor, in the direction of paging, one more than a page."""
    select = select.where(key > after) if after is not None else select
    select = select.where(key < before) if before is not None else select
    return select.order_by(key.asc() if after is not None else key.desc()).limit(limit + 1)


@dataclass
class ConversationPage:
    rows: list[Conversation]
    older: int | None  # the `before` cursor of the next older page, if there is one
    newer: int | None  # the `after` cursor of the next newer page; None on the first (live) page

    @property
    def live(self) -> bool:
        return self.newer is None


def with_arrival(rows: list[sa.Row]) -> list[Conversation]:
    for conversation, received_at in rows:
        conversation.arrived_at = received_at  # not a column: read with the page, shown in the row
    return with_owners([conversation for conversation, _ in rows])


def with_labels(conversations: list[Conversation]) -> list[Conversation]:
    """Each row's labels (`label_chips`, by name): one small query for the page (the list's
    rows; a search's or a poll's alike, app/inbox/routes.py: list_context)."""
    found = labels.for_conversations([c.id for c in conversations])
    for conversation in conversations:
        conversation.label_chips = found.get(conversation.id, [])
    return conversations


def with_owners(conversations: list[Conversation]) -> list[Conversation]:
    """Each row's owner's name (`owner_name`, None when unassigned): one small query for the
    page's owners, and none when nobody owns any."""
    names = owner_names({c.assignee_id for c in conversations if c.assignee_id is not None})
    for conversation in conversations:
        conversation.owner_name = names.get(conversation.assignee_id) if conversation.assignee_id else None
    return conversations


def owner_names(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(db.session.execute(db.select(User.id, User.username).where(User.id.in_(ids))).all())


def unread_conversations() -> int:
    return db.session.scalar(db.select(sa.func.count()).select_from(Conversation).where(Conversation.unread_count > 0))


def latest_change() -> int:
    """The change number of the last change any list would show: what a list poll compares."""
    return db.session.scalar(db.select(sa.func.max(Conversation.change_seq))) or 0


def arrived_since(since_change: int, latest: int) -> int:
    """Messages received after a list poll's change number, up to `latest`: what it announces.

    Only the conversations that changed are looked into (the change_seq indexes on both tables);
    one that changed again after `latest` still holds messages from before it.
    """
    changed = db.select(Conversation.id).where(Conversation.change_seq > since_change)
    return (
        db.session.scalar(
            db.select(sa.func.count())
            .select_from(Message)
            .where(
                Message.conversation_id.in_(changed.scalar_subquery()),
                Message.direction == "in",
                Message.change_seq > since_change,
                Message.change_seq <= latest,
            )
        )
        or 0
    )


def conversation_by_sender(sender: str) -> Conversation | None:
    """For links made before conversations had ids: the sender as written, or with its `+`."""
    sender = clean_text(sender)
    for candidate in dict.fromkeys((sender, "+" + sender.lstrip(), numbers.normalise(sender))):
        found = db.session.scalar(db.select(Conversation).where(Conversation.sender == candidate))
        if found is not None:
            return found
    return None


# What a thread shows of each message. Plain rows, not ORM objects: cheaper to load, and
# nothing to expire when a write transaction commits.
THREAD_COLUMNS = (
    Message.id,
    Message.sent_at,
    Message.received_at,
    Message.channel,
    Message.sender,
    Message.recipient,
    Message.text,
    Message.change_seq,
    Message.direction,
    Message.status,
    Message.delivery,
    Message.problem,
    Message.author_id,
    Message.via,  # "away": the away reply (app/hours), shown as its author
    Message.api_token_id,
    Message.price,  # what it cost (app/replies/delivery.py), once a delivery report said
    Message.parts,
)


def conversation_cost(conversation_id: int) -> Decimal | None:
    """What a conversation's replies cost so far (None: nothing priced), from the priced replies'
    index alone."""
    return db.session.scalar(
        sa.select(sa.func.sum(Message.price)).where(
            Message.conversation_id == conversation_id, Message.price.is_not(None)
        )
    )


def thread_select():
    # Scheduled messages still waiting (or cancelled) are not the thread's: shown after it instead.
    return db.select(*THREAD_COLUMNS).where(sa.or_(Message.send_at.is_(None), Message.status.not_in(scheduled.STATES)))


def authors_of(messages: list[sa.Row]) -> dict:
    """Who wrote the replies among these messages (one small query, not a join per message):
    people by their id; API tokens by ("api", id), as "API: <name>"."""
    ids = {message.author_id for message in messages if message.author_id is not None}
    authors: dict = (
        dict(db.session.execute(db.select(User.id, User.username).where(User.id.in_(ids))).all()) if ids else {}
    )
    token_ids = {message.api_token_id for message in messages if message.api_token_id is not None}
    if token_ids:
        for token_id, name in db.session.execute(
            db.select(ApiToken.id, ApiToken.name).where(ApiToken.id.in_(token_ids))
        ):
            authors["api", token_id] = "API: " + name
    return authors


@dataclass
class ThreadPage:
    conversation: Conversation
    messages: list[sa.Row]
    has_older: bool
    # The poll's cursor: the change number and message id it has seen up to.
    seen_change: int
    cursor_id: int
    # The newest message on the page once this is shown (0 for an older page: no polling), and
    # before: a changed message at or below it replaces its old self, a newer one is appended.
    newest_shown: int
    previously_shown: int = 0
    authors: dict = field(default_factory=dict)  # see authors_of
    has_newer: bool = False
    around: int | None = None  # the message a page was opened around (a search hit, a link)


def open_thread(
    conversation: Conversation,
    before: int | None = None,
    after: int | None = None,
    around: int | None = None,
    limit: int = THREAD_PAGE,
) -> ThreadPage:
    """A page of a thread, oldest first; reading changes nothing.

    The latest `limit` messages; or those before an id (earlier), after an id (newer), or
    around one message (half before it, half after). Keyset on the message id, the order
    messages arrived in. Only a page that reaches the newest message is live (polled).
    """
    # Up to the conversation's newest message as read: what arrives meanwhile is for the poll.
    # Notes leave the conversation's last message as it was (app/replies/notes.py): one written
    # after it is in the thread all the same.
    in_thread = thread_select().where(
        Message.conversation_id == conversation.id,
        sa.or_(Message.id <= conversation.last_message_id, Message.direction == "note"),
    )
    if around is not None:
        older = list(
            db.session.execute(in_thread.where(Message.id <= around).order_by(Message.id.desc()).limit(limit // 2 + 1))
        )
        newer = list(
            db.session.execute(
                in_thread.where(Message.id > around).order_by(Message.id.asc()).limit(limit - limit // 2 + 1)
            )
        )
        has_older, has_newer = len(older) > limit // 2, len(newer) > limit - limit // 2
        messages = older[: limit // 2][::-1] + newer[: limit - limit // 2]
    elif after is not None:
        newer = list(
            db.session.execute(in_thread.where(Message.id > after).order_by(Message.id.asc()).limit(limit + 1))
        )
        if len(newer) <= limit:  # the newest page after all: open it live, full
            return open_thread(conversation, limit=limit)
        messages, has_older, has_newer = newer[:limit], True, True
    else:
        query = in_thread.order_by(Message.id.desc()).limit(limit + 1)
        if before is not None:
            query = query.where(Message.id < before)
        newest_first = list(db.session.execute(query))
        messages, has_older, has_newer = newest_first[:limit][::-1], len(newest_first) > limit, before is not None
    newest_id = messages[-1].id if messages and not has_newer else 0
    return ThreadPage(
        conversation,
        messages,
        has_older,
        conversation.change_seq,
        newest_id,
        newest_shown=newest_id,
        authors=authors_of(messages),
        has_newer=has_newer,
        around=around if any(message.id == around for message in messages) else None,
    )


def poll_thread(
    conversation: Conversation, since_change: int, since_id: int, shown: int, limit: int = THREAD_PAGE
) -> ThreadPage | None:
    """What changed in a thread after the cursor: None when nothing did (one primary-key read).

    At most one page; the cursor then stops at the last message returned, so the next poll
    brings the rest.
    """
    seen_change = conversation.change_seq
    if seen_change <= since_change:
        return None
    cursor = sa.tuple_(Message.change_seq, Message.id)
    messages = list(
        db.session.execute(
            thread_select()
            .where(
                Message.conversation_id == conversation.id,
                cursor > sa.tuple_(sa.literal(since_change), sa.literal(since_id)),
                Message.change_seq <= seen_change,
            )  # what committed since is for the next poll
            .order_by(Message.change_seq, Message.id)
            .limit(limit + 1)
        )
    )
    newest_shown = max([shown, *(message.id for message in messages[:limit])])
    if len(messages) > limit:
        messages = messages[:limit]
        return ThreadPage(
            conversation,
            messages,
            False,
            messages[-1].change_seq,
            messages[-1].id,
            newest_shown,
            shown,
            authors_of(messages),
        )
    return ThreadPage(
        conversation,
        messages,
        False,
        seen_change,
        messages[-1].id if messages else since_id,
        newest_shown,
        shown,
        authors_of(messages),
    )


def daily_counts(days: int = 30, today: date | None = None) -> list[tuple[date, int]]:
    """Messages received per UTC day over the last `days` days, oldest first, zeros included."""
    today = today or clock.now().date()
    first = today - timedelta(days=days - 1)
    counts = dict(db.session.execute(db.select(DailyCount.day, DailyCount.count).where(DailyCount.day >= first)).all())
    return [(first + timedelta(n), counts.get(first + timedelta(n), 0)) for n in range(days)]
