"""Replies: stored before they are sent, sent once, never lost.

A reply moves through states, each committed before the next step, and no network call is
ever made inside a database transaction (SQLite has one writer; a slow API must not hold up
callbacks):

    queued (stored, with who wrote it) -> sending (claimed by one process) ->
        sent (with Messente's ids) | failed (with the API's own words; Retry) |
        unconfirmed (timed out after the request may have reached Messente; never resent
        automatically, a person may resend)

Sending is done by each worker process's outbox threads (`Outbox`), started with the worker's
first request. The outbox also sweeps every few seconds: it sends replies left `queued` (by a
process that died, say), marks replies left `sending` by a dead process `unconfirmed`, keeps
the Messente blacklist in step with opt-outs when asked to, and drops stale delivery reports.
A claim is one UPDATE ... WHERE status = 'queued' under the write lock: whichever process
runs it first sends, every other finds nothing to claim.
"""
import json
import logging
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import Flask, current_app

from . import clock, delivery, messente, numbers, retention, search
from .extensions import db
from .models import DELIVERY_FAILURES, PREVIEW_LENGTH, Conversation, Message
from .unit_of_work import change_number, write_transaction

log = logging.getLogger(__name__)

MAX_TEXT = 1600  # ten SMS parts and more: longer is more likely a paste gone wrong
WHATSAPP_WINDOW = timedelta(hours=24)
# Beyond the client's own timeouts: a reply still `sending` this long after its claim was left
# by a process that died (or hangs) and is shown `unconfirmed`.
STALE_MARGIN = timedelta(seconds=30)
SWEEP_SECONDS = 5.0
PHONE_NUMBER = re.compile(r"\+?[0-9]{7,15}")
NOISE = re.compile(r"[\s\-().]")


class ReplyRefused(ValueError):
    """Why a reply can't be stored, for people."""


@dataclass(frozen=True)
class Route:
    """A way to send: one channel, or one with SMS as the fallback (Omnichannel's messages[])."""
    value: str
    label: str
    channels: tuple[str, ...]


@dataclass
class Composer:
    """What the reply box offers for one conversation, and why not when it offers nothing."""
    can_reply: bool
    note: str
    routes: list[Route]
    sms_senders: list[str]  # our numbers the customer wrote to, when the person picks one
    key: str  # one-time: a resubmitted form or a double click stores one reply


def can_receive_replies(sender: str) -> bool:
    """A phone number can; an alphanumeric sender (`MyShop`) or a short code (`1234`) cannot."""
    return bool(PHONE_NUMBER.fullmatch(NOISE.sub("", sender)))


