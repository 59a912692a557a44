"""Send later: a reply or a new message stored now and sent at a time its writer picked.

A scheduled message is a message row (direction "out") that waits:

    scheduled (with `send_at`, and its moment's `send_scheduled` job due then, in one commit) ->
        sent: at its time the job swaps the row for a reply, `queued`, at the end of the thread,
              and the reply's own send job takes over (app/replies/__init__.py: once, never twice,
              `unconfirmed` after a crash mid-send) |
        held: the customer wrote after it was scheduled (or last edited): not sent; its writer is
              notified, and a person sends it now or cancels it |
        missed: its time passed more than SCHEDULED_GRACE_HOURS ago (the app was down): the same |
        cancelled (by a person)

Every step is one conditional statement on `status = 'scheduled'` under the write lock, so of a
cancel (or an edit) and the job racing at the due time exactly one wins: a cancel that answered
"cancelled" is never followed by a send, and a cancel after the job took it says it is on its way.
There is one job per moment (its key): the first message scheduled for a moment adds it, and it
releases the messages still scheduled for that moment BATCH at a time, each batch's replies' sends
taken before the next batch (it runs again, due after them), so the sends start with the first
batch instead of after the last. An edit of the time adds (or finds) the new moment's job; the
old one no longer finds the message. Waiting rows count in their conversation's
`scheduled_count` (the list's clock) and are not part of the thread's messages
(app/inbox/queries.py): the thread shows them after its newest
message. Their text is not searchable until sent (`folded_text` empty).
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from app import audit, clock, jobs, notifications, team
from app.db.folding import clean_text
from app.db.models import ApiToken, Conversation, Message, User
from app.db.unit_of_work import change_number, rows_matched, write_transaction
from app.extensions import db

log = logging.getLogger(__name__)

SEND_SCHEDULED = "send_scheduled"
WAITING = ("scheduled", "held", "missed")  # counted in scheduled_count; a person can still act
STATES = (*WAITING, "cancelled")  # rows that are not (yet) messages of the thread
PRESETS = ("in an hour", "tomorrow", "next Monday")
LONGEST_AHEAD = timedelta(days=366)
EARLIEST_AHEAD = timedelta(minutes=1)
# Messages a moment's job swaps for replies in one run (one write transaction): their sends are
# taken before it runs again for the next ones, and the write lock is held briefly.
BATCH = 50


class ScheduleRefused(ValueError):
    """Why a time (or a change) can't be taken, for people."""


@dataclass(frozen=True)
class Waiting:
    """A scheduled message as the thread shows it."""

    id: int
    status: str
    send_at: datetime
    text: str
    author_id: int | None
    author: str | None
    channel: str

    @property
    def local_send_at(self) -> datetime:
        return team.local(self.send_at)


def presets(now: datetime | None = None) -> dict[str, datetime]:
    """The send-later choices: in an hour, tomorrow 09:00, next Monday 09:00 (the team's zone)."""
    offered = team.presets(now or clock.now())
    return {name: offered[name].replace(microsecond=0) for name in PRESETS}


def parse_when(choice: str, custom: str, now: datetime | None = None) -> datetime:
    """A form's choice (a preset's name, or "custom" with a datetime-local value in the team's
    zone) as naive UTC; ScheduleRefused for a time that is not ahead, or too far ahead."""
    now = now or clock.now()
    offered = presets(now)
    if choice in offered:
        return offered[choice]
    if choice != "custom":
        raise ScheduleRefused("Pick when to send it.")
    try:
        local = datetime.fromisoformat(custom.strip())
    except ValueError:
        raise ScheduleRefused("Give a date and time to send it at (2026-03-02 09:00).") from None
    moment = team.to_utc(local.replace(tzinfo=None, second=0, microsecond=0))
    if moment < now + EARLIEST_AHEAD:
        raise ScheduleRefused("That time has passed: pick a later one.")
    if moment > now + LONGEST_AHEAD:
        raise ScheduleRefused("Messages can be scheduled up to a year ahead.")
    return moment


def at_key(moment: datetime) -> int:
    """A send time as the job's payload holds it (ids only: whole seconds since the epoch)."""
    return int(moment.replace(tzinfo=UTC).timestamp())


def enqueue_moment(send_at: datetime) -> None:
    """The one job that sends every message scheduled for `send_at`, due then (added once, in
    the caller's write transaction: the first message scheduled for a moment adds it)."""
    at = at_key(send_at)
    jobs.enqueue_once(SEND_SCHEDULED, {"at": at}, key=f"{SEND_SCHEDULED}:{at}", due_at=send_at)


