"""Login, logout, throttling, sessions, and the rule that everything else needs a login."""

import logging
import re
import threading
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from app import config
from app.accounts import passwords
from app.accounts import routes as auth_module
from app.db.models import LoginThrottle, User
from app.extensions import db
from app.web import access
from conftest import ONE_DATABASE, PASSWORD, ROOT, AuthActions, csrf_token, make_app
from helpers import Clock, from_address

ATTACKER = "203.0.113.66"
PERSON = "198.51.100.7"
PROXY = "10.0.0.2"


@pytest.fixture
def clock(app):
    app.config["CLOCK"] = Clock()
    return app.config["CLOCK"]


def throttle_rows(app, kind: str = "address") -> set[tuple[str, str]]:
    """(username, address) of the throttle's rows of one kind: by default those counted per
    address (the per-account and per-device rows are tests/test_login_devices.py's)."""
    with app.app_context():
        return set(
            map(
                tuple,
                db.session.execute(
                    sa.select(LoginThrottle.username, LoginThrottle.address).where(LoginThrottle.kind == kind)
                ),
            )
        )


@ONE_DATABASE
def test_login_page_has_a_labelled_form_with_csrf(client):
    page = client.get("/login")
    assert page.status_code == 200
    assert '<label for="username">' in page.text and '<label for="password">' in page.text
    assert 'name="csrf_token"' in page.text


def test_login_then_inbox_then_logout(client, auth):
    response = auth.login()
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    assert auth.logout().headers["Location"] == "/login"
    assert client.get("/").headers["Location"].startswith("/login")


@pytest.mark.parametrize("username, password", [("alice", "wrong password"), ("nobody", PASSWORD)])
def test_wrong_password_and_unknown_user_get_the_same_message(client, auth, username, password):
    response = auth.login(username, password)
    assert response.status_code == 401
    assert "Invalid username or password." in response.text
    assert client.get("/").status_code == 302


def test_login_without_csrf_token_is_refused(client, user):
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_logout_needs_csrf(client, auth):
    auth.login()
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still logged in


