"""Saved replies: the team's canned responses, managed by admins, inserted into the reply box.

In the reply box a menu lists them, and typing `/` and a few letters of a title suggests them
(static/js/saved-replies.js). `{name}` in a text becomes the contact's name; where a conversation has no
name it is left out with the space before it ("Hi {name}, ..." becomes "Hi, ...").
"""

import re

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.db.folding import clean_text
from app.db.models import SAVED_REPLY_TITLE_LENGTH, Conversation, SavedReply
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.replies.sms_length import MAX_TEXT

NAME = re.compile(r"\s*\{name\}")


class SavedReplyRefused(ValueError):
    """Why a saved reply can't be stored, for people."""


def all_saved() -> list[SavedReply]:
    return list(db.session.scalars(sa.select(SavedReply).order_by(sa.func.lower(SavedReply.title), SavedReply.id)))


def filled(text: str, conversation: Conversation) -> str:
    """The text for this conversation: `{name}` replaced by the contact's name, or left out."""
    if conversation.contact_name:
        return text.replace("{name}", conversation.contact_name)
    return NAME.sub("", text).lstrip(" ,")


def for_conversation(conversation: Conversation) -> list[tuple[SavedReply, str]]:
    """Each saved reply with its text filled in for this conversation."""
    return [(saved, filled(saved.text, conversation)) for saved in all_saved()]


def text_for(conversation: Conversation, saved_id: int | None) -> str | None:
    """One saved reply's text filled in for this conversation; None if there is no such reply."""
    saved = db.session.get(SavedReply, saved_id) if saved_id is not None else None
    return filled(saved.text, conversation) if saved else None


def clean(title: str, text: str) -> tuple[str, str]:
    title = " ".join(clean_text(title).split())
    text = clean_text(text).replace("\r\n", "\n").strip()
    if not title:
        raise SavedReplyRefused("Give the saved reply a title.")
    if len(title) > SAVED_REPLY_TITLE_LENGTH:
        raise SavedReplyRefused(f"The title is longer than {SAVED_REPLY_TITLE_LENGTH} characters.")
    if not text:
        raise SavedReplyRefused("Write the reply's text.")
    if len(text) > MAX_TEXT:
        raise SavedReplyRefused(f"The text is longer than {MAX_TEXT} characters, the most a reply can be.")
    return title, text


def save(title: str, text: str, saved_id: int | None = None) -> int:
    """Add a saved reply, or change one; SavedReplyRefused with the reason when it can't be."""
    title, text = clean(title, text)
    try:
        saved: SavedReply | None
        with write_transaction() as session:
            if saved_id is None:
                saved = SavedReply(title=title, text=text)
                session.add(saved)
            else:
                saved = session.get(SavedReply, saved_id)
                if saved is None:
                    raise SavedReplyRefused("That saved reply was deleted meanwhile.")
                saved.title, saved.text = title, text
            session.flush()
            return saved.id
    except IntegrityError:
        raise SavedReplyRefused(f"A saved reply called “{title}” exists already.") from None


def delete(saved_id: int) -> None:
    with write_transaction() as session:
        session.execute(sa.delete(SavedReply).where(SavedReply.id == saved_id))
