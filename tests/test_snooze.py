"""Snooze (app/contacts/snooze.py) and the team's time zone page: a snoozed conversation leaves
Open for the Snoozed view and wakes at its time (a job, once across runners, also after a restart
past its time), when the customer writes, or by hand; waking notifies its owner once and is
audited; snoozed conversations count towards nobody's auto-assignment cap. Time is the app's
CLOCK, moved by hand; jobs run by `jobs.run_due` or a real runner."""

import json
import re
import threading
from datetime import datetime
from html import unescape

import pytest
import sqlalchemy as sa

from app import jobs, team
from app.contacts import autoassign, owners, snooze
from app.db.models import AuditEvent, Conversation, Job, Notification, User
from app.extensions import db
from app.inbox import list_views, queries
from app.inbox.list_views import ListFilter
from app.jobs import runner
from conftest import (
    AuthActions,
    add_user,
    body_for,
    close_app,
    conversation_of,
    create_tables,
    csrf_token,
    make_app,
    signed_headers,
    wait_until,
)
from helpers import Clock

HTMX = {"HX-Request": "true"}
FIRST, SECOND, THIRD = "+3725550001", "+3725550002", "+3725550003"
# The clock starts on Monday 2026-03-02 09:00 UTC: 11:00 in Tallinn (UTC+2 until 29 March).
IN_AN_HOUR = datetime(2026, 3, 2, 10, 0)
THIS_EVENING = datetime(2026, 3, 2, 16, 0)
TOMORROW = datetime(2026, 3, 3, 7, 0)
# The tests move the clock by days: logins last through it.
LOGINS_LAST = {"IDLE_TIMEOUT_SECONDS": 10**9, "SESSION_LIFETIME_SECONDS": 10**9}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(database_url, clock):
    """The app with a clock the test moves; alice (admin) and bob (agent); the team in Tallinn."""
    app = make_app(database_url, CLOCK=clock, **LOGINS_LAST)
    with app.app_context():
        create_tables()
        add_user("alice")
        add_user("bob", role="agent")
        team.set_time_zone("Europe/Tallinn")
    yield app
    close_app(app)


@pytest.fixture
def alice(app):
    actions = AuthActions(app.test_client())
    assert actions.login().status_code == 302
    return actions


@pytest.fixture
def bob(app):
    actions = AuthActions(app.test_client())
    assert actions.login("bob").status_code == 302
    return actions


def people(app) -> dict[str, int]:
    with app.app_context():
        return dict(db.session.execute(sa.select(User.username, User.id)).all())


def write(app, sender: str, text: str = "hello") -> int:
    body = body_for(sender=sender, text=text)
    response = app.test_client().post("/callbacks/inbound", data=body, headers=signed_headers(body))
    assert response.json == {"status": "stored"}
    with app.app_context():
        return conversation_of(sender).id


@pytest.fixture
def inbox(app):
    """Three customers; the first is bob's."""
    ids = [write(app, sender) for sender in (FIRST, SECOND, THIRD)]
    with app.app_context():
        owners.assign(ids[0], people(app)["bob"], people(app)["alice"])
    return ids


def listed(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'id="conversation-link-(\d+)"', html)]


def counts(html: str) -> dict[str, int]:
    tabs = re.search(r'<nav id="view-tabs".*?</nav>', html, re.S).group(0)
    return {label: int(count) for label, count in re.findall(r'>([A-Za-z ]+) <span class="count">(\d+)</span>', tabs)}


def snooze_by_form(actions: AuthActions, conversation_id: int, until: str, custom: str = "", **kwargs):
    """The snooze menu's form (posted to its URL: a snoozed conversation shows Unsnooze instead)."""
    page = actions.client.get(f"/conversations/{conversation_id}").text
    form = {"csrf_token": csrf_token(page), "until": until, "custom": custom}
    return actions.client.post(f"/conversations/{conversation_id}/snooze", data=form, **kwargs)


def state(app, conversation_id: int) -> tuple[datetime | None, bool]:
    with app.app_context():
        row = db.session.execute(
            sa.select(Conversation.snoozed_until, Conversation.snoozed_until_reply).where(
                Conversation.id == conversation_id
            )
        ).one()
        return row.snoozed_until, row.snoozed_until_reply


