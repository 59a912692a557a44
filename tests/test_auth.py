"""Login, logout, throttling, sessions, and the rule that everything else needs a login."""
import logging
import re
import time
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import LoginThrottle, User

from conftest import PASSWORD, csrf_token


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


@pytest.mark.parametrize("next_page, expected", [
    ("/conversations/%2B3725551", "/conversations/%2B3725551"),
    ("/?q=555", "/?q=555"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
])
def test_next_only_to_a_local_path(auth, next_page, expected):
    response = auth.login(next_page=quote(next_page, safe=""))
    assert response.headers["Location"] == expected


def test_page_request_without_login_redirects_with_next(client):
    response = client.get("/export.csv?q=555")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/export.csv?q=555"]}


def test_htmx_request_without_login_gets_401_and_hx_redirect(client):
    response = client.get("/?since=0", headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/?q=5"})
    assert response.status_code == 401
    location = urlsplit(response.headers["HX-Redirect"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/"]}
    assert response.data == b""  # never the login page inside a fragment


def test_every_route_but_login_static_and_callback_requires_login(app, client):
    """Walks the URL map, so a new route cannot forget its login."""
    public = {"auth.login", "static", "callback.inbound"}
    token = csrf_token(client.get("/login").text)  # so POSTs are refused for the login, not CSRF
    checked = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in public:
            continue
        url = rule.rule.replace("<sender>", "%2B3725551")
        assert "<" not in url, f"teach this test the converter in {rule.rule}"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method, headers={"X-CSRFToken": token})
            assert response.status_code == 302, (method, url)
            assert response.headers["Location"].startswith("/login"), (method, url)
            checked.append((method, rule.endpoint))
    assert ("POST", "auth.logout") in checked and ("GET", "inbox.export_csv") in checked


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


def test_idle_session_expires_and_polling_does_not_keep_it_alive(app, client, auth):
    app.config["IDLE_TIMEOUT_SECONDS"] = 2
    auth.login()
    assert client.get("/").status_code == 200
    time.sleep(1.2)
    assert client.get("/?since=999999").status_code in (200, 204)  # a background poll
    time.sleep(1.2)
    assert client.get("/").status_code == 302  # 2.4 s after the last real activity


def test_activity_keeps_the_session_alive(app, client, auth):
    app.config["IDLE_TIMEOUT_SECONDS"] = 2
    auth.login()
    for _ in range(3):
        time.sleep(1)
        assert client.get("/").status_code == 200


def test_session_cookie_flags(client, auth):
    auth.login()
    header = next(h for h in client.get("/").headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header


def test_secure_cookie_when_configured(database_url, user):
    from conftest import make_app
    app = make_app(database_url, SESSION_COOKIE_SECURE=True)
    client = app.test_client()
    response = client.get("/login", base_url="https://localhost")
    assert "Secure" in response.headers["Set-Cookie"]
    with app.app_context():
        db.engine.dispose()


def test_five_failures_lock_the_account_with_a_message_and_a_log_line(app, client, auth, caplog):
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        assert "Invalid username or password." in auth.login(password="nope nope").text
    locked = auth.login()  # even the right password is refused while locked
    assert locked.status_code == 401
    assert "Too many failed attempts" in locked.text
    assert client.get("/").status_code == 302
    assert "login locked for 'alice'" in caplog.text
    assert PASSWORD not in caplog.text


def test_lockout_expires(app, client, auth):
    app.config["LOGIN_LOCKOUT_SECONDS"] = 1
    for _ in range(5):
        auth.login(password="nope nope")
    assert "Too many" in auth.login().text
    time.sleep(1.1)
    assert auth.login().status_code == 302


def test_success_resets_the_failure_count(app, client, auth):
    for _ in range(4):
        auth.login(password="nope nope")
    assert auth.login().status_code == 302
    with app.app_context():
        assert db.session.get(LoginThrottle, "alice") is None


def test_unknown_names_are_throttled_too(client, auth):
    for _ in range(5):
        auth.login("mallory", "guess guess")
    assert "Too many failed attempts" in auth.login("mallory", "guess guess").text


def test_throttle_is_shared_between_app_instances(database_url, app, user):
    """Two app objects (as two workers or two servers) on one database see the same lockout."""
    from conftest import AuthActions, make_app
    other = make_app(database_url)
    for _ in range(5):
        AuthActions(app.test_client()).login(password="nope nope")
    assert "Too many" in AuthActions(other.test_client()).login().text
    with other.app_context():
        db.engine.dispose()


def test_passwords_are_stored_as_argon2id(app, runner):
    result = runner.invoke(args=["create-user", "bob"], input="s3cret-pass\ns3cret-pass\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        stored = db.session.scalar(sa.select(User.password_hash).where(User.username == "bob"))
    assert stored.startswith("$argon2id$") and "s3cret-pass" not in stored
    assert re.search(r"m=\d+,t=\d+,p=\d+", stored)
