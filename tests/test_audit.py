"""The audit trail: each security- or privacy-relevant action, who, when, from where; the admin page."""

import csv
import io
import json
import re
from html import unescape

import sqlalchemy as sa

from app.db.models import AuditEvent
from app.extensions import db
from conftest import PASSWORD, AuthActions, add_user, body_for, conversation_of, make_app
from helpers import Clock, from_address, post, send_reply, user_id, wait_for_status
from helpers import deliver as deliver_to_reply_app


def events(app, action: str | None = None) -> list[tuple]:
    """(username, address, action, details) of every event, oldest first."""
    with app.app_context():
        query = sa.select(AuditEvent).order_by(AuditEvent.id)
        if action:
            query = query.where(AuditEvent.action == action)
        return [(e.username, e.address, e.action, json.loads(e.details)) for e in db.session.scalars(query)]


def test_logins_failures_lockouts_and_logouts_are_recorded_with_the_address(app, user):
    app.config["CLOCK"] = Clock()
    person = from_address(app, "198.51.100.7")
    assert person.login(password="not my password").status_code == 401
    person.login()
    person.logout()
    attacker = from_address(app, "203.0.113.66")
    for _ in range(5):
        attacker.login("alice", "guess guess")
    assert events(app) == [
        (None, "198.51.100.7", "login_failed", {"username": "alice"}),
        ("alice", "198.51.100.7", "login", {}),
        ("alice", "198.51.100.7", "logout", {}),
        *[(None, "203.0.113.66", "login_failed", {"username": "alice"})] * 4,
        (
            None,
            "203.0.113.66",
            "lockout",
            {
                "reason": "login locked for 'alice' from 203.0.113.66 for 1 s, "
                "until 2026-03-02 09:00:01 UTC, after 5 failed attempts"
            },
        ),
        (None, "203.0.113.66", "login_failed", {"username": "alice"}),
    ]
    assert PASSWORD not in str(events(app)) and "guess guess" not in str(events(app))


def test_behind_a_proxy_the_trusted_forwarded_address_is_recorded(database_url, app, user):
    proxied = make_app(database_url, PROXY_COUNT=1)
    try:
        from_address(proxied, "10.0.0.2", forwarded_for="192.0.2.99, 198.51.100.7").login()
    finally:
        with proxied.app_context():
            db.engine.dispose()
    assert events(app, "login") == [("alice", "198.51.100.7", "login", {})]


def test_user_changes_and_password_links_are_recorded_by_who_did_them(app, admin):
    post(admin, "/admin/users", "/admin/users", username="bob", role="agent")
    bob = user_id(app, "bob")
    post(admin, f"/admin/users/{bob}/role", "/admin/users", role="admin")
    post(admin, f"/admin/users/{bob}/reset-password", "/admin/users")
    post(admin, f"/admin/users/{bob}/disable", "/admin/users")
    post(admin, f"/admin/users/{bob}/enable", "/admin/users")
    assert [(who, action, details) for who, _, action, details in events(app)[1:]] == [
        ("alice", "user_added", {"user": "bob", "role": "agent"}),
        ("alice", "user_changed", {"user": "bob", "role": "admin", "was": "agent"}),
        ("alice", "password_reset", {"user": "bob"}),
        ("alice", "user_disabled", {"user": "bob"}),
        ("alice", "user_enabled", {"user": "bob"}),
    ]
    assert "set-password" not in str(events(app))  # the link itself is never kept


def test_an_export_is_recorded_with_its_filters_and_row_count(app, client, auth, deliver):
    for sender in ("+37255500001", "+37255500001", "+37255500002"):
        deliver(body_for(sender=sender))
    auth.login()
    response = client.get("/export.csv?q=55500001&from=2024-06-01")
    assert response.status_code == 200
    [(who, _, _, details)] = events(app, "export")
    assert who == "alice"
    assert (details["q"], details["first_day"], details["last_day"], details["rows"]) == (
        "55500001",
        "2024-06-01",
        None,
        2,
    )


def test_editing_a_contact_is_recorded_without_what_was_written(app, client, auth, deliver):
    deliver(body_for(sender="+37255500001"))
    auth.login()
    with app.app_context():
        conversation_id = conversation_of("+37255500001").id
    client.post(
        f"/conversations/{conversation_id}/contact",
        data={"contact_name": "Mari Maasikas", "contact_note": "VIP", "csrf_token": auth.csrf()},
    )
    assert events(app, "contact_edited") == [
        ("alice", "127.0.0.1", "contact_edited", {"conversation": conversation_id})
    ]


