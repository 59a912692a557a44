"""Opt-outs: a customer's STOP is honoured at once, START undoes it, and a person can do either.

Messente does not act on inbound STOP messages: the business must. A message opts out only
when it is, as a whole, one of the usual keywords ("Stop.", "OPT OUT"); a sentence that merely
contains one ("We must STOP this bill") is for a person to judge, with the thread's buttons.
Every change is kept in `opt_out`, with the message or the person that caused it, and in the
audit trail with who made it: the customer (by keyword) or the user. A person can opt anyone
out; lifting a customer's own STOP by hand takes an admin and a reason (see `needs_admin`).
"""

import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app import audit, clock, jobs, webhooks
from app.db.models import AuditEvent, Conversation, OptOut, Suppression
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db
from app.tallies import events as report_events

OPT_OUT_WORDS = {
    "stop",
    "stopall",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "revoke",
    "optout",
    "opt out",
    "stopp",
}  # Estonian
OPT_IN_WORDS = {"start", "unstop"}
TRAILING_PUNCTUATION = re.compile(r"[\s.!?,;:…。！]+$")


def keyword(text: str) -> bool | None:
    """True for an opt-out keyword, False for an opt-in one, None for anything else."""
    word = " ".join(TRAILING_PUNCTUATION.sub("", text).split()).casefold()
    if word in OPT_OUT_WORDS:
        return True
    if word in OPT_IN_WORDS:
        return False
    return None


def record_keywords(connection: sa.Connection, messages: list[tuple[int, int, str]], at: datetime, change: int) -> None:
    """Opt conversations out (or back in) for the keyword messages among new inbound ones.

    `messages` are (conversation id, message id, text) in arrival order; runs inside the
    ingest transaction, so the opt-out is stored (and audited) with the message that asked for it.
    """
    events = [
        (conversation_id, message_id, wants_out)
        for conversation_id, message_id, text in messages
        if (wants_out := keyword(text)) is not None
    ]
    if not events:
        return
    connection.execute(
        sa.insert(OptOut),
        [
            {"conversation_id": conversation_id, "message_id": message_id, "opted_out": wants_out, "at": at}
            for conversation_id, message_id, wants_out in events
        ],
    )
    state = dict(
        connection.execute(
            sa.select(Conversation.id, Conversation.opted_out).where(
                Conversation.id.in_({conversation_id for conversation_id, _, _ in events})
            )
        ).all()
    )
    final = {conversation_id: wants_out for conversation_id, _, wants_out in events}  # the last one counts
    audited = []
    for conversation_id, message_id, wants_out in events:
        if state[conversation_id] != wants_out:  # a second STOP changes nothing, and is not an event
            state[conversation_id] = wants_out
            audited.append((conversation_id, message_id, wants_out))
            if wants_out:
                report_events.opted_out(connection, conversation_id, at, None)
            webhooks.contact_event(conversation_id, wants_out, "customer", message_id)
    lifted = {
        conversation_id
        for conversation_id, wants_out in final.items()
        if _set(connection, conversation_id, wants_out, change)
    }
    rows = [
        audit.event_row(
            "opted_out" if wants_out else "opted_in",
            {"conversation": conversation_id, "by": "customer", "message": message_id}
            | ({"erasure_block_lifted": True} if conversation_id in lifted and not wants_out else {}),
            username=None,
            address=None,
            at=at,
        )
        for conversation_id, message_id, wants_out in audited
    ]
    # START from a new conversation of a number erased after it opted out: not an opt-out change
    # of this conversation, but the end of the block the erasure left.
    changed = {conversation_id for conversation_id, _, _ in audited}
    rows += [
        audit.event_row(
            "opted_in",
            {"conversation": conversation_id, "by": "customer", "erasure_block_lifted": True},
            username=None,
            address=None,
            at=at,
        )
        for conversation_id in lifted - changed
    ]
    if rows:
        connection.execute(sa.insert(AuditEvent), rows)


