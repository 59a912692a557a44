"""Fixtures in the Flask tutorial's manner: app, client, runner, auth; plus real servers.

Every test that uses `app` runs twice (once with ONE_DATABASE): on a fresh SQLite file and in
a fresh PostgreSQL schema (the server on 127.0.0.1:5432). Where PostgreSQL can't be reached
that leg skips, except in CI (CI=true), where it fails. TEST_DATABASES=sqlite (as `make test-fast` sets it)
runs only the SQLite leg: the PostgreSQL tests are deselected, not skipped.

Fixtures several modules use are here; plain helpers they share are in helpers.py (and
browser_helpers.py for the browser tests). No test module imports another.
"""

import atexit
import http.cookiejar
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import argon2
import jinja2
import pytest
import sqlalchemy as sa

from app import create_app
from app.accounts import passwords
from app.callbacks import signing
from app.db.models import Conversation, User
from app.extensions import db
from app.inbox import queries
from app.ops import demo

ROOT = Path(__file__).resolve().parent.parent
VECTORS = Path(__file__).parent / "vectors"
SIGNATURES = json.loads((VECTORS / "signatures.json").read_text())
SECRET = SIGNATURES["secret"]
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI") == "true"
# The database kinds to test on: "sqlite,postgresql" unless TEST_DATABASES names fewer.
DATABASES = os.environ.get("TEST_DATABASES", "sqlite,postgresql").replace(" ", "").split(",")
PASSWORD = "correct horse battery"
API_PASSWORD = "api-password"  # the fake Messente's; it also signs delivery reports


def _cache_url_builders() -> None:
    """Reuse Werkzeug's URL builders between the apps the tests create.

    Each Flask app compiles a Python function per URL rule to build its URLs (Rule.compile ->
    _compile_builder: an AST, then compile()): about 60% of create_app's time, which every test
    pays again. The function made depends only on what the key below holds (the rule, its parsed
    parts, its defaults) and takes the rule itself as its first argument, so one made for an
    identical rule of an earlier app is the same function. Only the tests' apps share them: a
    server the tests start (a process of its own) compiles its own.
    """
    from werkzeug.routing import Rule

    compile_builder = Rule._compile_builder
    builders: dict = {}

    def cached_compile_builder(self, append_unknown: bool = True):
        defaults = self.defaults or {}
        key = (
            self.rule,
            tuple(self._trace),
            tuple(map(str, defaults)),
            # a default for a part of the rule is built into the function, converted
            tuple(
                self._converters[part].to_url(defaults[part])
                for dynamic, part in self._trace
                if dynamic and part in defaults
            ),
            append_unknown,
        )
        builder = builders.get(key)
        if builder is None:
            builder = builders[key] = compile_builder(self, append_unknown)
        return builder

    Rule._compile_builder = cached_compile_builder


_cache_url_builders()


class _SharedTemplateCode(jinja2.BytecodeCache):
    """The templates' compiled code, shared by the apps the tests create (a process's).

    Each app has its own Jinja environment, which would parse and compile every template it
    renders again (a third of an ordinary test's time). Jinja's bytecode cache is made for
    this: an entry is found by the template's name and file and used only while the source's
    checksum is the same. The apps' environments are alike (the same filters, globals and
    autoescaping), so the code one compiled is the code another would.
    """

    def __init__(self):
        self.code: dict = {}

    def load_bytecode(self, bucket) -> None:
        bucket.code = self.code.get((bucket.key, bucket.checksum))

    def dump_bytecode(self, bucket) -> None:
        self.code[bucket.key, bucket.checksum] = bucket.code


TEMPLATE_CODE = _SharedTemplateCode()


REAL_HASHER = passwords.hasher  # Argon2id at OWASP's floor, as the app hashes


class _CheapHasher(argon2.PasswordHasher):
    """Argon2id at its smallest cost, for the tests' own apps (see `password_hashing`).

    A hash at the real hasher's parameters needs no rehash here either: a user a flask command
    made logs in without the login writing a new hash, as in production.
    """

    def check_needs_rehash(self, hash: str | bytes) -> bool:
        return super().check_needs_rehash(hash) and REAL_HASHER.check_needs_rehash(hash)


