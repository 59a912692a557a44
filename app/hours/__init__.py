"""Business hours and the away reply (off by default).

The team's weekly hours are wall times in the team's zone (app/team), with closed days
(holidays); one set for all our numbers, and a number may have hours of its own. While the away
reply is on, a customer who writes outside the hours of the number they wrote to gets the away
text, at most once per conversation per window (24 hours unless set otherwise):

- ingest (`after_ingest`, in the callback's transaction) picks the messages that qualify: not a
  STOP or START keyword, from a sender that can receive replies (no sender name, no short code),
  to a conversation that is not opted out, outside the hours. For each such conversation it
  commits ONE job with the newest such message: a callback posted again is a duplicate, stores
  nothing, and so enqueues nothing;
- the job (`send_away`) claims the conversation's window with a conditional UPDATE of
  `away_sent_at` and stores the away reply through the reply path (`replies.queue_automatic`),
  as `via = "away"`, keyed by the inbound message (`away-<id>`): a job run again finds it and
  does nothing. The reply has no author, takes no ownership, and is shown as "Away reply".
"""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa

from app import audit, clock, jobs, replies, team
from app.contacts import optouts
from app.db import settings
from app.db.models import BusinessHours, Conversation, ConversationRecipient, Message, Setting
from app.db.unit_of_work import rows_matched, write_transaction
from app.extensions import db
from app.replies import reply_box

ON = "away_reply"  # "1" or "0" (the default)
WINDOW = "away_window_hours"
DEFAULT_WINDOW_HOURS = 24
MOST_WINDOW_HOURS = 24 * 365
ALL = ""  # the `recipient` of the hours every number without its own keeps
JOB = "away_reply"
VIA = "away"
AUTHOR = "Away reply"  # how the thread and the export name it
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DEFAULT_WEEKLY: tuple[tuple[tuple[time, time], ...], ...] = (((time(9), time(17)),),) * 5 + ((), ())
DEFAULT_TEXT = "Hi {name}, thank you for your message. We are closed now and will answer when we open."
MOST_TEXT = 1000
MOST_CLOSED_DAYS = 1000
CLOSED_NAME_CHARS = 80
NAME_SLOT = re.compile(r" ?\{name\}")


class HoursRefused(ValueError):
    """Why the hours or the away reply can't be saved, for people."""


Interval = tuple[time, time]


@dataclass(frozen=True)
class Hours:
    """Weekly open intervals (Monday first) in the team's zone, and the days it stays closed."""

    weekly: tuple[tuple[Interval, ...], ...] = DEFAULT_WEEKLY
    closed: dict[date, str] = field(default_factory=dict)
    away_text: str | None = None  # a number's own away text; None: the shared one
    own: bool = False  # a number's own hours (not the shared ones)


@dataclass(frozen=True)
class Away:
    on: bool = False
    window_hours: int = DEFAULT_WINDOW_HOURS
    text: str = DEFAULT_TEXT


# --- the rule ------------------------------------------------------------------------------


def open_at(hours: Hours, local: datetime) -> bool:
    """Whether `local` (a wall time in the team's zone) is inside the hours: not on a closed day,
    and within one of its weekday's intervals, opening time included, closing time not. A close
    at 00:00 is the midnight that ends the day."""
    if local.date() in hours.closed:
        return False
    moment = local.time().replace(tzinfo=None)
    return any(
        opens <= moment and (closes == time(0) or moment < closes) for opens, closes in hours.weekly[local.weekday()]
    )


def is_open(moment_utc: datetime, recipient: str | None = None) -> bool:
    """Whether the number `recipient` (ours; None: any) is open at `moment_utc` (naive UTC)."""
    return open_at(hours_for(recipient), team.local(moment_utc))


def outside_hours_now() -> bool:
    """What the list says ("Outside hours"): the away reply is on and the shared hours are closed now."""
    return away_settings().on and not is_open(clock.now())


# --- reading and saving --------------------------------------------------------------------


def _interval(pair: Sequence[str]) -> Interval:
    return time.fromisoformat(pair[0]), time.fromisoformat(pair[1])


def _from_row(row: BusinessHours | None) -> Hours:
    if row is None:
        return Hours()
    weekly = tuple(tuple(_interval(pair) for pair in day) for day in row.weekly)
    closed = {date.fromisoformat(day): name for day, name in row.closed.items()}
    return Hours(weekly, closed, row.away_text, own=row.recipient != ALL)


