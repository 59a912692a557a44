"""Replies: stored before they are sent, sent once, never lost.

A reply moves through states, each committed before the next step, and no network call is
ever made inside a database transaction (SQLite has one writer; a slow API must not hold up
callbacks):

    queued (stored, with who wrote it, and its `send_reply` job in the same commit) ->
        sending (claimed by one job runner) ->
        sent (with Messente's ids) | failed (with the API's own words; Retry) |
        unconfirmed (timed out after the request may have reached Messente; never resent
        automatically, a person may resend) |
        retrying (no connection could be made, or 429: nothing reached Messente; the job runs
        again with backoff for up to REPLY_RETRY_SECONDS, then the reply fails)

Sending is a job (app/jobs/): the runner in every server process (or a `flask worker`) claims it
and calls `send_reply_job`, which runs at most once: a runner that dies mid-send leaves the
reply `unconfirmed` (`abandon_send`), never sent twice. The reply's own claim is one UPDATE ...
WHERE status IN ('queued', 'retrying') under the write lock, so even two jobs for one reply send
it once. Calls to Messente take turns from one rate budget shared by every process
(app/jobs/rate_budget.py). Keeping the blacklist in step with opt-outs is a job too
(app/replies/blacklist.py), and dropping stale delivery reports a periodic one (delivery.py).
"""

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from app import audit, clock, jobs, webhooks
from app.contacts import owners
from app.db import folding
from app.db.folding import clean_text
from app.db.models import DELIVERY_FAILURES, PREVIEW_LENGTH, ApiToken, Conversation, Message, User
from app.db.unit_of_work import change_number, rows_matched, write_transaction
from app.extensions import db
from app.jobs import rate_budget
from app.replies import (
    blacklist,  # noqa: F401 (registers its kind of job)
    delivery,
    messente,
    reply_box,
    scheduled,  # registers its kind of job
    sms_length,
)
from app.tallies import events as report_events

log = logging.getLogger(__name__)

# Beyond the client's own timeouts (and a turn of the rate budget): a send job holding its claim
# this long was left by a runner that died (or hangs), and its reply is shown `unconfirmed`.
STALE_MARGIN = timedelta(seconds=30)
SEND_REPLY = "send_reply"


class ReplyRefused(ValueError):
    """Why a reply can't be stored, for people. A reply sent from a plain form gets the thread
    page again, with `text` (what was typed) in the box and this beside it."""

    conversation: Conversation | None = None
    text: str | None = None


@dataclass(frozen=True)
class NewMessage:
    """A message that came after the newest one the writer had on screen."""

    id: int
    direction: str  # "in": the customer's; "out": a teammate's reply
    author: str | None  # the teammate who wrote it
    received_at: datetime
    preview: str


class ReplyHeld(ReplyRefused):
    """The send guard: something came in the conversation (the customer wrote, a teammate
    answered) after the newest message the writer had on screen, so the reply was not stored.
    The box comes back with the text, what is new (`newer`, oldest first, and how many `more`),
    and "Send anyway", which posts again as having seen up to `through`."""

    def __init__(self, newer: list[NewMessage], more: int) -> None:
        super().__init__("New since you started writing: your reply was not sent.")
        self.newer, self.more = newer, more
        self.through = max(message.id for message in newer)


HELD_SHOWN = 3  # the newest few: enough to see what changed, short enough to read before sending


