"""Erasure on request: `erase_conversation` deletes one conversation and everything about its
number at once, what the audit trail and the dead letters held about the person included
(`ErasedPerson`). An export records whom its search named (`search_subjects`), so that a later
erasure finds that search too. Deleted with SQLite's `secure_delete` on and the files scrubbed
after (app/privacy/scrubbing.py); see docs/privacy.md.
"""

import json
import re
from dataclasses import dataclass

import sqlalchemy as sa

from app import audit, clock
from app.db import folding, numbers
from app.db.models import AuditEvent, Conversation, DeadLetter, Message, Suppression, UnmatchedDeliveryReport
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db
from app.inbox import queries, search
from app.privacy.cascade import delete_rows_referring_to, referring_columns
from app.privacy.scrubbing import scrub_files, secure_delete

ERASED = "[erased]"
# Audit details that hold what a person typed (an export's searches, why a STOP was lifted):
# the only ones that can hold a customer's number, name or words. Every other detail is the
# app's own (a role, a format, a username, who acted), which an erasure never touches.
TYPED_DETAILS = ("q", "text", "reason")
WORD = re.compile(r"\w+")
# Searches recorded with the few conversations they matched (see search_subjects).
MATCHED = "matched_conversations"
FEW_SUBJECTS = 3


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    sender: str
    name: str | None
    messages: int
    opted_out: bool


def conversation_summary(conversation_id: int) -> ConversationSummary | None:
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    count = db.session.scalar(sa.select(sa.func.count()).where(Message.conversation_id == conversation_id)) or 0
    return ConversationSummary(
        conversation.id, conversation.sender, getattr(conversation, "contact_name", None), count, conversation.opted_out
    )


def erase_conversation(conversation_id: int) -> int:
    """Delete a conversation and everything about its number; returns the messages deleted.

    The audit trail keeps that it happened, with the number as a keyed hash; what the trail and
    the dead letters held about the person goes (see `ErasedPerson`). A number that had opted out
    stays blocked from replies by a hashed suppression entry, until it opts back in.
    """
    with write_transaction() as session:
        secure_delete()
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            return 0
        number, opted_out = conversation.sender, conversation.opted_out
        # Found while the person's messages are still there: a search matched "only them".
        person = ErasedPerson.of(conversation)
        redacted = redact_audit_trail(person)
        ids = list(session.scalars(sa.select(Message.id).where(Message.conversation_id == conversation_id)))
        omnimessage_ids = [
            value
            for value in session.scalars(
                sa.select(Message.omnimessage_id).where(
                    Message.conversation_id == conversation_id, Message.omnimessage_id.is_not(None)
                )
            )
        ]
        for chunk in chunks(omnimessage_ids):
            session.execute(sa.delete(UnmatchedDeliveryReport).where(UnmatchedDeliveryReport.omnimessage_id.in_(chunk)))
        for chunk in chunks(ids):
            for column in referring_columns(Message.__table__):
                session.execute(sa.delete(column.table).where(column.in_(chunk)))
        delete_rows_referring_to(conversation_id)
        session.execute(sa.delete(Message).where(Message.conversation_id == conversation_id))
        session.execute(sa.delete(Conversation).where(Conversation.id == conversation_id))
        dead_letters = delete_dead_letters_mentioning(person)
        number_hash = audit.number_hash(number)
        if opted_out and session.get(Suppression, number_hash) is None:
            session.add(Suppression(number_hash=number_hash, created_at=clock.now()))
        change_number()  # lists polling for changes redraw without it
        audit.record(
            "conversation_deleted",
            {
                "conversation": conversation_id,
                "number_hash": number_hash,
                "messages": len(ids),
                "dead_letters": dead_letters,
                "was_opted_out": opted_out,
                "audit_events_redacted": redacted,
            },
        )
    scrub_files()
    return len(ids)


