"""The inbox's views (Open, Snoozed, Done, All, Unread, Mentions, Opted out), their filters and their counts.

Mentions is each person's own: the conversations where a note mentions them and they have not
read it since (`mention`, app/replies/notes.py); its count is counted per person.

A view is a condition on the conversation row; the filters narrow any view to a channel (the
channel of the conversation's latest message, as the list shows it), to one of our numbers
(conversations with a message to it, from `conversation_recipient`, which ingest keeps) and to
an owner (Mine, Unassigned, or a teammate's: `assignee`).

Counts are not counted on every poll: they are counted once per change number (one
aggregate query over the conversations) and kept per process until the change number moves.
A poll that finds nothing changed never gets here; one that does recounts once for everyone
looking at the same filters.
"""

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from flask import current_app

from app.contacts import snooze
from app.db.folding import clean_text, fold
from app.db.models import (
    LABEL_KEY_LENGTH,
    Conversation,
    ConversationLabel,
    ConversationRecipient,
    Label,
    Mention,
)
from app.extensions import db

VIEWS = {
    "open": "Open",
    "snoozed": "Snoozed",
    "done": "Done",
    "all": "All",
    "unread": "Unread",
    "mentions": "Mentions",
    "opted-out": "Opted out",
}
PERSONAL_VIEWS = ("mentions",)  # counted for each person, never shared
DEFAULT_VIEW = "open"
T = TypeVar("T")
# The views by owner, beside the status views: `?assignee=me`, `none`, or a person's id; All
# (no `assignee`) is the default.
OWNER_VIEWS = {"me": "Mine", "none": "Unassigned", "all": "All"}
MOST_LABELS = 10  # labels one list is filtered by at once; more are left out


@dataclass(frozen=True)
class ListFilter:
    """Which conversations a list shows: a view, and optionally a channel, one of our numbers and
    an owner. `assignee` is as the URL says it ("me", "none", a person's id); `me` is whose "me"
    it is (the person asking), so that the conditions name one person's id."""

    view: str = "all"
    channel: str | None = None
    recipient: str | None = None
    assignee: str | None = None
    me: int | None = None
    # Labels the conversations must all have, by name as compared (label_key): `?label=refund&label=vip`.
    labels: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args, me: int | None = None) -> "ListFilter":
        """From a query string; an unknown view is the default one, empty (or unknown) filters are none."""
        view = args.get("view", DEFAULT_VIEW)
        assignee = args.get("assignee", "").strip()
        return cls(
            view if view in VIEWS else DEFAULT_VIEW,
            args.get("channel", "").strip() or None,
            args.get("to", "").strip() or None,
            assignee if assignee in ("me", "none") or (assignee.isdigit() and len(assignee) < 10) else None,
            me,
            label_keys(args.getlist("label")),
        )

    @property
    def assignee_id(self) -> int | None:
        """The owner's id this filter keeps (for "me", the person asking); None for none or any."""
        if self.assignee == "me":
            return self.me
        return int(self.assignee) if self.assignee and self.assignee.isdigit() else None

    @property
    def owner_view(self) -> str:
        """Which owner tab is current: "me" (a person's own id in the URL too), "none", "all",
        or "" (a teammate's conversations: no tab)."""
        if self.assignee in (None, "none"):
            return self.assignee or "all"
        return "me" if self.assignee_id is not None and self.assignee_id == self.me else ""

    def url_args(self, **changes) -> dict:
        """Query-string arguments for links and polls: the default view and empty filters left out."""
        view, channel, recipient, assignee = (
            changes.get("view", self.view),
            changes.get("channel", self.channel),
            changes.get("recipient", self.recipient),
            changes.get("assignee", self.assignee),
        )
        return {
            "view": None if view == DEFAULT_VIEW else view,
            "channel": channel or None,
            "to": recipient or None,
            "assignee": None if assignee in (None, "", "all") else assignee,
            "label": list(changes.get("labels", self.labels)) or None,
        }

    def owner_condition(self) -> sa.ColumnElement[bool] | None:
        if self.assignee is None:
            return None
        if self.assignee == "none":
            return Conversation.assignee_id.is_(None)
        owner = self.assignee_id
        return Conversation.assignee_id == owner if owner is not None else sa.false()

    def narrowing(self) -> list[sa.ColumnElement[bool]]:
        """The channel, number and owner filters, without the view."""
        owner = self.owner_condition()
        return self.narrowing_but_owner() + ([owner] if owner is not None else [])

    def narrowing_but_owner(self) -> list[sa.ColumnElement[bool]]:
        """The channel, number and label filters: what the owner views' counts are counted under."""
        conditions: list[sa.ColumnElement[bool]] = []
        if self.channel:
            conditions.append(Conversation.channel == self.channel)
        if self.recipient:
            conditions.append(
                Conversation.id.in_(
                    sa.select(ConversationRecipient.conversation_id)
                    .where(ConversationRecipient.recipient == self.recipient)
                    .scalar_subquery()
                )
            )
        conditions += [has_label(key) for key in self.labels]
        return conditions

    def conditions(self) -> list[sa.SQLColumnExpression[bool]]:
        view = view_condition(self.view, self.me)
        if self.assignee not in (None, "none") and self.view in ("open", "done"):
            # One person's conversations are few: walk them on the owner's index and test the
            # status of each. Said as a status index could serve it, SQLite (without statistics)
            # walks every open conversation instead, testing each for its owner. PostgreSQL walks
            # the owner's index either way, but only if it can estimate the status test: hidden
            # from it, a person with thousands looks like a few, read whole and sorted.
            status = Conversation.status + "" if db.session.get_bind().dialect.name == "sqlite" else Conversation.status
            view = status == self.view
            if self.view == "open":
                view = sa.and_(view, snooze.awake())
        return ([view] if view is not None else []) + self.narrowing()