def queue_reply(
    conversation: Conversation,
    text: str,
    route_value: str,
    sms_sender: str | None,
    author_id: int | None,
    key: str,
    seen_message_id: int | None = None,
    send_at: datetime | None = None,
    api_token_id: int | None = None,
) -> int:
    """Store a reply as `queued`, with its audit event, and return its id; the outbox sends it.
    With `send_at`, it is stored `scheduled` for then instead (app/replies/scheduled.py).
    Raises ReplyRefused, or ReplyHeld when a message from someone else (the customer, a teammate)
    is newer than `seen_message_id`, the newest one the writer had on screen: checked in the
    transaction that stores the reply, so of two people answering at once the second is held.
    Without `seen_message_id` (an older form, a script) nothing is checked.

    The same key again (a resubmitted form) returns the reply stored the first time.
    A reply sent through the API has `api_token_id` (its token) instead of an author, and never
    makes anyone the conversation's owner.
    """
    text = clean_text(text).replace("\r\n", "\n")  # NUL and lone surrogates: storable
    if not text.strip():
        raise ReplyRefused("Type a reply first.")
    if len(text) > sms_length.MAX_TEXT:
        raise ReplyRefused(f"A reply can be at most {sms_length.MAX_TEXT} characters.")
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", key or ""):
        raise ReplyRefused("This form is out of date: reload the page.")
    offered = reply_box.for_conversation(conversation)
    if not offered.can_reply:
        raise ReplyRefused(offered.note)
    legs = legs_for(offered, route_value, sms_sender)

    msg_id = f"reply-{key}"
    with write_transaction() as session:
        connection = session.connection()
        existing = connection.scalar(sa.select(Message.id).where(Message.msg_id == msg_id))
        if existing is not None:
            return existing
        if connection.scalar(sa.select(Conversation.opted_out).where(Conversation.id == conversation.id)):
            raise ReplyRefused("This customer opted out meanwhile: nothing was sent.")
        if seen_message_id is not None:
            newer, more = newer_than(connection, conversation.id, seen_message_id, author_id, api_token_id)
            if newer:
                raise ReplyHeld(newer, more)  # the transaction ends with nothing written
        if send_at is not None:
            reply_id = scheduled.insert_scheduled(
                connection,
                conversation.id,
                conversation.sender,
                text,
                legs,
                author_id,
                msg_id,
                send_at,
                api_token_id=api_token_id,
            )
            audit.record(
                "scheduled",
                {"conversation": conversation.id, "scheduled": reply_id, "send_at": send_at.replace(microsecond=0)},
            )
        else:
            reply_id = insert_reply(
                connection,
                conversation.id,
                conversation.sender,
                text,
                legs,
                author_id,
                msg_id,
                api_token_id=api_token_id,
            )
            audit.record("reply", {"conversation": conversation.id, "reply": reply_id})  # commits with the reply
        if author_id is not None:  # (a token owns nothing)
            owners.take_if_unassigned(conversation.id, author_id)  # ... and so does its new owner, if any
    return reply_id


def legs_for(offered: "reply_box.Composer", route_value: str, sms_sender: str | None) -> list[dict]:
    """The channel legs of the route picked among those offered, and our sender for each."""
    route = next((route for route in offered.routes if route.value == route_value), offered.routes[0])
    if "sms" in route.channels and not current_app.config["MESSENTE_SMS_SENDER"]:
        if sms_sender not in offered.sms_senders:
            sms_sender = offered.sms_senders[0]
    return [{"channel": channel, "sender": sender_for(channel, sms_sender)} for channel in route.channels]


def insert_reply(
    connection: sa.Connection,
    conversation_id: int,
    recipient: str,
    text: str,
    legs: list[dict],
    author_id: int | None,
    msg_id: str,
    send_at: datetime | None = None,
    via: str | None = None,
    api_token_id: int | None = None,
) -> int:
    """Store a reply `queued` as the conversation's newest message, with its send job; its id.
    In the caller's write transaction (the caller audits it). `send_at`: it was scheduled for then.
    `via`: an automatic reply ("away"), which leaves the list's preview on the customer's message."""
    now, change = clock.now(), change_number()
    reply_id = connection.execute(
        sa.insert(Message)
        .values(
            conversation_id=conversation_id,
            msg_id=msg_id,
            channel=legs[0]["channel"],
            sender=legs[0]["sender"] or "",
            recipient=recipient,
            text=text,
            sent_at=now,
            folded_text=folding.fold(text),
            received_at=now,
            legs=legs,
            raw_body=b"",
            change_seq=change,
            direction="out",
            author_id=author_id,
            api_token_id=api_token_id,
            status="queued",
            send_at=send_at,
            via=via,
        )
        .returning(Message.id)
    ).scalar_one()
    preview = {} if via else {"last_text": text[:PREVIEW_LENGTH], "last_direction": "out"}
    connection.execute(
        sa.update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(
            last_message_id=reply_id,
            last_sent_at=now,
            message_count=Conversation.message_count + 1,
            change_seq=change,
            **preview,
        )
    )
    jobs.enqueue(SEND_REPLY, {"reply": reply_id}, key=send_key(conversation_id))
    webhooks.message_event("message.created", reply_id)
    report_events.replies_written(connection, [(now, legs[0]["channel"], legs[0]["sender"] or "", author_id)])
    if author_id is not None and via is None and api_token_id is None:
        report_events.responded(connection, conversation_id, now, author_id)
    return reply_id