def composer(conversation: Conversation) -> Composer:
    config = current_app.config
    key = secrets.token_urlsafe(16)
    if conversation.opted_out:
        return Composer(False, "This customer opted out: nothing can be sent to them until they "
                               "write START or someone opts them back in.", [], [], key)
    if retention.is_suppressed(conversation.sender):
        return Composer(False, "This number opted out before its earlier messages were deleted: "
                               "nothing can be sent to it.", [], [], key)
    if not can_receive_replies(conversation.sender):
        return Composer(False, f"{conversation.sender} is {numbers.sender_kind(conversation.sender)}: it cannot "
                               "receive replies.", [], [], key)
    if not (config["MESSENTE_API_USERNAME"] and config["MESSENTE_API_PASSWORD"]):
        return Composer(False, "Replies need Messente API credentials: set MESSENTE_API_USERNAME and "
                               "MESSENTE_API_PASSWORD (see docs/replies.md).", [], [], key)

    sms_senders = [] if config["MESSENTE_SMS_SENDER"] else our_numbers(conversation.id)
    sms_possible = bool(config["MESSENTE_SMS_SENDER"] or sms_senders)
    sms = Route("sms", "SMS", ("sms",))
    channel, note, routes = conversation.channel, "", []
    if channel in ("whatsapp", "viber"):
        name = {"whatsapp": "WhatsApp", "viber": "Viber"}[channel]
        window_open = channel != "whatsapp" or (
            conversation.last_inbound_at is not None
            and clock.now() - conversation.last_inbound_at < WHATSAPP_WINDOW)
        if not config[f"MESSENTE_{channel.upper()}_SENDER"]:
            note = f"Set MESSENTE_{channel.upper()}_SENDER to answer on {name}; this reply goes by SMS."
        elif not window_open:
            note = ("WhatsApp takes free text only within 24 hours of the customer's last message: "
                    "this reply goes by SMS.")
        else:
            routes.append(Route(channel, name, (channel,)))
            if sms_possible:
                routes.append(Route(f"{channel}+sms", f"{name}, then SMS if that fails", (channel, "sms")))
            if channel == "whatsapp":
                left = conversation.last_inbound_at + WHATSAPP_WINDOW - clock.now()
                hours = int(left.total_seconds() // 3600)
                note = (f"WhatsApp window open for another {hours} hour{'s' if hours != 1 else ''}."
                        if hours else "WhatsApp window closes within the hour.")
    elif channel == "telegram":
        note = "Messente's API cannot send Telegram messages: this reply goes by SMS."
    if sms_possible and not any(route.channels == ("whatsapp",) or route.channels == ("viber",)
                                for route in routes):
        routes.append(sms)
    if not routes:
        return Composer(False, note or "No sender for SMS: set MESSENTE_SMS_SENDER.", [], [], key)
    return Composer(True, note, routes, sms_senders, key)


def our_numbers(conversation_id: int, limit: int = 10, recent: int = 500) -> list[str]:
    """The numbers of ours this customer wrote to lately, most recent first: SMS replies go from one.

    Only the latest `recent` messages are looked at, so a long thread costs what a short one does.
    """
    latest = (sa.select(Message.id, Message.recipient)
              .where(Message.conversation_id == conversation_id, Message.direction == "in")
              .order_by(Message.id.desc()).limit(recent).subquery())
    rows = db.session.execute(
        sa.select(latest.c.recipient, sa.func.max(latest.c.id).label("newest"))
        .where(latest.c.recipient.is_not(None))
        .group_by(latest.c.recipient).order_by(sa.desc("newest")).limit(limit))
    return [recipient for recipient, _ in rows if recipient.strip()]


def queue_reply(conversation: Conversation, text: str, route_value: str, sms_sender: str | None,
                author_id: int, key: str) -> int:
    """Store a reply as `queued` and return its id; the outbox sends it. Raises ReplyRefused.

    The same key again (a resubmitted form) returns the reply stored the first time.
    """
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise ReplyRefused("Type a reply first.")
    if len(text) > MAX_TEXT:
        raise ReplyRefused(f"A reply can be at most {MAX_TEXT} characters.")
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", key or ""):
        raise ReplyRefused("This form is out of date: reload the page.")
    offered = composer(conversation)
    if not offered.can_reply:
        raise ReplyRefused(offered.note)
    route = next((route for route in offered.routes if route.value == route_value), offered.routes[0])
    if "sms" in route.channels and not current_app.config["MESSENTE_SMS_SENDER"]:
        if sms_sender not in offered.sms_senders:
            sms_sender = offered.sms_senders[0]
    legs = [{"channel": channel, "sender": sender_for(channel, sms_sender)} for channel in route.channels]

    msg_id = f"reply-{key}"
    with write_transaction() as session:
        connection = session.connection()
        existing = connection.scalar(sa.select(Message.id).where(Message.msg_id == msg_id))
        if existing is not None:
            return existing
        if connection.scalar(sa.select(Conversation.opted_out).where(Conversation.id == conversation.id)):
            raise ReplyRefused("This customer opted out meanwhile: nothing was sent.")
        now, change = clock.now(), change_number()
        reply_id = connection.scalar(sa.insert(Message).values(
            conversation_id=conversation.id, msg_id=msg_id, channel=route.channels[0],
            sender=legs[0]["sender"] or "", recipient=conversation.sender, text=text, sent_at=now,
            folded_text=search.fold(text), received_at=now, raw_body=json.dumps({"legs": legs}).encode(), change_seq=change,
            direction="out", author_id=author_id, status="queued",
        ).returning(Message.id))
        connection.execute(sa.update(Conversation).where(Conversation.id == conversation.id).values(
            last_message_id=reply_id, last_sent_at=now, last_text=text[:PREVIEW_LENGTH], last_direction="out",
            message_count=Conversation.message_count + 1, change_seq=change))
    return reply_id


def sender_for(channel: str, sms_sender: str | None) -> str | None:
    configured = current_app.config[f"MESSENTE_{channel.upper()}_SENDER"]
    return configured or (sms_sender if channel == "sms" else None)


def can_send_again(status: str | None, delivery: str | None) -> bool:
    """Not sent, not known to be sent, or sent and reported undelivered: a person may send again."""
    return status in ("failed", "unconfirmed") or (status == "sent" and delivery in DELIVERY_FAILURES)


def retry(conversation_id: int, reply_id: int) -> bool:
    """Queue a reply again (a person's decision); False if it is not one to send again."""
    with write_transaction() as session:
        updated = session.execute(
            sa.update(Message)
            .where(Message.id == reply_id, Message.conversation_id == conversation_id, Message.direction == "out",
                   Message.status.in_(["failed", "unconfirmed"])
                   | ((Message.status == "sent") & Message.delivery.in_(DELIVERY_FAILURES)))
            .values(status="queued", problem=None, delivery=None, omnimessage_id=None, claimed_at=None,
                    change_seq=change_number())).rowcount
        if updated:
            session.execute(sa.update(Conversation).where(Conversation.id == conversation_id)
                            .values(change_seq=change_number()))
    return bool(updated)


def send(reply_id: int, client: "messente.Messente", limiter: "RateLimiter") -> str | None:
    """Claim a queued reply, send it, record the outcome; the new status, or None if not ours."""
    now = clock.now()
    with write_transaction() as session:
        connection = session.connection()
        claimed = connection.execute(
            sa.update(Message).where(Message.id == reply_id, Message.status == "queued")
            .values(status="sending", claimed_at=now, change_seq=change_number())
            .returning(Message.conversation_id, Message.recipient, Message.text, Message.raw_body)).first()
        if claimed is None:
            return None  # another process claimed it, or it is no longer queued
        opted_out = connection.scalar(sa.select(Conversation.opted_out)
                                      .where(Conversation.id == claimed.conversation_id))
        touch_conversation(connection, claimed.conversation_id)
    if opted_out:  # checked again just before the call: a STOP may have come meanwhile
        return record(reply_id, claimed.conversation_id, "failed", problem="the customer opted out: not sent")

    legs = [messente.Leg(leg["channel"], claimed.text, leg["sender"])
            for leg in json.loads(claimed.raw_body)["legs"]]
    for pause in (*current_app.config["MESSENTE_RATE_LIMIT_BACKOFF"], None):
        limiter.wait()
        outcome = client.send(claimed.recipient, legs, dlr_url=delivery_url())
        if not (isinstance(outcome, messente.Refused) and outcome.status == 429 and pause is not None):
            break
        time.sleep(pause)
    if isinstance(outcome, messente.Sent):
        return record(reply_id, claimed.conversation_id, "sent", omnimessage_id=outcome.omnimessage_id)
    if isinstance(outcome, messente.Unconfirmed):
        return record(reply_id, claimed.conversation_id, "unconfirmed", problem=outcome.reason)
    return record(reply_id, claimed.conversation_id, "failed", problem=outcome.reason)


def record(reply_id: int, conversation_id: int, status: str, problem: str | None = None,
           omnimessage_id: str | None = None) -> str:
    with write_transaction() as session:
        connection = session.connection()
        connection.execute(sa.update(Message).where(Message.id == reply_id).values(
            status=status, problem=problem and problem[:500], omnimessage_id=omnimessage_id,
            change_seq=change_number()))
        if omnimessage_id:
            delivery.apply_unmatched(connection, reply_id, omnimessage_id)
        touch_conversation(connection, conversation_id)
    log.info("reply %d %s%s", reply_id, status, f": {problem}" if problem else "")
    return status


def touch_conversation(connection: sa.Connection, conversation_id: int) -> None:
    connection.execute(sa.update(Conversation).where(Conversation.id == conversation_id)
                       .values(change_seq=change_number()))


def delivery_url() -> str | None:
    """Where Messente posts delivery reports for our replies; without PUBLIC_URL, the API key's
    default webhook in Messente's dashboard applies."""
    base = current_app.config["PUBLIC_URL"]
    return f"{base.rstrip('/')}/callbacks/delivery" if base else None


def abandon_stale_sends(now: datetime) -> int:
    """Replies left `sending` by a process that died: shown `unconfirmed`, never resent by us."""
    config = current_app.config
    client_timeout = timedelta(seconds=config["MESSENTE_CONNECT_TIMEOUT"] + config["MESSENTE_READ_TIMEOUT"])
    # Each rate-limit pause adds a call: a live sender may hold its claim this long at most.
    longest = client_timeout * (len(config["MESSENTE_RATE_LIMIT_BACKOFF"]) + 1) + timedelta(
        seconds=sum(config["MESSENTE_RATE_LIMIT_BACKOFF"]))
    stale_before = now - longest - STALE_MARGIN
    with write_transaction() as session:
        stale = session.execute(
            sa.update(Message).where(Message.status == "sending", Message.claimed_at < stale_before)
            .values(status="unconfirmed", change_seq=change_number(),
                    problem="the app stopped while sending: it may or may not have reached Messente")
            .returning(Message.conversation_id)).scalars().all()
        for conversation_id in set(stale):
            touch_conversation(session.connection(), conversation_id)
    return len(stale)


def newest_sent_reply() -> tuple[str, str, str] | None:
    """(omnimessage id, customer, channel) of the newest reply Messente accepted."""
    return db.session.execute(
        sa.select(Message.omnimessage_id, Message.recipient, Message.channel)
        .where(Message.direction == "out", Message.omnimessage_id.is_not(None))
        .order_by(Message.id.desc()).limit(1)).first()


def queued_replies(limit: int = 500) -> list[int]:
    return list(db.session.scalars(sa.select(Message.id).where(Message.status == "queued")
                                   .order_by(Message.id).limit(limit)))


def sync_blacklist(client: "messente.Messente") -> None:
    """Carry opt-outs to Messente's blacklist (MESSENTE_BLACKLIST_SYNC); a failure is shown and retried."""
    pending = db.session.execute(sa.select(Conversation.id, Conversation.sender, Conversation.blacklist)
                                 .where(Conversation.blacklist.in_(["add", "remove"])).limit(100)).all()
    db.session.rollback()  # no read transaction held across the calls
    for conversation_id, phone, wanted in pending:
        call = client.add_to_blacklist if wanted == "add" else client.remove_from_blacklist
        outcome = call(phone)
        done = isinstance(outcome, messente.Done)
        # Only an entry this app made is "added", and so removed again when the customer opts back in.
        added = "added" if wanted == "add" and done and not outcome.already else None
        with write_transaction() as session:
            session.execute(
                sa.update(Conversation).where(Conversation.id == conversation_id, Conversation.blacklist == wanted)
                .values(blacklist=added if done else wanted,
                        blacklist_problem=None if done else f"Messente's blacklist: {outcome.reason}",
                        change_seq=change_number()))


class RateLimiter:
    """At most `per_second` calls a second from this process, spaced evenly.

    Each call returns at least one interval after the previous one returned. Slots booked ahead
    on a schedule would all fall due at once after a stall (a busy machine), and the calls
    behind it would go in a burst."""

    def __init__(self, per_second: float):
        self.interval = 1.0 / per_second
        self.next_slot = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:  # the others wait their turn here
            delay = self.next_slot - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.next_slot = time.monotonic() + self.interval


class Outbox:
    """This process's reply senders: a few threads taking reply ids, and a sweeper."""

    def __init__(self, app: Flask):
        self.app = app
        self.ids: queue.Queue[int] = queue.Queue()
        self.waiting: set[int] = set()  # ids in the queue: the sweeper doesn't add them twice
        self.limiter = RateLimiter(app.config["MESSENTE_REQUESTS_PER_SECOND"])
        self.started = False
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def start(self) -> None:
        if self.started:  # every request asks: the answer is almost always yes, without a lock
            return
        with self.lock:
            if self.started:
                return
            self.started = True
        self.threads = [threading.Thread(target=self.send_forever, name=f"reply-sender-{n}", daemon=True)
                        for n in range(self.app.config["REPLY_SENDERS"])]
        self.threads.append(threading.Thread(target=self.sweep_forever, name="reply-sweeper", daemon=True))
        for thread in self.threads:
            thread.start()

    def submit(self, reply_id: int) -> None:
        self.start()
        with self.lock:
            if reply_id in self.waiting:
                return
            self.waiting.add(reply_id)
        self.ids.put(reply_id)

    def stop(self, timeout: float = 30.0) -> None:
        """End the threads once they finish what they are doing (tests; a server just exits)."""
        self.stopping.set()
        for _ in range(self.app.config["REPLY_SENDERS"]):
            self.ids.put(None)
        for thread in getattr(self, "threads", []):
            thread.join(timeout)

    def send_forever(self) -> None:
        while (reply_id := self.ids.get()) is not None:
            with self.lock:
                self.waiting.discard(reply_id)
            with self.app.app_context():
                client = messente.from_config(self.app.config)
                try:
                    if client is not None:
                        send(reply_id, client, self.limiter)
                except Exception:  # the database is away: the sweeper tries again later
                    log.exception("reply %d not sent for now", reply_id)

    def sweep_forever(self) -> None:
        while not self.stopping.is_set():
            with self.app.app_context():
                try:
                    self.sweep()
                except Exception:
                    log.exception("reply sweep failed; trying again")
            self.stopping.wait(SWEEP_SECONDS)

    def sweep(self) -> None:
        client = messente.from_config(self.app.config)
        if client is None:
            return
        abandon_stale_sends(clock.now())
        delivery.drop_stale_reports(clock.now())
        for reply_id in queued_replies():
            self.submit(reply_id)
        if self.app.config["MESSENTE_BLACKLIST_SYNC"]:
            sync_blacklist(client)


def start_outbox() -> None:
    """Registered by the factory to run before each request: the worker's first one starts it."""
    if current_app.config["MESSENTE_API_USERNAME"] and current_app.config["MESSENTE_API_PASSWORD"]:
        outbox().start()


def outbox(app: Flask | None = None) -> Outbox:
    app = app or current_app._get_current_object()
    found = app.extensions.get("outbox")
    return found if found is not None else app.extensions.setdefault("outbox", Outbox(app))
