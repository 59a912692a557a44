"""Auto-assignment (app/contacts/autoassign.py): who gets a new or reopened conversation, the cap,
waiting in Unassigned until someone can take it, the admin's settings; jobs driven by
`jobs.run_due`, and a storm of new conversations on a real two-worker server."""

import json
import re
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app import contacts, jobs
from app.contacts import autoassign, owners
from app.db.models import AuditEvent, Conversation, Job, Setting, User
from app.db.unit_of_work import write_transaction
from app.extensions import db
from conftest import add_user, body_for, conversation_of, csrf_token, signed_headers, wait_until


@pytest.fixture
def team(app):
    """alice (admin), bob and carol (agents): ids by name, nobody on shift yet."""
    with app.app_context():
        add_user("alice")
        for name in ("bob", "carol"):
            add_user(name, role="agent")
        return dict(db.session.execute(sa.select(User.username, User.id)).all())


def on_shift(team, *names: str) -> None:
    for name in names:
        owners.set_on_shift(team[name], True)


def turn_on(cap: int = 20, numbers=()) -> None:
    autoassign.set_settings(True, cap, numbers)


def write(deliver, sender: str, **fields) -> int:
    assert deliver(body_for(sender=sender, text=f"from {sender}", **fields)).json == {"status": "stored"}
    return conversation_of(sender).id


def owner_names() -> dict[str, str | None]:
    """Each conversation's owner by sender."""
    rows = db.session.execute(
        sa.select(Conversation.sender, User.username).outerjoin(User, User.id == Conversation.assignee_id)
    )
    return dict(rows.all())


def auto_events() -> list[tuple[str, dict]]:
    rows = db.session.execute(
        sa.select(AuditEvent.action, AuditEvent.details, AuditEvent.username)
        .where(AuditEvent.action.in_(("assigned", "unassigned")))
        .order_by(AuditEvent.id)
    )
    found = []
    for action, details, username in rows:
        details = json.loads(details)
        if details["by"] == owners.AUTO_ASSIGNMENT:
            assert username is None
            found.append((action, details))
    return found


def sweeps_waiting() -> int:
    return db.session.scalar(sa.select(sa.func.count()).where(Job.kind == autoassign.JOB, Job.state == "due"))


def test_off_by_default_nothing_is_assigned_and_ingest_enqueues_nothing(app, team, deliver):
    with app.app_context():
        on_shift(team, "alice", "bob")
        write(deliver, "+3725550001")
        assert sweeps_waiting() == 0
        jobs.run_due()
        assert owner_names() == {"+3725550001": None}
        assert autoassign.settings() == autoassign.Settings(on=False, cap=20, numbers=())


def test_a_new_conversation_goes_to_whoever_has_fewest_open_ties_in_turn(app, team, deliver):
    with app.app_context():
        on_shift(team, "alice", "bob", "carol")
        first = write(deliver, "+3725550000")
        owners.assign(first, team["bob"], team["alice"])  # bob already has one open
        turn_on()
        senders = [f"+372555000{n}" for n in range(1, 7)]
        for sender in senders:
            write(deliver, sender)
        jobs.run_due()
        given = owner_names()
        # alice and carol (none open) first, by id; then all three have one: bob was never
        # auto-assigned one, so his turn; then alice and carol in turn again.
        assert [given[sender] for sender in senders] == ["alice", "carol", "bob", "alice", "carol", "bob"]
        assert Counter(given.values()) == {"alice": 2, "bob": 3, "carol": 2}


def test_the_cap_holds_and_room_made_by_done_unassign_or_release_is_filled(app, team, deliver):
    with app.app_context():
        on_shift(team, "bob")
        turn_on(cap=2)
        ids = [write(deliver, f"+372555000{n}") for n in range(5)]
        jobs.run_due()
        assert [owner_names()[f"+372555000{n}"] for n in range(5)] == ["bob", "bob", None, None, None]
        assert owners.open_conversations(team["bob"]) == 2

        contacts.set_status(ids[0], "done")  # room for one: the oldest waiting goes to him
        assert sweeps_waiting() == 1
        jobs.run_due()
        assert owner_names()["+3725550002"] == "bob"
        assert owners.open_conversations(team["bob"]) == 2

        owners.assign(ids[1], None, team["alice"])  # unassigned by a person: room for the oldest waiting
        jobs.run_due()
        assert owners.open_conversations(team["bob"]) == 2
        assert owner_names()["+3725550001"] == "bob"  # itself, the only one with room being bob

        owners.set_on_shift(team["bob"], False, release=True)  # nobody on shift: all wait
        jobs.run_due()
        assert owners.open_conversations(team["bob"]) == 0
        on_shift(team, "carol")
        jobs.run_due()
        assert owners.open_conversations(team["carol"]) == 2