@pytest.mark.parametrize(
    "next_page, expected",
    [
        ("/conversations/%2B3725551", "/conversations/%2B3725551"),
        ("/?q=555", "/?q=555"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_next_only_to_a_local_path(auth, next_page, expected):
    response = auth.login(next_page=quote(next_page, safe=""))
    assert response.headers["Location"] == expected


@ONE_DATABASE
def test_page_request_without_login_redirects_with_next(client):
    response = client.get("/export.csv?q=555")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/export.csv?q=555"]}


@ONE_DATABASE
def test_htmx_request_without_login_gets_401_and_hx_redirect_back_to_the_page(client):
    response = client.get(
        "/?since=0", headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/?q=5&before=9"}
    )
    assert response.status_code == 401
    location = urlsplit(response.headers["HX-Redirect"])
    # The page the window shows, query and all; not the fragment's URL.
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/?q=5&before=9"]}
    assert response.data == b""  # never the login page inside a fragment


@ONE_DATABASE
def test_every_route_but_login_static_and_callback_requires_login(app, client):
    """Walks the URL map, so a new route cannot forget its login."""
    # Callbacks are signed instead; a set-password link's token is its credential.
    # The two-factor code step is public too: its credential is the half-login in the session.
    public = {
        "auth.login",
        "auth.login_code",
        "auth.set_password",
        "static",
        "callback.inbound",
        "callback.delivery_report",
    }
    token = csrf_token(client.get("/login").text)  # so POSTs are refused for the login, not CSRF
    checked = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in public or rule.rule.startswith("/api/"):
            continue  # the API checks its own tokens (tests/test_api.py walks its routes)
        url = re.sub(r"<(int(\([^)]*\))?:)?\w+>", "1", rule.rule)
        assert "<" not in url, f"teach this test the converter in {rule.rule}"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method, headers={"X-CSRFToken": token})
            assert response.status_code == 302, (method, url)
            assert response.headers["Location"].startswith("/login"), (method, url)
            checked.append((method, rule.endpoint))
    assert ("POST", "auth.logout") in checked and ("GET", "export.csv") in checked


def test_a_view_marked_public_needs_no_login_and_others_do(database_url, app):
    """`access.public` is how a view opts out of the login; nothing changes auth at run time."""
    other = make_app(database_url)

    @other.get("/open", endpoint="open")
    @access.public
    def open_view():
        return "open"

    @other.get("/closed", endpoint="closed")
    def closed_view():
        return "closed"

    client = other.test_client()
    assert (client.get("/open").status_code, client.get("/open").text) == (200, "open")
    assert parse_qs(urlsplit(client.get("/closed").headers["Location"]).query) == {"next": ["/closed"]}
    with other.app_context():
        db.engine.dispose()


def test_the_bench_noop_is_public_and_its_logged_in_twin_is_not(database_url, app, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.app import NOOP, NOOP_LOGGED_IN, create_bench_app

    bench = create_bench_app({"TESTING": True, "SECRET_KEY": "k", "SQLALCHEMY_DATABASE_URI": database_url})
    client = bench.test_client()
    assert client.post(NOOP, data=b"x").text == "ok"
    assert parse_qs(urlsplit(client.get(NOOP_LOGGED_IN).headers["Location"]).query) == {"next": [NOOP_LOGGED_IN]}
    assert not hasattr(auth_module, "PUBLIC_ENDPOINTS")
    with bench.app_context():
        db.engine.dispose()


def test_session_is_renewed_at_login(client, auth):
    client.get("/login")
    before = client.get_cookie("session").value
    auth.login()
    after = client.get_cookie("session").value
    assert before != after


def test_logout_invalidates_every_copy_of_the_session_cookie(app, client, auth):
    auth.login()
    stolen = client.get_cookie("session").value
    auth.logout()
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get("/").status_code == 302


# --- session ages (by the injected clock) ----------------------------------------------------


@ONE_DATABASE
def test_session_limits_default_to_eight_hours_idle_and_seven_days_in_all(app):
    assert app.config["IDLE_TIMEOUT_SECONDS"] == 8 * 3600
    assert app.config["SESSION_LIFETIME_SECONDS"] == 7 * 24 * 3600


def test_session_limits_come_from_the_environment():
    found = config.from_environment({"IDLE_TIMEOUT_SECONDS": "600", "SESSION_LIFETIME_SECONDS": "86400"})
    assert found == {"IDLE_TIMEOUT_SECONDS": 600, "SESSION_LIFETIME_SECONDS": 86400}


def test_idle_session_expires_back_to_the_same_page(app, client, auth, clock):
    auth.login()
    clock.advance(hours=8)
    assert client.get("/").status_code == 200  # exactly the idle limit: still in
    clock.advance(hours=8, seconds=1)
    response = client.get("/?q=555&before=7")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/?q=555&before=7"]}
    assert client.get("/").status_code == 302  # the session is gone, not just this request
    # Logging in again lands on the page the person was on.
    assert auth.login(next_page=quote("/?q=555&before=7", safe="")).headers["Location"] == "/?q=555&before=7"


def test_polling_does_not_keep_a_session_alive(app, client, auth, clock):
    auth.login()
    clock.advance(hours=5)
    assert client.get("/?since=999999999").status_code == 204  # a background poll
    clock.advance(hours=3, seconds=1)
    assert client.get("/").status_code == 302  # 8 h 1 s after the last real activity


def test_activity_keeps_the_session_alive(app, client, auth, clock):
    auth.login()
    for _ in range(3):
        clock.advance(hours=7)
        assert client.get("/").status_code == 200


def test_idle_expiry_of_an_htmx_request_sends_the_window_back_to_its_page(app, client, auth, clock):
    auth.login()
    clock.advance(hours=9)
    response = client.get("/?since=0", headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/?q=372"})
    assert response.status_code == 401
    assert parse_qs(urlsplit(response.headers["HX-Redirect"]).query) == {"next": ["/?q=372"]}


def test_a_form_posted_after_expiry_returns_to_the_page_it_was_on(app, client, auth, clock):
    auth.login()
    token = auth.csrf("/?q=5")
    clock.advance(hours=9)
    response = client.post("/logout", data={"csrf_token": token}, headers={"Referer": "http://localhost/?q=5"})
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query) == {"next": ["/?q=5"]}


def test_a_session_ends_after_its_absolute_lifetime_however_busy(app, client, auth, clock):
    auth.login()
    for _ in range(24):  # a page every 7 hours for 7 days: never idle
        clock.advance(hours=7)
        assert client.get("/").status_code == 200
    clock.advance(seconds=1)  # 7 days and 1 second after logging in
    response = client.get("/?q=9")
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query) == {"next": ["/?q=9"]}
    assert client.get("/").status_code == 302


def test_a_stolen_cookie_stops_working_at_the_absolute_lifetime(app, client, auth, clock):
    app.config["SESSION_LIFETIME_SECONDS"] = 3600
    auth.login()
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    clock.advance(minutes=59)
    assert thief.get("/").status_code == 200
    clock.advance(minutes=1, seconds=1)
    assert thief.get("/").status_code == 302


# --- caching ---------------------------------------------------------------------------------


def test_pages_fragments_and_the_login_page_are_never_cached(app, client, auth):
    assert client.get("/login").headers["Cache-Control"] == "no-store"
    assert client.get("/").headers["Cache-Control"] == "no-store"  # the redirect to the login
    auth.login()
    for url in ("/", "/?q=555", "/?since=999999999", "/export.csv"):
        assert client.get(url).headers["Cache-Control"] == "no-store", url
    hx = client.get("/?q=5", headers={"HX-Request": "true"})
    assert hx.headers["Cache-Control"] == "no-store"
    assert client.get("/conversations/1").headers["Cache-Control"] == "no-store"  # a 404
    assert auth.logout().headers["Cache-Control"] == "no-store"


def test_static_files_keep_their_caching(client, auth):
    auth.login()
    with client.get("/static/style.css") as response:
        assert response.status_code == 200
        assert "no-store" not in response.headers.get("Cache-Control", "")


def test_session_cookie_flags(client, auth):
    auth.login()
    header = next(h for h in client.get("/").headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header


def test_secure_cookie_when_configured(database_url, user):
    app = make_app(database_url, SESSION_COOKIE_SECURE=True)
    client = app.test_client()
    response = client.get("/login", base_url="https://localhost")
    assert "Secure" in response.headers["Set-Cookie"]
    with app.app_context():
        db.engine.dispose()


def test_hsts_when_the_session_cookie_is_secure(database_url, app):
    """Served over HTTPS (the cookie says so): browsers are told to use nothing else for a year."""
    secure = make_app(database_url, SESSION_COOKIE_SECURE=True)
    try:
        response = secure.test_client().get("/login", base_url="https://localhost")
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        with secure.app_context():
            db.engine.dispose()
    assert "Strict-Transport-Security" not in app.test_client().get("/login").headers  # plain HTTP


# --- password hashes for accounts without one --------------------------------------------------


@pytest.mark.real_password_hashes
@pytest.mark.parametrize("username", ["carol", "nobody"])
def test_an_invited_account_and_an_unknown_name_verify_a_real_hash(app, client, user, clock, monkeypatch, username):
    """An account whose link is unused (no password yet) and an unknown name each cost one Argon2
    verify, as a wrong password for a real account does: the timing tells nothing."""
    with app.app_context():
        db.session.add(User(username="carol", password_hash=passwords.NO_PASSWORD, role="agent"))
        db.session.commit()
    verified = []
    real_verify = passwords._verify
    monkeypatch.setattr(
        passwords, "_verify", lambda stored, password: verified.append(stored) or real_verify(stored, password)
    )
    assert AuthActions(client).login(username, "some guess!").status_code == 401
    assert len(verified) == 1 and verified[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$")


# --- throttling ------------------------------------------------------------------------------


def test_failures_from_elsewhere_do_not_lock_the_person_out(app, user, clock):
    """The finding: five wrong passwords for a name from anywhere refused its owner too."""
    attacker = from_address(app, ATTACKER)
    for _ in range(10):
        attacker.login(password="nope nope")
    assert from_address(app, PERSON).login().headers["Location"] == "/"
    assert "Too many failed attempts" in attacker.login().text  # but not the attacker


def test_five_failures_delay_the_next_attempt_with_a_message_and_a_log_line(app, client, auth, clock, caplog):
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        assert "Invalid username or password." in auth.login(password="nope nope").text
    locked = auth.login()  # even the right password is refused while locked
    assert locked.status_code == 401
    assert ("Too many failed attempts: logging in from here is locked for 1 second. Try again then.") in locked.text
    assert locked.headers["Retry-After"] == "1"
    assert client.get("/").status_code == 302
    assert "login locked for 'alice' from 127.0.0.1" in caplog.text
    assert PASSWORD not in caplog.text


def test_delays_double_from_one_second_to_fifteen_minutes(app, auth, clock):
    for _ in range(4):
        auth.login(password="nope nope")
    delays = []
    for _ in range(13):
        assert auth.login(password="nope nope").text.count("Invalid username or password.") == 1
        refused = auth.login(password="nope nope")
        assert "Too many failed attempts" in refused.text
        delays.append(int(refused.headers["Retry-After"]))
        clock.advance(seconds=delays[-1] - 1)
        assert "Too many failed attempts" in auth.login().text  # one second early: still refused
        clock.advance(seconds=1)
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]
    assert auth.login().headers["Location"] == "/"  # the wait is over: the right password works


def test_success_resets_the_count_for_that_name_and_address(app, client, auth, clock):
    for _ in range(4):
        auth.login(password="nope nope")
    assert auth.login().status_code == 302
    assert ("alice", "127.0.0.1") not in throttle_rows(app)
    auth.logout()
    for _ in range(4):  # four more failures are again just failures
        assert auth.login(password="nope nope").status_code == 401
    assert auth.login().status_code == 302


def test_unknown_names_are_throttled_like_known_ones(client, auth, clock):
    for name in ("alice", "mallory"):
        for _ in range(5):
            auth.login(name, "guess guess")
        refused = auth.login(name, "guess guess")
        assert (refused.status_code, refused.headers["Retry-After"]) == (401, "1")
        assert "logging in from here is locked for 1 second" in refused.text


def test_an_address_failing_across_many_names_is_refused_for_a_while(app, user, clock):
    attacker = from_address(app, ATTACKER)
    limit = app.config["LOGIN_ADDRESS_MAX_FAILURES"]
    assert (limit, app.config["LOGIN_ADDRESS_WINDOW_SECONDS"]) == (50, 900)
    for n in range(limit):
        assert attacker.login(f"guess-{n}", "guess guess").status_code == 401
        clock.advance(seconds=10)  # 50 failures in 8 min 20 s: within the window
    refused = attacker.login()  # a name it never tried, with the right password
    assert "Too many failed attempts" in refused.text
    assert refused.headers["Retry-After"] == str(15 * 60 - 10)
    assert from_address(app, PERSON).login().headers["Location"] == "/"
    clock.advance(minutes=15)
    assert attacker.login().headers["Location"] == "/"


def test_failures_spread_beyond_the_window_do_not_lock_the_address(app, user, clock):
    attacker = from_address(app, ATTACKER)
    for n in range(60):
        assert attacker.login(f"guess-{n}", "guess guess").status_code == 401
        clock.advance(seconds=20)  # 45 failures per 15 minutes
    assert attacker.login().headers["Location"] == "/"


def test_without_proxy_count_x_forwarded_for_is_ignored(app, user, clock):
    for n in range(5):  # a new claimed address each time: still the same socket
        from_address(app, ATTACKER, forwarded_for=f"192.0.2.{n}").login(password="nope nope")
    assert "Too many failed attempts" in from_address(app, ATTACKER, forwarded_for=PERSON).login().text
    assert from_address(app, PERSON).login().headers["Location"] == "/"


def test_behind_a_proxy_the_trusted_forwarded_address_is_throttled(database_url, app, user, clock):
    proxied = make_app(database_url, PROXY_COUNT=1, CLOCK=clock)
    try:
        # Everyone comes from the proxy's socket; the hop it adds is the client's address.
        # Claimed hops before it (spoofed by the client) change nothing.
        for n in range(5):
            from_address(proxied, PROXY, forwarded_for=f"192.0.2.{n}, {ATTACKER}").login(password="nope nope")
        attacker = from_address(proxied, PROXY, forwarded_for=f"192.0.2.99, {ATTACKER}")
        assert "Too many failed attempts" in attacker.login().text
        assert from_address(proxied, PROXY, forwarded_for=PERSON).login().headers["Location"] == "/"
        assert {address for _, address in throttle_rows(app)} == {ATTACKER}
    finally:
        with proxied.app_context():
            db.engine.dispose()


def test_lockout_expires(app, client, auth, clock):
    for _ in range(5):
        auth.login(password="nope nope")
    assert "Too many" in auth.login().text
    clock.advance(seconds=1)
    assert auth.login().status_code == 302


def test_throttle_is_shared_between_app_instances(database_url, app, user, clock):
    """Two app objects (as two workers or two servers) on one database see the same lockout."""
    other = make_app(database_url, CLOCK=clock)
    for _ in range(5):
        AuthActions(app.test_client()).login(password="nope nope")
    assert "Too many" in AuthActions(other.test_client()).login().text
    with other.app_context():
        db.engine.dispose()


def test_throttle_rows_are_deleted_once_they_no_longer_matter(app, user, clock):
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        for n in range(10):
            from_address(app, address).login(f"junk-{address}-{n}", "guess guess")
    assert len(throttle_rows(app)) == 33  # a row per (name, address), and one per address

    clock.advance(hours=20)
    from_address(app, "192.0.2.4").login("recent", "guess guess")
    clock.advance(hours=4, seconds=1)  # a day and a second after the junk
    from_address(app, "192.0.2.5").login("latest", "guess guess")
    # Left: the failures still remembered; the address rows of finished windows are gone too.
    assert throttle_rows(app) == {("recent", "192.0.2.4"), ("latest", "192.0.2.5"), ("", "192.0.2.5")}


@ONE_DATABASE
def test_the_throttle_purges_by_an_index_on_its_expiry(app):
    indexes = {index.name: [column.name for column in index.columns] for index in LoginThrottle.__table__.indexes}
    assert indexes["ix_login_throttle_expires_at"] == ["expires_at"]


# --- password hashing ------------------------------------------------------------------------


@pytest.mark.real_password_hashes
def test_passwords_are_stored_as_argon2id_with_owasp_parameters(app, runner):
    result = runner.invoke(args=["create-user", "bob"], input="s3cret-pass\ns3cret-pass\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        stored = db.session.scalar(sa.select(User.password_hash).where(User.username == "bob"))
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and "s3cret-pass" not in stored


@pytest.mark.real_password_hashes
def test_older_hashes_are_rehashed_at_the_next_login(app, client, clock):
    old = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4).hash(PASSWORD)
    with app.app_context():
        db.session.add(User(username="carol", password_hash=old, role="agent"))
        db.session.commit()
    assert AuthActions(client).login("carol").headers["Location"] == "/"
    with app.app_context():
        stored = db.session.scalar(sa.select(User.password_hash).where(User.username == "carol"))
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.hasher.verify(stored, PASSWORD)


@pytest.mark.real_password_hashes
@pytest.mark.parametrize("bound", [1, 2])
def test_concurrent_logins_hash_at_most_the_configured_number_at_once(app, user, clock, bound):
    app.config["PASSWORD_HASH_CONCURRENCY"] = bound
    logins = [from_address(app, f"192.0.2.{n}") for n in range(8)]
    for each in logins:  # the login pages first, so that the posts come together
        each.token = csrf_token(each.client.get("/login").text)
    start, statuses = threading.Barrier(len(logins)), []

    def log_in(n: int, each: AuthActions):
        start.wait()
        for attempt in range(3):
            statuses.append(
                each.client.post(
                    "/login",
                    data={"username": f"new-name-{n}-{attempt}", "password": "guess guess", "csrf_token": each.token},
                ).status_code
            )

    passwords.hashing.reset_peak()
    threads = [threading.Thread(target=log_in, args=(n, each)) for n, each in enumerate(logins)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [401] * 24
    assert passwords.hashing.peak == bound
