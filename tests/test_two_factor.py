"""Two-factor sign-in: codes as an authenticator app makes them (RFC 6238, by pyotp), from the key
the page shows for typing in; backup codes; the admin's requirement and reset; the audit trail."""

import html
import re
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from app.db.models import AuditEvent, BackupCode, User
from app.extensions import db
from conftest import PASSWORD, AuthActions, add_user
from helpers import Clock, from_address


@pytest.fixture
def clock(app):
    app.config["CLOCK"] = Clock()
    return app.config["CLOCK"]


def post(actions: AuthActions, url: str, page: str = "/account", **form):
    return actions.client.post(url, data={"csrf_token": actions.csrf(page), **form})


def code_at(secret: str, clock: Clock, seconds: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.moment + timedelta(seconds=seconds))


class Person:
    """Someone with an authenticator app: the key typed in from the setup page."""

    def __init__(self, actions: AuthActions):
        self.actions = actions
        self.secret = None
        self.backup_codes = []

    def turn_on(self, code=None):
        page = self.actions.client.get("/account/two-factor")
        assert page.status_code == 200
        key = html.unescape(re.search(r'<code class="totp-key" id="totp-key">([^<]+)</code>', page.text).group(1))
        self.secret = key.replace(" ", "")
        done = post(
            self.actions,
            "/account/two-factor",
            "/account/two-factor",
            code=code(self.secret) if code else pyotp.TOTP(self.secret).now(),
        )
        self.backup_codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", done.text)
        return done

    def log_in(self, code: str, username="alice", password=PASSWORD):
        first = self.actions.login(username, password)
        if first.headers.get("Location") != "/login/code":
            return first
        return self.enter(code)

    def enter(self, code: str):
        page = self.actions.client.get("/login/code")
        if page.status_code != 200:
            return page
        return self.actions.client.post("/login/code", data={"code": code, "csrf_token": csrf(page.text)})


def csrf(text: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', text).group(1)


def audited(app, action: str) -> list[tuple]:
    with app.app_context():
        return db.session.execute(
            sa.select(AuditEvent.username, AuditEvent.details)
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.id)
        ).all()


@pytest.fixture
def alice(app, client, user):
    actions = AuthActions(client)
    assert actions.login().status_code == 302
    return Person(actions)


def test_turning_on_with_a_code_from_the_key_on_the_page(app, alice):
    """As with an authenticator app: the key read off the page, the code of this moment."""
    page = alice.actions.client.get("/account/two-factor")
    assert '<svg role="img" aria-label="QR code for your authenticator app"' in page.text
    assert "<script" not in page.text.split("<main")[1] and "http" not in page.text.split("<svg")[1].split("</svg>")[0]
    key = re.search(r'id="totp-key">([^<]+)<', page.text).group(1)
    assert re.fullmatch(r"([A-Z2-7]{4} ){7}[A-Z2-7]{4}", key)  # 32 letters in groups of four
    assert alice.actions.client.get("/account/two-factor").text.count(key) == 1  # the same key until confirmed

    wrong = post(alice.actions, "/account/two-factor", "/account/two-factor", code="000000")
    assert wrong.status_code == 400 and "That code is not right" in wrong.text
    done = alice.turn_on()
    assert done.status_code == 200 and "Two-factor sign-in is on" in done.text
    assert alice.secret == key.replace(" ", "")
    assert len(set(alice.backup_codes)) == 10
    with app.app_context():
        stored = db.session.scalars(sa.select(BackupCode.code_hash)).all()
    assert len(stored) == 10 and not set(alice.backup_codes) & set(stored)  # hashes only
    assert "10 backup codes left" in alice.actions.client.get("/account").text
    assert [name for name, _ in audited(app, "two_factor_on")] == ["alice"]


