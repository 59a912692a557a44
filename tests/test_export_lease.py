"""One running export per person at a time, across processes: a lease row in the shared database."""

from datetime import UTC, timedelta

import pytest

from app import clock
from app.db.models import Lease
from app.extensions import db
from app.jobs import leases
from conftest import AuthActions, add_user, body_for, close_app, make_app

BUSY = "An export of yours is already running; try again when it finishes"


@pytest.fixture
def two_processes(app, user, database_url, deliver):
    """Two apps on one database, as two server processes are, each with alice logged in."""
    deliver(body_for(msg_id="m1", text="Tere!"))
    with app.app_context():
        add_user("bob", role="agent")
    other = make_app(database_url)
    clients = []
    for each in (app, other):
        person = AuthActions(each.test_client())
        person.login()
        clients.append(person.client)
    yield clients
    close_app(other)


def test_a_second_export_by_the_same_person_waits_for_the_first(app, two_processes):
    first, second = two_processes
    running = first.get("/export.csv", buffered=False)  # started, its rows not yet read
    assert running.status_code == 200
    for path in ("/export.csv", "/export.xlsx", "/export/download?format=xlsx&q=55"):
        busy = second.get(path)
        assert busy.status_code == 429 and BUSY in busy.text, path
        assert busy.headers["Retry-After"]
    assert 'href="/export?q=55&amp;format=xlsx"' in second.get("/export/download?q=55&format=xlsx").text
    assert b"Tere!" in b"".join(running.response)  # the download ends: the lease goes with it
    with second.get("/export.xlsx") as workbook:
        assert workbook.status_code == 200
    assert second.get("/export.csv").status_code == 200


def test_a_cancelled_download_releases_the_lease(app, two_processes):
    first, second = two_processes
    running = first.get("/export.csv", buffered=False)
    assert second.get("/export.csv").status_code == 429
    running.close()  # the browser went away before the end
    assert second.get("/export.csv").status_code == 200


def test_other_people_export_meanwhile(app, two_processes):
    first, second = two_processes
    running = first.get("/export.csv", buffered=False)
    bob = AuthActions(second.application.test_client())
    bob.login("bob")
    assert bob.client.get("/export.csv").status_code == 200
    running.close()


def test_a_lease_left_by_a_process_that_died_lapses(app, two_processes):
    first, second = two_processes
    with app.app_context():
        db.session.add(
            Lease(name="export:1", holder="a process that died", expires_at=clock.now() + timedelta(seconds=5))
        )
        db.session.commit()
    assert first.get("/export.csv").status_code == 429
    later = (clock.now() + timedelta(seconds=6)).replace(tzinfo=UTC)
    app.config["CLOCK"] = lambda: later
    assert first.get("/export.csv").status_code == 200


def test_a_failed_export_releases_its_lease(app, two_processes):
    first, _ = two_processes
    assert first.get("/export.xlsx?from=not-a-day").status_code == 400
    assert first.get("/export.csv?from=not-a-day").status_code == 400
    with first.get("/export.xlsx") as workbook:
        assert workbook.status_code == 200
    with app.app_context():
        assert db.session.scalars(db.select(Lease)).all() == []


def test_a_lease_is_renewed_only_by_its_holder(app):
    with app.app_context():
        lease = leases.take("job", 60)
        assert lease is not None and leases.take("job", 60) is None
        leases.Lease("job", "someone else", 60).release()  # not theirs to release
        assert leases.take("job", 60) is None
        lease.release()
        assert leases.take("job", 60) is not None
