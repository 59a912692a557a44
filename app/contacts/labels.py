"""Labels: one set of labels for conversations ("refund", "VIP"), kept by admins, put on and taken
off a conversation by anyone on the team.

A label's name is unique without regard to case or accents (its `name_key`, folding.fold: "VIP"
and "vip" are one label) and holds no comma: the export joins a conversation's names with ", ".
Its colour is one of LABEL_COLOURS, which the stylesheet shows with AA contrast in both schemes.

Every change is audited, in the transaction that makes it. A change that alters what a list row
or a thread header shows (a label put on or taken off, renamed, recoloured, deleted) stamps the
conversations it touches with the change number, so every open list and thread redraws at its
next poll; and rewrites their `label_names` (the export's column: names sorted, joined by ", ").
"""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app import audit, webhooks
from app.db.folding import clean_text, fold
from app.db.models import LABEL_COLOURS, LABEL_KEY_LENGTH, LABEL_NAME_LENGTH, Conversation, ConversationLabel, Label
from app.db.unit_of_work import change_number, write_transaction
from app.extensions import db

COLOURS = LABEL_COLOURS
DEFAULT_COLOUR = "grey"


class LabelRefused(ValueError):
    """Why a label can't be stored, for people."""


@dataclass(frozen=True)
class Chip:
    """A label as a row or header shows it."""

    id: int
    name: str
    colour: str


def name_key(name: str) -> str:
    """What names are compared by: case and accents aside ("VIP", "vip" and "Vîp" are one)."""
    return fold(" ".join(clean_text(name).split()))[:LABEL_KEY_LENGTH]


def clean_name(name: str) -> str:
    """The name on one line, trimmed; LabelRefused for an empty, long or comma-holding one."""
    name = " ".join(clean_text(name).split())
    if not name:
        raise LabelRefused("Give the label a name.")
    if len(name) > LABEL_NAME_LENGTH:
        raise LabelRefused(f"A label's name is at most {LABEL_NAME_LENGTH} characters.")
    if "," in name:
        raise LabelRefused(
            "A label's name cannot contain a comma: the export lists a conversation's labels separated by commas."
        )
    return name


def checked_colour(colour: str) -> str:
    if colour not in COLOURS:
        raise LabelRefused(f"Pick one of the colours: {', '.join(COLOURS)}.")
    return colour


def all_labels() -> list[Label]:
    """Every label, by name (case aside)."""
    return list(db.session.scalars(sa.select(Label).order_by(Label.name_key, Label.id)))


def label(label_id: int) -> Label | None:
    return db.session.get(Label, label_id)


def usage() -> dict[int, int]:
    """How many conversations each label is on (labels on none are left out)."""
    query = sa.select(ConversationLabel.label_id, sa.func.count()).group_by(ConversationLabel.label_id)
    return {label_id: count for label_id, count in db.session.execute(query)}


def _taken_by_another(session, key: str, label_id: int | None) -> str | None:
    query = sa.select(Label.name).where(Label.name_key == key)
    if label_id is not None:
        query = query.where(Label.id != label_id)
    return session.scalar(query)


def create(name: str, colour: str = DEFAULT_COLOUR) -> int:
    """A new label (audited); its id. LabelRefused for a bad name or one taken (case aside)."""
    name, colour = clean_name(name), checked_colour(colour)
    key = name_key(name)
    try:
        with write_transaction() as session:
            taken = _taken_by_another(session, key, None)
            if taken is not None:
                raise LabelRefused(f"There is a label called “{taken}” already.")
            row = Label(name=name, name_key=key, colour=colour)
            session.add(row)
            session.flush()
            audit.record("label_created", {"label": name, "colour": colour})
            return row.id
    except IntegrityError:  # another admin made it meanwhile
        raise LabelRefused(f"There is a label called “{name}” already.") from None


def update(label_id: int, name: str, colour: str) -> None:
    """Rename and recolour a label in one transaction (each change audited)."""
    with write_transaction():
        rename(label_id, name)
        recolour(label_id, colour)


def rename(label_id: int, name: str) -> bool:
    """Give a label a new name (audited); it stays on its conversations. False when unchanged."""
    name = clean_name(name)
    key = name_key(name)
    try:
        with write_transaction() as session:
            row = _existing(session, label_id)
            if row.name == name:
                return False
            taken = _taken_by_another(session, key, label_id)
            if taken is not None:
                raise LabelRefused(f"There is a label called “{taken}” already.")
            was = row.name
            row.name, row.name_key = name, key
            session.flush()
            _refresh(_stamp_conversations_of(label_id))
            audit.record("label_renamed", {"label": name, "was": was})
    except IntegrityError:
        raise LabelRefused(f"There is a label called “{name}” already.") from None
    return True


