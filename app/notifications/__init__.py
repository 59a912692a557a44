"""In-app notifications: a person's own list of what happened for them, and the bell that counts
the unread ones.

Three kinds so far, each made once, in the transaction of the change it tells of:

- "assigned": a conversation was given to someone by someone else (or by auto-assignment);
  `add_assigned`, from app/contacts/owners.py.
- "message": a customer wrote in a conversation someone owns; `add_for_new_messages`, one
  INSERT ... SELECT per ingest batch. New messages join an unread one: a person has at most one
  unread "message" notification per conversation.
- "mention": a teammate mentioned them in a note (app/replies/notes.py); `add_mentioned`. Later
  mentions in the same conversation join an unread one, as new messages do.
- "woke": a snoozed conversation someone owns came back to Open (its time came, the customer
  wrote, or someone else unsnoozed it); `add_woke`, from app/contacts/snooze.py.

Both changes stamp the conversation's change number, so every open page's poll sees news and
sends its own person's bell along. A person turns a kind off on their account page (a row in
`notification_opt_out`; without one, a kind is on).
"""

from dataclasses import dataclass
from datetime import datetime
from functools import cache

import sqlalchemy as sa

from app import clock
from app.db.models import Conversation, Notification, NotificationOptOut
from app.db.unit_of_work import write_transaction
from app.extensions import db

# What each kind says, in the list and the desktop notification; the order of the account page.
KINDS = {
    "assigned": "Assigned to you",
    "message": "New message",
    "mention": "Mentioned you",
    "woke": "Back from snooze",
    "held": "Scheduled message held",
    "missed": "Scheduled message missed",
}
# ... and what the account page's checkbox for each says.
CHOICES = {
    "assigned": "someone else assigns a conversation to me",
    "message": "a customer writes in a conversation I own",
    "mention": "a teammate mentions me in a note",
    "woke": "a conversation I own comes back from snooze",
    "held": "a message I scheduled is held because the customer wrote since",
    "missed": "a message I scheduled was not sent in time",
}
PAGE = 50
LOOKUPS_PER_STATEMENT = 10_000  # SQLite binds at most 32,766 values in one statement


@dataclass(frozen=True)
class Entry:
    """One notification as the list shows it."""

    id: int
    kind: str
    conversation_id: int
    created_at: datetime
    read_at: datetime | None
    contact_name: str | None
    sender: str

    @property
    def label(self) -> str:
        return KINDS.get(self.kind, self.kind)


def add_assigned(conversation_id: int, user_id: int) -> None:
    """Tell a person a conversation is theirs now, unless they turned that kind off. In the
    caller's transaction (the assignment's)."""
    with write_transaction() as session:
        session.execute(_notify_one(), {"user_id": user_id, "conversation_id": conversation_id, "now": clock.now()})


def add_woke(conversation_id: int, user_id: int) -> None:
    """Tell a conversation's owner it is back from snooze (app/contacts/snooze.py), unless they
    turned that kind off. In the caller's transaction (the wake's)."""
    with write_transaction() as session:
        session.execute(_notify_woke(), {"user_id": user_id, "conversation_id": conversation_id, "now": clock.now()})


def add_for_writer(conversation_id: int, user_id: int, kind: str) -> None:
    """Tell a scheduled message's writer it was held or missed ("held", "missed"), unless they
    turned that kind off. In the caller's transaction (the send job's)."""
    with write_transaction() as session:
        turned_off = session.scalar(
            sa.select(NotificationOptOut.id).where(
                NotificationOptOut.user_id == user_id, NotificationOptOut.kind == kind
            )
        )
        if turned_off is None:
            session.execute(
                sa.insert(Notification).values(
                    user_id=user_id, kind=kind, conversation_id=conversation_id, created_at=clock.now()
                )
            )


def add_for_new_messages(connection: sa.Connection, conversation_ids: list[int], now: datetime) -> None:
    """Tell each owner of these conversations that a customer wrote, where they have no unread
    "message" notification for it yet and have not turned the kind off: set-based, so a batch
    costs one statement however many conversations it touched. In ingest's transaction."""
    for start in range(0, len(conversation_ids), LOOKUPS_PER_STATEMENT):
        connection.execute(
            _notify_owners(), {"ids": conversation_ids[start : start + LOOKUPS_PER_STATEMENT], "now": now}
        )


def add_mentioned(connection: sa.Connection, conversation_id: int, user_ids: list[int], now: datetime) -> None:
    """Tell each of these people a note mentioned them, where they have no unread "mention"
    notification for the conversation yet and have not turned the kind off. In the note's
    transaction."""
    connection.execute(
        _notify_mentioned(),
        [{"user_id": user_id, "conversation_id": conversation_id, "now": now} for user_id in user_ids],
    )


def unread_count(user_id: int) -> int:
    """The bell's number: one read of the person's unread ones (a partial index)."""
    return (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Notification)
            .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        )
        or 0
    )


def newest_unread(user_id: int) -> Entry | None:
    """What a desktop notification says when the bell's count goes up."""
    entries = _entries(user_id, unread_only=True, limit=1)
    return entries[0] if entries else None


def page_of(user_id: int, before: int | None = None) -> tuple[list[Entry], int | None]:
    """A person's notifications, newest first, and the id to ask for older ones from (None: no more)."""
    entries = _entries(user_id, before=before, limit=PAGE + 1)
    return entries[:PAGE], (entries[PAGE - 1].id if len(entries) > PAGE else None)


