"""Every figure the Reports page shows, from the tallies (sums) and the conversation openings
(medians and percentiles) kept at write time (app/tallies); docs/reports.md defines each.

A range is whole days in the team's time zone; tallies are kept per UTC quarter hour, so any
zone's midnight (+05:30 and +05:45 included) is a bucket boundary and the sums are exact.
Percentiles are nearest-rank: the p-th percentile of n sorted values is the value at position
ceil(p/100 * n) (1-based); the median is the 50th.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app import clock, hours, tallies, team
from app.db.models import ConversationEvent, ConversationLabel, ConversationOpening, Label, User
from app.extensions import db
from app.inbox import list_views
from app.reports import business
from app.team import currency as team_currency

PRESETS = {"this_week": "This week", "last_week": "Last week", "last_30": "Last 30 days", "custom": "Custom"}
MOST_DAYS = 366
DELIVERED = ("DELIVRD", "SEEN")
NOT_SENT = ("failed", "unconfirmed")  # dlv outcomes of replies Messente did not take (or may not have)

DEFINITIONS = {
    "started": "Conversations whose first customer message arrived in the range.",
    "reopened": "Customer messages that came to a conversation marked done, in the range.",
    "messages_in": "Customer messages that arrived in the range.",
    "messages_out": "Replies written in the range: people's, the away reply and the API's (notes aside).",
    "first_response": "From the customer message that opened or reopened a conversation to the first reply a person sent (away replies, API replies and notes don't count); openings in the range.",
    "unanswered": "Openings in the range that no person has answered yet.",
    "time_to_done": "From the customer message that opened or reopened a conversation to the first time it was marked done after it; openings in the range.",
    "done_total": "Times a conversation was marked done in the range (by a person, the API or the app).",
    "opt_outs": "Conversations opted out in the range, by the customer's STOP or by a person.",
    "replies": "Replies the person wrote in the range.",
    "done": "Conversations the person marked done in the range.",
    "answered": "Openings in the range the person sent the first response to, and its median.",
    "delivery": "Replies written in the range that Messente took (sent), those with a DELIVRD or SEEN report (delivered), their ratio, and each failure's count.",
    "cost": "What replies written in the range cost, from their delivery reports' price (each leg's latest report once).",
}


@dataclass(frozen=True)
class Range:
    preset: str
    first_day: date  # in the team's zone
    last_day: date  # inclusive
    start: datetime  # naive UTC
    end: datetime

    @property
    def days(self) -> list[date]:
        return [self.first_day + timedelta(days=n) for n in range((self.last_day - self.first_day).days + 1)]


class RangeRefused(ValueError):
    pass


def date_range(preset: str, first: date | None = None, last: date | None = None, today: date | None = None) -> Range:
    """The range a preset (or custom days) names, in the team's zone; `today` is the team's."""
    today = today or team.local(clock.now()).date()
    monday = today - timedelta(days=today.weekday())
    if preset == "last_week":
        first, last = monday - timedelta(days=7), monday - timedelta(days=1)
    elif preset == "last_30":
        first, last = today - timedelta(days=29), today
    elif preset == "custom":
        if first is None or last is None:
            raise RangeRefused("Choose the first and the last day.")
        if last < first:
            raise RangeRefused("The last day comes before the first.")
        if (last - first).days + 1 > MOST_DAYS:
            raise RangeRefused(f"Choose at most {MOST_DAYS} days.")
    else:
        preset, first, last = "this_week", monday, monday + timedelta(days=6)
    return Range(preset, first, last, _utc_midnight(first), _utc_midnight(last + timedelta(days=1)))


def _utc_midnight(day: date) -> datetime:
    return team.to_utc(datetime.combine(day, datetime.min.time()))


@dataclass(frozen=True)
class Filters:
    our_number: str | None = None
    channel: str | None = None
    user_id: int | None = None
    label_id: int | None = None
    business_hours: bool = False


@dataclass(frozen=True)
class Stats:
    count: int = 0
    median: float | None = None
    p90: float | None = None


@dataclass
class Person:
    user_id: int
    name: str
    replies: int = 0
    done: int = 0
    answered: int = 0
    answered_median: float | None = None
    cost: Decimal = Decimal(0)
    parts: int = 0


@dataclass
class ChannelDelivery:
    channel: str
    sent: int = 0
    delivered: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        return self.delivered / self.sent if self.sent else None


@dataclass
class CostRow:
    key: str
    cost: Decimal = Decimal(0)
    parts: int = 0


@dataclass
class Day:
    day: date
    messages_in: int = 0
    messages_out: int = 0
    first_response: Stats = field(default_factory=Stats)


@dataclass
class Report:
    range: Range
    filters: Filters
    currency: str = "EUR"
    started: int = 0
    reopened: int = 0
    messages_in: int = 0
    messages_out: int = 0
    done: int = 0
    opt_outs: int = 0
    first_response: Stats = field(default_factory=Stats)
    unanswered: int = 0
    time_to_done: Stats = field(default_factory=Stats)
    people: list[Person] = field(default_factory=list)
    delivery: list[ChannelDelivery] = field(default_factory=list)
    cost_by_channel: list[CostRow] = field(default_factory=list)
    cost_by_number: list[CostRow] = field(default_factory=list)
    cost_total: Decimal = Decimal(0)
    per_day: list[Day] = field(default_factory=list)
    # busiest hours: customer messages per weekday (Monday first) and hour, in the team's zone
    heat: list[list[int]] = field(default_factory=lambda: [[0] * 24 for _ in range(7)])


def percentile(values: Sequence[float], p: int) -> float | None:
    """Nearest rank: the value at position ceil(p/100 * n) of the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]


