"""Business hours and the away reply (app/hours): the rule in the team's zone, what ingest
enqueues, the one away reply per window, the admin page and the list's marker; on both
databases, through the fake Messente API, at a clock the tests move."""

import csv
import io
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from app import hours, jobs, replies
from app.contacts import owners
from app.db.models import AuditEvent, BusinessHours, Conversation, Job, Message
from app.extensions import db
from conftest import (
    ONE_DATABASE,
    AuthActions,
    body_for,
    close_app,
    conversation_of,
    create_tables,
    make_app,
    signed_headers,
)
from helpers import CUSTOMER, OUR_NUMBER

TALLINN = ZoneInfo("Europe/Tallinn")
OTHER_NUMBER = "+37250000001"
# 2026-03-02 is a Monday. Europe/Tallinn is UTC+2 in winter, UTC+3 from 2026-03-29 03:00.
MONDAY = date(2026, 3, 2)


def utc(local: datetime) -> datetime:
    """A wall time in Tallinn as naive UTC."""
    return local.replace(tzinfo=TALLINN).astimezone(UTC).replace(tzinfo=None)


# --- the rule, pure ------------------------------------------------------------------------

WEEKDAYS = hours.Hours()  # Monday to Friday 09:00-17:00


@pytest.mark.parametrize(
    ("local", "is_open"),
    [
        (datetime(2026, 3, 2, 8, 59, 59), False),  # Monday before opening
        (datetime(2026, 3, 2, 9, 0), True),  # opening time is open
        (datetime(2026, 3, 2, 16, 59, 59), True),
        (datetime(2026, 3, 2, 17, 0), False),  # closing time is closed
        (datetime(2026, 3, 6, 12, 0), True),  # Friday
        (datetime(2026, 3, 7, 12, 0), False),  # Saturday
        (datetime(2026, 3, 8, 12, 0), False),  # Sunday
        (datetime(2026, 3, 3, 0, 0), False),  # midnight
    ],
)
def test_open_at_follows_the_weekly_hours(local, is_open):
    assert hours.open_at(WEEKDAYS, local) is is_open


def test_a_close_at_midnight_runs_to_the_end_of_the_day_and_a_closed_day_is_closed_all_day():
    late = hours.Hours(weekly=(((time(18), time(0)),),) * 7, closed={date(2026, 12, 24): "Christmas Eve"})
    assert hours.open_at(late, datetime(2026, 12, 23, 23, 59, 59))
    assert not hours.open_at(late, datetime(2026, 12, 23, 17, 59))
    assert not hours.open_at(late, datetime(2026, 12, 24, 20, 0))  # the closed day
    assert hours.open_at(late, datetime(2026, 12, 25, 18, 0))
    always = hours.Hours(weekly=(((time(0), time(0)),),) * 7)
    assert hours.open_at(always, datetime(2026, 3, 2, 0, 0)) and hours.open_at(always, datetime(2026, 3, 2, 23, 59))


def test_open_at_reads_an_aware_time_by_its_wall_clock():
    assert hours.open_at(WEEKDAYS, datetime(2026, 3, 2, 9, 30, tzinfo=TALLINN))
    assert not hours.open_at(WEEKDAYS, datetime(2026, 3, 2, 7, 30, tzinfo=UTC))  # 07:30 wall time: closed


@pytest.mark.parametrize(
    ("opens", "closes", "problem"),
    [
        (["09:00"] * 6 + [""], ["17:00"] * 7, "Sunday: give both"),
        (["17:00"] + [""] * 6, ["09:00"] + [""] * 6, "Monday: the closing time must be after"),
        (["9am"] + [""] * 6, ["17:00"] + [""] * 6, "Monday: times are hours and minutes"),
        (["09:00"] * 5, ["17:00"] * 5, "each day"),
    ],
)
def test_weekly_hours_from_a_form_are_checked(opens, closes, problem):
    with pytest.raises(hours.HoursRefused, match=problem):
        hours.parse_weekly(opens, closes)


def test_closed_days_from_a_form_keep_their_names_and_refuse_what_is_no_date():
    assert hours.parse_closed("2026-12-25 Christmas Day\n\n2026-12-24  Christmas Eve \n") == {
        date(2026, 12, 24): "Christmas Eve",
        date(2026, 12, 25): "Christmas Day",
    }
    with pytest.raises(hours.HoursRefused, match="is not a date"):
        hours.parse_closed("24.12.2026")


