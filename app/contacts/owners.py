"""Who owns a conversation: its assignee, a person on the team, or nobody (Unassigned).

Every change is audited ("assigned" or "unassigned", with who did it: a person, or
"auto-assignment" when the app did) and stamps the conversation's change number, so every open
list and thread shows the new owner at its next poll. A person given a conversation by someone
else is notified (app/notifications/), in the same transaction. A person also says whether they
are on shift; going off shift can hand their open conversations back to Unassigned.
Auto-assignment (app/contacts/autoassign.py) gives conversations out by these functions, and each
of them that makes room for more work (on shift, unassigned, released) asks it to look again.
"""

import sqlalchemy as sa
from flask import g, has_request_context

from app import audit, clock, notifications, webhooks
from app.db import settings
from app.db.models import Conversation, User
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db
from app.tallies import events as report_events

# "1" (the default) or "0": replying to an unassigned conversation makes the replier its owner.
REPLY_TAKES_OWNERSHIP = "reply_takes_ownership"
AUTO_ASSIGNMENT = "auto-assignment"  # who assigned, in the audit trail, when no person did


class AssignRefused(ValueError):
    """Why a conversation can't go to that person, for people."""


def reply_takes_ownership() -> bool:
    return settings.stored(REPLY_TAKES_OWNERSHIP) != "0"


def set_reply_takes_ownership(on: bool) -> None:
    """In a write transaction (the caller's, if open); a change is audited with it."""
    with write_transaction():
        if on == reply_takes_ownership():
            return
        settings.save(REPLY_TAKES_OWNERSHIP, "1" if on else "0")
        audit.record("settings_changed", {"reply_takes_ownership": "yes" if on else "no"})


def teammates() -> list[User]:
    """The people a conversation can be given to (and a note can mention): every account not
    disabled, by name. Read once a request: a thread's owner menu and its reply box both list them."""
    if not has_request_context():
        return _active_people()
    if "teammates" not in g:
        g.teammates = _active_people()
    return g.teammates


def _active_people() -> list[User]:
    return list(db.session.scalars(sa.select(User).where(User.disabled.is_(False)).order_by(User.username)))


def username_of(user_id: int | None) -> str | None:
    return None if user_id is None else db.session.scalar(sa.select(User.username).where(User.id == user_id))


def assign(conversation_id: int, user_id: int | None, by_user_id: int | None, by_name: str | None = None) -> bool:
    """Give a conversation to a person, or back to Unassigned (None); `by_user_id` None: the app
    did it (auto-assignment), or `by_name` did (an API token, "API: <name>"). False when it was
    so already; AssignRefused for a disabled or unknown person."""
    with write_transaction() as session:
        if user_id is not None:
            disabled = session.scalar(sa.select(User.disabled).where(User.id == user_id))
            if disabled is None or disabled:
                raise AssignRefused("Conversations go only to people whose account is active.")
        was = session.scalar(sa.select(Conversation.assignee_id).where(Conversation.id == conversation_id))
        if was == user_id:
            return False
        session.execute(
            sa.update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(assignee_id=user_id, change_seq=change_number())
        )
        _record(conversation_id, user_id, was, by_user_id, by_name=by_name)
        if was is not None and (by_user_id is not None or by_name is not None):
            _sweep_soon()  # its owner has room for one more (the app's own moves sweep anyway)
        if user_id is not None and user_id != by_user_id:  # nobody is told what they did themselves
            notifications.add_assigned(conversation_id, user_id)
    return True


def take_if_unassigned(conversation_id: int, user_id: int) -> bool:
    """A reply's author becomes the owner of an unassigned conversation, when the setting says
    so; in the caller's transaction (the reply's), so both commit or neither does."""
    with write_transaction() as session:
        if not reply_takes_ownership():
            return False
        taken = session.scalar(
            sa.update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.assignee_id.is_(None))
            .values(assignee_id=user_id, change_seq=change_number())
            .returning(Conversation.id)
        )
        if taken is None:
            return False
        _record(conversation_id, user_id, None, user_id, reason="replied")
    return True


def _record(
    conversation_id: int,
    user_id: int | None,
    was: int | None,
    by_user_id: int | None,
    by_name: str | None = None,
    **extra,
) -> None:
    webhooks.conversation_event("conversation.updated", conversation_id, ["owner"])
    report_events.record(db.session.connection(), "assigned", conversation_id, clock.now(), user_id)
    by = by_name or username_of(by_user_id)
    details = {"conversation": conversation_id, "by": by or AUTO_ASSIGNMENT, **extra}
    if user_id is not None:
        details["assignee"] = username_of(user_id)
    if was is not None:
        details["was"] = username_of(was)
    audit.record("assigned" if user_id is not None else "unassigned", details, username=by)


def open_conversations(user_id: int) -> int:
    """How many conversations a person owns that are not done."""
    return (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Conversation)
            .where(Conversation.assignee_id == user_id, Conversation.status == "open")
        )
        or 0
    )


def release_open(user_id: int, by_user_id: int | None) -> int:
    """Return a person's open conversations to Unassigned, each audited; how many there were."""
    with write_transaction() as session:
        released = list(
            session.scalars(
                sa.update(Conversation)
                .where(Conversation.assignee_id == user_id, Conversation.status == "open")
                .values(assignee_id=None, change_seq=change_number())
                .returning(Conversation.id)
            )
        )
        for conversation_id in sorted(released):
            _record(conversation_id, None, user_id, by_user_id, reason="off shift")
        if released:
            _sweep_soon()
    return len(released)


def set_on_shift(user_id: int, on: bool, release: bool = False) -> int:
    """A person starts or ends their shift (audited); ending it with `release` returns their open
    conversations to Unassigned. How many were returned."""
    with write_transaction() as session:
        changed = session.scalar(
            sa.update(User).where(User.id == user_id, User.on_shift != on).values(on_shift=on).returning(User.username)
        )
        if changed is not None:
            audit.record("on_shift" if on else "off_shift", {"user": changed}, username=changed)
            if on:
                _sweep_soon()  # what waits for someone on shift
        return release_open(user_id, user_id) if release and not on else 0


def _sweep_soon() -> None:
    """Auto-assignment (when on) looks again: someone came on shift or has room for more."""
    from app.contacts import autoassign  # here: autoassign imports this module

    autoassign.sweep_soon()
