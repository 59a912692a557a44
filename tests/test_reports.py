"""The Reports page's figures on a small hand-made inbox whose answers are known; business hours
across a weekend and a summer-time change; who may see what; and every figure recomputed by a
plain script from the message export and the events export."""

import csv
import io
import json
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from app import clock, tallies
from app.callbacks import ingest
from app.contacts import labels, set_status
from app.db.models import AuditEvent
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.hours import Hours
from app.replies import insert_reply
from app.reports import business, service
from conftest import AuthActions, add_user, close_app, conversation_of, make_app

OUR, OTHER = "+37250000000", "+37250000001"
A, B, C = "+3725550001", "+3725550002", "+3725550003"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


class Moving:
    def __init__(self):
        self.moment = START

    def __call__(self):
        return self.moment

    def to(self, **delta):
        self.moment = START + timedelta(**delta)


@pytest.fixture
def inbox(database_url):
    """The hand-made inbox, its team in UTC: alice (admin, id 1) and bob (agent, id 2)."""
    moving = Moving()
    app = make_app(database_url, CLOCK=moving, TEAM_TIME_ZONE="UTC")
    with app.app_context():
        db.create_all()
        add_user("alice")
        add_user("bob", role="agent")
        build(moving)
        db.session.remove()
    app.moving = moving
    yield app
    close_app(app)


def arrive(sender: str, recipient: str = OUR, channel: str = "sms", text: str = "Hello") -> int:
    ingest.store_messages(
        [ingest.Inbound(str(uuid.uuid4()), None, channel, recipient, sender, text, clock.now(), b"{}")]
    )
    return conversation_of(sender).id


def reply(sender: str, author: int | None, via: str | None = None, channel: str = "sms", ours: str = OUR) -> None:
    with write_transaction() as session:
        insert_reply(
            session.connection(),
            conversation_of(sender).id,
            sender,
            "Thanks",
            [{"channel": channel, "sender": ours}],
            author,
            f"reply-{uuid.uuid4().hex}",
            via=via,
        )


def build(moving: Moving) -> None:
    arrive(A)  # Mon 09:00, opens A
    moving.to(minutes=10)
    reply(A, 1)  # alice: 10 min
    moving.to(minutes=30)
    arrive(B, OTHER, "whatsapp")  # 09:30, opens B
    moving.to(minutes=31)
    reply(B, None, via="away", channel="whatsapp", ours=OTHER)  # the away reply: no response
    moving.to(minutes=90)
    reply(B, 2, channel="whatsapp", ours=OTHER)  # bob: 60 min
    moving.to(hours=2)
    arrive(C)  # 11:00, opens C: never answered
    moving.to(hours=3)
    assert set_status(conversation_of(A).id, "done", 1)  # alice: 3 h after A opened
    moving.to(hours=4)
    arrive(A)  # 13:00, reopens A
    moving.to(hours=4, minutes=20)
    reply(A, 2)  # bob: 20 min
    moving.to(hours=5)
    arrive(C, text="STOP")  # an opt-out
    with write_transaction() as session:
        at = clock.now()
        tallies.add(session.connection(), at, "cost", Decimal("0.05"), channel="sms", our_number=OUR, user_id=1)
        tallies.add(session.connection(), at, "parts", 1, channel="sms", our_number=OUR, user_id=1)
        tallies.add(
            session.connection(), at, "cost", Decimal("0.1025"), channel="whatsapp", our_number=OTHER, user_id=2
        )
    label = labels.create("VIP")
    labels.add_to(conversation_of(B).id, label)


def week() -> service.Range:
    return service.date_range("this_week", today=date(2026, 3, 4))


def test_each_figure_on_a_hand_made_inbox(inbox):
    with inbox.app_context():
        r = service.report(week(), service.Filters(), 1, True)
    assert (r.range.start, r.range.end) == (datetime(2026, 3, 2), datetime(2026, 3, 9))
    assert (r.started, r.reopened, r.messages_in, r.messages_out, r.done, r.opt_outs) == (3, 1, 5, 4, 1, 1)
    # first responses 10, 60, 20 min: nearest rank median is the 2nd of 3, the 90th percentile the 3rd
    assert (r.first_response.count, r.first_response.median, r.first_response.p90) == (3, 1200, 3600)
    assert r.unanswered == 1
    assert (r.time_to_done.count, r.time_to_done.median) == (1, 3 * 3600)
    people = {p.name: (p.replies, p.done, p.answered, p.answered_median, p.cost, p.parts) for p in r.people}
    assert people == {
        "alice": (1, 1, 1, 600, Decimal("0.05"), 1),
        "bob": (2, 0, 2, 1200, Decimal("0.1025"), 0),
    }
    assert r.cost_total == Decimal("0.1525")
    assert [(row.key, row.cost) for row in r.cost_by_channel] == [
        ("sms", Decimal("0.05")),
        ("whatsapp", Decimal("0.1025")),
    ]
    assert [row.key for row in r.cost_by_number] == [OUR, OTHER]
    monday = r.per_day[0]
    assert (monday.day, monday.messages_in, monday.messages_out, monday.first_response.median) == (
        date(2026, 3, 2),
        5,
        4,
        1200,
    )
    assert sum(sum(row) for row in r.heat) == 5 and r.heat[0][9] == 2 and r.heat[0][13] == 1
    assert service.amount(r.cost_total) == "0.1525" and service.amount(Decimal("0.05")) == "0.05"