def test_name_in_the_away_text_is_the_contact_s_name_or_goes_with_its_space():
    assert hours.personal("Hi {name}, we are closed.", "Mari") == "Hi Mari, we are closed."
    assert hours.personal("Hi {name}, we are closed.", None) == "Hi, we are closed."


# --- through ingest, the job and the fake API -----------------------------------------------


@pytest.fixture
def away_app(database_url, messente, user_row):
    """Replies through the fake Messente, jobs run by `run_jobs` at the test's clock, the team in
    Tallinn, the away reply on with the default hours (Monday to Friday 09:00-17:00)."""
    now = {"moment": datetime(2026, 3, 2, 12, 0)}
    app = make_app(
        database_url,
        MESSENTE_API_URL=messente.url,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        MESSENTE_READ_TIMEOUT=0.5,
        MESSENTE_CONNECT_TIMEOUT=0.5,
        TEAM_TIME_ZONE="Europe/Tallinn",
        CLOCK=lambda: now["moment"].replace(tzinfo=UTC),
    )
    app.now = now
    with app.app_context():
        create_tables()
        user_row()
        hours.set_away(True, 24)
    yield app
    close_app(app)


def at(app, local: datetime) -> None:
    app.now["moment"] = utc(local)


def write(app, text: str = "Tere!", sender: str = CUSTOMER, recipient: str = OUR_NUMBER, body: bytes | None = None):
    """A customer's message through the signed callback, then the jobs due now; the body posted."""
    body = body or body_for(sender=sender, recipient=recipient, text=text)
    response = app.test_client().post("/callbacks/inbound", data=body, headers=signed_headers(body))
    assert response.status_code == 200, response.json
    with app.app_context():
        jobs.run_due(app.now["moment"])
    return body


def away_replies(app) -> list[Message]:
    with app.app_context():
        found = db.session.scalars(sa.select(Message).where(Message.via == "away").order_by(Message.id)).all()
        db.session.expunge_all()
        return list(found)


def away_jobs(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == hours.JOB)) or 0


def test_the_away_reply_goes_once_through_the_api_with_no_author_and_the_thread_names_it(away_app, messente):
    at(away_app, datetime(2026, 3, 2, 18, 30))  # Monday evening
    write(away_app, "Kas olete avatud?")
    [away] = away_replies(away_app)
    assert (away.direction, away.author_id, away.via, away.status) == ("out", None, "away", "sent")
    assert away.text == hours.DEFAULT_TEXT.replace(" {name}", "")
    [request] = messente.wait_for_requests(1)
    assert request.json["to"] == CUSTOMER
    assert request.json["messages"] == [
        {"channel": "sms", "text": away.text, "sender": OUR_NUMBER, "autoconvert": "off"}
    ]

    person = away_app.test_client()
    assert AuthActions(person).login().status_code == 302
    with away_app.app_context():
        conversation_id = conversation_of(CUSTOMER).id
    page = person.get(f"/conversations/{conversation_id}").text
    assert '<span class="author automatic"><bdi>Away reply</bdi></span>' in page
    assert "A colleague" not in page


def test_the_away_reply_goes_once_per_window_and_again_after_it(away_app, messente):
    at(away_app, datetime(2026, 3, 6, 18, 0))  # Friday after closing
    write(away_app, "one")
    at(away_app, datetime(2026, 3, 7, 12, 0))  # Saturday, within 24 hours
    write(away_app, "two")
    assert len(away_replies(away_app)) == 1
    at(away_app, datetime(2026, 3, 7, 18, 0))  # exactly 24 hours on: a new window
    write(away_app, "three")
    at(away_app, datetime(2026, 3, 8, 19, 0))  # Sunday, more than 24 hours after that
    write(away_app, "four")
    at(away_app, datetime(2026, 3, 9, 10, 0))  # Monday morning: open
    write(away_app, "five")
    assert [reply.received_at for reply in away_replies(away_app)] == [
        utc(datetime(2026, 3, 6, 18, 0)),
        utc(datetime(2026, 3, 7, 18, 0)),
        utc(datetime(2026, 3, 8, 19, 0)),
    ]
    messente.wait_for_requests(3)
    assert len(messente.requests) == 3