def stats(values: Sequence[float]) -> Stats:
    return Stats(len(values), percentile(values, 50), percentile(values, 90))


def report(period: Range, filters: Filters, viewer_id: int, is_admin: bool, currency: str | None = None) -> Report:
    """The figures for a range and filters, as `viewer_id` may see them: an admin everyone's rows,
    anyone else only their own person row (the team's totals hold nobody's data)."""
    result = Report(period, filters, currency or team_currency.currency())  # the account's setting
    connection = db.session.connection()
    where: dict = {"channel": filters.channel, "our_number": filters.our_number}

    # Sums, whole range: by metric, channel, number and person.
    sums = tallies.totals(connection, period.start, period.end, by=["channel", "our_number", "user_id"], **where)
    people: dict[int, Person] = {}
    names = dict(db.session.execute(sa.select(User.id, User.username)).all())

    def person(user_id: int) -> Person:
        if user_id not in people:
            people[user_id] = Person(user_id, names.get(user_id, f"#{user_id}"))
        return people[user_id]

    deliveries: dict[str, ChannelDelivery] = {}
    by_channel: dict[str, CostRow] = {}
    by_number: dict[str, CostRow] = {}
    chosen = filters.user_id
    for row in sums:
        value, metric = row.value, row.metric
        mine = chosen is None or row.user_id == chosen
        if metric == "in":
            result.messages_in += int(value)
        elif metric == "out":
            if mine:
                result.messages_out += int(value)
            if row.user_id:
                person(row.user_id).replies += int(value)
        elif metric == "started" and filters.label_id is None:
            result.started += int(value)
        elif metric == "reopened" and filters.label_id is None:
            result.reopened += int(value)
        elif metric == "done" and filters.label_id is None:
            if mine:
                result.done += int(value)
            if row.user_id:
                person(row.user_id).done += int(value)
        elif metric == "opted_out" and filters.label_id is None:
            result.opt_outs += int(value)
        elif metric.startswith("dlv:") and mine:
            outcome = metric[4:]
            channel = deliveries.setdefault(row.channel, ChannelDelivery(row.channel))
            if outcome not in NOT_SENT:
                channel.sent += int(value)
            if outcome in DELIVERED:
                channel.delivered += int(value)
            elif outcome not in ("sent", "ACCEPTD", "ACK"):
                channel.failures[outcome] = channel.failures.get(outcome, 0) + int(value)
        elif metric in ("cost", "parts"):
            if row.user_id:
                target = person(row.user_id)
                if metric == "cost":
                    target.cost += value
                else:
                    target.parts += int(value)
            if not mine:
                continue
            for table, key in ((by_channel, row.channel), (by_number, row.our_number)):
                entry = table.setdefault(key, CostRow(key))
                if metric == "cost":
                    entry.cost += value
                else:
                    entry.parts += int(value)
    result.cost_total = sum((row.cost for row in by_channel.values()), Decimal(0))

    if filters.label_id is not None:
        _labelled_events(connection, period, filters, result, person)

    # Openings: counted in SQL (started and reopened with a label, not answered); first response
    # and time to done from the rows that have them.
    unanswered_column = ConversationOpening.first_response_at.is_(None)
    counted = _openings_query(period, filters).with_only_columns(
        ConversationOpening.reopened, unanswered_column, sa.func.count()
    )
    for reopened, unanswered, count in connection.execute(
        counted.group_by(ConversationOpening.reopened, unanswered_column)
    ):
        if filters.label_id is not None:
            if reopened:
                result.reopened += count
            else:
                result.started += count
        if unanswered:
            result.unanswered += count
    openings = connection.execute(
        _openings_query(period, filters).where(
            sa.or_(ConversationOpening.first_response_at.is_not(None), ConversationOpening.done_at.is_not(None))
        )
    ).all()
    hours_of: dict[str, hours.Hours] = {}
    zone = team.time_zone()

    def elapsed(start: datetime, end: datetime, number: str) -> float:
        if not filters.business_hours:
            return (end - start).total_seconds()
        if number not in hours_of:
            hours_of[number] = hours.hours_for(number or None)
        return business.seconds(hours_of[number], zone, start, end)

    first: list[float] = []
    done: list[float] = []
    answered: dict[int, list[float]] = defaultdict(list)
    days = {day: Day(day) for day in period.days}
    day_first: dict[date, list[float]] = defaultdict(list)
    for row in openings:
        if row.first_response_at is not None and (chosen is None or row.responder_id == chosen):
            seconds = elapsed(row.opened_at, row.first_response_at, row.our_number)
            first.append(seconds)
            answered[row.responder_id].append(seconds)
            day_first[_local(row.opened_at, zone).date()].append(seconds)
        if row.done_at is not None:
            done.append(elapsed(row.opened_at, row.done_at, row.our_number))
    result.first_response, result.time_to_done = stats(first), stats(done)
    for user_id, values in answered.items():
        target = person(user_id)
        target.answered, target.answered_median = len(values), percentile(values, 50)

    # Per day and per hour of the week, in the team's zone.
    for row in tallies.totals(connection, period.start, period.end, ["in", "out"], by=["bucket"], **where):
        local = _local(row.bucket, zone)
        day = days.get(local.date())
        if day is None:
            continue
        if row.metric == "in":
            day.messages_in += int(row.value)
            result.heat[local.weekday()][local.hour] += int(row.value)
        else:
            day.messages_out += int(row.value)
    if chosen is not None:  # messages out per day: the person's
        for day in days.values():
            day.messages_out = 0
        for row in tallies.totals(
            connection, period.start, period.end, ["out"], by=["bucket"], user_id=chosen, **where
        ):
            day_found = days.get(_local(row.bucket, zone).date())
            if day_found is not None:
                day_found.messages_out += int(row.value)
    for opened_on, values in day_first.items():
        if opened_on in days:
            days[opened_on].first_response = stats(values)
    result.per_day = list(days.values())

    visible = [p for p in people.values() if is_admin or p.user_id == viewer_id]
    if chosen is not None:
        visible = [p for p in visible if p.user_id == chosen]
    result.people = sorted(visible, key=lambda p: p.name.casefold())
    result.delivery = sorted(deliveries.values(), key=lambda d: d.channel)
    result.cost_by_channel = sorted((r for r in by_channel.values() if r.cost or r.parts), key=lambda r: r.key)
    result.cost_by_number = sorted((r for r in by_number.values() if r.cost or r.parts), key=lambda r: r.key)
    return result


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    """A stored time in the team's zone (team.local, without reading the zone's setting each time)."""
    return moment.replace(tzinfo=UTC).astimezone(zone)