@dataclass
class ErasedPerson:
    """Everything that identifies a person being erased, and the tests that find it elsewhere:
    their number however written, their contact name, and searches that matched only them.

    Past contact names are stored nowhere (editing a contact records only the conversation's
    id); a search by one is found through the conversations it matched when it ran (MATCHED).
    """

    conversation_id: int
    number_key: str  # the conversation's sender (numbers.normalise)
    sender_key: str
    folded_name: str | None
    folded_texts: list[str]

    @classmethod
    def of(cls, conversation: Conversation) -> "ErasedPerson":
        texts = db.session.scalars(
            sa.select(Message.folded_text).where(Message.conversation_id == conversation.id, Message.folded_text != "")
        )
        name = folding.fold(conversation.contact_name.strip()) if conversation.contact_name else None
        return cls(
            conversation.id,
            conversation.sender,
            conversation.sender_key,
            name if name and len(name) >= search.MIN_QUERY else None,
            list(texts),
        )

    def __post_init__(self):
        self.mentions_number = numbers.mentions(self.number_key)
        self.name_words = words(self.folded_name) if self.folded_name else []

    def mentioned_in(self, value: str) -> bool:
        """Whether a text holds the number (any spelling that dials it) or the contact's name."""
        return self.mentions_number(value.encode("utf-8", "surrogatepass")) or self.names(value)

    def names(self, value: str) -> bool:
        """Whether a text holds the contact's name as whole words, accents and case aside:
        "Ann" is in "ann called" and "Mari Tamm" in "mari  tamm!", but not in "channel" or
        "Joanna", nor "Mari" in "primary"."""
        if not self.name_words:
            return False
        found, size = words(folding.fold(value)), len(self.name_words)
        return any(found[start : start + size] == self.name_words for start in range(len(found) - size + 1))

    def only_match_of(self, field: str, query: str) -> bool:
        """Whether an export's search (`q`: numbers and names; `text`: message texts) matches
        this person and nobody else now."""
        if field == "q":
            folded = folding.fold(query.strip())
            number = queries.searched_number(query)
            if not (
                (len(number) >= search.MIN_QUERY and number in self.sender_key)
                or (self.folded_name is not None and len(folded) >= search.MIN_QUERY and folded in self.folded_name)
            ):
                return False
            others = sa.select(Conversation.id).where(
                queries.conversation_matches(query), Conversation.id != self.conversation_id
            )
        elif field == "text":
            folded = folding.folded_query(query)
            if len(folded) < search.MIN_QUERY or not any(folded in text for text in self.folded_texts):
                return False
            others = sa.select(Message.id).where(
                search.text_matches(query, db.session.get_bind().dialect.name),
                Message.conversation_id != self.conversation_id,
            )
        else:
            return False
        return not db.session.scalar(sa.select(sa.exists(others.limit(1))))

    def erase_from(self, details: dict) -> bool:
        """Erase what identifies this person from an audit event's details, in place; True if
        anything was."""
        about_them = self.conversation_id in (details.get("conversation"), details.get("conversation_id"))
        matched = details.get(MATCHED) or []
        changed = False
        for name, value in details.items():
            if name not in TYPED_DETAILS or not isinstance(value, str) or not value or value == ERASED:
                continue
            if self.mentioned_in(value) or (
                name in TYPED_DETAILS
                and (about_them or matched == [self.conversation_id] or self.only_match_of(name, value))
            ):
                details[name] = ERASED
                changed = True
        return changed


def search_subjects(q: str, text: str) -> list[int] | None:
    """The conversations an export's search matches, when they are few (up to FEW_SUBJECTS):
    recorded with the export, so that erasing one of them later finds a search that named only
    them, even by a contact name since changed. None without a search or with many matches."""
    conditions = []  # each whole: only the combined query is cut, or a few shared ones go unseen
    if q:
        conditions.append(queries.conversation_matches(q))
    if text:
        matching = sa.select(Message.conversation_id).where(
            search.text_matches(text, db.session.get_bind().dialect.name)
        )
        conditions.append(Conversation.id.in_(matching.scalar_subquery()))
    if not conditions:
        return None
    found = list(
        db.session.scalars(
            sa.select(Conversation.id).where(*conditions).order_by(Conversation.id).limit(FEW_SUBJECTS + 1)
        )
    )
    return found if 0 < len(found) <= FEW_SUBJECTS else None


def delete_dead_letters_mentioning(person: ErasedPerson) -> int:
    """Dead letters that mention the person, however the provider wrote the number: in the raw
    bytes, or in any string of the body once decoded as JSON (`"\\u002b372..."` is `+372...`)."""
    found = [
        letter_id
        for letter_id, body in db.session.execute(sa.select(DeadLetter.id, DeadLetter.raw_body))
        if dead_letter_mentions(person, bytes(body))
    ]
    for chunk in chunks(found):
        db.session.execute(sa.delete(DeadLetter).where(DeadLetter.id.in_(chunk)))
    return len(found)


def dead_letter_mentions(person: ErasedPerson, raw: bytes) -> bool:
    """The number anywhere in the body; the name in a JSON body's string values (its keys are
    the provider's field names: a contact named "Text" is not in every body), or anywhere in a
    body that is not JSON."""
    if person.mentions_number(raw):
        return True
    values = json_strings(raw)
    if values is None:
        return person.names(raw.decode("utf-8", "replace"))
    return any(person.mentioned_in(value) for value in values)


def json_strings(raw: bytes) -> list[str] | None:
    """Every string value in a JSON body, once decoded; None if the body is not JSON."""
    try:
        document = json.loads(raw)
    except ValueError:
        return None
    texts, pending = [], [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return texts


def words(folded: str) -> list[str]:
    return WORD.findall(folded)


def redact_audit_trail(person: ErasedPerson, batch_size: int = 1000) -> int:
    """The one change the app makes to recorded events: what identifies an erased person goes
    from their details (the event itself stays); returns how many events changed. Reads every
    event's details: an erasure is rare, and the trail is kept a year by default."""
    redacted, after = 0, 0
    while True:
        rows = db.session.execute(
            sa.select(AuditEvent.id, AuditEvent.details)
            .where(AuditEvent.id > after)
            .order_by(AuditEvent.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return redacted
        for event_id, text in rows:
            details = json.loads(text)
            if isinstance(details, dict) and person.erase_from(details):
                db.session.execute(
                    sa.update(AuditEvent)
                    .where(AuditEvent.id == event_id)
                    .values(details=json.dumps(details, ensure_ascii=False, sort_keys=True, default=str))
                )
                redacted += 1
        after = rows[-1].id


def chunks(values: list, size: int = 500):
    for start in range(0, len(values), size):
        yield values[start : start + size]
