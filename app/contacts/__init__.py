"""People behind the numbers: a name and a note per conversation, and putting it aside (done).

Both change what the list and the thread show, so each write stamps the conversation's
change number: every open list and thread picks it up at its next poll.
"""

import sqlalchemy as sa

from app import audit, clock, webhooks
from app.contacts import autoassign
from app.db.folding import clean_text, fold
from app.db.models import CONTACT_KEY_LENGTH, CONTACT_NAME_LENGTH, CONTACT_NOTE_LENGTH, Conversation
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db
from app.tallies import events as report_events

STATUSES = ("open", "done")


def conversation(conversation_id: int) -> Conversation | None:
    """A conversation (in this app, the contact behind it) by its id."""
    return db.session.get(Conversation, conversation_id)


class ContactRefused(ValueError):
    """Why a name or note can't be stored, for people."""


def clean_contact(name: str, note: str) -> tuple[str | None, str | None]:
    """The name on one line and the note as typed, trimmed; empty means none."""
    name = " ".join(clean_text(name).split())
    note = clean_text(note).replace("\r\n", "\n").strip()
    if len(name) > CONTACT_NAME_LENGTH:
        raise ContactRefused(f"The name is longer than {CONTACT_NAME_LENGTH} characters.")
    if len(note) > CONTACT_NOTE_LENGTH:
        raise ContactRefused(f"The note is longer than {CONTACT_NOTE_LENGTH} characters.")
    return name or None, note or None


def set_contact(conversation_id: int, name: str, note: str) -> None:
    """Name the person behind a conversation and keep a note (audited); ContactRefused if too long."""
    cleaned_name, cleaned_note = clean_contact(name, note)
    with write_transaction() as session:
        session.execute(
            sa.update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(
                contact_name=cleaned_name,
                contact_note=cleaned_note,
                contact_key=fold(cleaned_name)[:CONTACT_KEY_LENGTH] if cleaned_name else None,
                change_seq=change_number(),
            )
        )
        audit.record("contact_edited", {"conversation": conversation_id})


def set_status(conversation_id: int, status: str, user_id: int | None = None) -> bool:
    """Mark a conversation done (put aside) or open again; False when it was so already. Done,
    its owner has room for one more: auto-assignment (when on) looks again. `user_id`: who did
    it (reports count conversations done per person); None: the API or the app."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}")
    with write_transaction() as session:
        changed = session.execute(
            sa.update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.status != status)
            .values(status=status, change_seq=change_number())
            # Done ends a snooze: put aside, it comes back only when the customer writes.
            .values(**({"snoozed_until": None, "snoozed_until_reply": False} if status == "done" else {}))
            .returning(Conversation.assignee_id)
        ).first()
        if changed is not None and status == "done":
            report_events.done(session.connection(), conversation_id, clock.now(), user_id)
        if changed is not None and status == "done" and changed.assignee_id is not None:
            autoassign.sweep_soon()
        if changed is not None:
            webhooks.conversation_event("conversation.updated", conversation_id, ["status"])
    return changed is not None