def test_filters_narrow_the_figures(inbox):
    with inbox.app_context():
        whatsapp = service.report(week(), service.Filters(channel="whatsapp"), 1, True)
        bob = service.report(week(), service.Filters(user_id=2), 1, True)
        vip = service.report(week(), service.Filters(label_id=1), 1, True)
        other_number = service.report(week(), service.Filters(our_number=OTHER), 1, True)
        last_week = service.report(service.date_range("last_week", today=date(2026, 3, 4)), service.Filters(), 1, True)
    assert (whatsapp.started, whatsapp.messages_in, whatsapp.first_response.median) == (1, 1, 3600)
    assert (bob.messages_out, bob.first_response.count, bob.first_response.median) == (2, 2, 1200)
    assert [p.name for p in bob.people] == ["bob"]
    assert (vip.started, vip.reopened, vip.first_response.median, vip.opt_outs) == (1, 0, 3600, 0)
    assert (other_number.started, other_number.messages_in) == (1, 1)
    assert (last_week.started, last_week.messages_in) == (0, 0)


def test_first_response_in_business_hours(inbox):
    # Monday's default hours are 09:00-17:00 UTC here: every response fell inside them.
    with inbox.app_context():
        r = service.report(week(), service.Filters(business_hours=True), 1, True)
    assert (r.first_response.median, r.first_response.p90, r.time_to_done.median) == (1200, 3600, 3 * 3600)


def test_business_seconds_across_a_weekend_and_a_summer_time_change():
    tallinn = ZoneInfo("Europe/Tallinn")
    office = Hours()  # Monday to Friday, 09:00 to 17:00

    def utc(*args) -> datetime:
        return datetime(*args, tzinfo=tallinn).astimezone(UTC).replace(tzinfo=None)

    # Friday 16:00 to Monday 10:00, local: an hour on each side of the weekend.
    assert business.seconds(office, tallinn, utc(2026, 3, 20, 16), utc(2026, 3, 23, 10)) == 7200
    # Across the night summer time starts (29 March 03:00 becomes 04:00): still an hour each side.
    assert business.seconds(office, tallinn, utc(2026, 3, 27, 16), utc(2026, 3, 30, 10)) == 7200
    # Open round the clock: the night that lost an hour is 23 hours long, the one that gains one 25.
    always = Hours(weekly=tuple(((time(0), time(0)),) for _ in range(7)))
    assert business.seconds(always, tallinn, utc(2026, 3, 29, 0), utc(2026, 3, 30, 0)) == 23 * 3600
    assert business.seconds(always, tallinn, utc(2026, 10, 25, 0), utc(2026, 10, 26, 0)) == 25 * 3600
    # Closed days and an end before the start count nothing.
    closed = Hours(closed={date(2026, 3, 23): "Holiday"})
    assert business.seconds(closed, tallinn, utc(2026, 3, 20, 16), utc(2026, 3, 23, 10)) == 3600
    assert business.seconds(office, tallinn, utc(2026, 3, 23, 10), utc(2026, 3, 23, 9)) == 0


def test_ranges_are_days_in_the_teams_zone(app):
    with app.app_context():
        app.config["TEAM_TIME_ZONE"] = "Asia/Kolkata"  # +05:30: midnight is a quarter hour in UTC
        r = service.date_range("last_30", today=date(2026, 3, 31))
        assert (r.first_day, r.last_day) == (date(2026, 3, 2), date(2026, 3, 31))
        assert r.start == datetime(2026, 3, 1, 18, 30) and tallies.bucket_of(r.start) == r.start
        with pytest.raises(service.RangeRefused):
            service.date_range("custom", date(2026, 3, 2), date(2026, 3, 1))


def login(app, name: str) -> AuthActions:
    actions = AuthActions(app.test_client())
    assert actions.login(name).status_code == 302
    return actions


def test_agents_see_their_own_row_only(inbox):
    alice, bob = login(inbox, "alice"), login(inbox, "bob")
    query = "?range=custom&from=2026-03-02&to=2026-03-08"
    everyone = alice.client.get("/reports" + query)
    assert everyone.status_code == 200
    assert ">alice</th>" in everyone.text and ">bob</th>" in everyone.text
    own = bob.client.get("/reports" + query)
    assert own.status_code == 200 and ">bob</th>" in own.text and ">alice</th>" not in own.text
    assert bob.client.get("/reports" + query + "&person=1").status_code == 403
    assert bob.client.get("/reports.csv" + query + "&person=1").status_code == 403
    assert "alice" not in bob.client.get("/reports.csv" + query).text
    for path in ("/reports/events.csv", "/reports/events.xlsx"):
        assert bob.client.get(path + query).status_code == 403
        response = alice.client.get(path + query)
        assert response.status_code == 200
        response.close()
    with inbox.app_context():
        exports = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "events_export")).all()
        assert [json.loads(event.details)["format"] for event in exports] == ["csv", "xlsx"]
    assert alice.client.get("/reports?range=custom&from=2026-03-09&to=2026-03-01").status_code == 400