CHEAP_HASHER = _CheapHasher(time_cost=1, memory_cost=8, parallelism=1)
# What starts a process of the app's own, which hashes as production does (at the real cost).
_OTHER_PROCESSES = ("Server", "flask_command", "flask_process", "subprocess")


@cache
def _module_starts_processes(module) -> bool:
    return any(hasattr(module, name) for name in _OTHER_PROCESSES)


@pytest.fixture(autouse=True)
def password_hashing(request, monkeypatch):
    """The tests' own apps hash passwords with CHEAP_HASHER: every login verifies the stored hash
    at the cost it was made with, and Argon2 at the real cost (19 MiB, two passes) is tens of
    milliseconds a login, slow on purpose. Real hashing stays for a test marked
    `real_password_hashes` (it looks at the hashes or their cost), for the slow and browser tests,
    and for a module that starts a server or a flask command: those processes hash as production
    does, and would rehash a cheap hash at a login."""
    markers = ("real_password_hashes", "slow", "browser")
    if any(request.node.get_closest_marker(marker) for marker in markers) or _module_starts_processes(request.module):
        return
    if {"server", "server_factory"} & set(request.fixturenames):
        return
    monkeypatch.setattr(passwords, "hasher", CHEAP_HASHER)
    monkeypatch.setattr(passwords, "_dummy_hash", _cheap_dummy_hash())


@cache
def _cheap_dummy_hash() -> str:
    return CHEAP_HASHER.hash(uuid.uuid4().hex)


_password_hashes: dict[bool, str] = {}


def password_hash() -> str:
    """PASSWORD's hash by the hasher in use: made once per run (and hasher)."""
    cheap = passwords.hasher is CHEAP_HASHER
    if cheap not in _password_hashes:
        _password_hashes[cheap] = passwords.hash_password(PASSWORD)
    return _password_hashes[cheap]


@cache
def postgres_problem() -> str | None:
    """Why PostgreSQL can't be used, or None when it can."""
    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        engine.dispose()
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc.__class__.__name__}"
    return None


def require_postgres():
    problem = postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(problem + " (mandatory in CI)")
        pytest.skip(problem)