def events(app, *actions: str) -> list[tuple[str, str | None, dict]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(AuditEvent.action, AuditEvent.username, AuditEvent.details)
            .where(AuditEvent.action.in_(actions or ("snoozed", "woke")))
            .order_by(AuditEvent.id)
        )
        return [(action, username, json.loads(details)) for action, username, details in rows]


def woke_notifications(app) -> list[tuple[int, int]]:
    with app.app_context():
        return [
            tuple(row)
            for row in db.session.execute(
                sa.select(Notification.user_id, Notification.conversation_id)
                .where(Notification.kind == "woke")
                .order_by(Notification.id)
            )
        ]


def run_jobs(app, at: datetime | None = None, holder: str | None = None) -> None:
    with app.app_context():
        jobs.run_due(at, holder=holder)


def test_snoozed_until_a_preset_leaves_open_sits_in_snoozed_and_wakes_at_its_time_once(app, inbox, alice, clock):
    first = inbox[0]
    bob_id = people(app)["bob"]
    assert counts(alice.client.get("/").text) == {
        "Open": 3,
        "Snoozed": 0,
        "Done": 0,
        "All": 3,
        "Unread": 3,
        "Mentions": 0,
        "Opted out": 0,
    }
    response = snooze_by_form(alice, first, "tomorrow")
    assert response.status_code == 303 and response.headers["Location"] == f"/conversations/{first}"
    assert state(app, first) == (TOMORROW, False)  # 09:00 in Tallinn

    open_view = alice.client.get("/").text
    assert first not in listed(open_view)
    assert counts(open_view)["Open"] == 2 and counts(open_view)["Snoozed"] == 1
    snoozed_view = alice.client.get("/?view=snoozed").text
    assert listed(snoozed_view) == [first]
    assert 'Wakes <time datetime="2026-03-03T07:00:00Z" data-moment>2026-03-03 09:00</time>' in snoozed_view
    # Combined with an owner: bob's snoozed ones, and none of alice's.
    assert listed(alice.client.get(f"/?view=snoozed&assignee={bob_id}").text) == [first]
    assert listed(alice.client.get("/?view=snoozed&assignee=me").text) == []
    thread = alice.client.get(f"/conversations/{first}").text
    assert "Snoozed until" in thread and ">Unsnooze</button>" in thread
    assert events(app) == [
        ("snoozed", "alice", {"conversation": first, "until": "2026-03-03T07:00:00Z", "by": "alice"})
    ]

    clock.moment = clock.moment.replace(year=2026, month=3, day=3, hour=6, minute=59, second=59)
    run_jobs(app)
    assert state(app, first) == (TOMORROW, False)  # a second early: still asleep
    clock.advance(seconds=1)
    latest = re.search(r'hx-get="/\?since=(\d+)', alice.client.get("/").text).group(1)
    run_jobs(app)
    assert state(app, first) == (None, False)
    assert alice.client.get(f"/?since={latest}").status_code == 200  # open lists see it at their next poll
    assert first in listed(alice.client.get("/").text)
    assert listed(alice.client.get("/?view=snoozed").text) == []
    assert events(app, "woke") == [("woke", None, {"conversation": first, "reason": "time"})]
    assert woke_notifications(app) == [(bob_id, first)]
    clock.advance(days=7)
    run_jobs(app)
    assert len(events(app, "woke")) == 1 and len(woke_notifications(app)) == 1


def test_until_the_customer_replies_wakes_only_by_a_reply(app, inbox, alice, clock):
    first = inbox[0]
    assert snooze_by_form(alice, first, "reply").status_code == 303
    assert state(app, first) == (None, True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == snooze.JOB)) == 0
    clock.advance(days=400)
    run_jobs(app)
    assert state(app, first) == (None, True)
    assert "Wakes on reply" in alice.client.get("/?view=snoozed").text

    write(app, FIRST, "any news?")  # the inbound callback wakes it, in ingest's transaction
    assert state(app, first) == (None, False)
    assert first in listed(alice.client.get("/").text)
    assert events(app, "woke") == [("woke", None, {"conversation": first, "reason": "customer wrote"})]
    assert woke_notifications(app) == [(people(app)["bob"], first)]


