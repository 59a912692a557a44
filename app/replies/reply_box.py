"""The reply box's view of a conversation: whether it can be answered, by which channels and
from which of our numbers, and the saved replies it offers."""

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from app import clock
from app.contacts import optouts
from app.db import numbers
from app.db.models import Conversation, Message, SavedReply
from app.extensions import db
from app.replies import saved_replies

WHATSAPP_WINDOW = timedelta(hours=24)
PHONE_NUMBER = re.compile(r"\+?[0-9]{7,15}")
NOISE = re.compile(r"[\s\-().]")


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
    saved: list[tuple[SavedReply, str]] = field(default_factory=list)  # saved replies, filled in


def can_receive_replies(sender: str) -> bool:
    """A phone number can; an alphanumeric sender (`MyShop`) or a short code (`1234`) cannot."""
    return bool(PHONE_NUMBER.fullmatch(NOISE.sub("", sender)))


def for_conversation(conversation: Conversation) -> Composer:
    config = current_app.config
    key = secrets.token_urlsafe(16)
    if conversation.opted_out:
        return Composer(
            False,
            "This customer opted out: nothing can be sent to them until they write START or someone opts them back in.",
            [],
            [],
            key,
        )
    if optouts.is_suppressed(conversation.sender):
        return Composer(
            False,
            "This number opted out before its earlier messages were deleted: nothing can be sent to it.",
            [],
            [],
            key,
        )
    if not can_receive_replies(conversation.sender):
        return Composer(
            False,
            f"{conversation.sender} is {numbers.sender_kind(conversation.sender)}: it cannot receive replies.",
            [],
            [],
            key,
        )
    if not (config["MESSENTE_API_USERNAME"] and config["MESSENTE_API_PASSWORD"]):
        return Composer(
            False,
            "Replies need Messente API credentials: set MESSENTE_API_USERNAME and "
            "MESSENTE_API_PASSWORD (see docs/replies.md).",
            [],
            [],
            key,
        )

    sms_senders = [] if config["MESSENTE_SMS_SENDER"] else our_numbers(conversation.id)
    sms_possible = bool(config["MESSENTE_SMS_SENDER"] or sms_senders)
    sms = Route("sms", "SMS", ("sms",))
    channel, note, routes = conversation.channel, "", []
    if channel in ("whatsapp", "viber"):
        name = {"whatsapp": "WhatsApp", "viber": "Viber"}[channel]
        window_open = channel != "whatsapp" or (
            conversation.last_inbound_at is not None and clock.now() - conversation.last_inbound_at < WHATSAPP_WINDOW
        )
        if not config[f"MESSENTE_{channel.upper()}_SENDER"]:
            note = f"Set MESSENTE_{channel.upper()}_SENDER to answer on {name}; this reply goes by SMS."
        elif not window_open:
            note = (
                "WhatsApp takes free text only within 24 hours of the customer's last message: this reply goes by SMS."
            )
        else:
            routes.append(Route(channel, name, (channel,)))
            if sms_possible:
                routes.append(Route(f"{channel}+sms", f"{name}, then SMS if that fails", (channel, "sms")))
            if channel == "whatsapp" and conversation.last_inbound_at is not None:  # the window is open
                left = conversation.last_inbound_at + WHATSAPP_WINDOW - clock.now()
                hours = int(left.total_seconds() // 3600)
                note = (
                    f"WhatsApp window open for another {hours} hour{'s' if hours != 1 else ''}."
                    if hours
                    else "WhatsApp window closes within the hour."
                )
    elif channel == "telegram":
        note = "Messente's API cannot send Telegram messages: this reply goes by SMS."
    if sms_possible and not any(route.channels == ("whatsapp",) or route.channels == ("viber",) for route in routes):
        routes.append(sms)
    if not routes:
        return Composer(False, note or "No sender for SMS: set MESSENTE_SMS_SENDER.", [], [], key)
    return Composer(True, note, routes, sms_senders, key, saved_replies.for_conversation(conversation))


def our_numbers(conversation_id: int, limit: int = 10, recent: int = 500) -> list[str]:
    """The numbers of ours this customer wrote to lately, most recent first: SMS replies go from one.

    Only the latest `recent` messages are looked at, so a long thread costs what a short one does.
    """
    latest = (
        sa.select(Message.id, Message.recipient)
        .where(Message.conversation_id == conversation_id, Message.direction == "in")
        .order_by(Message.id.desc())
        .limit(recent)
        .subquery()
    )
    rows = db.session.execute(
        sa.select(latest.c.recipient, sa.func.max(latest.c.id).label("newest"))
        .where(latest.c.recipient.is_not(None))
        .group_by(latest.c.recipient)
        .order_by(sa.desc("newest"))
        .limit(limit)
    )
    return [recipient for recipient, _ in rows if recipient.strip()]