def needs_admin(conversation: Conversation) -> bool:
    """Whether opting this conversation back in takes an admin and a reason: it is opted out by
    the customer's own STOP (or by no one known), not by a person of the team; or its number
    opted out before an erasure (opting back in would lift that block too)."""
    if not conversation.opted_out:
        return False
    if db.session.get(Suppression, audit.number_hash(conversation.sender)) is not None:
        return True
    last = db.session.execute(
        sa.select(OptOut.user_id)
        .where(OptOut.conversation_id == conversation.id, OptOut.opted_out)
        .order_by(OptOut.id.desc())
        .limit(1)
    ).first()
    return last is None or last.user_id is None


class LiftRefused(Exception):
    """Opting back in takes an admin and a reason here (see `needs_admin`), and this had not both."""


def set_opted_out(
    conversation_id: int, opted_out: bool, user_id: int | None, reason: str = "", may_lift_stop: bool = False
) -> bool:
    """A person's decision ("please stop texting me"); False when it was so already. The reason
    goes in the audit event. Opting back in where `needs_admin` raises LiftRefused unless
    `may_lift_stop` (the person is an admin) and there is a reason: checked here, holding the
    write lock, as a STOP may have arrived since the page was shown."""
    with write_transaction() as session:
        connection = session.connection()
        current = connection.scalar(sa.select(Conversation.opted_out).where(Conversation.id == conversation_id))
        if current is None or current == opted_out:
            return False
        if (
            not opted_out
            and not (may_lift_stop and reason)
            and needs_admin(session.get_one(Conversation, conversation_id, populate_existing=True))
        ):
            raise LiftRefused()
        now = clock.now()
        connection.execute(
            sa.insert(OptOut).values(conversation_id=conversation_id, opted_out=opted_out, user_id=user_id, at=now)
        )
        lifted = _set(connection, conversation_id, opted_out, change_number())
        if opted_out:
            report_events.opted_out(connection, conversation_id, now, user_id)
        webhooks.contact_event(conversation_id, opted_out, "user")
        audit.record(
            "opted_out" if opted_out else "opted_in",
            {"conversation": conversation_id, "by": "user"}
            | ({"reason": reason} if reason else {})
            | ({"erasure_block_lifted": True} if lifted else {}),
            at=now,
        )
    return True


def history(session, conversation_id: int) -> list[OptOut]:
    return list(session.scalars(sa.select(OptOut).where(OptOut.conversation_id == conversation_id).order_by(OptOut.id)))


def _set(connection: sa.Connection, conversation_id: int, opted_out: bool, change: int) -> bool:
    """Store the opt-out; True when opting back in lifted the block an erasure left on the number."""
    values: dict[str, Any] = {"opted_out": opted_out, "change_seq": change}
    if current_app.config["MESSENTE_BLACKLIST_SYNC"]:
        # The number joins Messente's account blacklist when opted out; on opting back in it
        # leaves only if this app put it there (see app/replies/blacklist.py).
        values["blacklist"] = sa.case(
            (sa.literal(opted_out), sa.case((Conversation.blacklist == "added", "added"), else_="add")),
            else_=sa.case((Conversation.blacklist.in_(["added", "remove"]), "remove"), else_=None),
        )
        values["blacklist_problem"] = None
        jobs.enqueue("sync_blacklist", key="blacklist")  # app/replies/blacklist.py, once this commits
    sender = connection.execute(
        sa.update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(**values)
        .returning(Conversation.sender)
    ).scalar_one()
    if opted_out:
        return False
    # Asking for messages again also lifts the block an erasure left on the number: the
    # suppression is keyed by the same key as the conversation (audit.number_hash of its sender).
    return (
        connection.execute(sa.delete(Suppression).where(Suppression.number_hash == audit.number_hash(sender))).rowcount
        > 0
    )


def is_suppressed(number: str) -> bool:
    """Whether replies to this number are blocked because it was erased after opting out."""
    return db.session.get(Suppression, audit.number_hash(number)) is not None
