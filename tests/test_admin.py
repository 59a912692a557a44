"""Roles, the admin pages for users, and one's own account page."""

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from app import config
from app.accounts import passwords
from app.db.models import LoginSession, LoginThrottle, User
from app.extensions import db
from conftest import ONE_DATABASE, PASSWORD, AuthActions, add_user, close_app, csrf_token, make_app
from helpers import Clock, post, user_id


@pytest.fixture
def clock(app):
    app.config["CLOCK"] = Clock()
    return app.config["CLOCK"]


def user_row(app, name: str) -> SimpleNamespace:
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == name))
        return SimpleNamespace(**{column.key: getattr(user, column.key) for column in User.__table__.columns})


def one_time_link(html: str) -> str:
    """The link's path; links are made from BIND (no PUBLIC_URL in tests), never the request's Host."""
    return re.search(r'value="http://127\.0\.0\.1:5000(/set-password/[^"]+)"', html).group(1)


def set_password(app, link: str, password: str, confirm: str | None = None):
    client = app.test_client()
    page = client.get(link)
    if page.status_code != 200:
        return page
    return client.post(
        link, data={"password": password, "confirm": confirm or password, "csrf_token": csrf_token(page.text)}
    )


# --- roles on every route -------------------------------------------------------------------


def test_an_agent_is_refused_every_admin_route_and_allowed_every_other(app, agent):
    """Walks the URL map as tests/test_auth.py does anonymously: a new admin route can't forget."""
    token = agent.csrf("/account")
    refused, allowed = [], []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.endpoint in ("static", "auth.set_password") or rule.endpoint.startswith("callback."):
            continue
        admin_only = getattr(view, "admin_only", False)
        if rule.endpoint.startswith("admin."):
            assert admin_only, f"{rule.endpoint} must be admin_required"
        url = re.sub(r"<(int(\([^)]*\))?:)?\w+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if rule.endpoint in ("auth.logout", "auth.sign_out_everywhere", "auth.end_session"):
                continue  # would end the session the walk needs
            response = agent.client.open(url, method=method, headers={"X-CSRFToken": token})
            response.close()  # a download streams: end it before the next request
            if admin_only:
                assert response.status_code == 403, (method, url)
                refused.append(rule.endpoint)
            else:
                assert response.status_code != 403, (method, url)
                allowed.append(rule.endpoint)
    assert {"admin.users", "admin.add_user", "admin.audit_trail", "admin.delete_conversation"} <= set(refused)
    assert {"auth.account", "inbox.index"} <= set(allowed)
    assert user_row(app, "bob").password_hash != "!"  # nothing the walk posted changed bob


def test_the_forbidden_page_is_a_page(app, agent):
    response = agent.client.get("/admin/users")
    assert response.status_code == 403 and "<h1>Not allowed</h1>" in response.text


def test_admins_see_the_admin_link_and_agents_do_not(app, admin, agent):
    assert 'href="/admin/users">Admin</a>' in admin.client.get("/account").text
    assert 'href="/admin/users">Admin</a>' not in agent.client.get("/account").text


# --- adding users, links, roles ----------------------------------------------------------------


def test_an_admin_adds_a_user_who_sets_a_password_with_a_one_time_link(app, admin):
    page = post(admin, "/admin/users", "/admin/users", username=" carol ", role="agent")
    assert page.status_code == 200 and "Added <bdi>carol</bdi>" in page.text
    link = one_time_link(page.text)
    carol = user_row(app, "carol")
    assert (carol.role, carol.password_hash) == ("agent", passwords.NO_PASSWORD)
    assert carol.reset_token_hash == passwords.token_hash(link.rsplit("/", 1)[1])  # only its hash stored
    assert AuthActions(app.test_client()).login("carol", "anything at all").status_code == 401

    assert "do not match" in set_password(app, link, "carols password", "carols passwort").text
    done = set_password(app, link, "carols password")
    assert (done.status_code, done.headers["Location"]) == (303, "/login?set=1")
    assert AuthActions(app.test_client()).login("carol", "carols password").status_code == 302
    again = set_password(app, link, "another password")  # works once
    assert again.status_code == 404 and "This link does not work" in again.text


def test_a_password_link_expires(app, clock, admin):
    with app.app_context():
        add_user("bob", role="agent")
    page = post(admin, f"/admin/users/{user_id(app, 'bob')}/reset-password", "/admin/users")
    link = one_time_link(page.text)
    clock.advance(hours=23, minutes=59)
    assert app.test_client().get(link).status_code == 200
    clock.advance(minutes=1)
    assert set_password(app, link, "a new password").status_code == 404
    assert AuthActions(app.test_client()).login("bob").status_code == 302  # the old one still works


def test_a_reset_ends_the_users_sessions_once_used(app, admin, agent):
    page = post(admin, f"/admin/users/{user_id(app, 'bob')}/reset-password", "/admin/users")
    assert agent.client.get("/account").status_code == 200  # not yet used: nothing changed
    set_password(app, one_time_link(page.text), "bobs new password")
    assert agent.client.get("/account").status_code == 302
    assert AuthActions(app.test_client()).login("bob", "bobs new password").status_code == 302


def test_a_password_link_issued_before_disabling_is_dead_after_re_enabling(app, admin):
    with app.app_context():
        add_user("bob", role="agent")
    bob = user_id(app, "bob")
    link = one_time_link(post(admin, f"/admin/users/{bob}/reset-password", "/admin/users").text)
    post(admin, f"/admin/users/{bob}/disable", "/admin/users")
    post(admin, f"/admin/users/{bob}/enable", "/admin/users")
    refused = set_password(app, link, "a password bob chose")
    assert refused.status_code == 404 and "This link does not work" in refused.text
    assert AuthActions(app.test_client()).login("bob", "a password bob chose").status_code == 401
    assert AuthActions(app.test_client()).login("bob").status_code == 302  # his old password still works


@ONE_DATABASE
def test_a_foreign_host_header_is_refused(app, client):
    """TRUSTED_HOSTS (here BIND's loopback names): a request naming another host gets 400."""
    assert client.get("/login", headers={"Host": "localhost:5000"}).status_code == 200
    refused = client.get("/login", headers={"Host": "evil.example"})
    assert refused.status_code == 400 and 'name="password"' not in refused.text


@pytest.mark.parametrize(
    "settings, site",
    [
        ({"BIND": "0.0.0.0:5111"}, "http://127.0.0.1:5111"),  # any host allowed: links still from BIND
        ({"BIND": "0.0.0.0:5111", "TRUSTED_HOSTS": []}, "http://127.0.0.1:5111"),
        ({"PUBLIC_URL": "https://inbox.example.com/", "TRUSTED_HOSTS": []}, "https://inbox.example.com"),
    ],
)
def test_password_links_never_come_from_the_host_header(database_url, app, settings, site):
    other = make_app(database_url, **settings)
    try:
        with other.app_context():
            add_user()
        actions = AuthActions(other.test_client())
        actions.client.environ_base["HTTP_HOST"] = "evil.example"
        assert actions.login().status_code == 302
        page = post(actions, "/admin/users", "/admin/users", username="carol", role="agent")
        assert page.status_code == 200
        link = re.search(r'id="link" class="link-box" type="text" readonly value="([^"]+)"', page.text).group(1)
        assert link.startswith(f"{site}/set-password/")
    finally:
        close_app(other)


def test_trusted_hosts_come_from_public_url_and_bind_or_the_environment():
    def derive(**given):
        return config.trusted_hosts({"PUBLIC_URL": "", "BIND": "127.0.0.1:5000", "PROXY_COUNT": 0, **given})

    assert derive() == ["127.0.0.1", "localhost", "::1"]
    # The name people use is unknown (listening everywhere, or behind a proxy): any host.
    assert derive(BIND="0.0.0.0:8000") is None and derive(BIND="10.1.2.3:8000") is None
    assert derive(PROXY_COUNT=1) is None
    assert derive(BIND="0.0.0.0:8000", PUBLIC_URL="https://inbox.example.com") == [
        "inbox.example.com",
        "127.0.0.1",
        "localhost",
        "::1",
    ]
    assert derive(BIND="10.1.2.3:8000", PUBLIC_URL="https://inbox.example.com:8443/", PROXY_COUNT=1) == [
        "inbox.example.com",
        "127.0.0.1",
        "localhost",
        "::1",
        "10.1.2.3",
    ]
    assert config.from_environment({"TRUSTED_HOSTS": "inbox.example.com, .example.org"}) == {
        "TRUSTED_HOSTS": ["inbox.example.com", ".example.org"]
    }


def test_adding_a_taken_or_empty_name_says_why(app, admin):
    taken = post(admin, "/admin/users", "/admin/users", username="alice", role="agent")
    assert taken.status_code == 400 and "already exists" in taken.text
    empty = post(admin, "/admin/users", "/admin/users", username="  ", role="agent")
    assert empty.status_code == 400


def test_changing_roles_and_the_last_admin_stays_one(app, admin, agent):
    bob = user_id(app, "bob")
    assert post(admin, f"/admin/users/{bob}/role", "/admin/users", role="admin").status_code == 303
    assert agent.client.get("/admin/users").status_code == 200  # at once, same session
    post(admin, f"/admin/users/{bob}/role", "/admin/users", role="agent")
    assert agent.client.get("/admin/users").status_code == 403
    alone = post(admin, f"/admin/users/{user_id(app, 'alice')}/role", "/admin/users", role="agent")
    assert alone.status_code == 400 and "only admin" in alone.text
    assert post(admin, f"/admin/users/{bob}/role", "/admin/users", role="owner").status_code == 400


def test_disabling_ends_the_users_sessions_at_once_and_enabling_lets_them_log_in(app, admin, agent):
    bob = user_id(app, "bob")
    other_device = AuthActions(app.test_client())
    other_device.login("bob")
    assert post(admin, f"/admin/users/{bob}/disable", "/admin/users").status_code == 303
    assert agent.client.get("/account").status_code == 302
    assert other_device.client.get("/").status_code == 302
    assert "Invalid username or password." in AuthActions(app.test_client()).login("bob").text
    post(admin, f"/admin/users/{bob}/enable", "/admin/users")
    assert AuthActions(app.test_client()).login("bob").status_code == 302


def test_unlocking_a_throttled_login(app, clock, admin):
    locked_out = AuthActions(app.test_client())
    for _ in range(6):
        locked_out.login("alice", "wrong password")
    assert "Too many failed attempts" in locked_out.login().text
    page = admin.client.get("/admin/users").text
    assert "Locked logins" in page and "<bdi>alice</bdi>" in page
    with app.app_context():
        row = db.session.scalar(
            sa.select(LoginThrottle.id).where(
                LoginThrottle.username == "alice", LoginThrottle.locked_until.is_not(None)
            )
        )
    assert post(admin, f"/admin/locked-logins/{row}/unlock", "/admin/users").status_code == 303
    assert locked_out.login().status_code == 302


# --- one's own account ----------------------------------------------------------------------


def test_changing_ones_password_needs_the_old_one_and_ends_the_other_sessions(app, admin):
    other_device = AuthActions(app.test_client())
    other_device.login()
    wrong = post(admin, "/account/password", current="not it at all", password="new password!", confirm="new password!")
    assert wrong.status_code == 400 and "current password is not right" in wrong.text
    done = post(admin, "/account/password", current=PASSWORD, password="new password!", confirm="new password!")
    assert done.status_code == 200 and "Your password is changed" in done.text
    assert admin.client.get("/account").status_code == 200  # this session stays
    assert other_device.client.get("/account").status_code == 302
    assert AuthActions(app.test_client()).login(password="new password!").status_code == 302


def test_sessions_are_listed_and_one_can_be_ended(app, admin):
    phone = app.test_client()
    phone.environ_base.update(
        REMOTE_ADDR="192.0.2.9",
        HTTP_USER_AGENT=(
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
        ),
    )
    AuthActions(phone).login()
    page = admin.client.get("/account").text
    assert "Chrome on Android" in page and "192.0.2.9" in page and "This session" in page
    with app.app_context():
        phone_session = db.session.scalar(sa.select(LoginSession.id).where(LoginSession.address == "192.0.2.9"))
    post(admin, f"/account/sessions/{phone_session}/end")
    assert phone.get("/account").status_code == 302
    assert admin.client.get("/account").status_code == 200


def test_logout_ends_this_session_only_and_sign_out_everywhere_ends_all(app, admin):
    laptop = AuthActions(app.test_client())
    laptop.login()
    laptop.logout()
    assert admin.client.get("/account").status_code == 200
    laptop.login()
    response = post(admin, "/account/sessions/end-all")
    assert response.headers["Location"] == "/login"
    assert admin.client.get("/account").status_code == 302
    assert laptop.client.get("/account").status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LoginSession)) == 0


def test_the_cookie_holds_a_token_whose_hash_alone_is_stored(app, admin):
    with app.app_context():
        stored = db.session.scalar(sa.select(LoginSession.token_hash))
    assert stored not in admin.client.get_cookie("session").value
    assert len(stored) == 64


def test_a_session_last_seen_is_written_every_few_minutes_not_every_request(app, clock, admin):
    def last_seen():
        with app.app_context():
            return db.session.scalar(sa.select(LoginSession.last_seen_at))

    first = last_seen()
    clock.advance(minutes=4)
    admin.client.get("/account")
    assert last_seen() == first
    clock.advance(minutes=1)
    admin.client.get("/account")
    assert last_seen() == first + timedelta(minutes=5)