def test_a_configured_window_is_kept(away_app):
    with away_app.app_context():
        hours.set_away(True, 2)
    at(away_app, datetime(2026, 3, 2, 18, 0))
    write(away_app)
    at(away_app, datetime(2026, 3, 2, 19, 59))
    write(away_app)
    at(away_app, datetime(2026, 3, 2, 20, 0))
    write(away_app)
    assert len(away_replies(away_app)) == 2


def test_within_hours_or_with_the_away_reply_off_nothing_is_sent(away_app, messente):
    at(away_app, datetime(2026, 3, 2, 9, 0))
    write(away_app)
    at(away_app, datetime(2026, 3, 4, 16, 59))
    write(away_app)
    with away_app.app_context():
        hours.set_away(False, 24)
    at(away_app, datetime(2026, 3, 4, 22, 0))
    write(away_app)
    assert away_replies(away_app) == [] and away_jobs(away_app) == 0
    assert messente.requests == []


@pytest.mark.parametrize("keyword", ["STOP", "Stop.", "START", "unsubscribe"])
def test_no_away_reply_answers_a_stop_or_start_keyword(away_app, messente, keyword):
    at(away_app, datetime(2026, 3, 2, 22, 0))
    write(away_app, keyword)
    assert away_replies(away_app) == [] and away_jobs(away_app) == 0


def test_no_away_reply_to_an_opted_out_customer(away_app, messente):
    at(away_app, datetime(2026, 3, 2, 22, 0))
    write(away_app, "STOP")
    write(away_app, "Why do you still write?")
    assert away_replies(away_app) == [] and away_jobs(away_app) == 0
    write(away_app, "START")  # opted back in: START itself gets no away reply, the next message does
    assert away_replies(away_app) == []
    write(away_app, "Are you open tomorrow?")
    assert len(away_replies(away_app)) == 1


@pytest.mark.parametrize("sender", ["1234", "MyShop", "+12345"])
def test_no_away_reply_to_a_sender_name_or_short_code(away_app, messente, sender):
    at(away_app, datetime(2026, 3, 2, 22, 0))
    write(away_app, "Your code is 4242", sender=sender)
    assert away_replies(away_app) == [] and away_jobs(away_app) == 0


def test_a_replayed_callback_gets_no_second_away_reply(away_app, messente):
    at(away_app, datetime(2026, 3, 2, 22, 0))
    body = write(away_app, "Hello?")
    with away_app.app_context():  # a new window, so only the msg_id could stop a second one
        db.session.execute(sa.update(Conversation).values(away_sent_at=None))
        db.session.commit()
    write(away_app, body=body)  # Messente retries the same msg_id
    assert away_jobs(away_app) == 1
    assert len(away_replies(away_app)) == 1
    messente.wait_for_requests(1)
    assert len(messente.requests) == 1


def test_the_job_run_again_for_one_message_stores_no_second_reply(away_app):
    at(away_app, datetime(2026, 3, 2, 22, 0))
    write(away_app)
    with away_app.app_context():
        inbound = db.session.scalar(sa.select(Message.id).where(Message.direction == "in"))
        db.session.execute(sa.update(Conversation).values(away_sent_at=None))
        db.session.commit()
        assert hours.send_away(inbound) is None
    assert len(away_replies(away_app)) == 1


def test_a_closed_day_gets_the_away_reply_within_the_weekly_hours(away_app):
    with away_app.app_context():
        hours.save_hours(
            hours.ALL, hours.Hours().weekly, {date(2026, 3, 4): "Holiday"}, "Hi {name}, we are closed today."
        )
    at(away_app, datetime(2026, 3, 4, 11, 0))  # a Wednesday, closed
    write(away_app)
    [away] = away_replies(away_app)
    assert away.text == "Hi, we are closed today."  # no name: "{name}" and its space go
    at(away_app, datetime(2026, 3, 5, 11, 0))  # the next day is open
    with away_app.app_context():
        db.session.execute(sa.update(Conversation).values(away_sent_at=None))
        db.session.commit()
    write(away_app)
    assert len(away_replies(away_app)) == 1