def recolour(label_id: int, colour: str) -> bool:
    """Give a label another colour from the palette (audited). False when unchanged."""
    colour = checked_colour(colour)
    with write_transaction() as session:
        row = _existing(session, label_id)
        if row.colour == colour:
            return False
        was, row.colour = row.colour, colour
        _stamp_conversations_of(label_id)
        audit.record("label_recoloured", {"label": row.name, "colour": colour, "was": was})
    return True


def delete(label_id: int) -> int:
    """Delete a label and take it off every conversation (audited); how many it was on."""
    with write_transaction() as session:
        row = _existing(session, label_id)
        on = _stamp_conversations_of(label_id)
        session.execute(sa.delete(ConversationLabel).where(ConversationLabel.label_id == label_id))
        _refresh(on)
        name = row.name
        session.delete(row)
        audit.record("label_deleted", {"label": name, "conversations": len(on)})
    return len(on)


def _existing(session, label_id: int) -> Label:
    row = session.get(Label, label_id)
    if row is None:
        raise LabelRefused("That label was deleted meanwhile.")
    return row


def _stamp_conversations_of(label_id: int) -> list[int]:
    """The conversations that have the label get this change number (lists and headers redraw); their ids."""
    on = sa.select(ConversationLabel.conversation_id).where(ConversationLabel.label_id == label_id)
    result = db.session.execute(
        sa.update(Conversation)
        .where(Conversation.id.in_(on.scalar_subquery()))
        .values(change_seq=change_number())
        .returning(Conversation.id)
    )
    return sorted(result.scalars())


REFRESH_BATCH = 500  # conversations whose label names are read and written per statement


def _refresh(conversation_ids: list[int]) -> None:
    """Rewrite these conversations' `label_names` from their labels (in the caller's transaction)."""
    for start in range(0, len(conversation_ids), REFRESH_BATCH):
        batch = conversation_ids[start : start + REFRESH_BATCH]
        chips = for_conversations(batch)
        table = Conversation.__table__
        db.session.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("conversation_id"))
            .values(label_names=sa.bindparam("names")),
            [
                {"conversation_id": conversation_id, "names": joined_names(chips.get(conversation_id, []))}
                for conversation_id in batch
            ],
        )


def joined_names(chips: list[Chip]) -> str | None:
    """The export's `labels` cell: the names in order, joined by ", "; None for none."""
    return ", ".join(chip.name for chip in chips) or None


def add_to(conversation_id: int, label_id: int) -> bool:
    """Put a label on a conversation (audited); False when it was on it already."""
    with write_transaction() as session:
        row = _existing(session, label_id)
        there = session.scalar(
            sa.select(ConversationLabel.id).where(
                ConversationLabel.conversation_id == conversation_id, ConversationLabel.label_id == label_id
            )
        )
        if there is not None:
            return False
        session.add(ConversationLabel(conversation_id=conversation_id, label_id=label_id))
        session.flush()
        _stamp(conversation_id)
        audit.record("label_added", {"conversation": conversation_id, "label": row.name})
        webhooks.conversation_event("conversation.updated", conversation_id, ["labels"])
    return True


def remove_from(conversation_id: int, label_id: int) -> bool:
    """Take a label off a conversation (audited); False when it was not on it."""
    with write_transaction() as session:
        row = _existing(session, label_id)
        removed = session.scalar(
            sa.delete(ConversationLabel)
            .where(ConversationLabel.conversation_id == conversation_id, ConversationLabel.label_id == label_id)
            .returning(ConversationLabel.id)
        )
        if removed is None:
            return False
        _stamp(conversation_id)
        audit.record("label_removed", {"conversation": conversation_id, "label": row.name})
        webhooks.conversation_event("conversation.updated", conversation_id, ["labels"])
    return True


def _stamp(conversation_id: int) -> None:
    """Its labels changed: a new change number, and its names written anew."""
    db.session.execute(
        sa.update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(change_seq=change_number(), label_names=joined_names(of_conversation(conversation_id)))
    )


def for_conversations(ids: list[int] | set[int]) -> dict[int, list[Chip]]:
    """The labels of these conversations (a page of rows), each's by name: one query."""
    if not ids:
        return {}
    query = (
        sa.select(ConversationLabel.conversation_id, Label.id, Label.name, Label.colour, Label.name_key)
        .join(Label, Label.id == ConversationLabel.label_id)
        .where(ConversationLabel.conversation_id.in_(sorted(set(ids))))
    )
    found: dict[int, list[tuple[str, Chip]]] = {}
    for conversation_id, label_id, name, colour, key in db.session.execute(query):
        found.setdefault(conversation_id, []).append((key, Chip(label_id, name, colour)))
    # Sorted here: a page's few labels, where the database would sort the whole result.
    return {
        conversation_id: [chip for _, chip in sorted(chips, key=lambda pair: pair[0])]
        for conversation_id, chips in found.items()
    }


def of_conversation(conversation_id: int) -> list[Chip]:
    return for_conversations([conversation_id]).get(conversation_id, [])