def hours_for(recipient: str | None = None) -> Hours:
    """The hours of one of our numbers: its own, else the shared ones (the defaults, Monday to
    Friday 09:00 to 17:00, until an admin saves them)."""
    rows = {
        row.recipient: row
        for row in db.session.scalars(
            sa.select(BusinessHours).where(BusinessHours.recipient.in_({ALL, recipient or ALL}))
        )
    }
    return _from_row(rows.get(recipient or ALL) or rows.get(ALL))


def away_settings() -> Away:
    values = dict(
        db.session.execute(sa.select(Setting.name, Setting.value).where(Setting.name.in_((ON, WINDOW)))).all()
    )
    window = values.get(WINDOW, "")
    shared = db.session.get(BusinessHours, ALL)
    return Away(
        on=values.get(ON) == "1",
        window_hours=int(window) if window.isdigit() else DEFAULT_WINDOW_HOURS,
        text=(shared.away_text if shared is not None and shared.away_text else DEFAULT_TEXT),
    )


def our_numbers() -> list[str]:
    """Our numbers customers wrote to, and any with hours of their own, sorted."""
    written = db.session.scalars(sa.select(ConversationRecipient.recipient).distinct()).all()
    own = db.session.scalars(sa.select(BusinessHours.recipient).where(BusinessHours.recipient != ALL)).all()
    return sorted({number for number in (*written, *own) if number.strip()})


def parse_weekly(opens: Sequence[str], closes: Sequence[str]) -> tuple[tuple[Interval, ...], ...]:
    """Seven days' "HH:MM" pairs from a form; a day with both empty is closed."""
    if len(opens) != 7 or len(closes) != 7:
        raise HoursRefused("Give an opening and a closing time for each day, or neither.")
    weekly: list[tuple[Interval, ...]] = []
    for day, start, end in zip(DAYS, opens, closes, strict=True):
        start, end = start.strip(), end.strip()
        if not start and not end:
            weekly.append(())
            continue
        if not start or not end:
            raise HoursRefused(f"{day}: give both an opening and a closing time, or neither (closed).")
        try:
            pair = _interval((start, end))
        except ValueError:
            raise HoursRefused(f"{day}: times are hours and minutes, such as 09:00.") from None
        if pair[1] != time(0) and pair[1] <= pair[0]:
            raise HoursRefused(f"{day}: the closing time must be after the opening time (00:00 is midnight).")
        weekly.append((pair,))
    return tuple(weekly)


def parse_closed(text: str) -> dict[date, str]:
    """Closed days from a form, one a line: `2026-12-24 Christmas Eve` (the name is optional)."""
    closed: dict[date, str] = {}
    for line in text.splitlines():
        day, _, name = line.strip().partition(" ")
        if not day:
            continue
        try:
            closed[date.fromisoformat(day)] = name.strip()[:CLOSED_NAME_CHARS]
        except ValueError:
            raise HoursRefused(f"“{day[:20]}” is not a date: write one day a line, as 2026-12-24.") from None
    if len(closed) > MOST_CLOSED_DAYS:
        raise HoursRefused(f"At most {MOST_CLOSED_DAYS:,} closed days.")
    return dict(sorted(closed.items()))


def closed_text(hours: Hours) -> str:
    """The closed days as the form shows them."""
    return "\n".join(f"{day.isoformat()} {name}".strip() for day, name in hours.closed.items())


def save_hours(
    recipient: str, weekly: tuple[tuple[Interval, ...], ...], closed: dict[date, str], away_text: str
) -> None:
    """Save the hours of one number (or `ALL`), with its away text, audited. A number's empty
    away text falls back to the shared one; the shared one empty is the default text."""
    away_text = away_text.replace("\r\n", "\n").strip()
    if len(away_text) > MOST_TEXT:
        raise HoursRefused(f"The away text can be at most {MOST_TEXT} characters.")
    if recipient != ALL and recipient not in our_numbers():
        raise HoursRefused("That is not one of the numbers customers wrote to.")
    values = {
        "weekly": [[[opens.strftime("%H:%M"), closes.strftime("%H:%M")] for opens, closes in day] for day in weekly],
        "closed": {day.isoformat(): name for day, name in closed.items()},
        "away_text": away_text or None,
    }
    with write_transaction() as session:
        row = session.get(BusinessHours, recipient)
        if row is None:
            session.add(BusinessHours(recipient=recipient, **values))
        else:
            for name, value in values.items():
                setattr(row, name, value)
        audit.record(
            "settings_changed",
            {
                "business_hours": recipient or "all numbers",
                "weekly": json.dumps(values["weekly"]),
                "closed_days": len(closed),
            },
        )