def queue_automatic(
    conversation: Conversation, text: str, via: str, msg_id: str, sms_sender: str | None = None
) -> int | None:
    """Store an automatic reply (`via`: "away", app/hours) as `queued`, with its send job, in the
    caller's write transaction; None when the conversation can't be answered (opted out, a sender
    name, no credentials). It has no author: it takes no ownership, and the send guard does not
    count it as news. The first route the reply box offers; SMS from `sms_sender` (the number the
    customer wrote to) where the box offers it. The conversation's preview stays the customer's
    message: an automatic reply is no answer."""
    offered = reply_box.for_conversation(conversation)
    if not offered.can_reply:
        return None
    legs = legs_for(offered, offered.routes[0].value, sms_sender)
    with write_transaction() as session:
        return insert_reply(
            session.connection(), conversation.id, conversation.sender, text, legs, None, msg_id, via=via
        )


def newer_than(
    connection: sa.Connection,
    conversation_id: int,
    seen_message_id: int,
    author_id: int | None,
    api_token_id: int | None = None,
) -> tuple[list[NewMessage], int]:
    """The newest few messages after `seen_message_id` that the writer (a person, or an API
    token) did not write themselves (oldest first), and how many more there are. Ids follow
    commit order (the write lock)."""
    own = (
        sa.and_(Message.author_id.is_not(None), Message.author_id == author_id)
        if author_id is not None
        else sa.and_(Message.api_token_id.is_not(None), Message.api_token_id == api_token_id)
    )
    others = sa.and_(
        Message.conversation_id == conversation_id,
        Message.id > seen_message_id,
        # One's own earlier replies are no news: only the customer's messages and teammates' replies.
        sa.or_(Message.direction != "out", sa.not_(own)),
        Message.direction != "note",  # notes are the team's asides (app/replies/notes.py), not answers
        # ... and no automatic reply (the away reply): it answers nobody's question.
        Message.via.is_(None),
    )
    # Who wrote a reply: a person, or an API token ("API: <name>").
    author = sa.func.coalesce(User.username, sa.literal("API: ", sa.String) + ApiToken.name).label("username")
    rows = connection.execute(
        sa.select(Message.id, Message.direction, author, Message.received_at, Message.text)
        .outerjoin(User, User.id == Message.author_id)
        .outerjoin(ApiToken, ApiToken.id == Message.api_token_id)
        .where(others)
        .order_by(Message.id.desc())
        .limit(HELD_SHOWN)
    ).all()
    if not rows:
        return [], 0
    more = 0
    if len(rows) == HELD_SHOWN:
        more = (connection.scalar(sa.select(sa.func.count()).select_from(Message).where(others)) or 0) - HELD_SHOWN
    newer = [
        NewMessage(row.id, row.direction, row.username, row.received_at, preview(row.text)) for row in reversed(rows)
    ]
    return newer, more