def insert_scheduled(
    connection: sa.Connection,
    conversation_id: int,
    recipient: str,
    text: str,
    legs: list[dict],
    author_id: int | None,
    msg_id: str,
    send_at: datetime,
    api_token_id: int | None = None,
) -> int:
    """Store a message to send at `send_at` and its job; its id. In the caller's write transaction
    (the caller audits it). It is not the conversation's newest message until it is sent."""
    now, change = clock.now(), change_number()
    send_at = send_at.replace(microsecond=0)
    scheduled_id = connection.execute(
        sa.insert(Message)
        .values(
            conversation_id=conversation_id,
            msg_id=msg_id,
            channel=legs[0]["channel"],
            sender=legs[0]["sender"] or "",
            recipient=recipient,
            text=text,
            sent_at=send_at,
            folded_text="",  # not searchable until sent
            received_at=now,  # when it was written (or last edited): the held rule compares with it
            legs=legs,
            raw_body=b"",
            change_seq=change,
            direction="out",
            author_id=author_id,
            api_token_id=api_token_id,
            status="scheduled",
            send_at=send_at,
        )
        .returning(Message.id)
    ).scalar_one()
    connection.execute(
        sa.update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(scheduled_count=Conversation.scheduled_count + 1, change_seq=change)
    )
    enqueue_moment(send_at)
    return scheduled_id


def waiting_in(conversation_id: int) -> list[Waiting]:
    """A conversation's scheduled messages that wait (scheduled, held, missed), soonest first."""
    rows = db.session.execute(
        sa.select(
            Message.id,
            Message.status,
            Message.send_at,
            Message.text,
            Message.author_id,
            User.username,
            Message.channel,
            ApiToken.name.label("token_name"),
        )
        .outerjoin(User, User.id == Message.author_id)
        .outerjoin(ApiToken, ApiToken.id == Message.api_token_id)
        .where(
            Message.conversation_id == conversation_id,
            Message.send_at.is_not(None),
            Message.status.in_(WAITING),
        )
        .order_by(Message.send_at, Message.id)
    ).all()
    return [
        Waiting(
            row.id,
            row.status or "",
            row.send_at or datetime.min,
            row.text,
            row.author_id,
            row.username or (f"API: {row.token_name}" if row.token_name else None),
            row.channel,
        )
        for row in rows
    ]


def one(conversation_id: int, message_id: int) -> Waiting | None:
    return next((w for w in waiting_in(conversation_id) if w.id == message_id), None)


def _waiting(conversation_id: int, message_id: int, statuses=WAITING):
    return sa.and_(
        Message.id == message_id,
        Message.conversation_id == conversation_id,
        Message.send_at.is_not(None),
        Message.status.in_(statuses),
    )


def edit(conversation_id: int, message_id: int, text: str, send_at: datetime) -> bool:
    """Change a waiting message's text and time (a held or missed one is scheduled again):
    one conditional UPDATE; False when it is no longer waiting (sent, on its way, cancelled)."""
    text = clean_text(text).replace("\r\n", "\n")  # NUL and lone surrogates: storable
    if not text.strip():
        raise ScheduleRefused("Type the message first.")
    from app.replies import sms_length

    if len(text) > sms_length.MAX_TEXT:
        raise ScheduleRefused(f"A message can be at most {sms_length.MAX_TEXT} characters.")
    send_at = send_at.replace(microsecond=0)
    with write_transaction() as session:
        change = change_number()
        was = session.execute(
            sa.select(Message.send_at, Message.status).where(_waiting(conversation_id, message_id))
        ).first()
        if was is None:
            return False
        session.execute(
            sa.update(Message)
            .where(_waiting(conversation_id, message_id))
            .values(
                text=text,
                send_at=send_at,
                sent_at=send_at,
                received_at=clock.now(),
                status="scheduled",
                problem=None,
                change_seq=change,
            )
        )
        _touch(session.connection(), conversation_id, change)
        enqueue_moment(send_at)
        audit.record(
            "scheduled_edited",
            {"conversation": conversation_id, "scheduled": message_id, "send_at": send_at, "was": was.send_at}
            | ({"was_status": was.status} if was.status != "scheduled" else {}),
        )
    return True


def cancel(conversation_id: int, message_id: int) -> bool:
    """Cancel a waiting message: one conditional UPDATE; False when it is no longer waiting (the
    job took it: it is on its way, or sent)."""
    with write_transaction() as session:
        change = change_number()
        cancelled = rows_matched(
            session.execute(
                sa.update(Message)
                .where(_waiting(conversation_id, message_id))
                .values(status="cancelled", change_seq=change)
            )
        )
        if not cancelled:
            return False
        _counted(session.connection(), conversation_id, -1, change)
        audit.record("scheduled_cancelled", {"conversation": conversation_id, "scheduled": message_id})
    return True


def send_now(conversation_id: int, message_id: int) -> int | None:
    """A person sends a held or missed message (or a scheduled one early) now: it becomes a reply
    at the end of the thread; its id, or None when it is no longer waiting."""
    with write_transaction() as session:
        reply_id = _release(session.connection(), conversation_id, message_id, WAITING)
        if reply_id is not None:
            audit.record(
                "scheduled_sent",
                {"conversation": conversation_id, "scheduled": message_id, "reply": reply_id, "by": "user"},
            )
    return reply_id


