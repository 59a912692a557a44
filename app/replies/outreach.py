"""New messages: writing first, to a number or a contact, now or later.

A new message lands in the number's conversation, or starts one (with the row ingest gives a new
sender: app/contacts/outbound.py), and is then a reply like any other: stored `queued` with its
send job, or `scheduled` (app/replies/scheduled.py). Its writer takes an unassigned conversation
when replying does (app/contacts/owners.py). Opted-out numbers, and numbers erased after they
opted out (suppressed), are refused with the reason. SMS and Viber only: a business may open a
WhatsApp conversation only with a template Meta approved, which this app does not send.
"""

import re
from datetime import datetime

import sqlalchemy as sa
from flask import current_app

from app import audit, clock, replies, webhooks
from app.contacts import optouts, outbound, owners
from app.db.folding import clean_text
from app.db.models import PREVIEW_LENGTH, Conversation, ConversationRecipient, Message
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db
from app.replies import reply_box, scheduled, sms_length

WHATSAPP_NOTE = (
    "WhatsApp is not offered: a business can start a WhatsApp conversation only with a message "
    "template WhatsApp approved. Reply on WhatsApp in the conversation once the customer writes."
)


class NewMessageRefused(ValueError):
    """Why a new message can't be stored, for people: the form comes back with it."""


def our_numbers(limit: int = 10) -> list[str]:
    """Our numbers customers have written to, most used first: SMS goes from one of them."""
    rows = db.session.execute(
        sa.select(ConversationRecipient.recipient, sa.func.count().label("uses"))
        .group_by(ConversationRecipient.recipient)
        .order_by(sa.desc("uses"), ConversationRecipient.recipient)
        .limit(limit)
    )
    return [recipient for recipient, _ in rows if recipient.strip() and reply_box.can_receive_replies(recipient)]


def offer() -> reply_box.Composer:
    """What the New message form offers: SMS (from our sender, or one of our numbers), Viber,
    Viber with SMS as the fallback; or why nothing can be sent."""
    config = current_app.config
    composer = reply_box.Composer(False, "", [], [], reply_box.secrets.token_urlsafe(16))
    if not (config["MESSENTE_API_USERNAME"] and config["MESSENTE_API_PASSWORD"]):
        composer.note = (
            "Sending needs Messente API credentials: set MESSENTE_API_USERNAME and MESSENTE_API_PASSWORD "
            "(see docs/replies.md)."
        )
        return composer
    composer.sms_senders = [] if config["MESSENTE_SMS_SENDER"] else our_numbers()
    sms_possible = bool(config["MESSENTE_SMS_SENDER"] or composer.sms_senders)
    if sms_possible:
        composer.routes.append(reply_box.Route("sms", "SMS", ("sms",)))
    if config["MESSENTE_VIBER_SENDER"]:
        composer.routes.append(reply_box.Route("viber", "Viber", ("viber",)))
        if sms_possible:
            composer.routes.append(reply_box.Route("viber+sms", "Viber, then SMS if that fails", ("viber", "sms")))
    if not composer.routes:
        composer.note = "No sender for SMS: set MESSENTE_SMS_SENDER (or MESSENTE_VIBER_SENDER for Viber)."
        return composer
    composer.can_reply, composer.note = True, WHATSAPP_NOTE
    return composer


def refusal_for(conversation: Conversation | None, number: str) -> str | None:
    """Why nothing may be sent to this number, or None."""
    if conversation is not None and conversation.opted_out:
        return (
            f"{conversation.contact_name or number} opted out: nothing can be sent to them until they write "
            "START or someone opts them back in."
        )
    if optouts.is_suppressed(number):
        return "This number opted out before its earlier messages were deleted: nothing can be sent to it."
    return None


def send_new(
    to: str,
    text: str,
    route_value: str,
    sms_sender: str | None,
    author_id: int | None,
    key: str,
    send_at: datetime | None = None,
    api_token_id: int | None = None,
) -> tuple[int, int]:
    """Store a new message (queued, or scheduled for `send_at`) to a number or a contact, with its
    audit events; (its conversation's id, its id). NewMessageRefused says why not. The same key
    again (a resubmitted form) returns what the first time stored. One sent through the API has
    `api_token_id` (its token) instead of an author, and makes nobody the owner."""
    text = clean_text(text).replace("\r\n", "\n")  # NUL and lone surrogates: storable
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", key or ""):
        raise NewMessageRefused("This form is out of date: reload the page.")
    msg_id = f"reply-{key}"
    done = db.session.execute(sa.select(Message.conversation_id, Message.id).where(Message.msg_id == msg_id)).first()
    if done is not None:
        return done.conversation_id, done.id
    if "whatsapp" in route_value:
        raise NewMessageRefused(WHATSAPP_NOTE)
    try:
        found = outbound.recipient(to)
    except outbound.RecipientRefused as refused:
        raise NewMessageRefused(str(refused)) from None
    refusal = refusal_for(found.conversation, found.number)
    if refusal:
        raise NewMessageRefused(refusal)
    if not text.strip():
        raise NewMessageRefused("Type the message first.")
    if len(text) > sms_length.MAX_TEXT:
        raise NewMessageRefused(f"A message can be at most {sms_length.MAX_TEXT} characters.")
    offered = offer()
    if not offered.can_reply:
        raise NewMessageRefused(offered.note)
    legs = replies.legs_for(offered, route_value, sms_sender)

    with write_transaction() as session:
        connection = session.connection()
        done = connection.execute(
            sa.select(Message.conversation_id, Message.id).where(Message.msg_id == msg_id)
        ).first()
        if done is not None:
            return done.conversation_id, done.id
        conversation_id, started = outbound.conversation_for(
            connection, found.number, legs[0]["channel"], change_number()
        )
        if not started and connection.scalar(
            sa.select(Conversation.opted_out).where(Conversation.id == conversation_id)
        ):
            raise NewMessageRefused("This customer opted out meanwhile: nothing was sent.")
        details: dict = {"conversation": conversation_id, "started": started}
        if started:  # reported before its first message, as a customer's first message is
            webhooks.conversation_event("conversation.created", conversation_id)
        if send_at is None:
            message_id = replies.insert_reply(
                connection, conversation_id, found.number, text, legs, author_id, msg_id, api_token_id=api_token_id
            )
            details["reply"] = message_id
        else:
            message_id = scheduled.insert_scheduled(
                connection,
                conversation_id,
                found.number,
                text,
                legs,
                author_id,
                msg_id,
                send_at,
                api_token_id=api_token_id,
            )
            if started:  # a conversation has a newest message from its first commit: the list shows it
                connection.execute(
                    sa.update(Conversation)
                    .where(Conversation.id == conversation_id)
                    .values(
                        last_message_id=message_id,
                        last_sent_at=clock.now(),
                        last_text=text[:PREVIEW_LENGTH],
                        last_direction="out",
                    )
                )
            details |= {"scheduled": message_id, "send_at": send_at.replace(microsecond=0)}
            audit.record("scheduled", {k: v for k, v in details.items() if k != "started"})
        audit.record("new_message", details)
        if author_id is not None:  # (a token owns nothing)
            owners.take_if_unassigned(conversation_id, author_id)
    return conversation_id, message_id