def _labelled_events(connection: sa.Connection, period: Range, filters: Filters, result: Report, person) -> None:
    """With a label: opt-outs and done per person from the events of conversations that have it now."""
    query = (
        sa.select(ConversationEvent.kind, ConversationEvent.user_id, sa.func.count())
        .join(ConversationLabel, ConversationLabel.conversation_id == ConversationEvent.conversation_id)
        .where(
            ConversationLabel.label_id == filters.label_id,
            ConversationEvent.kind.in_(["done", "opted_out"]),
            ConversationEvent.at >= period.start,
            ConversationEvent.at < period.end,
        )
        .group_by(ConversationEvent.kind, ConversationEvent.user_id)
    )
    if filters.channel is not None:
        query = query.where(ConversationEvent.channel == filters.channel)
    if filters.our_number is not None:
        query = query.where(ConversationEvent.our_number == filters.our_number)
    for kind, user_id, count in connection.execute(query):
        if kind == "opted_out":
            result.opt_outs += count
            continue
        if filters.user_id is None or user_id == filters.user_id:
            result.done += count
        if user_id:
            person(user_id).done += count


def _openings_query(period: Range, filters: Filters) -> sa.Select:
    table = ConversationOpening
    query = sa.select(
        table.opened_at, table.reopened, table.our_number, table.first_response_at, table.responder_id, table.done_at
    ).where(table.opened_at >= period.start, table.opened_at < period.end)
    if filters.channel is not None:
        query = query.where(table.channel == filters.channel)
    if filters.our_number is not None:
        query = query.where(table.our_number == filters.our_number)
    if filters.label_id is not None:
        query = query.where(
            sa.exists().where(
                ConversationLabel.conversation_id == table.conversation_id,
                ConversationLabel.label_id == filters.label_id,
            )
        )
    return query


