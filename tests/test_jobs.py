"""Background jobs (app/jobs/): committed with their cause, claimed by one runner, retried by their
kind's rules, driven by `run_due(now)` and the app's clock; the runner's threads as a server runs them."""

import re
import threading
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
import sqlalchemy as sa

from app import jobs
from app.db.models import AuditEvent, ChangeCounter, Job, Server, Setting
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.jobs import rate_budget, runner
from conftest import AuthActions, body_for, close_app, create_tables, make_app, signed_headers, wait_until

START = datetime(2026, 1, 5, 9, 0)
ran: list[tuple[str, dict]] = []  # what the test kinds below were asked to do


def asked() -> list[tuple[str, dict]]:
    """What ran, but the periodic test kind (every run_due adds it once an hour)."""
    return [entry for entry in ran if entry[0] != "hourly"]


failures: dict[int, int] = {}  # job payload "n" -> times left to fail


@jobs.kind("test_note")
def note(payload, attempt):
    ran.append(("note", payload))


@jobs.kind("test_flaky", max_attempts=3)
def flaky(payload, attempt):
    ran.append(("flaky", payload))
    if failures.get(payload["n"], 0) > 0:
        failures[payload["n"]] -= 1
        raise RuntimeError("the far end is away")


@jobs.kind(
    "test_once",
    at_most_once=True,
    lease=timedelta(minutes=1),
    on_abandon=lambda payload, reason: ran.append(("abandoned", payload)),
)
def once(payload, attempt):
    ran.append(("once", payload))


@jobs.kind("test_hourly", every=timedelta(hours=1))
def hourly(payload, attempt):
    ran.append(("hourly", payload))


gate = threading.Event()  # test_single jobs wait for it
singles = {"now": 0, "most": 0}  # test_single jobs running, and the most at once
singles_lock = threading.Lock()


@jobs.kind("test_single", per_runner=1)
def single(payload, attempt):
    with singles_lock:
        singles["now"] += 1
        singles["most"] = max(singles["most"], singles["now"])
    try:
        ran.append(("single", payload))
        gate.wait(10)
    finally:
        with singles_lock:
            singles["now"] -= 1


@pytest.fixture
def clock_now():
    return {"moment": START}


@pytest.fixture
def job_app(database_url, clock_now):
    ran.clear()
    failures.clear()
    app = make_app(database_url, CLOCK=lambda: clock_now["moment"].replace(tzinfo=UTC))
    with app.app_context():
        create_tables()
    yield app
    close_app(app)


def job_rows(kinds=("test_note", "test_flaky", "test_once")) -> list[Job]:
    rows = db.session.scalars(sa.select(Job).where(Job.kind.in_(kinds)).order_by(Job.id)).all()
    db.session.expunge_all()
    db.session.rollback()
    return rows


def test_a_job_commits_with_its_cause_and_rolls_back_with_it(job_app):
    with job_app.app_context():
        with write_transaction() as session:
            session.add(Setting(name="cause-1", value="x"))
            jobs.enqueue("test_note", {"conversation": 1})
        with pytest.raises(ZeroDivisionError):
            with write_transaction() as session:
                session.add(Setting(name="cause-2", value="x"))
                jobs.enqueue("test_note", {"conversation": 2})
                raise ZeroDivisionError  # any error inside the transaction
        causes = db.session.scalars(sa.select(Setting.name).where(Setting.name.like("cause-%"))).all()
        assert causes == ["cause-1"]
        assert [row.payload for row in job_rows()] == ['{"conversation": 1}']
        with pytest.raises(RuntimeError):  # outside a write transaction it would commit alone
            jobs.enqueue("test_note", {"conversation": 3})


def test_a_payload_holds_ids_only(job_app):
    with job_app.app_context(), pytest.raises(ValueError), write_transaction():
        jobs.enqueue("test_note", {"phone": "+37255512345"})


def test_run_due_runs_what_is_due_at_the_clock_and_leaves_the_rest(job_app, clock_now):
    with job_app.app_context():
        with write_transaction():
            jobs.enqueue("test_note", {"n": 1})
            jobs.enqueue("test_note", {"n": 2}, due_at=START + timedelta(minutes=5))
        jobs.run_due(START)
        assert asked() == [("note", {"n": 1})]
        clock_now["moment"] = START + timedelta(minutes=5)
        jobs.run_due(START + timedelta(minutes=5))
        assert asked() == [("note", {"n": 1}), ("note", {"n": 2})]
        assert [row.state for row in job_rows()] == ["done", "done"]