def preview(text: str, length: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def sender_for(channel: str, sms_sender: str | None) -> str | None:
    configured = current_app.config[f"MESSENTE_{channel.upper()}_SENDER"]
    return configured or (sms_sender if channel == "sms" else None)


def can_send_again(status: str | None, delivery: str | None) -> bool:
    """Not sent, not known to be sent, or sent and reported undelivered: a person may send again."""
    return status in ("failed", "unconfirmed") or (status == "sent" and delivery in DELIVERY_FAILURES)


def retry(conversation_id: int, reply_id: int) -> bool:
    """Queue a reply again (a person's decision): a new send job; False if it is not one to send again."""
    with write_transaction() as session:
        before = report_events.reply_state(session.connection(), reply_id)
        updated = rows_matched(
            session.execute(
                sa.update(Message)
                .where(
                    Message.id == reply_id,
                    Message.conversation_id == conversation_id,
                    Message.direction == "out",
                    Message.status.in_(["failed", "unconfirmed"])
                    | ((Message.status == "sent") & Message.delivery.in_(DELIVERY_FAILURES)),
                )
                .values(
                    status="queued",
                    problem=None,
                    delivery=None,
                    omnimessage_id=None,
                    claimed_at=None,
                    change_seq=change_number(),
                )
            )
        )
        if updated:
            report_events.reply_changed(session.connection(), before)
            session.execute(
                sa.update(Conversation).where(Conversation.id == conversation_id).values(change_seq=change_number())
            )
            jobs.enqueue(SEND_REPLY, {"reply": reply_id}, key=send_key(conversation_id))
            webhooks.message_event("message.updated", reply_id)
    return bool(updated)


def send_key(conversation_id: int) -> str:
    """A conversation's replies go out one at a time, in the order they were written."""
    return f"conversation:{conversation_id}"


def send_lease(config) -> timedelta:
    """How long a send may hold its job: past the client's timeouts, its runner is gone."""
    return timedelta(seconds=config["MESSENTE_CONNECT_TIMEOUT"] + config["MESSENTE_READ_TIMEOUT"]) + STALE_MARGIN


def abandon_send(payload: dict, reason: str) -> None:
    """A send job that ended without an outcome (its runner died, or it failed unexpectedly): a
    reply it may have sent is shown unconfirmed, one it never took is shown failed; never resent."""
    reply_id = payload["reply"]
    with write_transaction() as session:
        row = session.execute(sa.select(Message.status, Message.conversation_id).where(Message.id == reply_id)).first()
        if row is None or row.status not in ("sending", "queued", "retrying"):
            return
        status, problem = (
            ("unconfirmed", "the app stopped while sending: it may or may not have reached Messente")
            if row.status == "sending"
            else ("failed", f"not sent: {reason}")
        )
        before = report_events.reply_state(session.connection(), reply_id)
        session.execute(
            sa.update(Message)
            .where(Message.id == reply_id)
            .values(status=status, problem=problem[:500], change_seq=change_number())
        )
        report_events.reply_changed(session.connection(), before)
        touch_conversation(session.connection(), row.conversation_id)
        webhooks.message_event("message.updated", reply_id)


@jobs.kind(SEND_REPLY, at_most_once=True, lease=send_lease, on_abandon=abandon_send)
def send_reply_job(payload: dict, attempt: "jobs.Attempt") -> "jobs.Retry | None":
    client = messente.from_config(current_app.config)
    if client is None:
        record_unsent(
            payload["reply"],
            "Replies need Messente API credentials: set MESSENTE_API_USERNAME and MESSENTE_API_PASSWORD",
        )
        return None
    return send(payload["reply"], client, attempt)


def send(reply_id: int, client: "messente.Messente", attempt: "jobs.Attempt") -> "jobs.Retry | None":
    """Claim a queued reply, send it once, record the outcome. Only a send that cannot have reached
    Messente (no connection, 429) asks for another attempt, within REPLY_RETRY_SECONDS of the job's start."""
    config = current_app.config
    now = clock.now()
    with write_transaction() as session:
        connection = session.connection()
        claimed = connection.execute(
            sa.update(Message)
            .where(Message.id == reply_id, Message.status.in_(["queued", "retrying"]))
            .values(status="sending", claimed_at=now, change_seq=change_number())
            .returning(Message.conversation_id, Message.recipient, Message.text, Message.legs)
        ).first()
        if claimed is None:
            return None  # no longer waiting to be sent
        opted_out = connection.scalar(
            sa.select(Conversation.opted_out).where(Conversation.id == claimed.conversation_id)
        )
        touch_conversation(connection, claimed.conversation_id)
        webhooks.message_event("message.updated", reply_id)
    if opted_out:  # checked again just before the call: a STOP may have come meanwhile
        record(reply_id, claimed.conversation_id, "failed", problem="the customer opted out: not sent")
        return None

    legs = [messente.Leg(leg["channel"], claimed.text, leg["sender"]) for leg in claimed.legs]
    rate_budget.wait_turn(rate_budget.MESSENTE, config["MESSENTE_REQUESTS_PER_SECOND"])
    outcome = client.send(claimed.recipient, legs, dlr_url=delivery_url())
    if isinstance(outcome, messente.Sent):
        record(reply_id, claimed.conversation_id, "sent", omnimessage_id=outcome.omnimessage_id)
    elif isinstance(outcome, messente.Unconfirmed):
        record(reply_id, claimed.conversation_id, "unconfirmed", problem=outcome.reason)
    elif never_reached(outcome) and (
        clock.now() + jobs.backoff(attempt.number)
        <= attempt.created_at + timedelta(seconds=config["REPLY_RETRY_SECONDS"])
    ):
        record(reply_id, claimed.conversation_id, "retrying", problem=outcome.reason)
        return jobs.Retry(jobs.backoff(attempt.number), outcome.reason)
    else:
        record(reply_id, claimed.conversation_id, "failed", problem=outcome.reason)
    return None


def never_reached(outcome: "messente.Refused") -> bool:
    """No connection was made, or Messente turned the call away unread (429): sending again
    cannot send twice. A 5xx may have been sent: never."""
    return outcome.retryable and outcome.status in (None, 429)


def record_unsent(reply_id: int, problem: str) -> None:
    with write_transaction() as session:
        before = report_events.reply_state(session.connection(), reply_id)
        conversation_id = session.scalar(
            sa.update(Message)
            .where(Message.id == reply_id, Message.status.in_(["queued", "retrying"]))
            .values(status="failed", problem=problem, change_seq=change_number())
            .returning(Message.conversation_id)
        )
        if conversation_id is not None:
            report_events.reply_changed(session.connection(), before)
            touch_conversation(session.connection(), conversation_id)
            webhooks.message_event("message.updated", reply_id)


def record(
    reply_id: int, conversation_id: int, status: str, problem: str | None = None, omnimessage_id: str | None = None
) -> str:
    """A send's outcome (or "retrying"), on the reply and its conversation."""
    with write_transaction() as session:
        connection = session.connection()
        before = report_events.reply_state(connection, reply_id)
        connection.execute(
            sa.update(Message)
            .where(Message.id == reply_id)
            .values(
                status=status,
                problem=problem and problem[:500],
                omnimessage_id=omnimessage_id,
                change_seq=change_number(),
            )
        )
        report_events.reply_changed(connection, before)  # before the reports that came early move it on
        if omnimessage_id:
            delivery.apply_unmatched(connection, reply_id, omnimessage_id)
        touch_conversation(connection, conversation_id)
        webhooks.message_event("message.updated", reply_id)
    log.info("reply %d %s%s", reply_id, status, f": {problem}" if problem else "")
    return status


def touch_conversation(connection: sa.Connection, conversation_id: int) -> None:
    connection.execute(
        sa.update(Conversation).where(Conversation.id == conversation_id).values(change_seq=change_number())
    )


def delivery_url() -> str | None:
    """Where Messente posts delivery reports for our replies; without PUBLIC_URL, the API key's
    default webhook in Messente's dashboard applies."""
    base = current_app.config["PUBLIC_URL"]
    return f"{base.rstrip('/')}/callbacks/delivery" if base else None


def newest_sent_reply() -> sa.Row[str | None, str | None, str] | None:
    """(omnimessage id, customer, channel) of the newest reply Messente accepted."""
    return db.session.execute(
        sa.select(Message.omnimessage_id, Message.recipient, Message.channel)
        .where(Message.direction == "out", Message.omnimessage_id.is_not(None))
        .order_by(Message.id.desc())
        .limit(1)
    ).first()