def label_keys(names: list[str]) -> tuple[str, ...]:
    """Label names from a query string as they are compared (case and accents aside), each once."""
    keys = (fold(" ".join(clean_text(name).split()))[:LABEL_KEY_LENGTH] for name in names)
    return tuple(dict.fromkeys(key for key in keys if key))[:MOST_LABELS]


def has_label(key: str) -> sa.ColumnElement[bool]:
    """Conversations that have the label named so (none, for a name no label has): read from the
    label's own conversations, on the (label_id, conversation_id) index."""
    label_id = sa.select(Label.id).where(Label.name_key == key).scalar_subquery()
    return Conversation.id.in_(
        sa.select(ConversationLabel.conversation_id).where(ConversationLabel.label_id == label_id).scalar_subquery()
    )


def view_condition(view: str, me: int | None = None) -> sa.SQLColumnExpression[bool] | None:
    if view == "mentions":
        return mentioned(me)
    return {
        # Open leaves out the snoozed ones (still "open": they come back), which have a view of their own.
        "open": sa.and_(Conversation.status == "open", snooze.awake()),
        "snoozed": snooze.snoozed(),  # as its partial index says it
        "done": Conversation.status == "done",
        "unread": Conversation.unread_count > 0,
        "opted-out": Conversation.opted_out,  # as the partial index says it, so the index is used
    }.get(view)


def mentioned(me: int | None) -> sa.ColumnElement[bool]:
    """Conversations with a mention of `me` not read yet: from the person's unread mentions (a
    partial index), however many conversations there are."""
    if me is None:
        return sa.false()
    unread = sa.select(Mention.conversation_id).where(Mention.user_id == me, Mention.read_at.is_(None))
    return Conversation.id.in_(unread.scalar_subquery())


@dataclass(frozen=True)
class ViewFacts:
    """What the view tabs and filter menus show at one change number."""

    counts: dict[str, int]
    channels: list[str]
    recipients: list[str]


_lock = threading.Lock()


def _once_per_change(key: tuple, latest_change: int, compute: Callable[[], T]) -> T:
    """`compute()`, kept (per process) under `key` until the change number moves."""
    cache = current_app.extensions.setdefault("list_view_facts", {})
    with _lock:
        if cache.get("change") != latest_change:
            cache.clear()
            cache["change"] = latest_change
        found = cache.get(key)
    if found is not None:
        return found
    computed = compute()
    with _lock:
        if cache.get("change") == latest_change:
            cache[key] = computed
    return computed


def view_facts(list_filter: ListFilter, latest_change: int) -> ViewFacts:
    """Counts per view under the filter, and the channels and numbers to filter by.

    Counted once per change number and filter, then kept (per process) until the number moves;
    Mentions once more for each person. The owner filter counts by the id it resolves to: two people's "Mine" are two keys, and
    Mine and a person's own id one.
    """
    owner = list_filter.assignee if list_filter.assignee in (None, "none") else list_filter.assignee_id
    key = ("views", list_filter.channel, list_filter.recipient, owner, list_filter.labels)

    def with_mentions() -> ViewFacts:
        shared = _once_per_change(
            key, latest_change, lambda: ViewFacts(count_views(list_filter), channels(), recipients())
        )
        return ViewFacts({**shared.counts, "mentions": count_mentions(list_filter)}, shared.channels, shared.recipients)

    # Mentions counts the person's own: their facts are the shared ones with that count.
    return _once_per_change(("mine", *key, list_filter.me), latest_change, with_mentions)


def count_mentions(list_filter: ListFilter) -> int:
    """How many conversations the person asking has unread mentions in, under the filters."""
    query = (
        sa.select(sa.func.count()).select_from(Conversation).where(mentioned(list_filter.me), *list_filter.narrowing())
    )
    return db.session.scalar(query) or 0


