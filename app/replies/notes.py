"""Private notes: what the team writes in a conversation for each other, never sent.

A note is a message with direction "note": its author, its time, its text (searched like any
message's), `msg_id` "note-<key>" (the form's one-time key: a resubmitted form stores it once),
`channel` "note", no status, no legs, and no send job, ever. It is part of its conversation: in
the thread, the search, the export, the message count; erased and purged with it. It leaves
the list's row as the customer sees the conversation: its preview (last text, "You:"), its
place in the list and its unread count do not move for a note; its change number does, so
every open page shows the note at its next poll.

`@username` in a note mentions an active teammate (the longest username that follows the `@`,
case aside): one `mention` row per note and person, which keeps the
conversation in their Mentions view until they read it, and a "mention" notification
(app/notifications/), in the note's transaction. Mentioning oneself mentions nobody.
"""

import re

import sqlalchemy as sa

from app import audit, clock, notifications, webhooks
from app.contacts import owners
from app.db import folding
from app.db.folding import clean_text
from app.db.models import Conversation, Mention, Message, User
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db
from app.replies import ReplyRefused, sms_length

NOTE = "note"
MAX_TEXT = sms_length.MAX_TEXT  # the box is the reply's: one limit for both
KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")


class NoteRefused(ReplyRefused):
    """Why a note can't be stored, for people; the box comes back in Note mode with the text."""

    mode = NOTE


def add_note(conversation_id: int, text: str, author_id: int | None, key: str, api_token_id: int | None = None) -> int:
    """Store a note with its mentions and audit event; return its id. The same key again (a
    resubmitted form, a double click) returns the note stored the first time, mentioning and
    notifying nobody again. A note written through the API has `api_token_id` (its token)
    instead of an author. Raises NoteRefused."""
    text = clean_text(text).replace("\r\n", "\n")  # NUL and lone surrogates: storable
    if not text.strip():
        raise NoteRefused("Type a note first.")
    if len(text) > MAX_TEXT:
        raise NoteRefused(f"A note can be at most {MAX_TEXT} characters.")
    if not KEY.fullmatch(key or ""):
        raise NoteRefused("This form is out of date: reload the page.")
    msg_id = f"note-{key}"
    with write_transaction() as session:
        connection = session.connection()
        existing = connection.scalar(sa.select(Message.id).where(Message.msg_id == msg_id))
        if existing is not None:
            return existing
        if connection.scalar(sa.select(Conversation.id).where(Conversation.id == conversation_id)) is None:
            raise NoteRefused("This conversation was deleted meanwhile: the note was not stored.")
        now, change = clock.now(), change_number()
        note_id = connection.execute(
            sa.insert(Message)
            .values(
                conversation_id=conversation_id,
                msg_id=msg_id,
                channel=NOTE,
                sender="",
                recipient=None,
                text=text,
                sent_at=now,
                received_at=now,
                folded_text=folding.fold(text),
                raw_body=b"",
                change_seq=change,
                direction=NOTE,
                author_id=author_id,
                api_token_id=api_token_id,
                status=None,
                legs=None,
            )
            .returning(Message.id)
        ).scalar_one()
        # Counted in the thread, seen by polls; the list's preview, order and unread count stay.
        connection.execute(
            sa.update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(message_count=Conversation.message_count + 1, change_seq=change)
        )
        mentioned = [person for person in mentioned_in(text) if person.id != author_id]
        if mentioned:
            connection.execute(
                sa.insert(Mention),
                [
                    {"message_id": note_id, "user_id": person.id, "conversation_id": conversation_id, "created_at": now}
                    for person in mentioned
                ],
            )
            notifications.add_mentioned(connection, conversation_id, [person.id for person in mentioned], now)
        audit.record(
            "note",
            {
                "conversation": conversation_id,
                "note": note_id,
                **({"mentioned": [person.username for person in mentioned]} if mentioned else {}),
            },
        )
        webhooks.message_event("message.created", note_id)
    return note_id


def mentionable() -> list[User]:
    """Who a note can mention: every active account (all of them see every conversation), by name:
    the people a conversation can be given to."""
    return owners.teammates()


def mentioned_in(text: str) -> list[User]:
    """The active teammates a text mentions, each once, in the order first mentioned.

    A mention is `@` at the start or after anything but a letter, digit or `_` (an email address
    mentions nobody), then a username, compared case aside, not followed by a letter, digit or
    `_`; where several usernames fit (`ann`, `ann lee`), the longest.
    """
    if "@" not in text:
        return []
    people = sorted(mentionable(), key=lambda person: len(person.username), reverse=True)
    found: dict[int, User] = {}
    for at in (match.start() for match in re.finditer("@", text)):
        if at > 0 and is_word(text[at - 1]):
            continue
        for person in people:
            end = at + 1 + len(person.username)
            if text[at + 1 : end].casefold() == person.username.casefold() and (
                end >= len(text) or not is_word(text[end])
            ):
                found.setdefault(person.id, person)
                break
    return list(found.values())


def is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def mark_mentions_read(user_id: int, conversation_id: int) -> bool:
    """The person read the conversation: its mentions of them leave their Mentions view. Looked
    up first, so reading a conversation without any takes no write lock. Whether any were unread;
    if so, the conversation's change number moves, so lists (and the view's count) follow."""
    if db.session.scalar(_unread(user_id, conversation_id).limit(1)) is None:
        return False
    with write_transaction() as session:
        now, change = clock.now(), change_number()
        session.execute(
            sa.update(Mention)
            .where(Mention.user_id == user_id, Mention.conversation_id == conversation_id, Mention.read_at.is_(None))
            .values(read_at=now)
        )
        session.execute(sa.update(Conversation).where(Conversation.id == conversation_id).values(change_seq=change))
    return True


def _unread(user_id: int, conversation_id: int) -> sa.Select:
    return sa.select(Mention.id).where(
        Mention.user_id == user_id, Mention.conversation_id == conversation_id, Mention.read_at.is_(None)
    )