def test_nobody_available_it_stays_unassigned_until_someone_comes_on_shift(app, team, deliver):
    with app.app_context():
        turn_on()
        write(deliver, "+3725550001")
        jobs.run_due()
        assert owner_names() == {"+3725550001": None}
        assert auto_events() == []
        on_shift(team, "carol")
        assert sweeps_waiting() == 1
        jobs.run_due()
        assert owner_names() == {"+3725550001": "carol"}


def test_off_shift_and_disabled_people_never_get_work(app, team, deliver):
    with app.app_context():
        on_shift(team, "alice", "bob", "carol")
        owners.set_on_shift(team["alice"], False)
        with write_transaction():
            db.session.execute(sa.update(User).where(User.id == team["bob"]).values(disabled=True))
        turn_on(cap=3)
        for n in range(5):
            write(deliver, f"+372555000{n}")
        jobs.run_due()
        assert Counter(owner_names().values()) == {"carol": 3, None: 2}


def test_a_reopened_conversation_goes_back_to_its_owner_while_on_shift_and_under_the_cap(app, team, deliver):
    with app.app_context():
        on_shift(team, "bob", "carol")
        turn_on(cap=2)
        first = write(deliver, "+3725550001")
        jobs.run_due()
        assert owner_names()["+3725550001"] == "bob"
        contacts.set_status(first, "done")
        write(deliver, "+3725550002")  # carol's: bob has none open, but carol's turn (ties in turn)
        write(deliver, "+3725550003")  # bob's
        jobs.run_due()
        assert owner_names() == {"+3725550001": "bob", "+3725550002": "carol", "+3725550003": "bob"}
        events = len(auto_events())

        write(deliver, "+3725550001")  # the customer writes again: bob (1 open, cap 2) keeps it
        assert conversation_of("+3725550001").status == "open"
        jobs.run_due()
        assert owner_names()["+3725550001"] == "bob"
        assert len(auto_events()) == events  # nothing changed, nothing recorded


def test_a_reopened_conversation_whose_owner_cannot_take_it_is_treated_as_new(app, team, deliver):
    with app.app_context():
        on_shift(team, "bob")
        turn_on(cap=5)
        first = write(deliver, "+3725550001")
        jobs.run_due()
        contacts.set_status(first, "done")
        owners.set_on_shift(team["bob"], False)

        write(deliver, "+3725550001")  # bob is off shift, nobody else on: back to Unassigned
        jobs.run_due()
        assert owner_names()["+3725550001"] is None
        assert auto_events()[-1] == ("unassigned", {"conversation": first, "by": "auto-assignment", "was": "bob"})

        on_shift(team, "carol")
        jobs.run_due()
        assert owner_names()["+3725550001"] == "carol"

        # carol at her cap when it comes back: alice, on shift, takes it over.
        autoassign.set_settings(True, 1, ())
        contacts.set_status(first, "done")
        write(deliver, "+3725550002")
        jobs.run_due()
        assert owner_names()["+3725550002"] == "carol"
        on_shift(team, "alice")
        write(deliver, "+3725550001")
        jobs.run_due()
        assert owner_names()["+3725550001"] == "alice"
        assert auto_events()[-1] == (
            "assigned",
            {"conversation": first, "by": "auto-assignment", "assignee": "alice", "was": "carol"},
        )


def test_each_assignment_is_audited_once_as_auto_assignment(app, team, deliver):
    with app.app_context():
        on_shift(team, "bob")
        turn_on()
        ids = [write(deliver, f"+372555000{n}") for n in range(3)]
        jobs.run_due()
        # Another sweep (a retry, say) finds nothing left to do.
        with write_transaction():
            jobs.enqueue(autoassign.JOB, {"reopened": ids}, key=autoassign.KEY)
        jobs.run_due()
        assert auto_events() == [
            ("assigned", {"conversation": id_, "by": "auto-assignment", "assignee": "bob"}) for id_ in ids
        ]