def test_login_takes_the_password_then_a_code(app, alice, clock):
    alice.turn_on(lambda secret: code_at(secret, clock))
    alice.actions.logout()
    first = alice.actions.login()
    assert first.headers["Location"] == "/login/code"
    # Half logged in: nothing but the code page.
    assert alice.actions.client.get("/").headers["Location"].startswith("/login")
    assert alice.actions.client.get("/account").headers["Location"].startswith("/login")
    clock.advance(seconds=30)
    wrong = alice.enter("123456" if code_at(alice.secret, clock) != "123456" else "654321")
    assert wrong.status_code == 401 and "That code is not right" in wrong.text
    done = alice.enter(code_at(alice.secret, clock))
    assert done.headers["Location"] == "/"
    assert alice.actions.client.get("/").status_code == 200


def test_a_used_code_is_refused_within_its_window(app, alice, clock):
    alice.turn_on(lambda secret: code_at(secret, clock))
    alice.actions.logout()
    used_at_setup = code_at(alice.secret, clock)
    assert alice.log_in(used_at_setup).status_code == 401  # spent turning it on
    clock.advance(seconds=30)
    code = code_at(alice.secret, clock)
    assert alice.enter(code).headers["Location"] == "/"
    alice.actions.logout()
    assert "That code is not right" in alice.log_in(code).text  # the same code again
    assert "That code is not right" in alice.enter(code_at(alice.secret, clock, -30)).text  # an earlier one
    clock.advance(seconds=30)
    assert alice.enter(code_at(alice.secret, clock)).headers["Location"] == "/"


def test_codes_of_the_steps_next_to_now_count_and_older_ones_do_not(app, alice, clock):
    alice.turn_on(lambda secret: code_at(secret, clock))
    alice.actions.logout()
    clock.advance(minutes=5)
    assert "That code is not right" in alice.log_in(code_at(alice.secret, clock, -60)).text
    assert alice.enter(code_at(alice.secret, clock, -30)).headers["Location"] == "/"
    alice.actions.logout()
    assert alice.log_in(code_at(alice.secret, clock, 30)).headers["Location"] == "/"


def test_a_backup_code_works_once_and_is_audited(app, alice, clock):
    alice.turn_on(lambda secret: code_at(secret, clock))
    alice.actions.logout()
    backup = alice.backup_codes[3]
    assert alice.log_in(backup.upper().replace("-", " ")).headers["Location"] == "/"  # as typed off paper
    assert "9 backup codes left" in alice.actions.client.get("/account").text
    alice.actions.logout()
    assert "That code is not right" in alice.log_in(backup).text
    assert [(name, details) for name, details in audited(app, "backup_code_used")] == [
        ("alice", '{"left": 9, "user": "alice"}')
    ]


def test_the_half_login_expires(app, alice, clock):
    alice.turn_on(lambda secret: code_at(secret, clock))
    alice.actions.logout()
    assert alice.actions.login().headers["Location"] == "/login/code"
    clock.advance(minutes=5, seconds=1)
    expired = alice.enter(code_at(alice.secret, clock))
    assert expired.headers["Location"] == "/login?again=1"
    assert "The time for the code ran out" in alice.actions.client.get("/login?again=1").text
    assert alice.actions.client.get("/").status_code == 302


def test_the_code_step_is_throttled_like_passwords(app, alice, clock):
    """Someone who has the password, guessing codes from a browser that never logged in."""
    alice.turn_on(lambda secret: code_at(secret, clock))
    clock.advance(seconds=30)
    wrong = "999999" if code_at(alice.secret, clock) != "999999" else "111111"
    thief = Person(from_address(app, "203.0.113.1"))
    for _ in range(5):
        assert "That code is not right" in thief.log_in(wrong).text
    locked = thief.log_in(code_at(alice.secret, clock))  # even the right code, while locked
    assert locked.status_code == 401 and "Too many failed attempts" in locked.text
    # Codes guessed from many addresses lock the account for unknown devices, as passwords do.
    for n in range(2, 7):
        Person(from_address(app, f"203.0.113.{n}")).log_in(wrong)
    refused = from_address(app, "192.0.2.1").login()
    assert "Too many failed attempts for this account" in refused.text
    # The browser alice logged in with before still gets to the code step, and in.
    alice.actions.logout()
    assert alice.log_in(code_at(alice.secret, clock)).headers["Location"] == "/"