def _release(connection: sa.Connection, conversation_id: int, message_id: int, statuses) -> int | None:
    """Swap a waiting row for a queued reply at the end of the thread (one conditional DELETE,
    then the reply's INSERT and its send job): the thread is in the order messages were added,
    so the message takes its place by the time it is sent. None when it no longer waits."""
    from app import replies  # here: app.replies imports this module

    taken = connection.execute(
        sa.delete(Message)
        .where(_waiting(conversation_id, message_id, statuses))
        .returning(
            Message.recipient,
            Message.text,
            Message.legs,
            Message.author_id,
            Message.msg_id,
            Message.send_at,
            Message.api_token_id,
        )
    ).first()
    if taken is None:
        return None
    change = change_number()
    _counted(connection, conversation_id, -1, change)
    return replies.insert_reply(
        connection,
        conversation_id,
        taken.recipient,
        taken.text,
        taken.legs,
        taken.author_id,
        taken.msg_id,
        send_at=taken.send_at,
        api_token_id=taken.api_token_id,
    )


def _touch(connection: sa.Connection, conversation_id: int, change: int) -> None:
    connection.execute(sa.update(Conversation).where(Conversation.id == conversation_id).values(change_seq=change))


def _counted(connection: sa.Connection, conversation_id: int, by: int, change: int) -> None:
    connection.execute(
        sa.update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(scheduled_count=Conversation.scheduled_count + by, change_seq=change)
    )


def _set_waiting_status(connection: sa.Connection, message_id: int, send_at: datetime, status: str, problem: str):
    return connection.execute(
        sa.update(Message)
        .where(Message.id == message_id, Message.status == "scheduled", Message.send_at == send_at)
        .values(status=status, problem=problem, change_seq=change_number())
        .returning(Message.conversation_id, Message.author_id)
    ).first()


@jobs.kind(SEND_SCHEDULED)
def send_scheduled_job(payload: dict, attempt: "jobs.Attempt") -> None:
    """At a moment: the first BATCH messages still scheduled for it are sent (as replies), or
    held, or marked missed, in one write transaction; with more left, the same transaction adds
    the job again, due now, after the sends it just queued (runners take due jobs oldest due
    first), so the replies go out while the rest are released. Runs again harmlessly: every
    outcome is conditional on the row still waiting for this time. (A job enqueued before there
    was one per moment names its one message.)"""
    at = payload["at"]
    moment = datetime.fromtimestamp(at, UTC).replace(tzinfo=None)
    query = sa.select(Message.id).where(Message.send_at == moment, Message.status == "scheduled")
    if "message" in payload:
        query = query.where(Message.id == payload["message"])
    grace = timedelta(hours=current_app.config["SCHEDULED_GRACE_HOURS"])
    with write_transaction() as session:
        connection = session.connection()
        waiting = list(connection.scalars(query.order_by(Message.id).limit(BATCH + 1)))
        for message_id in waiting[:BATCH]:
            _send_one(connection, message_id, at, grace)
        if len(waiting) > BATCH:
            jobs.enqueue(SEND_SCHEDULED, {"at": at}, key=f"{SEND_SCHEDULED}:{at}")
    return None


def _send_one(connection: sa.Connection, message_id: int, at: int, grace: timedelta) -> None:
    """Send, hold or mark missed one message scheduled for `at`, in the caller's write transaction."""
    row = connection.execute(
        sa.select(Message.conversation_id, Message.send_at, Message.received_at, Message.status).where(
            Message.id == message_id
        )
    ).first()
    if row is None or row.status != "scheduled" or row.send_at is None or at_key(row.send_at) != at:
        return  # sent, cancelled, or its time changed (the new time's job has it)
    conversation = connection.execute(
        sa.select(Conversation.last_inbound_at).where(Conversation.id == row.conversation_id)
    ).first()
    now = clock.now()
    outcome, problem = None, ""
    if now - row.send_at > grace:
        outcome = "missed"
        problem = f"not sent: the app was not running at its time (more than {_hours(grace)} late)"
    elif conversation is not None and conversation.last_inbound_at and conversation.last_inbound_at > row.received_at:
        outcome = "held"
        problem = "not sent: the customer wrote after it was scheduled"
    if outcome is not None:
        marked = _set_waiting_status(connection, message_id, row.send_at, outcome, problem)
        if marked is None:
            return
        _touch(connection, marked.conversation_id, change_number())
        if marked.author_id is not None:
            notifications.add_for_writer(marked.conversation_id, marked.author_id, outcome)
        audit.record(
            f"scheduled_{outcome}",
            {"conversation": marked.conversation_id, "scheduled": message_id, "send_at": row.send_at},
            username=None,
            address=None,
        )
        log.info("scheduled message %d %s", message_id, outcome)
        return
    reply_id = _release(connection, row.conversation_id, message_id, ("scheduled",))
    if reply_id is not None:
        audit.record(
            "scheduled_sent",
            {"conversation": row.conversation_id, "scheduled": message_id, "reply": reply_id, "by": "schedule"},
            username=None,
            address=None,
        )


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} hour{'s' if hours != 1 else ''}"