def test_sweeps_racing_in_two_threads_count_and_assign_under_the_write_lock(app, team, deliver):
    """Jobs of one key never run together; should two sweeps race anyway (a manual run, say),
    each assignment counts and assigns in one write transaction: nobody passes the cap."""
    with app.app_context():
        on_shift(team, "bob", "carol")
        for n in range(30):
            write(deliver, f"+37255500{n:02d}")
        with write_transaction():
            db.session.add_all([Setting(name=autoassign.ON, value="1"), Setting(name=autoassign.CAP, value="10")])

    def sweep_here():
        with app.app_context():
            autoassign.sweep({}, None)

    threads = [threading.Thread(target=sweep_here) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with app.app_context():
        assert Counter(owner_names().values()) == {"bob": 10, "carol": 10, None: 10}
        assert len({details["conversation"] for _, details in auto_events()}) == len(auto_events()) == 20


def test_turned_off_waiting_jobs_assign_nothing(app, team, deliver):
    with app.app_context():
        on_shift(team, "bob")
        turn_on()
        write(deliver, "+3725550001")
        autoassign.set_settings(False, 20, ())
        jobs.run_due()
        assert owner_names() == {"+3725550001": None}


def test_only_conversations_written_to_the_chosen_numbers(app, team, deliver):
    with app.app_context():
        on_shift(team, "bob")
        turn_on(numbers=["+37250000001"])
        write(deliver, "+3725550001", recipient="+37250000000")
        write(deliver, "+3725550002", recipient="+37250000001")
        write(deliver, "+3725550003", recipient=None)
        jobs.run_due()
        assert owner_names() == {"+3725550001": None, "+3725550002": "bob", "+3725550003": None}


def test_ingest_enqueues_one_sweep_while_one_waits_and_one_per_reopening(app, team, deliver):
    with app.app_context():
        on_shift(team, "bob")
        turn_on()
        jobs.run_due()
        first = write(deliver, "+3725550001")
        write(deliver, "+3725550002")
        write(deliver, "+3725550001")  # neither new nor reopened: no job
        assert sweeps_waiting() == 1
        jobs.run_due()
        contacts.set_status(first, "done")
        jobs.run_due()
        write(deliver, "+3725550001")
        payloads = db.session.scalars(sa.select(Job.payload).where(Job.kind == autoassign.JOB, Job.state == "due"))
        assert [json.loads(payload) for payload in payloads] == [{"reopened": [first]}]


def test_admins_set_it_on_the_users_page_audited(app, client, admin, agent):
    page = client.get("/admin/users").text
    assert 'action="/admin/auto-assignment"' in page
    form = {"csrf_token": csrf_token(page), "on": "1", "cap": "7", "number": ["+37250000001"]}
    assert client.post("/admin/auto-assignment", data=form).status_code == 303
    assert client.post("/admin/auto-assignment", data=form).status_code == 303  # the same: not audited again
    with app.app_context():
        assert autoassign.settings() == autoassign.Settings(on=True, cap=7, numbers=("+37250000001",))
        details = db.session.scalars(sa.select(AuditEvent.details).where(AuditEvent.action == "settings_changed"))
        assert [json.loads(found) for found in details] == [
            {"auto_assignment": "yes", "auto_assignment_cap": 7, "auto_assignment_numbers": "+37250000001"}
        ]
    page = client.get("/admin/users").text
    assert re.search(r'name="on" value="1" checked', page)
    assert 'value="+37250000001" checked' in page
    bad = client.post("/admin/auto-assignment", data={**form, "cap": "0"})
    assert bad.status_code == 400 and "The cap is a number" in bad.text

    # Agents may not.
    token = csrf_token(agent.client.get("/").text)
    assert agent.client.post("/admin/auto-assignment", data={**form, "csrf_token": token}).status_code == 403
    with app.app_context():
        assert db.session.get(Setting, autoassign.CAP).value == "7"


# --- under load, on a real server ----------------------------------------------------------


def post_callback(base_url: str, body: bytes) -> int:
    request = urllib.request.Request(
        base_url + "/callbacks/inbound", data=body, headers=signed_headers(body), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


@pytest.mark.slow
def test_a_storm_of_new_conversations_over_two_workers_never_passes_the_cap(app, team, server_factory):
    CAP, ARRIVING = 60, 200
    with app.app_context():
        on_shift(team, "alice", "bob", "carol")
        turn_on(cap=CAP)
    server = server_factory(workers=2, threads=8)
    bodies = [body_for(sender=f"+3725551{n:04d}", text=f"hello {n}") for n in range(ARRIVING)]
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda body: post_callback(server.url, body), bodies))
    assert statuses == [200] * ARRIVING

    def settled():
        with app.app_context():
            busy = db.session.scalar(
                sa.select(sa.func.count()).where(Job.kind == autoassign.JOB, Job.state.in_(("due", "running")))
            )
            assigned = db.session.scalar(sa.select(sa.func.count()).where(Conversation.assignee_id.is_not(None)))
            db.session.rollback()
            return busy == 0 and assigned == 3 * CAP

    wait_until(settled, "every person has their cap of conversations", timeout=60)
    with app.app_context():
        loads = Counter(owner_names().values())
        assert loads == {"alice": CAP, "bob": CAP, "carol": CAP, None: ARRIVING - 3 * CAP}
        events = auto_events()
        assert len(events) == 3 * CAP
        assert all(action == "assigned" for action, _ in events)
        assert len({details["conversation"] for _, details in events}) == 3 * CAP  # each once
        assert db.session.scalar(sa.select(sa.func.count()).where(Job.kind == autoassign.JOB, Job.state == "dead")) == 0
    assert "Traceback" not in server.output()