def test_the_tables_download_as_csv(inbox):
    alice = login(inbox, "alice")
    response = alice.client.get("/reports.csv?range=custom&from=2026-03-02&to=2026-03-08")
    rows = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert rows[0] == ["table", "row", "column", "value"]
    found = {(table, row, column): value for table, row, column, value in rows[1:]}
    assert found[("summary", "first_response_median_s", "value")] == "1200"
    assert found[("people", "bob", "answered")] == "2"
    assert found[("delivery", "sms", "sent")] if ("delivery", "sms", "sent") in found else True
    assert found[("busiest_hours", "Monday", "09:00")] == "2"


# --- the cross-check: the same figures from the exports, by a plain script -----------------


def nearest_rank(values: list[float], p: int) -> float | None:
    ordered = sorted(values)
    return ordered[math.ceil(p * len(ordered) / 100) - 1] if ordered else None


def figures_from_exports(messages: list[dict], events: list[dict], start: datetime, end: datetime) -> dict:
    """What the page says, from the two CSV files alone (times in them are UTC)."""

    def when(text: str) -> datetime:
        return datetime.fromisoformat(text.rstrip("Z"))

    inside = [m for m in messages if start <= when(m["received_at"]) < end]
    person_replies: dict[str, list[tuple[datetime, str]]] = {}
    for m in messages:
        if m["direction"] == "out" and m["agent"] and m["agent"] != "Away reply" and not m["agent"].startswith("API: "):
            person_replies.setdefault(m["conversation_id"], []).append((when(m["time"]), m["agent"]))
    openings: dict[str, list[datetime]] = {}
    dones: dict[str, list[datetime]] = {}
    for e in events:
        if e["event"] in ("opened", "reopened"):
            openings.setdefault(e["conversation_id"], []).append(when(e["time"]))
        if e["event"] == "done":
            dones.setdefault(e["conversation_id"], []).append(when(e["time"]))
    first, to_done, unanswered = [], [], 0
    for conversation, opened in openings.items():
        for index, at in enumerate(opened):
            if not start <= at < end:
                continue
            until = opened[index + 1] if index + 1 < len(opened) else datetime.max
            answers = sorted(t for t, _ in person_replies.get(conversation, []) if at <= t < until)
            if answers:
                first.append((answers[0] - at).total_seconds())
            else:
                unanswered += 1
            done = sorted(t for t in dones.get(conversation, []) if at <= t < until)
            if done:
                to_done.append((done[0] - at).total_seconds())
    counted = [e for e in events if start <= when(e["time"]) < end]
    return {
        "started": sum(e["event"] == "opened" for e in counted),
        "reopened": sum(e["event"] == "reopened" for e in counted),
        "in": sum(m["direction"] == "in" for m in inside),
        "out": sum(m["direction"] == "out" for m in inside),
        "done": sum(e["event"] == "done" for e in counted),
        "opt_outs": sum(e["event"] == "opted_out" for e in counted),
        "first": (len(first), nearest_rank(first, 50), nearest_rank(first, 90)),
        "unanswered": unanswered,
        "to_done": (len(to_done), nearest_rank(to_done, 50), nearest_rank(to_done, 90)),
    }


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


def test_every_figure_can_be_recomputed_from_the_exports(inbox):
    with inbox.app_context():  # more of the week: a second day, a reopening answered by a teammate
        inbox.moving.to(days=1, hours=1)
        arrive(C)
        inbox.moving.to(days=1, hours=2, minutes=5)
        reply(C, 1)
        inbox.moving.to(days=1, hours=3)
        set_status(conversation_of(B).id, "done", 2)
        db.session.remove()
    alice = login(inbox, "alice")
    messages = read_csv(alice.client.get("/export.csv").text)
    response = alice.client.get("/reports/events.csv?range=custom&from=2026-01-01&to=2026-12-31")
    assert response.status_code == 200, response.text[:300]
    events = read_csv(response.text)
    assert {e["event"] for e in events} == {"opened", "reopened", "done", "opted_out"}
    with inbox.app_context():
        period = week()
        r = service.report(period, service.Filters(), 1, True)
    expected = figures_from_exports(messages, events, period.start, period.end)
    assert expected == {
        "started": r.started,
        "reopened": r.reopened,
        "in": r.messages_in,
        "out": r.messages_out,
        "done": r.done,
        "opt_outs": r.opt_outs,
        "first": (r.first_response.count, r.first_response.median, r.first_response.p90),
        "unanswered": r.unanswered,
        "to_done": (r.time_to_done.count, r.time_to_done.median, r.time_to_done.p90),
    }
    assert expected["first"][0] == 4 and expected["done"] == 2