def test_jobs_with_one_key_run_in_order(job_app, clock_now):
    with job_app.app_context():
        with write_transaction():
            jobs.enqueue("test_flaky", {"n": 1}, key="k")
            jobs.enqueue("test_flaky", {"n": 2}, key="k")
            jobs.enqueue("test_flaky", {"n": 3})
        failures[1] = 1  # the first fails once: the second waits for it
        jobs.run_due(START)
        assert asked() == [("flaky", {"n": 1}), ("flaky", {"n": 3})]
        clock_now["moment"] = later = START + timedelta(minutes=1)
        jobs.run_due(later)
        assert asked()[2:] == [("flaky", {"n": 1}), ("flaky", {"n": 2})]


def test_a_failing_idempotent_job_backs_off_then_is_dead_until_an_admin_retries_it(job_app, clock_now):
    with job_app.app_context():
        with write_transaction():
            jobs.enqueue("test_flaky", {"n": 7})
        failures[7] = 5
        jobs.run_due(START)
        [job] = job_rows()
        assert (job.state, job.attempts, job.due_at) == ("due", 1, START + timedelta(seconds=5))
        assert job.last_error == "RuntimeError: the far end is away"
        jobs.run_due(START + timedelta(seconds=4))  # not yet due
        assert len(asked()) == 1
        clock_now["moment"] = START + timedelta(seconds=5)
        jobs.run_due(clock_now["moment"])
        [job] = job_rows()
        assert (job.state, job.due_at) == ("due", START + timedelta(seconds=15))  # twice the wait
        clock_now["moment"] = START + timedelta(seconds=15)
        jobs.run_due(clock_now["moment"])
        [job] = job_rows()
        assert (job.state, job.attempts) == ("dead", 3)
        jobs.run_due(START + timedelta(days=1))
        assert len(asked()) == 3  # dead stays dead
        assert jobs.retry_dead(job.id)
        failures[7] = 0
        jobs.run_due(clock_now["moment"])
        assert [row.state for row in job_rows()] == ["done"]


