"""Auto-assignment (off by default): the app gives waiting conversations to the people on shift.

The rule: an unassigned open conversation goes to the on-shift, active person with the fewest
open conversations, ties in turn (the one auto-assigned to longest ago first), never above the
cap (open conversations only; done and snoozed ones don't count). A done conversation the customer reopens
stays with its owner if they are on shift and under the cap; otherwise it is treated as new.
Nobody available: it waits in Unassigned until someone comes on shift or drops below the cap.
An optional list of our numbers limits it to conversations written to one of them.

It runs on the background runner, never on a callback's path: ingest enqueues one job per batch
that started or reopened conversations (`sweep_soon`), and so do the actions that make room
(on shift, done, unassigned, released). The jobs share a key, so they run one at a time, in
order; each assignment is its own write transaction that counts and assigns under the write
lock, so no worker, thread or instance can push a person over the cap in between.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa

from app import audit, jobs
from app.contacts import owners
from app.db import settings as stored_settings
from app.db.models import Conversation, ConversationRecipient, Job, Setting, User
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db

ON = "auto_assignment"  # "1" or "0" (the default)
CAP = "auto_assignment_cap"  # the most open conversations auto-assignment gives one person
NUMBERS = "auto_assignment_numbers"  # our numbers it applies to, comma-separated; empty: all
DEFAULT_CAP = 20
MOST_CAP = 10_000
NUMBERS_CHARS = 255  # what a setting's value holds
JOB = "auto_assign"
KEY = "auto-assign"  # its jobs run one at a time, in the order they were enqueued


class SettingsRefused(ValueError):
    """Why the settings can't be saved, for people."""


@dataclass(frozen=True)
class Settings:
    on: bool = False
    cap: int = DEFAULT_CAP
    numbers: tuple[str, ...] = ()  # empty: every number


def settings() -> Settings:
    values = dict(
        db.session.execute(sa.select(Setting.name, Setting.value).where(Setting.name.in_((ON, CAP, NUMBERS)))).all()
    )
    cap = values.get(CAP, "")
    return Settings(
        on=values.get(ON) == "1",
        cap=int(cap) if cap.isdigit() else DEFAULT_CAP,
        numbers=tuple(number for number in values.get(NUMBERS, "").split(",") if number),
    )


def set_settings(on: bool, cap: int, numbers: Iterable[str]) -> Settings:
    """Save the settings (in the caller's write transaction, if open); turned on, a sweep follows
    at once, so conversations already waiting are given out. SettingsRefused when they can't be."""
    if not 1 <= cap <= MOST_CAP:
        raise SettingsRefused(f"The cap is a number of conversations from 1 to {MOST_CAP:,}.")
    chosen = sorted({number.strip() for number in numbers if number.strip()})
    if any("," in number for number in chosen) or len(",".join(chosen)) > NUMBERS_CHARS:
        raise SettingsRefused("Choose fewer numbers, or none for all of them.")
    wanted = {ON: "1" if on else "0", CAP: str(cap), NUMBERS: ",".join(chosen)}
    saved = Settings(on, cap, tuple(chosen))
    with write_transaction() as session:
        if saved == settings():  # nothing to write or audit; a sweep all the same, as on any save
            sweep_soon()
            return saved
        for name, value in wanted.items():
            stored_settings.save(name, value)
        session.flush()
        sweep_soon()
        audit.record(
            "settings_changed",
            {
                "auto_assignment": "yes" if on else "no",
                "auto_assignment_cap": cap,
                "auto_assignment_numbers": ", ".join(chosen) or "all",
            },
        )
    return saved


def is_on(connection: sa.Connection) -> bool:
    """Whether it is on: one row by its primary key (ingest asks in every batch's transaction)."""
    return connection.scalar(_on_value()) == "1"


def sweep_soon(reopened: Sequence[int] = ()) -> None:
    """Inside a write transaction, when auto-assignment is on: a job to give out what waits, and
    to apply the reopen rule to `reopened` (conversations with an owner that were done). A sweep
    still waiting to start runs after this commit and sees it: then only reopened conversations
    need a job of their own."""
    session = db.session()
    if not is_on(session.connection()):
        return
    if not reopened and session.scalar(_waiting_sweep()) is not None:
        return
    jobs.enqueue(JOB, {"reopened": sorted(reopened)} if reopened else None, key=KEY)


def after_ingest(connection: sa.Connection, conversation_ids: Iterable[int]) -> None:
    """Ingest's part, in its transaction before it moves the batch's conversations (a new one has
    no messages yet; a reopened one is still done): when on, one job if the batch started or
    reopened any. Off, this is the one row `is_on` reads."""
    if not is_on(connection):
        return
    rows = connection.execute(_states(), {"ids": list(conversation_ids)}).all()
    reopened = [row.id for row in rows if row.status == "done"]
    if reopened or any(row.message_count == 0 for row in rows):
        sweep_soon([row.id for row in rows if row.status == "done" and row.assignee_id is not None])