def _entries(user_id: int, before: int | None = None, unread_only: bool = False, limit: int = PAGE) -> list[Entry]:
    query = (
        sa.select(
            Notification.id,
            Notification.kind,
            Notification.conversation_id,
            Notification.created_at,
            Notification.read_at,
            Conversation.contact_name,
            Conversation.sender,
        )
        .join(Conversation, Conversation.id == Notification.conversation_id)
        .where(Notification.user_id == user_id)
        .order_by(Notification.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(Notification.id < before)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return [Entry(*row) for row in db.session.execute(query)]


def mark_read(user_id: int, notification_id: int) -> bool:
    """One of the person's own; False when it was read already (or is not theirs)."""
    with write_transaction() as session:
        return (
            session.scalar(
                sa.update(Notification)
                .where(
                    Notification.id == notification_id,
                    Notification.user_id == user_id,
                    Notification.read_at.is_(None),
                )
                .values(read_at=clock.now())
                .returning(Notification.id)
            )
            is not None
        )


def mark_all_read(user_id: int) -> int:
    with write_transaction() as session:
        return len(
            session.scalars(
                sa.update(Notification)
                .where(Notification.user_id == user_id, Notification.read_at.is_(None))
                .values(read_at=clock.now())
                .returning(Notification.id)
            ).all()
        )


def mark_conversation_read(user_id: int, conversation_id: int) -> bool:
    """The person opened or read the conversation: its notifications for them are read. Looked
    up first, so opening a conversation without any takes no write lock. Whether any were unread."""
    unread = (
        sa.select(Notification.id)
        .where(
            Notification.user_id == user_id,
            Notification.conversation_id == conversation_id,
            Notification.read_at.is_(None),
        )
        .limit(1)
    )
    if db.session.scalar(unread) is None:
        return False
    with write_transaction() as session:
        session.execute(
            sa.update(Notification)
            .where(
                Notification.user_id == user_id,
                Notification.conversation_id == conversation_id,
                Notification.read_at.is_(None),
            )
            .values(read_at=clock.now())
        )
    return True


def kinds_on(user_id: int) -> dict[str, bool]:
    """Which kinds the person gets, every kind named."""
    off = set(db.session.scalars(sa.select(NotificationOptOut.kind).where(NotificationOptOut.user_id == user_id)))
    return {kind: kind not in off for kind in KINDS}


def set_kinds_on(user_id: int, on: set[str]) -> None:
    """The person gets these kinds and no others (unknown names are ignored)."""
    with write_transaction() as session:
        session.execute(sa.delete(NotificationOptOut).where(NotificationOptOut.user_id == user_id))
        off = [{"user_id": user_id, "kind": kind} for kind in KINDS if kind not in on]
        if off:
            session.execute(sa.insert(NotificationOptOut), off)


# Statements built once: ingest runs them for every batch.
def _turned_off(user_id: sa.ColumnElement, kind: str) -> sa.Exists:
    return sa.exists().where(NotificationOptOut.user_id == user_id, NotificationOptOut.kind == kind)


@cache
def _notify_one() -> sa.Insert:
    user_id = sa.bindparam("user_id", type_=sa.Integer)
    chosen = sa.select(
        user_id, sa.literal("assigned"), sa.bindparam("conversation_id", type_=sa.BigInteger), _now()
    ).where(~_turned_off(user_id, "assigned"))
    return sa.insert(Notification.__table__).from_select(["user_id", "kind", "conversation_id", "created_at"], chosen)


@cache
def _notify_woke() -> sa.Insert:
    user_id = sa.bindparam("user_id", type_=sa.Integer)
    chosen = sa.select(user_id, sa.literal("woke"), sa.bindparam("conversation_id", type_=sa.BigInteger), _now()).where(
        ~_turned_off(user_id, "woke")
    )
    return sa.insert(Notification.__table__).from_select(["user_id", "kind", "conversation_id", "created_at"], chosen)


@cache
def _notify_mentioned() -> sa.Insert:
    user_id = sa.bindparam("user_id", type_=sa.Integer)
    conversation_id = sa.bindparam("conversation_id", type_=sa.BigInteger)
    unread_already = sa.exists().where(
        Notification.user_id == user_id,
        Notification.conversation_id == conversation_id,
        Notification.read_at.is_(None),
        Notification.kind == "mention",
    )
    chosen = sa.select(user_id, sa.literal("mention"), conversation_id, _now()).where(
        ~unread_already, ~_turned_off(user_id, "mention")
    )
    return sa.insert(Notification.__table__).from_select(["user_id", "kind", "conversation_id", "created_at"], chosen)


@cache
def _notify_owners() -> sa.Insert:
    conversation = Conversation.__table__
    owner = conversation.c.assignee_id
    unread_already = sa.exists().where(
        Notification.user_id == owner,
        Notification.conversation_id == conversation.c.id,
        Notification.read_at.is_(None),
        Notification.kind == "message",
    )
    chosen = sa.select(owner, sa.literal("message"), conversation.c.id, _now()).where(
        conversation.c.id.in_(sa.bindparam("ids", expanding=True)),
        owner.is_not(None),
        ~unread_already,
        ~_turned_off(owner, "message"),
    )
    return sa.insert(Notification.__table__).from_select(["user_id", "kind", "conversation_id", "created_at"], chosen)


def _now() -> sa.BindParameter:
    return sa.bindparam("now", type_=sa.DateTime())