def test_claim_is_exclusive_across_processes(job_app, clock_now):
    """Two apps (each its own engine and connections, as two processes) claim one job at once."""
    other = make_app(job_app.config["SQLALCHEMY_DATABASE_URI"], CLOCK=job_app.config["CLOCK"])
    try:
        with job_app.app_context():
            with write_transaction():
                for n in range(20):
                    jobs.enqueue("test_note", {"n": n})
            ids = [row.id for row in job_rows()]
        claims: dict[str, list[int]] = {"a": [], "b": []}
        start = threading.Barrier(2)

        def claim_all(app, name):
            with app.app_context():
                start.wait()
                for job_id in ids:
                    if jobs.claim(job_id, "test_note", START, name, app.config) is not None:
                        claims[name].append(job_id)
                db.session.remove()

        threads = [threading.Thread(target=claim_all, args=(app, name)) for app, name in ((job_app, "a"), (other, "b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claims["a"] + claims["b"]) == ids  # each once, by one of them
        with job_app.app_context():
            assert {row.holder for row in job_rows()} <= {"a", "b"}
            assert all(row.state == "running" for row in job_rows())
    finally:
        close_app(other)


def test_an_at_most_once_job_whose_runner_died_is_abandoned_never_rerun(job_app, clock_now):
    with job_app.app_context():
        with write_transaction():
            jobs.enqueue("test_once", {"n": 1})
            jobs.enqueue("test_flaky", {"n": 2})
        for row in job_rows():  # claimed by a runner that then died
            assert jobs.claim(row.id, row.kind, START, "dead-runner", job_app.config)
        jobs.run_due(START + timedelta(seconds=30))  # leases not yet run out: nothing happens
        assert asked() == []
        clock_now["moment"] = later = START + timedelta(minutes=6)
        jobs.run_due(later)
        assert asked() == [("abandoned", {"n": 1})]  # the idempotent one is due again, after a pause
        clock_now["moment"] = later = later + timedelta(seconds=5)
        jobs.run_due(later)
        assert asked() == [("abandoned", {"n": 1}), ("flaky", {"n": 2})]
        assert [(row.kind, row.state) for row in job_rows()] == [("test_once", "dead"), ("test_flaky", "done")]


def test_periodic_work_runs_once_per_period_however_many_runners(job_app, clock_now):
    with job_app.app_context():
        for holder in ("runner-a", "runner-b", "runner-a"):
            jobs.run_due(START, holder=holder)
        assert ran.count(("hourly", {})) == 1
        clock_now["moment"] = later = START + timedelta(hours=1)
        for holder in ("runner-b", "runner-a"):
            jobs.run_due(later, holder=holder)
        assert ran.count(("hourly", {})) == 2
        assert [row.kind for row in job_rows(["test_hourly"])] == ["test_hourly"]  # one row, due again each period


def test_committing_a_job_wakes_the_local_runner_at_once(database_url):
    app = make_app(database_url, JOBS_POLL_SECONDS=600, JOB_THREADS=2)
    with app.app_context():
        create_tables()
    ran.clear()
    try:
        runner.start(app)
        with app.app_context():
            wait_until(lambda: jobs.next_due_at(), "the runner added its periodic jobs")
            with write_transaction():
                jobs.enqueue("test_note", {"n": 42})
        wait_until(lambda: ("note", {"n": 42}) in ran, "the runner ran the job it was woken for")
    finally:
        close_app(app)


def test_an_idle_runner_wakes_when_the_next_job_falls_due_though_a_due_one_waits_behind_its_key(job_app, clock_now):
    job_app.config["JOBS_POLL_SECONDS"] = 10.0
    with job_app.app_context():
        with write_transaction():
            jobs.enqueue("test_note", {"n": 1}, key="k")
            jobs.enqueue("test_note", {"n": 2}, key="k")  # due now, but behind n=1
            jobs.enqueue("test_note", {"n": 3}, due_at=START + timedelta(seconds=3))  # a moment ahead
        [first] = jobs.find_due(START)
        assert jobs.claim(first.id, first.kind, START, "another-runner", job_app.config) is not None
        assert jobs.find_due(START) == []  # nothing this runner may take now
        idle = runner.Runner(job_app, threads=0)
        assert idle.idle_wait() == 3.0  # it looks again at n=3's moment, not a poll later
        clock_now["moment"] = START + timedelta(seconds=1)
        assert idle.idle_wait() == 2.0


def test_a_kind_limited_per_runner_runs_one_at_a_time_while_other_jobs_go_on(database_url):
    app = make_app(database_url, JOBS_POLL_SECONDS=0.05, JOB_THREADS=3)
    with app.app_context():
        db.create_all()
    ran.clear()
    gate.clear()
    singles.update(now=0, most=0)
    try:
        runner.start(app)
        with app.app_context():
            with write_transaction():
                for n in range(3):
                    jobs.enqueue("test_single", {"n": n})
            wait_until(lambda: singles["now"] == 1, "one of them started")
            with write_transaction():
                jobs.enqueue("test_note", {"n": 9})
        wait_until(lambda: ("note", {"n": 9}) in ran, "another kind ran beside the one that waits")
        assert singles["most"] == 1  # three threads and three due, still one at a time
        gate.set()
        wait_until(lambda: len([entry for entry in ran if entry[0] == "single"]) == 3, "every one ran")
        assert singles["most"] == 1
    finally:
        gate.set()
        close_app(app)


def test_a_write_that_may_be_lost_to_a_crash_does_not_wait_for_the_disk(job_app):
    """durable=False (jobs' claims and results, webhook runs' records): SQLite commits it with
    synchronous=NORMAL, PostgreSQL with synchronous_commit off; every other write as before."""
    with job_app.app_context():
        sqlite = db.engine.dialect.name == "sqlite"
        setting = sa.text("PRAGMA synchronous" if sqlite else "SHOW synchronous_commit")
        with write_transaction(durable=False) as session:
            lazy = session.execute(setting).scalar()
        with write_transaction() as session:
            durable = session.execute(setting).scalar()
        with write_transaction(durable=False), write_transaction() as inner:  # nested: the outer one's
            nested = inner.execute(setting).scalar()
    assert (lazy, durable, nested) == ((1, 2, 1) if sqlite else ("off", "on", "off"))


def test_an_idle_runner_moves_no_change_number_and_polls_answer_204(database_url, user_row):
    app = make_app(database_url, JOBS_POLL_SECONDS=0.05, JOB_THREADS=2)
    with app.app_context():
        create_tables()
        user_row()
    client = app.test_client()
    assert AuthActions(client).login().status_code == 302
    body = body_for(sender="+37255500009")
    assert client.post("/callbacks/inbound", data=body, headers=signed_headers(body)).status_code == 200
    poll_url = unescape(re.search(r'hx-get="(/\?since=\d+)"', client.get("/").text).group(1))
    with app.app_context():
        before = db.session.scalar(sa.select(ChangeCounter.value))
        db.session.rollback()
    try:
        idle = runner.start(app)
        for _ in range(3):  # the threads look again and again (every 0.05 s), finding nothing
            looks = idle.looks
            wait_until(lambda looks=looks: idle.looks > looks + 2, "the runner looked for work")
            assert client.get(poll_url, headers={"HX-Request": "true"}).status_code == 204
        with app.app_context():
            wait_until(lambda: jobs.next_due_at() is not None, "periodic jobs were added")
            assert db.session.scalar(sa.select(ChangeCounter.value)) == before
    finally:
        close_app(app)


def test_a_runner_writes_at_most_one_heartbeat_every_15_seconds(job_app, clock_now):
    with job_app.app_context():
        with write_transaction() as session:
            server = Server(host="h", pid=1, bind="127.0.0.1:1", started_at=START, last_seen_at=START)
            session.add(server)
            session.flush()
            server_id = server.id
        idle = runner.Runner(job_app, server_id=server_id, threads=0)
        seen = []
        for seconds in (0, 5, 14, 15, 20, 31):
            clock_now["moment"] = START + timedelta(seconds=seconds)
            idle.step()
            seen.append(db.session.scalar(sa.select(Server.runner_seen_at).where(Server.id == server_id)))
            db.session.rollback()
        assert seen == [START] * 3 + [START + timedelta(seconds=15)] * 2 + [START + timedelta(seconds=31)]


def test_the_rate_budget_is_shared_by_every_process(job_app):
    other = make_app(job_app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with job_app.app_context():
            assert rate_budget.take_turn("test", per_second=1) == 0  # the turn, taken
        with other.app_context():
            assert 0.5 < rate_budget.take_turn("test", per_second=1) <= 1  # another process waits for it
        with job_app.app_context():
            assert 0.5 < rate_budget.take_turn("test", per_second=1) <= 1  # and so does the first
    finally:
        close_app(other)


# --- the admin's view ---------------------------------------------------------------------------


@pytest.fixture
def admin_client(job_app, user_row):
    with job_app.app_context():
        user_row()
        user_row("bob", role="agent")
    client = job_app.test_client()
    assert AuthActions(client).login().status_code == 302
    return client


def test_a_dead_job_is_shown_and_an_admin_retries_it_audited(job_app, admin_client, clock_now):
    with job_app.app_context():
        with write_transaction():
            jobs.enqueue("test_flaky", {"n": 9})
        failures[9] = 3
        for seconds in (0, 5, 15):
            clock_now["moment"] = START + timedelta(seconds=seconds)
            jobs.run_due(clock_now["moment"])
        [job] = job_rows()
        assert job.state == "dead"
    page = admin_client.get("/admin/jobs").text
    assert "test_flaky" in page and "RuntimeError: the far end is away" in page and "Retry job" in page
    retry_url = f"/admin/jobs/{job.id}/retry"

    agent = job_app.test_client()
    assert AuthActions(agent).login("bob").status_code == 302
    assert agent.post(retry_url, data={"csrf_token": AuthActions(agent).csrf("/")}).status_code == 403
    assert admin_client.post(retry_url).status_code == 400  # no CSRF token
    with job_app.app_context():
        assert job_rows()[0].state == "dead"

    token = AuthActions(admin_client).csrf("/admin/jobs")
    assert admin_client.post(retry_url, data={"csrf_token": token}).status_code == 303
    failures[9] = 0
    with job_app.app_context():
        assert job_rows()[0].state == "due"
        jobs.run_due(clock_now["moment"])
        assert job_rows()[0].state == "done"
        events = db.session.execute(
            sa.select(AuditEvent.action, AuditEvent.username).where(AuditEvent.action == "job_retried")
        ).all()
        assert events == [("job_retried", "alice")]


def test_every_admin_page_says_when_no_runner_is_alive(job_app, admin_client, clock_now):
    banner = "No job runner has been heard from for a minute"
    for path in ("/admin/users", "/admin/audit", "/admin/retention", "/admin/jobs"):
        page = admin_client.get(path).text
        assert banner in page and "flask --app app worker" in page and "make run" in page
    with job_app.app_context():
        with write_transaction() as session:
            server = Server(host="h", pid=1, bind="127.0.0.1:1", started_at=START, last_seen_at=START)
            session.add(server)
            session.flush()
            server_id = server.id
        runner.Runner(job_app, server_id=server_id, threads=0).step()  # a heartbeat
    assert banner not in admin_client.get("/admin/users").text
    clock_now["moment"] = START + timedelta(seconds=61)  # and nothing since
    assert banner in admin_client.get("/admin/users").text