def use_shared_hours(recipient: str) -> bool:
    """A number goes back to the shared hours; False when it had none of its own."""
    if recipient == ALL:
        return False
    with write_transaction() as session:
        deleted = rows_matched(session.execute(sa.delete(BusinessHours).where(BusinessHours.recipient == recipient)))
        if deleted:
            audit.record("settings_changed", {"business_hours": recipient, "now": "the shared hours"})
    return bool(deleted)


def set_away(on: bool, window_hours: int) -> None:
    """Turn the away reply on or off and set its window, audited."""
    if not 1 <= window_hours <= MOST_WINDOW_HOURS:
        raise HoursRefused(f"The window is a number of hours from 1 to {MOST_WINDOW_HOURS:,}.")
    wanted = {ON: "1" if on else "0", WINDOW: str(window_hours)}
    with write_transaction():
        before = away_settings()
        if (before.on, before.window_hours) == (on, window_hours):
            return
        for name, value in wanted.items():
            settings.save(name, value)
        audit.record("settings_changed", {"away_reply": "on" if on else "off", "away_window_hours": window_hours})


# --- ingest's part and the job ----------------------------------------------------------


@dataclass(frozen=True)
class Arrived:
    """A new inbound message, as ingest knows it."""

    conversation_id: int
    message_id: int
    sender: str
    recipient: str | None
    text: str


def after_ingest(connection: sa.Connection, arrived: Sequence[Arrived], at: datetime) -> None:
    """Ingest's part, in its transaction after opt-outs are recorded: one `away_reply` job per
    conversation whose newest qualifying message came outside the hours. Off, this is the one
    row it reads."""
    if connection.scalar(sa.select(Setting.value).where(Setting.name == ON)) != "1":
        return
    candidates = [
        message
        for message in arrived
        if optouts.keyword(message.text) is None and reply_box.can_receive_replies(message.sender)
    ]
    if not candidates:
        return
    window = timedelta(hours=away_settings().window_hours)
    answerable = set(
        connection.scalars(
            sa.select(Conversation.id).where(
                Conversation.id.in_({message.conversation_id for message in candidates}),
                ~Conversation.opted_out,
                Conversation.away_sent_at.is_(None) | (Conversation.away_sent_at <= at - window),
            )
        )
    )
    local = team.local(at)
    hours: dict[str | None, Hours] = {}
    newest: dict[int, int] = {}
    for message in candidates:
        if message.conversation_id not in answerable:
            continue
        if message.recipient not in hours:
            hours[message.recipient] = hours_for(message.recipient)
        if not open_at(hours[message.recipient], local):
            newest[message.conversation_id] = message.message_id
    for message_id in newest.values():
        jobs.enqueue(JOB, {"message": message_id})


class _NotSent(Exception):
    """The away reply could not be stored: the window's claim is rolled back with it."""


@jobs.kind(JOB)
def away_reply_job(payload: dict, attempt: jobs.Attempt) -> None:
    send_away(payload["message"])


def send_away(message_id: int) -> int | None:
    """Store the away reply to one inbound message (its send job commits with it); its id, or
    None when nothing is to be sent: the away reply is off now, it went to this conversation
    within the window, this message has one already, or the conversation can't be answered."""
    try:
        with write_transaction() as session:
            connection = session.connection()
            inbound = connection.execute(
                sa.select(Message.conversation_id, Message.recipient).where(
                    Message.id == message_id, Message.direction == "in"
                )
            ).first()
            away = away_settings()
            msg_id = f"away-{message_id}"
            if inbound is None or not away.on:
                return None
            if connection.scalar(sa.select(Message.id).where(Message.msg_id == msg_id)) is not None:
                return None  # this job ran before
            now = clock.now()
            claimed = rows_matched(
                connection.execute(
                    sa.update(Conversation)
                    .where(
                        Conversation.id == inbound.conversation_id,
                        Conversation.away_sent_at.is_(None)
                        | (Conversation.away_sent_at <= now - timedelta(hours=away.window_hours)),
                    )
                    .values(away_sent_at=now)
                )
            )
            if not claimed:
                return None
            conversation = session.get_one(Conversation, inbound.conversation_id, populate_existing=True)
            own = hours_for(inbound.recipient).away_text
            text = personal(own or away.text, conversation.contact_name)
            reply_id = replies.queue_automatic(conversation, text, VIA, msg_id, inbound.recipient)
            if reply_id is None:
                raise _NotSent()
            return reply_id
    except _NotSent:
        return None


def personal(text: str, name: str | None) -> str:
    """The away text with `{name}` as the contact's name; without a name, `{name}` and the space
    before it go."""
    return NAME_SLOT.sub(lambda slot: slot.group(0).replace("{name}", name) if name else "", text)