def test_turning_off_needs_a_code_or_the_password(app, alice, clock):
    alice.turn_on(lambda secret: code_at(secret, clock))
    wrong = post(alice.actions, "/account/two-factor/off", secret="not my password")
    assert wrong.status_code == 400 and "neither your current code nor your password" in wrong.text
    off = post(alice.actions, "/account/two-factor/off", secret=PASSWORD)
    assert off.status_code == 200 and "Two-factor sign-in is off" in off.text
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(BackupCode)) == 0
    alice.actions.logout()
    assert alice.actions.login().headers["Location"] == "/"
    assert [name for name, _ in audited(app, "two_factor_off")] == ["alice"]


def test_new_backup_codes_replace_the_old_ones(app, alice, clock):
    alice.turn_on(lambda secret: code_at(secret, clock))
    old = alice.backup_codes
    clock.advance(seconds=30)
    page = post(alice.actions, "/account/two-factor/backup-codes", secret=code_at(alice.secret, clock))
    new = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", page.text)
    assert len(new) == 10 and not set(new) & set(old)
    alice.actions.logout()
    assert "That code is not right" in alice.log_in(old[0]).text
    assert alice.enter(new[0]).headers["Location"] == "/"
    assert [name for name, _ in audited(app, "backup_codes_new")] == ["alice"]


def test_an_admin_can_require_it_and_people_set_it_up_before_anything_else(app, alice, clock):
    with app.app_context():
        add_user("bob", role="agent")
    assert post(alice.actions, "/admin/two-factor-requirement", "/admin/users", required="1").status_code == 303
    assert audited(app, "two_factor_required") == [("alice", '{"required": "yes"}')]
    assert "checked" in alice.actions.client.get("/admin/users").text.split('name="required"')[1][:40]

    bob = Person(AuthActions(app.test_client()))
    assert bob.actions.login("bob").headers["Location"] == "/account/two-factor"
    for page in ("/", "/account", "/?q=5"):
        assert bob.actions.client.get(page).headers["Location"] == "/account/two-factor", page
    poll = bob.actions.client.get("/?since=0", headers={"HX-Request": "true"})
    assert poll.headers["HX-Redirect"] == "/account/two-factor"
    assert "Two-factor sign-in is required here" in bob.actions.client.get("/account/two-factor").text
    bob.turn_on(lambda secret: code_at(secret, clock))
    assert bob.actions.client.get("/").status_code == 200
    cannot = post(bob.actions, "/account/two-factor/off", secret=PASSWORD)
    assert cannot.status_code == 400 and "required for everyone" in cannot.text

    post(alice.actions, "/admin/two-factor-requirement", "/admin/users")  # unchecked: not required
    assert audited(app, "two_factor_required")[-1] == ("alice", '{"required": "no"}')


def test_an_admin_resets_it_for_a_person_and_it_is_audited(app, alice, clock):
    with app.app_context():
        add_user("bob", role="agent")
        bob_id = db.session.scalar(sa.select(User.id).where(User.username == "bob"))
    bob = Person(AuthActions(app.test_client()))
    bob.actions.login("bob")
    bob.turn_on(lambda secret: code_at(secret, clock))
    bob.actions.logout()
    assert bob.actions.login("bob").headers["Location"] == "/login/code"
    assert "On" in alice.actions.client.get(f"/admin/users/{bob_id}").text
    reset = post(alice.actions, f"/admin/users/{bob_id}/reset-two-factor", f"/admin/users/{bob_id}")
    assert reset.status_code == 303
    assert audited(app, "two_factor_reset") == [("alice", '{"user": "bob"}')]
    assert AuthActions(app.test_client()).login("bob").headers["Location"] == "/"  # the password alone
    with app.app_context():
        assert db.session.scalar(sa.select(User.totp_secret).where(User.id == bob_id)) is None


def test_an_agent_cannot_require_or_reset(app, alice):
    with app.app_context():
        add_user("bob", role="agent")
    bob = AuthActions(app.test_client())
    bob.login("bob")
    assert post(bob, "/admin/two-factor-requirement", required="1").status_code == 403
    assert post(bob, "/admin/users/1/reset-two-factor").status_code == 403