def test_a_reply_before_the_time_wakes_it_and_the_time_then_does_nothing(app, inbox, alice, clock):
    second = inbox[1]  # unassigned: nobody to tell
    assert snooze_by_form(alice, second, "in an hour").status_code == 303
    assert state(app, second) == (IN_AN_HOUR, False)
    clock.advance(minutes=30)
    write(app, SECOND, "still there?")
    assert state(app, second) == (None, False)
    clock.advance(hours=1)
    run_jobs(app)
    assert events(app, "woke") == [("woke", None, {"conversation": second, "reason": "customer wrote"})]
    assert woke_notifications(app) == []
    with app.app_context():  # the job ran, found nothing to do, and is done
        assert db.session.scalars(sa.select(Job.state).where(Job.kind == snooze.JOB)).all() == ["done"]


def test_re_snoozing_moves_the_wake_and_the_old_time_does_nothing(app, inbox, alice, clock):
    first = inbox[0]
    assert snooze_by_form(alice, first, "in an hour").status_code == 303
    assert snooze_by_form(alice, first, "tomorrow").status_code == 303
    clock.advance(hours=1)
    run_jobs(app)
    assert state(app, first) == (TOMORROW, False)
    clock.moment = clock.moment.replace(day=3, hour=7, minute=0)
    run_jobs(app)
    assert state(app, first) == (None, False)
    assert [event[2]["reason"] for event in events(app, "woke")] == ["time"]


def test_it_wakes_when_a_runner_starts_after_its_time_passed_while_none_ran(app, inbox, alice, clock):
    """The server was down at the wake time: the job, due in the past, runs when a runner starts."""
    first = inbox[0]
    assert snooze_by_form(alice, first, "this evening").status_code == 303
    clock.advance(days=2)  # nothing ran meanwhile
    assert state(app, first) == (THIS_EVENING, False)
    started = runner.Runner(app, threads=1).start()
    try:
        wait_until(lambda: state(app, first) == (None, False), "the snoozed conversation woke")
    finally:
        started.stop()
    assert events(app, "woke") == [("woke", None, {"conversation": first, "reason": "time"})]
    assert woke_notifications(app) == [(people(app)["bob"], first)]


def test_it_wakes_once_and_notifies_once_with_two_runners_racing(app, inbox, alice, clock):
    """Two apps (two processes' engines) run the wake jobs at once; snoozing thrice to the same time
    left three jobs, so both runners get one and race the conditional UPDATE."""
    first = inbox[0]
    for _ in range(3):
        assert snooze_by_form(alice, first, "tomorrow").status_code == 303
    other = make_app(app.config["SQLALCHEMY_DATABASE_URI"], CLOCK=clock, **LOGINS_LAST)
    try:
        clock.moment = clock.moment.replace(day=3, hour=7)
        start = threading.Barrier(2)
        failures: list[BaseException] = []

        def run(each_app, holder):
            try:
                with each_app.app_context():
                    start.wait()
                    jobs.run_due(holder=holder)
                    db.session.remove()
            except BaseException as exc:  # reported below, in the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=run, args=pair) for pair in ((app, "runner-a"), (other, "runner-b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
    finally:
        close_app(other)
    assert state(app, first) == (None, False)
    assert events(app, "woke") == [("woke", None, {"conversation": first, "reason": "time"})]
    assert woke_notifications(app) == [(people(app)["bob"], first)]
    with app.app_context():
        assert db.session.scalars(sa.select(Job.state).where(Job.kind == snooze.JOB)).all() == ["done"] * 3


def test_unsnooze_by_hand_audited_and_the_owner_told_unless_it_was_them(app, inbox, alice, bob):
    first = inbox[0]
    ids = people(app)
    assert snooze_by_form(bob, first, "reply").status_code == 303
    page = bob.client.get(f"/conversations/{first}").text
    action = unescape(re.search(r'action="([^"]+/unsnooze)"', page).group(1))
    assert bob.client.post(action, data={"csrf_token": csrf_token(page)}).status_code == 303
    assert state(app, first) == (None, False)
    assert woke_notifications(app) == []  # bob did it himself

    assert snooze_by_form(bob, first, "reply").status_code == 303
    page = alice.client.get(f"/conversations/{first}").text
    action = unescape(re.search(r'action="([^"]+/unsnooze)"', page).group(1))
    response = alice.client.post(action, data={"csrf_token": csrf_token(page)}, headers=HTMX)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "conversation-changed"
    assert response.text.lstrip().startswith('<div id="snooze"') and ">Snooze</span></summary>" in response.text
    assert woke_notifications(app) == [(ids["bob"], first)]
    assert [(action, who, details.get("by"), details.get("reason")) for action, who, details in events(app)] == [
        ("snoozed", "bob", "bob", None),
        ("woke", "bob", "bob", "by hand"),
        ("snoozed", "bob", "bob", None),
        ("woke", "alice", "alice", "by hand"),
    ]
    # Nothing to wake: nothing happens, nothing is audited.
    assert alice.client.post(action, data={"csrf_token": csrf_token(page)}).status_code == 303
    assert len(events(app, "woke")) == 2


