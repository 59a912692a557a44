"""The inbox's views (Open, Done, All, Unread, Opted out), their filters and their counts.

A view is a condition on the conversation row; the filters narrow any view to a channel (the
channel of the conversation's latest message, as the list shows it) or to one of our numbers
(conversations with a message to it, from `conversation_recipient`, which ingest keeps).

Counts are not counted on every poll: they are counted once per change number (one
aggregate query over the conversations) and kept per process until the change number moves.
A poll that finds nothing changed never gets here; one that does recounts once for everyone
looking at the same filters.
"""

import threading
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from app.db.models import Conversation, ConversationRecipient
from app.extensions import db

VIEWS = {"open": "Open", "done": "Done", "all": "All", "unread": "Unread", "opted-out": "Opted out"}
DEFAULT_VIEW = "open"


@dataclass(frozen=True)
class ListFilter:
    """Which conversations a list shows: a view, and optionally a channel and one of our numbers."""

    view: str = "all"
    channel: str | None = None
    recipient: str | None = None

    @classmethod
    def from_args(cls, args) -> "ListFilter":
        """From a query string; an unknown view is the default one, empty filters are none."""
        view = args.get("view", DEFAULT_VIEW)
        return cls(
            view if view in VIEWS else DEFAULT_VIEW,
            args.get("channel", "").strip() or None,
            args.get("to", "").strip() or None,
        )

    def url_args(self, **changes) -> dict:
        """Query-string arguments for links and polls: the default view and empty filters left out."""
        view, channel, recipient = (
            changes.get("view", self.view),
            changes.get("channel", self.channel),
            changes.get("recipient", self.recipient),
        )
        return {"view": None if view == DEFAULT_VIEW else view, "channel": channel or None, "to": recipient or None}

    def narrowing(self) -> list[sa.ColumnElement[bool]]:
        """The channel and number filters, without the view."""
        conditions = []
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
        return conditions

    def conditions(self) -> list[sa.SQLColumnExpression[bool]]:
        view = view_condition(self.view)
        return ([view] if view is not None else []) + self.narrowing()


def view_condition(view: str) -> sa.SQLColumnExpression[bool] | None:
    return {
        "open": Conversation.status == "open",
        "done": Conversation.status == "done",
        "unread": Conversation.unread_count > 0,
        "opted-out": Conversation.opted_out,  # as the partial index says it, so the index is used
    }.get(view)


@dataclass(frozen=True)
class ViewFacts:
    """What the view tabs and filter menus show at one change number."""

    counts: dict[str, int]
    channels: list[str]
    recipients: list[str]


_lock = threading.Lock()


def view_facts(list_filter: ListFilter, latest_change: int) -> ViewFacts:
    """Counts per view under the filter, and the channels and numbers to filter by.

    Counted once per change number and filter, then kept (per process) until the number moves.
    """
    cache = current_app.extensions.setdefault("list_view_facts", {})
    key = (list_filter.channel, list_filter.recipient)
    with _lock:
        if cache.get("change") != latest_change:
            cache.clear()
            cache["change"] = latest_change
        found = cache.get(key)
    if found is not None:
        return found
    facts = ViewFacts(count_views(list_filter), channels(), recipients())
    with _lock:
        if cache.get("change") == latest_change:
            cache[key] = facts
    return facts


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

        every, done = count(), count(view_condition("done"))
        return {
            "open": every - done,
            "done": done,
            "all": every,
            "unread": count(view_condition("unread")),
            "opted-out": count(view_condition("opted-out")),
        }

    def count_where(condition):
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    columns = [
        count_where(view_condition(view)) if view_condition(view) is not None else sa.func.count() for view in VIEWS
    ]
    query = sa.select(*columns).select_from(Conversation).where(*narrowing)
    return dict(zip(VIEWS, db.session.execute(query).one(), strict=True))


def channels() -> list[str]:
    return list(db.session.scalars(sa.select(Conversation.channel).distinct().order_by(Conversation.channel)))


def recipients() -> list[str]:
    """Our numbers customers wrote to."""
    return list(
        db.session.scalars(
            sa.select(ConversationRecipient.recipient).distinct().order_by(ConversationRecipient.recipient)
        )
    )