# --- choices for the filters ----------------------------------------------------------------


def choices() -> dict[str, Sequence]:
    """The numbers, channels, people and labels the filters offer."""
    numbers = hours.our_numbers()
    channels = list_views.channels()
    people = db.session.execute(sa.select(User.id, User.username).order_by(User.username)).all()
    labels = db.session.execute(sa.select(Label.id, Label.name).order_by(Label.name)).all()
    return {"numbers": numbers, "channels": channels, "people": people, "labels": labels}


# --- formats --------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """ "2 h 05 min", "4 min 30 s", "—" for none."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours_, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours_} h"
    if hours_:
        return f"{hours_} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def amount(value: Decimal | None) -> str:
    """2 to 4 decimals: 0.05, 0.0475, 12.30."""
    if value is None:
        return ""
    text = f"{Decimal(value).quantize(Decimal('0.0001')):f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{whole}.{fraction}"


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def table_rows(result: Report) -> Iterable[tuple[str, str, str, str]]:
    """Every table of the page as (table, row, column, value): the CSV download."""
    summary = [
        ("started", result.started),
        ("reopened", result.reopened),
        ("messages_in", result.messages_in),
        ("messages_out", result.messages_out),
        ("done", result.done),
        ("opt_outs", result.opt_outs),
        ("first_response_count", result.first_response.count),
        ("first_response_median_s", _seconds(result.first_response.median)),
        ("first_response_p90_s", _seconds(result.first_response.p90)),
        ("unanswered", result.unanswered),
        ("time_to_done_count", result.time_to_done.count),
        ("time_to_done_median_s", _seconds(result.time_to_done.median)),
        ("time_to_done_p90_s", _seconds(result.time_to_done.p90)),
        (f"cost_{result.currency}", amount(result.cost_total)),
    ]
    for name, value in summary:
        yield ("summary", name, "value", str(value))
    for p in result.people:
        for column, value in (
            ("replies", p.replies),
            ("done", p.done),
            ("answered", p.answered),
            ("answered_median_s", _seconds(p.answered_median)),
            (f"cost_{result.currency}", amount(p.cost)),
            ("parts", p.parts),
        ):
            yield ("people", p.name, column, str(value))
    for d in result.delivery:
        yield ("delivery", d.channel, "sent", str(d.sent))
        yield ("delivery", d.channel, "delivered", str(d.delivered))
        for reason, count in sorted(d.failures.items()):
            yield ("delivery", d.channel, f"failed:{reason}", str(count))
    for table, rows in (("cost_by_channel", result.cost_by_channel), ("cost_by_number", result.cost_by_number)):
        for row in rows:
            yield (table, row.key or "(none)", f"cost_{result.currency}", amount(row.cost))
            yield (table, row.key or "(none)", "parts", str(row.parts))
    for day in result.per_day:
        yield ("per_day", day.day.isoformat(), "messages_in", str(day.messages_in))
        yield ("per_day", day.day.isoformat(), "messages_out", str(day.messages_out))
        yield ("per_day", day.day.isoformat(), "first_response_median_s", _seconds(day.first_response.median))
    for weekday, counts in enumerate(result.heat):
        for hour, count in enumerate(counts):
            yield ("busiest_hours", hours.DAYS[weekday], f"{hour:02d}:00", str(count))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"