def test_a_custom_time_is_read_in_the_team_zone_and_refusals_say_why(app, inbox, alice):
    first = inbox[0]
    response = snooze_by_form(alice, first, "custom", "2026-03-10T14:30")
    assert response.status_code == 303
    assert state(app, first) == (datetime(2026, 3, 10, 12, 30), False)  # 14:30 in Tallinn

    for until, custom, why in [
        ("custom", "2026-03-02T10:59", "Choose a time in the future."),  # 08:59 UTC: past
        ("custom", "tomorrow-ish", "Give a date and a time"),
        ("whenever", "", "Choose one of the times offered"),
    ]:
        response = snooze_by_form(alice, inbox[1], until, custom)
        assert response.status_code == 400 and why in unescape(response.text)
        assert 'details class="snooze-menu" id="snooze-menu" open' in response.text
        with_htmx = snooze_by_form(alice, inbox[1], until, custom, headers=HTMX)
        assert with_htmx.status_code == 200 and why in unescape(with_htmx.text)
        assert state(app, inbox[1]) == (None, False)
    page = alice.client.get(f"/conversations/{first}").text
    action = unescape(re.search(r'action="([^"]+/unsnooze)"', page).group(1))
    assert alice.client.post(action).status_code == 400  # CSRF


def test_the_menu_offers_the_presets_in_the_team_zone_and_says_so(app, inbox, alice):
    page = alice.client.get(f"/conversations/{inbox[1]}").text
    menu = re.search(r'<details class="snooze-menu".*?</details>', page, re.S).group(0)
    assert re.findall(r'value="([^"]+)">(.*?) <time datetime="([^"]+)"', menu) == [
        ("in an hour", "In an hour", "2026-03-02T10:00:00Z"),
        ("this evening", "This evening", "2026-03-02T16:00:00Z"),
        ("tomorrow", "Tomorrow", "2026-03-03T07:00:00Z"),
        ("next Monday", "Next Monday", "2026-03-09T07:00:00Z"),
    ]
    assert '<button type="submit" name="until" value="reply">Until the customer replies</button>' in menu
    assert "(Europe/Tallinn time)" in menu and 'type="datetime-local"' in menu and 'min="2026-03-02T11:00"' in menu
    assert 'data-team-zone="Europe/Tallinn" hidden' in menu  # times.js shows it where the browser's zone differs


def test_on_a_sunday_the_menu_offers_tomorrow_once(app, inbox, alice, clock):
    clock.moment = clock.moment.replace(day=8)  # Sunday: "next Monday" 09:00 is tomorrow 09:00
    page = alice.client.get(f"/conversations/{inbox[1]}").text
    assert re.findall(r'name="until" value="([^"]+)"', page) == [
        "in an hour",
        "this evening",
        "tomorrow",
        "reply",
        "custom",
    ]


def test_snoozing_with_htmx_swaps_the_control_and_a_poll_brings_it_to_other_pages(app, inbox, alice, bob):
    first = inbox[0]
    page = bob.client.get(f"/conversations/{first}").text
    poll = unescape(re.search(r'id="thread-poller" data-poll\s+hx-get="([^"]+)"', page).group(1))

    response = snooze_by_form(alice, first, "in an hour", headers=HTMX)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "conversation-changed"
    assert response.text.lstrip().startswith('<div id="snooze"') and "Snoozed until" in response.text
    assert '<form id="status"' in response.text and 'hx-swap-oob="true"' in response.text

    update = bob.client.get(poll + "&showing_snooze=", headers=HTMX).text
    assert '<div id="snooze" class="snooze-control" hx-swap-oob="true">' in update
    assert 'datetime="2026-03-02T10:00:00Z"' in update