def test_a_number_s_own_hours_and_text_win_over_the_shared_ones(away_app):
    at(away_app, datetime(2026, 3, 2, 12, 0))
    write(away_app, sender="+37255500001", recipient=OTHER_NUMBER)  # within hours: our numbers customers wrote to
    write(away_app, sender="+37255500001", recipient=OUR_NUMBER)
    with away_app.app_context():
        always = (((time(0), time(0)),),) * 7
        hours.save_hours(OTHER_NUMBER, always, {}, "")
        hours.save_hours(OUR_NUMBER, ((),) * 7, {}, "Closed on this line.")  # never open
    at(away_app, datetime(2026, 3, 2, 21, 0))  # shared hours: closed
    write(away_app, sender="+37255500002", recipient=OTHER_NUMBER)
    assert away_replies(away_app) == []
    at(away_app, datetime(2026, 3, 3, 12, 0))  # shared hours: open; OUR_NUMBER's own: closed
    write(away_app, sender="+37255500003", recipient=OUR_NUMBER)
    [away] = away_replies(away_app)
    assert (away.recipient, away.text) == ("+37255500003", "Closed on this line.")
    with away_app.app_context():
        assert hours.use_shared_hours(OUR_NUMBER)
        assert hours.is_open(utc(datetime(2026, 3, 3, 12, 0)), OUR_NUMBER)
        assert hours.is_open(utc(datetime(2026, 3, 3, 3, 0)), OTHER_NUMBER)
        assert not hours.is_open(utc(datetime(2026, 3, 3, 3, 0)), OUR_NUMBER)
        assert not hours.is_open(utc(datetime(2026, 3, 3, 3, 0)), "+37250000009")  # unknown: shared


def test_the_hours_are_wall_times_across_a_dst_change(away_app):
    # Before the change Tallinn is UTC+2: 06:30 UTC on Friday 27 March is 08:30 there, closed.
    away_app.now["moment"] = datetime(2026, 3, 27, 6, 30)
    write(away_app, sender="+37255500010")
    assert len(away_replies(away_app)) == 1
    # After it (29 March 03:00) UTC+3: 06:30 UTC on Monday 30 March is 09:30 there, open.
    away_app.now["moment"] = datetime(2026, 3, 30, 6, 30)
    write(away_app, sender="+37255500011")
    assert len(away_replies(away_app)) == 1
    # ... and 14:30 UTC is 17:30 there, closed, although it would be 16:30 in winter time.
    away_app.now["moment"] = datetime(2026, 3, 30, 14, 30)
    write(away_app, sender="+37255500012")
    assert len(away_replies(away_app)) == 2
    with away_app.app_context():
        # Autumn: on the Friday before the change (UTC+3) 09:00 is 06:00 UTC; on the Monday after (UTC+2) 07:00 UTC.
        assert not hours.is_open(datetime(2026, 10, 23, 5, 59)) and hours.is_open(datetime(2026, 10, 23, 6, 0))
        assert not hours.is_open(datetime(2026, 10, 26, 6, 59)) and hours.is_open(datetime(2026, 10, 26, 7, 0))


def test_the_away_reply_never_takes_ownership(away_app):
    with away_app.app_context():
        owners.set_reply_takes_ownership(True)
    at(away_app, datetime(2026, 3, 2, 22, 0))
    write(away_app)
    assert len(away_replies(away_app)) == 1
    with away_app.app_context():
        conversation = conversation_of(CUSTOMER)
        assert conversation.assignee_id is None
        assert conversation.last_direction == "in" and conversation.last_text == "Tere!"  # no "You:"
        actions = db.session.scalars(sa.select(AuditEvent.action)).all()
        assert "assigned" not in actions and "reply" not in actions


def test_a_person_s_reply_is_not_held_by_the_away_reply(away_app):
    at(away_app, datetime(2026, 3, 2, 22, 0))
    write(away_app)
    with away_app.app_context():
        conversation = conversation_of(CUSTOMER)
        inbound = db.session.scalar(sa.select(Message.id).where(Message.direction == "in"))
        newer, more = replies.newer_than(db.session.connection(), conversation.id, inbound, author_id=1)
        assert (newer, more) == ([], 0)