@jobs.kind(JOB)
def sweep(payload: dict, attempt: jobs.Attempt) -> None:
    """Reopened conversations first (back to their owner, or given out anew), then every
    unassigned open conversation someone can take, oldest first. Safe to run again."""
    for conversation_id in payload.get("reopened", []):
        back_or_anew(conversation_id)
    while assign_next():
        pass


def assign_next() -> bool:
    """Give the conversation that has waited longest to the person next in line, counting and
    assigning under the write lock; False when nothing waits or nobody can take it."""
    with write_transaction() as session:
        current = settings()
        if not current.on:
            return False
        person = next_person(current.cap)
        if person is None:
            return False
        waiting = session.scalar(
            sa.select(Conversation.id)
            .where(
                Conversation.assignee_id.is_(None),
                Conversation.status == "open",
                _awake(),
                _applies(current.numbers),
            )
            .order_by(Conversation.last_message_id, Conversation.id)
            .limit(1)
        )
        if waiting is None:
            return False
        _give(waiting, person)
    return True


def back_or_anew(conversation_id: int) -> None:
    """A done conversation the customer reopened: its owner keeps it while on shift and under the
    cap; otherwise it goes to the person next in line, or to Unassigned until someone can take it."""
    with write_transaction() as session:
        current = settings()
        if not current.on:
            return
        owner = session.scalar(
            sa.select(Conversation.assignee_id).where(
                Conversation.id == conversation_id,
                Conversation.status == "open",
                Conversation.assignee_id.is_not(None),
                _applies(current.numbers),
            )
        )
        if owner is None or can_keep(owner, current.cap):
            return  # done again, unassigned (the sweep's), not ours to give, or its owner keeps it
        person = next_person(current.cap)
        if person is None:
            owners.assign(conversation_id, None, None)
        else:
            _give(conversation_id, person)


def next_person(cap: int) -> int | None:
    """The on-shift, active person with the fewest open conversations (under `cap`); ties go in
    turn: whoever auto-assignment gave one to longest ago (or never) first."""
    load = _open_load()
    return db.session.scalar(
        sa.select(User.id)
        .where(User.on_shift.is_(True), User.disabled.is_(False), load < cap)
        .order_by(load, sa.func.coalesce(User.auto_assigned_seq, 0), User.id)
        .limit(1)
    )


def can_keep(owner: int, cap: int) -> bool:
    """Whether a person may keep a conversation that came back (counted among their open ones)."""
    row = db.session.execute(
        sa.select(User.on_shift, User.disabled, _open_load().label("load")).where(User.id == owner)
    ).first()
    return row is not None and row.on_shift and not row.disabled and row.load <= cap


def _give(conversation_id: int, person: int) -> None:
    owners.assign(conversation_id, person, None)  # audited as by "auto-assignment"
    db.session.execute(sa.update(User).where(User.id == person).values(auto_assigned_seq=change_number()))


def _open_load() -> sa.ScalarSelect:
    """A person's open conversations, for each row of `user`."""
    return (
        sa.select(sa.func.count())
        .select_from(Conversation)
        .where(Conversation.assignee_id == User.id, Conversation.status == "open", _awake())
        .correlate(User)
        .scalar_subquery()
    )


def _awake() -> sa.ColumnElement[bool]:
    """Not snoozed: a snoozed conversation counts towards nobody's cap and is given out once it wakes."""
    return sa.and_(Conversation.snoozed_until.is_(None), sa.not_(Conversation.snoozed_until_reply))


def _applies(numbers: Sequence[str]) -> sa.ColumnElement[bool]:
    """Conversations written to one of `numbers`; with none, every conversation."""
    if not numbers:
        return sa.true()
    return (
        sa.select(ConversationRecipient.id)
        .where(ConversationRecipient.conversation_id == Conversation.id, ConversationRecipient.recipient.in_(numbers))
        .exists()
    )


# Statements built once: ingest runs them in every batch.
@cache
def _on_value() -> sa.Select:
    return sa.select(Setting.value).where(Setting.name == ON)


@cache
def _waiting_sweep() -> sa.Select:
    return sa.select(Job.id).where(Job.state == "due", Job.kind == JOB).limit(1)


@cache
def _states() -> sa.Select:
    return sa.select(Conversation.id, Conversation.status, Conversation.assignee_id, Conversation.message_count).where(
        Conversation.id.in_(sa.bindparam("ids", expanding=True))
    )
