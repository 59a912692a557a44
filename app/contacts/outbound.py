"""Writing first: who a new message is for (a number as people type it, or a contact's name), and
the conversation a number has or starts.

Numbers are parsed with `phonenumbers` against the team's default country, an admin setting over
DEFAULT_REGION: `+372 5555 1234` and `0044 7700 900123` work anywhere; `5555 1234` only with a
default country (EE) to read it in. Without one, a number needs its country code. A number is
then keyed as ingest keys a sender (app/db/numbers.normalise), so it finds the conversation the
customer's own messages file into.
"""

from dataclasses import dataclass
from datetime import datetime

import phonenumbers
import sqlalchemy as sa
from flask import current_app

from app import audit
from app.db import numbers, settings
from app.db.folding import clean_text, fold, search_key
from app.db.models import CONTACT_KEY_LENGTH, Conversation
from app.db.unit_of_work import write_transaction
from app.extensions import db

DEFAULT_REGION = "default_region"
NAMES_SHOWN = 3


class RecipientRefused(ValueError):
    """What was typed is no one we can write to, in words for people."""


@dataclass(frozen=True)
class Recipient:
    number: str  # the conversation key: E.164
    conversation: Conversation | None  # its conversation, when it has one


def regions() -> list[tuple[str, int]]:
    """Every region phonenumbers knows, with its calling code, by code."""
    return sorted((region, phonenumbers.country_code_for_region(region)) for region in phonenumbers.SUPPORTED_REGIONS)


def default_region() -> str:
    """The admin's choice, else DEFAULT_REGION; "" (none): a number needs its country code."""
    stored = settings.stored(DEFAULT_REGION)
    value = stored if stored is not None else (current_app.config.get("DEFAULT_REGION") or "")
    value = value.upper()
    return value if value in phonenumbers.SUPPORTED_REGIONS else ""


def set_default_region(region: str) -> None:
    """An admin's choice ("" for none), audited; ValueError for an unknown region."""
    region = region.strip().upper()
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{region!r} is not a country code phone numbers know (for example EE).")
    with write_transaction():
        previous = default_region()
        if region == previous and settings.stored(DEFAULT_REGION) is not None:
            return
        settings.save(DEFAULT_REGION, region)
        audit.record("settings_changed", {"default_region": region or "none", "was": previous or "none"})


def parse_number(typed: str, region: str | None = None) -> str:
    """A number as a person types it, as its conversation key (E.164); RecipientRefused saying why not."""
    region = default_region() if region is None else region
    typed = clean_text(typed).strip()
    try:
        number = phonenumbers.parse(typed, region or None)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise RecipientRefused(
                f"“{typed}” has no country code: type it with one (+372 5555 1234)"
                + ("" if region else ", or ask an admin to set the default country")
                + "."
            ) from exc
        raise RecipientRefused(f"“{typed}” is not a phone number.") from exc
    if not phonenumbers.is_possible_number(number):
        raise RecipientRefused(f"“{typed}” is not a phone number: it has too few or too many digits.")
    key = numbers.normalise(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    if not numbers.is_number_key(key):
        raise RecipientRefused(f"“{typed}” is not a phone number.")
    return key


def looks_like_number(typed: str) -> bool:
    """Digits and what people put between them: a number to parse, not a name to look up."""
    return bool(numbers.DIALLED.fullmatch(typed)) and any(char.isdigit() for char in typed)


def recipient(typed: str) -> Recipient:
    """Who a new message is for: a number (in any usual format) or a contact's name (its
    conversation, accents and case aside). RecipientRefused for what is neither."""
    typed = " ".join(clean_text(typed).split())
    if not typed:
        raise RecipientRefused("Type a phone number or a contact's name.")
    if looks_like_number(typed):
        number = parse_number(typed)
        found = db.session.scalar(sa.select(Conversation).where(Conversation.sender == number))
        return Recipient(number, found)
    named = list(
        db.session.scalars(
            sa.select(Conversation)
            .where(Conversation.contact_key == fold(typed)[:CONTACT_KEY_LENGTH])
            .order_by(Conversation.id)
            .limit(NAMES_SHOWN + 1)
        )
    )
    if not named:
        raise RecipientRefused(f"“{typed}” is not a phone number, and no contact has that name.")
    if len(named) > 1:
        raise RecipientRefused(
            f"{'More than ' + str(NAMES_SHOWN) if len(named) > NAMES_SHOWN else len(named)} contacts are named "
            f"“{typed}”: type the number instead ("
            + ", ".join(numbers.readable(c.sender) for c in named[:NAMES_SHOWN])
            + ")."
        )
    if not numbers.is_number_key(named[0].sender):
        raise RecipientRefused(f"“{typed}” writes from {named[0].sender}, which cannot receive messages.")
    return Recipient(named[0].sender, named[0])


def conversation_for(connection: sa.Connection, number: str, channel: str, change: int) -> tuple[int, bool]:
    """The conversation of a number we write to first, started if it has none; (its id, started).

    A started one has the row ingest gives a new sender (app/callbacks/ingest.py), no messages yet:
    the caller fills in its newest message in the same transaction. Call it holding the write lock.
    """
    found = connection.scalar(sa.select(Conversation.id).where(Conversation.sender == number))
    if found is not None:
        return found, False
    created = connection.execute(
        sa.insert(Conversation)
        .values(
            sender=number,
            sender_key=search_key(number),
            channel=channel,
            last_message_id=None,
            last_sent_at=datetime.min,
            last_text="",
            message_count=0,
            unread_count=0,
            change_seq=change,
        )
        .returning(Conversation.id)
    ).scalar_one()
    return created, True