def test_mark_done_with_htmx_ends_the_snooze_and_swaps_its_control(app, inbox, alice):
    first = inbox[0]
    assert snooze_by_form(alice, first, "reply").status_code == 303
    page = alice.client.get(f"/conversations/{first}").text
    form = {"csrf_token": csrf_token(page), "status": "done"}
    done = alice.client.post(f"/conversations/{first}/status", data=form, headers=HTMX)
    assert done.status_code == 200 and done.text.lstrip().startswith('<form id="status"')
    assert '<div id="snooze" class="snooze-control" hx-swap-oob="true">' in done.text
    assert ">Snooze</span></summary>" in done.text
    assert state(app, first) == (None, False)


def test_done_ends_a_snooze_and_snoozing_a_done_conversation_opens_it(app, inbox, alice, clock):
    from app import contacts

    first, second = inbox[0], inbox[1]
    assert snooze_by_form(alice, first, "in an hour").status_code == 303
    with app.app_context():
        contacts.set_status(first, "done")
        contacts.set_status(second, "done")
    assert state(app, first) == (None, False)
    assert snooze_by_form(alice, second, "reply").status_code == 303
    with app.app_context():
        assert db.session.scalar(sa.select(Conversation.status).where(Conversation.id == second)) == "open"
    clock.advance(hours=2)
    run_jobs(app)
    assert events(app, "woke") == []  # done, it stays done: no wake, nobody told
    assert listed(alice.client.get("/?view=done").text) == [first]


def test_snoozed_conversations_count_towards_no_cap_and_are_not_given_out(app, inbox, alice):
    first, second, third = inbox
    ids = people(app)
    with app.app_context():
        owners.set_on_shift(ids["bob"], True)
        autoassign.set_settings(True, 1, ())
        jobs.run_due()
        # bob is at his cap with the first: the others wait.
        assert owners.username_of(conversation_of(SECOND).assignee_id) is None
    assert snooze_by_form(alice, third, "reply").status_code == 303  # unassigned and snoozed
    assert snooze_by_form(alice, first, "reply").status_code == 303  # bob's: room for one more
    run_jobs(app)
    with app.app_context():
        assigned = dict(db.session.execute(sa.select(Conversation.id, Conversation.assignee_id)).all())
    assert assigned == {first: ids["bob"], second: ids["bob"], third: None}
    write(app, THIRD, "hello again")  # wakes, unassigned: given out when someone has room
    with app.app_context():
        owners.set_on_shift(ids["alice"], True)
        jobs.run_due()
        assert conversation_of(THIRD).assignee_id == ids["alice"]


def test_the_snoozed_view_counts_under_filters_once_per_change(app, inbox, alice):
    assert snooze_by_form(alice, inbox[0], "reply").status_code == 303
    with app.test_request_context():
        latest = queries.latest_change()
        assert list_views.view_facts(ListFilter(), latest).counts == {
            "open": 2,
            "snoozed": 1,
            "done": 0,
            "all": 3,
            "unread": 3,
            "opted-out": 0,
            "mentions": 0,
        }
        narrowed = list_views.view_facts(ListFilter(channel="sms"), latest).counts
        assert (narrowed["open"], narrowed["snoozed"]) == (2, 1)
    assert counts(alice.client.get("/?view=snoozed").text)["Snoozed"] == 1


def test_the_admin_sets_the_team_time_zone_audited(app, alice, bob):
    page = alice.client.get("/admin/time-zone").text
    assert '<option selected value="Europe/Tallinn">' in page
    assert "<h1>Time zone</h1>" in page
    response = alice.client.post("/admin/time-zone", data={"csrf_token": csrf_token(page), "zone": "America/New_York"})
    assert response.status_code == 200 and "Saved." in response.text
    with app.app_context():
        assert team.time_zone_name() == "America/New_York"
    assert events(app, "settings_changed")[-1][2] == {"team_time_zone": "America/New_York", "was": "Europe/Tallinn"}
    refused = alice.client.post("/admin/time-zone", data={"csrf_token": csrf_token(page), "zone": "Mars/Olympus"})
    assert refused.status_code == 400
    assert bob.client.get("/admin/time-zone").status_code == 403
    with app.app_context():
        assert team.time_zone_name() == "America/New_York"
