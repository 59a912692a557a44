"""Device cookies (OWASP): guessing one account's password from many addresses is slowed for
unknown devices, while a browser that logged in before keeps working."""

import pytest
import sqlalchemy as sa

from app.accounts import throttle
from app.db.models import LoginThrottle
from app.extensions import db
from conftest import AuthActions, add_user, close_app, make_app
from helpers import Clock, from_address

PERSON = "198.51.100.7"
SPRAY = [f"203.0.113.{n}" for n in range(1, 26)]  # 25 addresses


@pytest.fixture
def clock(app):
    app.config["CLOCK"] = Clock()
    return app.config["CLOCK"]


def device_cookie(client, app, username="alice"):
    with app.app_context():
        name = throttle.device_cookie_name(username)
    return client.get_cookie(name, path="/login")


def spray(app, guesses_per_address=4, cookie=None) -> int:
    """100 wrong passwords for alice from 25 addresses (4 each: under the per-address limit of 5);
    returns how many were checked at all (the others were refused without a check)."""
    checked = 0
    for address in SPRAY:
        attacker = from_address(app, address)
        if cookie is not None:
            attacker.client.set_cookie(cookie.key, cookie.value, path="/login")
        for _ in range(guesses_per_address):
            response = attacker.login(password="a guess, again")
            assert response.status_code == 401
            checked += "Invalid username or password." in response.text
    return checked


def test_guessing_one_account_from_many_addresses_is_slowed(app, user, clock):
    """The finding: 100 guesses from 25 addresses were all checked, never slowed."""
    assert spray(app) == 10
    assert app.config["LOGIN_ACCOUNT_MAX_FAILURES"] == 10
    refused = from_address(app, "192.0.2.200").login(password="a guess, again")
    assert "Too many failed attempts for this account" in refused.text
    assert "A browser that has logged in to it before still can." in refused.text
    assert refused.headers["Retry-After"] == "1"


def test_each_further_failure_doubles_the_wait_for_unknown_devices(app, user, clock):
    spray(app, guesses_per_address=1)  # 25 tries, 10 checked: the 10th set a 1 s lock
    waits = []
    for n in range(6):
        clock.advance(seconds=waits[-1] if waits else 1)
        assert "Invalid username" in from_address(app, f"192.0.2.{n}").login(password="again a guess").text
        waits.append(int(from_address(app, "192.0.2.99").login().headers["Retry-After"]))
    assert waits == [2, 4, 8, 16, 32, 64]


def test_a_browser_that_logged_in_before_keeps_working_during_a_spray(app, user, clock):
    person = from_address(app, PERSON)
    assert person.login().headers["Location"] == "/"
    person.logout()
    spray(app)
    # The right password from a new browser, even the owner's, waits like the attacker's ...
    assert "Too many failed attempts for this account" in from_address(app, PERSON).login().text
    # ... but the browser with the device cookie logs in at once.
    assert person.login().headers["Location"] == "/"


def test_the_owner_can_log_in_from_a_new_device_once_the_wait_is_over(app, user, clock):
    spray(app)
    clock.advance(seconds=1)
    assert from_address(app, PERSON).login().headers["Location"] == "/"


def test_the_device_cookie_is_signed_per_account_long_lived_and_kept_from_scripts(app, user, clock):
    person = from_address(app, PERSON)
    response = person.login()
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("device_"))
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/login" in header
    assert f"Max-Age={365 * 24 * 3600}" in header and "Secure" not in header
    cookie = device_cookie(person.client, app)
    with app.app_context():
        assert throttle.device_of("alice", cookie.value) is not None
        assert throttle.device_of("bob", cookie.value) is None  # another account's: unknown
        assert throttle.device_of("alice", cookie.value[:-2] + "xx") is None  # tampered
        assert "alice" not in throttle.device_cookie_name("alice")


def test_a_device_cookie_expires(app, user, clock):
    person = from_address(app, PERSON)
    person.login()
    cookie = device_cookie(person.client, app)
    # The signature's age is read from the real clock: a negative lifetime makes any cookie too old.
    app.config["DEVICE_COOKIE_SECONDS"] = -1
    with app.app_context():
        assert throttle.device_of("alice", cookie.value) is None


def test_another_accounts_device_cookie_does_not_make_a_device_known(app, user, clock):
    with app.app_context():
        add_user("bob", role="agent")
    bob = from_address(app, PERSON)
    bob.login("bob")
    bob.logout()
    bobs = device_cookie(bob.client, app, "bob")
    spray(app)
    with app.app_context():
        alices_name = throttle.device_cookie_name("alice")
    bob.client.set_cookie(alices_name, bobs.value, path="/login")  # bob's cookie under alice's name
    assert "Too many failed attempts for this account" in AuthActions(bob.client).login().text


def test_failures_from_a_known_device_count_on_that_device_only(app, user, clock):
    person = from_address(app, PERSON)
    person.login()
    person.logout()
    for _ in range(4):
        assert "Invalid username" in person.login(password="my old password?").text
    with app.app_context():
        rows = db.session.execute(sa.select(LoginThrottle.kind, LoginThrottle.failures)).all()
    assert rows == [("device", 4)]  # nothing counted against the account or the address
    assert from_address(app, "192.0.2.1").login().headers["Location"] == "/"


def test_a_stolen_device_cookie_gives_few_guesses(app, user, clock):
    """Its own 5 failures lock the device out; then it counts as an unknown device."""
    person = from_address(app, PERSON)
    person.login()
    person.logout()
    stolen = device_cookie(person.client, app)
    assert spray(app, cookie=stolen) == 5 + 10
    refused = person.login()  # the device is locked too: the person waits like a new browser
    assert "Too many failed attempts" in refused.text
    clock.advance(seconds=1)
    assert person.login().headers["Location"] == "/"


def test_the_account_lock_is_shown_to_admins_and_can_be_lifted(app, user, clock):
    admin = from_address(app, PERSON)
    admin.login()
    spray(app)
    page = admin.client.get("/admin/users").text
    assert "Unknown devices, any address" in page
    with app.app_context():
        row = db.session.scalar(sa.select(LoginThrottle.id).where(LoginThrottle.kind == "account"))
    assert (
        admin.client.post(
            f"/admin/locked-logins/{row}/unlock", data={"csrf_token": admin.csrf("/admin/users")}
        ).status_code
        == 303
    )
    assert from_address(app, "192.0.2.1").login().headers["Location"] == "/"


def test_the_account_count_is_shared_between_app_instances(database_url, app, user, clock):
    other = make_app(database_url, CLOCK=clock)
    try:
        for address in SPRAY[:5]:
            for _ in range(2):
                from_address(app, address).login(password="a guess, again")
        assert "Too many failed attempts for this account" in from_address(other, "192.0.2.1").login().text
    finally:
        close_app(other)