def owner_counts(list_filter: ListFilter, latest_change: int) -> dict[str, int]:
    """How many conversations of the status view (under the channel and number filters) are the
    person's own (Mine), unassigned, and in all. Unassigned and All are counted once per change
    number for everyone; Mine once per person."""
    in_view = [condition for condition in [view_condition(list_filter.view, list_filter.me)] if condition is not None]
    narrowing = in_view + list_filter.narrowing_but_owner()
    shared_key: tuple = (list_filter.view, list_filter.channel, list_filter.recipient, list_filter.labels)
    if list_filter.view in PERSONAL_VIEWS:  # one person's conversations: counted for them alone
        shared_key += (list_filter.me,)

    def count(*conditions: sa.ColumnElement[bool]) -> int:
        query = sa.select(sa.func.count()).select_from(Conversation).where(*narrowing, *conditions)
        return db.session.scalar(query) or 0

    def shared() -> dict[str, int]:
        return {"none": count(Conversation.assignee_id.is_(None)), "all": count()}

    mine = (
        _once_per_change(
            ("mine", *shared_key, list_filter.me),
            latest_change,
            lambda: count(Conversation.assignee_id == list_filter.me),
        )
        if list_filter.me is not None
        else 0
    )
    return {"me": mine, **_once_per_change(("owners", *shared_key), latest_change, shared)}


def count_views(list_filter: ListFilter) -> dict[str, int]:
    """How many conversations each view holds under the channel and number filters (one query).

    Unfiltered, each view is counted from its own index alone (Open as All minus Done); with a
    filter, one pass over the conversations the filter leaves.
    """
    narrowing = list_filter.narrowing()
    if not narrowing:

        def count(condition=None) -> int:
            query = sa.select(sa.func.count()).select_from(Conversation)
            return db.session.scalar(query.where(condition) if condition is not None else query) or 0

        # A snoozed conversation is never done (snoozing opens it, Done ends the snooze).
        every, done, snoozed = count(), count(view_condition("done")), count(view_condition("snoozed"))
        return {
            "open": every - done - snoozed,
            "snoozed": snoozed,
            "done": done,
            "all": every,
            "unread": count(view_condition("unread")),
            "opted-out": count(view_condition("opted-out")),
        }

    def count_where(condition):
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    views = [view for view in VIEWS if view not in PERSONAL_VIEWS]
    columns = [
        count_where(view_condition(view)) if view_condition(view) is not None else sa.func.count() for view in views
    ]
    query = sa.select(*columns).select_from(Conversation).where(*narrowing)
    return dict(zip(views, db.session.execute(query).one(), strict=True))


def channels() -> list[str]:
    return list(db.session.scalars(sa.select(Conversation.channel).distinct().order_by(Conversation.channel)))


def recipients() -> list[str]:
    """Our numbers customers wrote to."""
    return list(
        db.session.scalars(
            sa.select(ConversationRecipient.recipient).distinct().order_by(ConversationRecipient.recipient)
        )
    )


@dataclass(frozen=True)
class LabelFacet:
    """A label in the list's label filter: how many conversations the list would show with it."""

    id: int
    name: str
    key: str
    colour: str
    count: int
    chosen: bool


def label_facets(list_filter: ListFilter, latest_change: int, labels: Sequence[Label]) -> list[LabelFacet]:
    """Every label (`labels`, by name: app/contacts/labels.py all_labels), with how many
    conversations of the view, under all the list's filters (the labels chosen included), have it:
    for a chosen label the list's own count, for another how many adding it would leave. The
    labels are read for each page (a few rows: one made, renamed or recoloured shows at once,
    though no conversation changed), once for the list and the header's label menu; their counts
    are one grouped query, once per change number and filter."""
    if not labels:
        return []
    owner = list_filter.assignee if list_filter.assignee in (None, "none") else list_filter.assignee_id
    key: tuple = ("labels", list_filter.view, list_filter.channel, list_filter.recipient, owner, list_filter.labels)
    if list_filter.view in PERSONAL_VIEWS:  # one person's conversations: counted for them alone
        key += (list_filter.me,)
    counts = _once_per_change(key, latest_change, lambda: count_labels(list_filter))
    return [
        LabelFacet(
            label.id,
            label.name,
            label.name_key,
            label.colour,
            counts.get(label.id, 0),
            label.name_key in list_filter.labels,
        )
        for label in labels
    ]


def count_labels(list_filter: ListFilter) -> dict[int, int]:
    """How many conversations the filter keeps have each label (labels on none left out)."""
    counted = (
        sa.select(ConversationLabel.label_id, sa.func.count())
        .join(Conversation, Conversation.id == ConversationLabel.conversation_id)
        .where(*list_filter.conditions())
        .group_by(ConversationLabel.label_id)
    )
    return {label_id: count for label_id, count in db.session.execute(counted)}