def test_the_export_names_the_away_reply_as_its_agent(away_app):
    at(away_app, datetime(2026, 3, 2, 22, 0))
    write(away_app)
    person = away_app.test_client()
    assert AuthActions(person).login().status_code == 302
    response = person.get("/export.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert [(row["direction"], row["agent"]) for row in rows] == [("in", ""), ("out", "Away reply")]


def test_the_list_says_outside_hours_while_closed(away_app):
    person = away_app.test_client()
    assert AuthActions(person).login().status_code == 302
    marker = '<span class="outside-hours"'
    at(away_app, datetime(2026, 3, 2, 12, 0))
    assert marker not in person.get("/").text
    at(away_app, datetime(2026, 3, 2, 17, 0))
    assert marker in person.get("/").text
    with away_app.app_context():
        hours.set_away(False, 24)
    assert marker not in person.get("/").text


# --- the admin page ---------------------------------------------------------------------------


def day_fields(opens: list[str], closes: list[str]) -> dict[str, list[str]]:
    return {"opens": opens, "closes": closes}


def test_the_admin_saves_hours_and_the_away_reply_audited(app, admin):
    page = admin.client.get("/admin/hours")
    assert page.status_code == 200
    assert "<legend>Monday</legend>" in page.text and 'aria-current="page">Business hours' in page.text
    token = admin.csrf("/admin/hours")
    response = admin.client.post("/admin/hours/away", data={"csrf_token": token, "on": "1", "window_hours": "12"})
    assert response.status_code == 303
    form = {"csrf_token": token, "number": "", "closed": "2026-12-24 Christmas Eve", "away_text": "Back at 9."}
    form |= day_fields(["08:00"] * 5 + ["", ""], ["16:00"] * 5 + ["", ""])
    response = admin.client.post("/admin/hours", data=form)
    assert response.status_code == 303
    with app.app_context():
        assert hours.away_settings() == hours.Away(True, 12, "Back at 9.")
        saved = hours.hours_for(None)
        assert saved.weekly[0] == ((time(8), time(16)),) and saved.weekly[6] == ()
        assert saved.closed == {date(2026, 12, 24): "Christmas Eve"}
        details = db.session.scalars(
            sa.select(AuditEvent.details).where(AuditEvent.action == "settings_changed").order_by(AuditEvent.id)
        ).all()
        assert '"away_reply": "on"' in details[0] and '"business_hours": "all numbers"' in details[1]
    page = admin.client.get("/admin/hours?saved=1").text
    assert 'value="08:00"' in page and "2026-12-24 Christmas Eve" in page and "Saved." in page


def test_the_admin_page_refuses_bad_hours_with_what_was_typed(app, admin):
    token = admin.csrf("/admin/hours")
    form = {"csrf_token": token, "number": "", "closed": "someday", "away_text": ""}
    form |= day_fields(["10:00"] + [""] * 6, ["09:00"] + [""] * 6)
    response = admin.client.post("/admin/hours", data=form)
    assert response.status_code == 400
    assert "Monday: the closing time must be after the opening time" in response.text
    assert "someday" in response.text and 'value="10:00"' in response.text
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(BusinessHours)) == 0
    response = admin.client.post("/admin/hours/away", data={"csrf_token": token, "on": "1", "window_hours": "0"})
    assert response.status_code == 400 and "from 1 to" in response.text


def test_a_number_gets_hours_of_its_own_and_goes_back_to_the_shared_ones(app, admin):
    body = body_for(recipient=OTHER_NUMBER)
    assert app.test_client().post("/callbacks/inbound", data=body, headers=signed_headers(body)).status_code == 200
    page = admin.client.get("/admin/hours", query_string={"number": OTHER_NUMBER}).text
    assert "This number keeps the shared hours" in page
    token = admin.csrf("/admin/hours")
    form = {"csrf_token": token, "number": OTHER_NUMBER, "closed": "", "away_text": ""}
    form |= day_fields(["10:00"] * 7, ["12:00"] * 7)
    assert admin.client.post("/admin/hours", data=form).status_code == 303
    page = admin.client.get("/admin/hours", query_string={"number": OTHER_NUMBER}).text
    assert "This number has hours of its own" in page and 'value="10:00"' in page
    assert admin.client.get("/admin/hours").text.count('value="10:00"') == 0
    shared = admin.client.post("/admin/hours/shared", data={"csrf_token": token, "number": OTHER_NUMBER})
    assert shared.status_code == 303
    with app.app_context():
        assert db.session.get(BusinessHours, OTHER_NUMBER) is None
    assert admin.client.get("/admin/hours", query_string={"number": "+10000000000"}).status_code == 404


@ONE_DATABASE
def test_the_hours_page_is_for_admins_only(app, agent):
    assert agent.client.get("/admin/hours").status_code == 403
    token = agent.csrf("/")
    assert (
        agent.client.post("/admin/hours/away", data={"csrf_token": token, "on": "1", "window_hours": "24"}).status_code
        == 403
    )