@contextmanager
def fresh_database(kind: str, tmp_path: Path, name: str = "test"):
    """The URL of a new, empty database: a SQLite file, or a PostgreSQL schema dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
        return
    require_postgres()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema},public"
    finally:
        for attempt in range(3):  # autovacuum on one of its tables can make the drop a deadlock's victim
            try:
                with admin.begin() as connection:
                    connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
                break
            except sa.exc.OperationalError as exc:
                if "deadlock detected" not in str(exc) or attempt == 2:
                    raise
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database for one test."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


# For a test that needs an app but sends it no query (a URL-map walk, a page shown to a visitor
# who is not logged in, a setting): it runs on SQLite only, once instead of once per database.
ONE_DATABASE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def pytest_collection_modifyitems(config, items):
    """Deselect the tests on a database kind TEST_DATABASES leaves out (see DATABASES)."""
    unknown = set(DATABASES) - {"sqlite", "postgresql"}
    if unknown:
        raise pytest.UsageError(f"TEST_DATABASES names unknown kinds: {', '.join(sorted(unknown))}")

    def kind(item) -> str | None:
        return item.callspec.params.get("database_url") if hasattr(item, "callspec") else None

    left_out = [item for item in items if kind(item) not in (None, *DATABASES)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if kind(item) in (None, *DATABASES)]


def make_app(database_url: str, **settings):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "MESSENTE_SHARED_SECRET": SECRET,
            **settings,
        }
    )
    app.jinja_env.bytecode_cache = TEMPLATE_CODE
    return app


@cache
def sqlite_template() -> Path:
    """A SQLite database with the models' tables, made once per test process by `create_all`."""
    folder = Path(tempfile.mkdtemp(prefix="sms-inbox-tables-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "tables.sqlite3"
    app = make_app(f"sqlite:///{path}")
    with app.app_context():
        db.create_all()
    close_app(app)  # its last connection closed: the WAL is checkpointed into the file, and gone
    return path


def create_tables() -> None:
    """`db.create_all()` for the app in context. A SQLite database not made yet is a copy of
    sqlite_template() instead (a file copy, where create_all takes a tenth of a second and more);
    the same tables, triggers and rows. PostgreSQL's schemas get create_all itself."""
    engine = db.engine
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:" and not Path(database).exists():
        engine.dispose()  # nothing open on the path the copy is made at
        shutil.copyfile(sqlite_template(), database)
        return
    db.create_all()


@pytest.fixture
def app(database_url):
    app = make_app(database_url)
    with app.app_context():
        create_tables()
    yield app
    close_app(app)


def close_app(app) -> None:
    """Stop the app's job runner (if a test started one), then close its connections."""
    from app.inbox import presence
    from app.jobs import runner

    runner.stop(app)
    presence.dispose(app)  # its own engine: on PostgreSQL, connections into the test's schema
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def add_user(username: str = "alice", role: str = "admin") -> None:
    """A login with PASSWORD, inside an app context (alice, the first user, is an admin)."""
    db.session.add(User(username=username, password_hash=password_hash(), role=role))
    db.session.commit()


@pytest.fixture
def user_row():
    return add_user


@pytest.fixture
def user(app):
    with app.app_context():
        add_user()
    return "alice"


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


class AuthActions:
    def __init__(self, client):
        self.client = client

    def login(self, username="alice", password=PASSWORD, next_page=None):
        url = "/login" + (f"?next={next_page}" if next_page else "")
        token = csrf_token(self.client.get(url).text)
        return self.client.post(url, data={"username": username, "password": password, "csrf_token": token})

    def csrf(self, page="/") -> str:
        return csrf_token(self.client.get(page).text)

    def logout(self):
        return self.client.post("/logout", data={"csrf_token": self.csrf()})


@pytest.fixture
def auth(client, user):
    return AuthActions(client)


def body_for(**fields) -> bytes:
    """A realistic inbound payload; keyword arguments replace fields (None removes one)."""
    payload = {
        "msg_id": str(uuid.uuid4()),
        "sub_msg_id": str(uuid.uuid4()),
        "channel": "sms",
        "recipient": "+37250000000",
        "time": "2024-06-01T08:00:00.000000Z",
        "text": "Tere!",
        "sender": "+37255512345",
    }
    payload.update(fields)
    return json.dumps({k: v for k, v in payload.items() if v is not None}, ensure_ascii=False).encode()


def conversation_of(sender: str) -> Conversation | None:
    """The conversation of a sender (inside an app context)."""
    return db.session.scalar(sa.select(Conversation).where(Conversation.sender == sender))


def signed_headers(body: bytes, secret: str = SECRET) -> dict:
    return {"Content-Type": "application/json", "X-Messente-Signature": signing.sign(body, secret)}


@pytest.fixture
def deliver(client):
    """POST a body to the callback, signed with the test secret unless told otherwise."""

    def deliver(body: bytes, signature: str | None = "sign", **kwargs):
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            headers = signed_headers(body)
        elif signature is not None:
            headers["X-Messente-Signature"] = signature
        return client.post("/callbacks/inbound", data=body, headers=headers, **kwargs)

    return deliver


def wait_until(condition, what, timeout: float = 10.0, interval: float = 0.05):
    """Check `condition()` every `interval` seconds until it gives something true, and return
    that; AssertionError after `timeout` seconds, saying `what` (a text, or a callable giving
    one then) never came about. The one place tests wait for something another process does."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what() if callable(what) else what}"
        time.sleep(interval)


# --- real processes ---------------------------------------------------------------------


def flask_process(database_url: str, *args: str, env_extra: dict | None = None) -> dict:
    """Arguments for subprocess.run or Popen that run `flask --app app ...` on a database."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MESSENTE_SHARED_SECRET": SECRET,
        "SECRET_KEY": "test-secret-key",
        **(env_extra or {}),
    }
    return dict(args=[sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env)


def flask_command(
    database_url: str, *args: str, env_extra: dict | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run a flask command to completion in its own process, as an operator would."""
    return subprocess.run(
        **flask_process(database_url, *args, env_extra=env_extra), capture_output=True, text=True, timeout=120, **kwargs
    )


# --- real servers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The server as `make run` starts it (app/server/__main__.py), in real worker processes on 127.0.0.1."""

    def __init__(
        self,
        database_url: str,
        workers: int = 2,
        threads: int = 8,
        port: int | None = None,
        env: dict | None = None,
        access_log: str = "/dev/null",
    ):
        self.database_url, self.workers, self.threads = database_url, workers, threads
        self.access_log = access_log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.process = None

    def start(self):
        # BIND as `make run` sets it: the app makes its links (set-password) from it.
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "MESSENTE_SHARED_SECRET": SECRET,
            "SECRET_KEY": "test-secret-key",
            "BIND": f"127.0.0.1:{self.port}",
            **self.env,
        }
        self.log = tempfile.TemporaryFile()
        from app import server  # what `make run` starts

        argv = server.command(f"127.0.0.1:{self.port}")
        argv[-1:-1] = [
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--access-logfile",
            self.access_log,
        ]
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        try:
            wait_until(self.answers, "the server answers", timeout=30, interval=0.1)
        except BaseException:
            self.stop()  # no server left running (and loading the machine) after the test that failed to start it
            raise
        return self

    def answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url + "/login", timeout=1).close()
            return True
        except OSError:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited: " + self.output()[-2000:]) from None
            return False

    def output(self) -> str:
        """What the server wrote to stderr so far (its error log)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def stop(self, sig=None):
        if self.process and self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def server_factory(app):
    """Start servers on the test's database; all are stopped at the end."""
    servers = []

    def start(**options) -> Server:
        server = Server(app.config["SQLALCHEMY_DATABASE_URI"], **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# --- a person's browser, without a browser ---------------------------------------------


class Browser:
    """One person's cookies over plain HTTP, sent to whichever server (or instance) is asked."""

    def __init__(self, cookies=()):
        self.jar = http.cookiejar.CookieJar()
        for cookie in cookies:
            self.jar.set_cookie(cookie)
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def copy(self) -> "Browser":
        """Another browser holding the same cookies, as a copied or stolen cookie would."""
        return Browser(list(self.jar))

    def get(self, url: str) -> tuple[int, str, str]:
        """Status, final URL (after redirects) and page text."""
        try:
            with self.opener.open(url, timeout=30) as response:
                return response.status, response.url, response.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.url, exc.read().decode()

    def post(self, url: str, form: dict) -> tuple[int, str, str]:
        data = urllib.parse.urlencode(form).encode()
        try:
            with self.opener.open(url, data=data, timeout=30) as response:
                return response.status, response.url, response.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.url, exc.read().decode()

    def login(self, base_url: str, password: str) -> tuple[int, str, str]:
        _, _, page = self.get(base_url + "/login")
        return self.post(
            base_url + "/login", {"username": "alice", "password": password, "csrf_token": csrf_token(page)}
        )


# --- a fake Messente API ------------------------------------------------------------------


@pytest.fixture
def messente():
    """A fake Messente API on 127.0.0.1 (tests/fake_messente.py), started; stopped afterwards.

    Its API username is "api-user" and password "api-password"; give the app `messente.url`
    as MESSENTE_API_URL.
    """
    from fake_messente import FakeMessente

    with FakeMessente("api-user", "api-password") as fake:
        yield fake


# --- logged-in people and apps several modules share ---------------------------------------


@pytest.fixture
def admin(app, client, user):
    """alice, an admin, logged in."""
    actions = AuthActions(client)
    assert actions.login().status_code == 302
    return actions


@pytest.fixture
def agent(app, user):
    """bob, an agent, logged in on his own client."""
    with app.app_context():
        add_user("bob", role="agent")
    actions = AuthActions(app.test_client())
    assert actions.login("bob").status_code == 302
    return actions


@pytest.fixture
def reply_app(database_url, messente, user_row):
    """An app that sends replies through the fake Messente, its job runner started; alice in it."""
    app = make_app(
        database_url,
        MESSENTE_API_URL=messente.url,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD="api-password",
        MESSENTE_READ_TIMEOUT=0.5,
        MESSENTE_CONNECT_TIMEOUT=0.5,
        PUBLIC_URL="https://inbox.example.com",
    )
    with app.app_context():
        create_tables()
        user_row()
    from app.jobs import runner as job_runner  # (`runner` here is the CLI runner fixture)

    job_runner.start(app)  # as every server process does
    yield app
    close_app(app)


@pytest.fixture
def person(reply_app):
    """alice's logged-in client on `reply_app`."""
    client = reply_app.test_client()
    assert AuthActions(client).login().status_code == 302
    return client


@pytest.fixture
def dlr_app(database_url, user_row):
    """An app for delivery reports, at a clock the test moves (`app.moved(minutes=5)`)."""
    now = {"moment": datetime(2024, 6, 1, 8, 0, tzinfo=UTC)}
    # No job runner: the tests set each reply's state themselves, and a runner racing them to
    # the unreachable API would change it underneath.
    app = make_app(
        database_url,
        MESSENTE_API_USERNAME="api-user",
        MESSENTE_API_PASSWORD=API_PASSWORD,
        MESSENTE_API_URL="http://127.0.0.1:9/v1",
        CLOCK=lambda: now["moment"],
    )
    app.moved = lambda **delta: now.update(moment=now["moment"] + timedelta(**delta))
    with app.app_context():
        create_tables()
        user_row()
    yield app
    close_app(app)


@pytest.fixture
def seeded(app):
    """Demo data; the busiest conversation (thread) and the cursor of page 2."""
    with app.app_context():
        demo.seed(3_000, 150, rng=random.Random(6))
        busiest = db.session.scalar(sa.select(Conversation).order_by(Conversation.message_count.desc()))
        cursor = queries.conversations(limit=50).older
        return {
            "sender": busiest.sender,
            "conversation": busiest.id,
            "cursor": cursor,
            "newest": busiest.last_message_id,
            "latest_change": queries.latest_change(),
        }


# --- a browser (tests/browser_helpers.py; the modules marked `browser`) ----------------------


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the whole module; each test gets its own context (cookies, storage)."""
    from playwright.sync_api import sync_playwright

    from browser_helpers import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium package (make browser)"
        if IN_CI:
            pytest.fail(reason + " (mandatory in CI)")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_watch():
    from browser_helpers import PageWatch

    return PageWatch()


@pytest.fixture
def server(request, server_factory, user):
    # One worker keeps start-up quick; its threads serve the page, its polls and our deliveries.
    # A test that asks for `messente_env` gets a server that sends replies through the fake Messente.
    env = request.getfixturevalue("messente_env") if "messente_env" in request.fixturenames else None
    return server_factory(workers=1, threads=4, env=env)


@pytest.fixture
def new_context(browser, page_watch, server):
    """Open browser contexts that are watched; fail the test if any page misbehaved.

    Depends on `server` so that the browser lets go of its connections before the server stops.
    """
    contexts = []

    def new_context(**options):
        options = {"timezone_id": "Europe/Tallinn", "locale": "en-GB", "accept_downloads": True, **options}
        context = browser.new_context(**options)
        page_watch.watch(context)
        contexts.append(context)
        return context

    yield new_context
    for context in contexts:
        context.close()
    if page_watch.problems:
        pytest.fail("the browser reported problems:\n" + "\n".join(page_watch.problems))


@pytest.fixture
def page(new_context):
    return new_context().new_page()


@pytest.fixture
def backend(database_url) -> str:
    return database_url.split(":", 1)[0].split("+", 1)[0]