def test_a_reply_is_recorded(reply_app, person, messente):
    deliver_to_reply_app(reply_app, text="Tere!")
    send_reply(person, reply_app, "Tere tulemast!")
    [reply] = wait_for_status(reply_app, "sent")
    [(who, _, _, details)] = events(reply_app, "reply")
    assert who == "alice" and details == {"conversation": reply.conversation_id, "reply": reply.id}


# --- the admin page -------------------------------------------------------------------------


def test_the_audit_page_filters_by_action_user_and_day(app, admin):
    with app.app_context():
        add_user("bob", role="agent")
    AuthActions(app.test_client()).login("bob")
    AuthActions(app.test_client()).login("bob", "wrong password")
    page = admin.client.get("/admin/audit?action=login&user=bob").text
    assert page.count("<tr>") == 2  # the heading and bob's login
    assert '<td data-label="Who"><bdi>bob</bdi></td>' in page and '<td data-label="What">Logged in</td>' in page
    assert admin.client.get("/admin/audit?action=login_failed").text.count("Failed login") == 2  # option + row
    assert "Nothing recorded matches" in admin.client.get("/admin/audit?from=2000-01-01&to=2000-01-02").text
    assert admin.client.get("/admin/audit?from=yesterday").status_code == 400


def test_the_audit_page_pages_back_through_every_event_with_its_filters(app, admin):
    from app import audit

    with app.app_context():
        for n in range(1, 231):
            audit.record("settings_changed", {"n": n}, username="carol", address="192.0.2.1")
    shown, path, pages = [], "/admin/audit?action=settings_changed&user=carol", 0
    while path:
        page = admin.client.get(unescape(path)).text
        shown += [int(n) for n in re.findall(r"<td data-label=\"Details\" class=\"details\">n: (\d+)</td>", page)]
        pages += 1
        assert ("Newest events" in page) == (pages > 1)
        older = re.search(r'<a href="([^"]+)">Older events</a>', page)
        path = older and older.group(1)
        if path:
            assert "action=settings_changed" in path and "user=carol" in path  # the filters stay
    assert pages == 3 and shown == list(range(230, 0, -1))  # each once, newest first
    assert admin.client.get("/admin/audit?before=x").status_code == 400


def test_the_audit_csv_is_formula_safe_and_follows_the_filters(app, admin):
    AuthActions(app.test_client()).login('=HYPERLINK("http://evil.example","x")', "guess guess")
    response = admin.client.get("/admin/audit.csv?action=login_failed")
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0] == ["time", "user", "address", "action", "details"]
    [[_, who, address, action, details]] = rows[1:]
    assert (who, address, action) == ("", "127.0.0.1", "login_failed")
    assert not details.startswith(("=", "+", "-", "@"))
    assert json.loads(details)["username"].startswith("=HYPERLINK")
    assert 'attachment; filename="sms-inbox-audit-' in response.headers["Content-Disposition"]


def test_the_app_offers_no_way_to_change_or_delete_an_event(app, admin):
    """Every method on every audit address (and on the addresses an edit or delete would have),
    as an admin with a valid CSRF token asking for a change: every recorded event stays as it was."""
    from app import audit

    with app.app_context():
        audit.record("settings_changed", {"n": 1}, username="carol", address="192.0.2.1")
    before = event_rows(app)
    carols = next(row[0] for row in before if "carol" in row)
    addresses = sorted(
        {rule.rule for rule in app.url_map.iter_rules() if "audit" in rule.rule}
        | {f"/admin/audit/{carols}", f"/admin/audit/{carols}/delete", f"/admin/audit/{carols}/edit"}
    )
    assert "/admin/audit" in addresses and "/admin/audit.csv" in addresses
    change = {
        "csrf_token": admin.csrf("/admin/audit"),
        "id": carols,
        "action": "login",
        "username": "mallory",
        "details": "{}",
        "delete": "1",
    }
    for address in addresses:
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            response = admin.client.open(address, method=method, data=change)
            response.get_data()  # read to its end: the CSV streams from an open cursor
            if "/audit/" in address:  # no such address: nothing can be done to one event
                assert response.status_code == 404, (method, address, response.status_code)
            elif method not in ("GET", "HEAD"):  # the trail's pages are only read
                assert response.status_code == 405, (method, address, response.status_code)
    after = event_rows(app)
    assert after[: len(before)] == before  # reading the pages may add events; none is changed or gone


def event_rows(app) -> list[tuple]:
    """Every column of every event, oldest first."""
    with app.app_context():
        columns = AuditEvent.__table__.columns
        return [
            tuple(getattr(event, column.key) for column in columns)
            for event in db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
        ]
