"""The flask commands a newcomer and an operator use."""

import re
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.accounts import passwords
from app.db.models import ChangeCounter, Message, Server, User
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.jobs import servers
from conftest import AuthActions, add_user, body_for, csrf_token, flask_command, make_app, signed_headers


def users(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(User.username)))


def test_create_user_asks_twice_and_stores_a_hash(app, runner):
    result = runner.invoke(args=["create-user", "bob"], input="long enough\nlong enough\n")
    assert result.exit_code == 0, result.output
    assert "Created admin 'bob'" in result.output  # the first user is an admin
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == "bob"))
        assert passwords.hasher.verify(user.password_hash, "long enough")


def test_create_user_refuses_short_passwords_existing_names_and_mismatches(app, runner, user):
    short = runner.invoke(args=["create-user", "bob"], input="short\nshort\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    taken = runner.invoke(args=["create-user", "alice"], input="long enough\nlong enough\n")
    assert taken.exit_code == 1 and "already exists" in taken.output
    mismatch = runner.invoke(args=["create-user", "carol"], input="long enough\nlong enougH\n")
    assert mismatch.exit_code == 1 and "do not match" in mismatch.output
    assert users(app) == ["alice"]


def test_create_user_reads_a_piped_password(app, database_url):
    result = flask_command(database_url, "create-user", "dora", input="piped password\npiped password\n")
    assert result.returncode == 0, result.stderr
    assert "dora" in users(app)


def test_init_db_is_safe_to_run_twice_and_tells_what_to_do_next(database_url):
    first = flask_command(database_url, "init-db")
    assert first.returncode == 0, first.stderr
    assert "create-user" in first.stdout and "send-test-message" in first.stdout
    second = flask_command(database_url, "init-db")
    assert second.returncode == 0, second.stderr
    engine = sa.create_engine(database_url)
    assert {"message", "conversation", "user", "dead_letter"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_send_test_message_arrives_in_the_running_app(app, server_factory):
    server = server_factory(workers=1)
    result = app.test_cli_runner().invoke(
        args=[
            "send-test-message",
            "--url",
            server.url,
            "--sender",
            "+3725550000",
            "--text",
            "Tere, maailm! 👋",
            "--channel",
            "viber",
        ]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("200 ") and '"stored"' in result.output
    with app.app_context():
        message = db.session.scalar(sa.select(Message))
        assert (message.sender, message.text, message.channel) == ("+3725550000", "Tere, maailm! 👋", "viber")


def test_send_test_message_says_when_the_app_is_not_running(app, runner):
    result = runner.invoke(args=["send-test-message", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "Could not reach" in result.output
    app.config["BIND"] = "127.0.0.1:9"  # nothing listens there
    result = runner.invoke(args=["send-test-message"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: Could not reach http://127.0.0.1:9/callbacks/inbound: ")
    assert result.output.rstrip().endswith("No server is running: start it with `make run`.")


# No BIND or PUBLIC_URL in the commands' environment: they find the server by its row.
UNSET = {"BIND": "", "PUBLIC_URL": ""}


def test_commands_follow_a_server_started_on_another_port(app, server_factory):
    database_url = app.config["SQLALCHEMY_DATABASE_URI"]
    server = server_factory(workers=1)  # on a free port, not 5000
    created = flask_command(database_url, "create-user", "fay", input="long enough\nlong enough\n", env_extra=UNSET)
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"Created admin 'fay'. Log in at {server.url}/login\n"
    sent = flask_command(database_url, "send-test-message", "--text", "found it", env_extra=UNSET)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("200 ")
    with app.app_context():
        assert db.session.scalar(sa.select(Message.text)) == "found it"

    server.stop()  # a clean shutdown deletes its row: the commands say so and fall back to BIND
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Server)) == 0
    created = flask_command(database_url, "create-user", "gus", input="long enough\nlong enough\n", env_extra=UNSET)
    assert created.returncode == 0, created.stderr
    assert created.stdout == (
        "Created agent 'gus'. No server is running: start it with `make run`, "
        "then log in at http://127.0.0.1:5000/login\n"
    )


def test_public_url_wins_over_the_running_servers_address(app, server_factory):
    server_factory(workers=1)
    created = flask_command(
        app.config["SQLALCHEMY_DATABASE_URI"],
        "create-user",
        "hal",
        input="long enough\nlong enough\n",
        env_extra={"BIND": "", "PUBLIC_URL": "https://inbox.example.com/"},
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout == "Created admin 'hal'. Log in at https://inbox.example.com/login\n"


def test_only_live_servers_count_the_newest_first(app):
    here, now = socket.gethostname(), clock.now()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a crashed server's pid: no longer running
    rows = [
        Server(host=here, pid=dead.pid, bind="127.0.0.1:5101", started_at=now, last_seen_at=now),
        Server(
            host="elsewhere",
            pid=1,
            bind="10.0.0.2:5102",
            started_at=now - timedelta(hours=1),
            last_seen_at=now - servers.LIVE_ELSEWHERE - timedelta(seconds=1),
        ),
    ]
    with app.app_context():
        db.session.add_all(rows)
        db.session.commit()
        assert servers.newest_live() is None
        assert servers.site_address(app.config) == servers.SiteAddress("http://127.0.0.1:5000", False)
        db.session.add(
            Server(
                host="elsewhere",
                pid=1,
                bind="0.0.0.0:5103",
                started_at=now - timedelta(minutes=1),
                last_seen_at=now - timedelta(minutes=1),
            )
        )
        db.session.commit()
        # Another host's server listening on every address is reached by that host's name.
        assert servers.site_address(app.config) == servers.SiteAddress("http://elsewhere:5103", True)
        db.session.add(
            Server(
                host="elsewhere",
                pid=2,
                bind="127.0.0.1:5105",
                public_url="https://inbox.example.org",
                started_at=now,
                last_seen_at=now - timedelta(seconds=30),
            )
        )
        db.session.commit()
        assert servers.site_address(app.config) == servers.SiteAddress("https://inbox.example.org", True)
        # A server starting on this host replaces the rows of this host's servers that are gone.
        servers.record("127.0.0.1:5104", "https://inbox.example.com")
        assert sorted(db.session.scalars(sa.select(Server.bind))) == [
            "0.0.0.0:5103",
            "10.0.0.2:5102",
            "127.0.0.1:5104",
            "127.0.0.1:5105",
        ]


def test_commands_on_a_database_without_tables_say_what_to_run(database_url):
    result = flask_command(database_url, "create-user", "ida", input="long enough\nlong enough\n")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: The database has no tables yet")
    assert "init-db" in result.stderr


def test_making_apps_leaves_each_command_wrapped_once(database_url):
    """Each app's factory wrapped the shared commands again: three apps, four layers."""
    from app.ops import cli
    from conftest import make_app

    def layers(command) -> int:
        found, function = 0, command.callback
        while function is not None:
            found += function.__code__.co_name == "run_explaining_database_errors"
            function = getattr(function, "__wrapped__", None)
        return found

    for _ in range(3):
        make_app(database_url)
    assert layers(cli.create_user) == layers(cli.purge) == 1
    # init-db makes the tables, and copy-db's trouble may be the other database: "run init-db"
    # would be the wrong advice for both.
    assert layers(cli.init_db) == layers(cli.copy_db) == 0


def test_local_secret_is_generated_once_when_none_is_configured(tmp_path, database_url):
    from app import config
    from conftest import make_app

    app = make_app(database_url, MESSENTE_SHARED_SECRET="")
    app.instance_path = str(tmp_path)
    result = app.test_cli_runner().invoke(args=["local-secret"])
    assert result.exit_code == 0 and "generated a local one" in result.output
    secret = config.read_instance_file(str(tmp_path), config.LOCAL_SECRET_FILE)
    assert len(secret) >= 32
    assert (tmp_path / config.LOCAL_SECRET_FILE).stat().st_mode & 0o077 == 0  # private to its owner
    with app.app_context():
        db.engine.dispose()


def test_the_database_files_are_private_to_their_owner(tmp_path):
    """Messages, password hashes and session tokens: mode 0600 under the usual umask 022."""
    path = tmp_path / "inbox.sqlite3"
    url = f"sqlite:///{path}"
    result = flask_command(url, "init-db", umask=0o022)
    assert result.returncode == 0, result.stderr
    assert path.stat().st_mode & 0o777 == 0o600

    app = make_app(url)
    body = body_for()
    assert app.test_client().post("/callbacks/inbound", data=body, headers=signed_headers(body)).status_code == 200
    with app.app_context():
        with db.engine.connect():  # while a connection is open, SQLite keeps -wal and -shm
            modes = {
                suffix: (tmp_path / f"inbox.sqlite3{suffix}").stat().st_mode & 0o777 for suffix in ("", "-wal", "-shm")
            }
        db.engine.dispose()
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


def test_commands_print_the_address_the_server_is_really_at(app, database_url):
    result = flask_command(
        database_url, "create-user", "erin", input="long enough\nlong enough\n", env_extra={"BIND": "0.0.0.0:8000"}
    )
    assert result.returncode == 0, result.stderr
    assert "log in at http://127.0.0.1:8000/login" in result.stdout
    public = flask_command(database_url, "send-test-message", env_extra={"PUBLIC_URL": "http://127.0.0.1:9/inbox/"})
    assert "Could not reach http://127.0.0.1:9/inbox/callbacks/inbound" in public.stderr


def test_send_test_message_can_send_a_delivery_report_for_the_newest_reply(app, user, server_factory):
    from app import replies
    from app.db.models import Message
    from conftest import conversation_of

    env = {
        "MESSENTE_API_USERNAME": "api-user",
        "MESSENTE_API_PASSWORD": "api-password",
        "MESSENTE_API_URL": "http://127.0.0.1:9/v1",
    }
    app.config.update(env)
    server = server_factory(workers=1, env=env)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["send-test-message", "--url", server.url]).exit_code == 0
    with app.app_context():
        conversation = conversation_of("+37255512345")
        reply_id = replies.queue_reply(conversation, "Aitäh!", "sms", None, 1, "t" * 16)
        replies.record(reply_id, conversation.id, "sent", omnimessage_id="omni-test")
    result = runner.invoke(args=["send-test-message", "--url", server.url, "--delivery-report", "DELIVRD"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == '200 {"status":"applied"}'
    with app.app_context():
        assert db.session.get(Message, reply_id).delivery == "DELIVRD"


# --- users when nobody can log in -------------------------------------------------------------


def roles(app) -> dict:
    with app.app_context():
        return {user.username: (user.role, user.disabled) for user in db.session.scalars(sa.select(User))}


def test_the_first_user_is_an_admin_and_later_ones_agents_unless_asked(app, runner):
    for args in (["create-user", "ann"], ["create-user", "ben"], ["create-user", "cid", "--admin"]):
        result = runner.invoke(args=args, input="long enough\nlong enough\n")
        assert result.exit_code == 0, result.output
    assert roles(app) == {"ann": ("admin", False), "ben": ("agent", False), "cid": ("admin", False)}
    assert runner.invoke(args=["list-users"]).output == "ann\tadmin\nben\tagent\ncid\tadmin\n"


def test_reset_password_prints_a_working_one_time_link(app, runner, user):
    result = runner.invoke(args=["reset-password", "alice"])
    assert result.exit_code == 0 and "it works once, for 24 hours" in result.output
    path = re.search(r"http://127\.0\.0\.1:5000(/set-password/\S+)", result.output).group(1)
    client = app.test_client()
    page = client.get(path)
    assert page.status_code == 200
    done = client.post(
        path, data={"password": "a fresh password", "confirm": "a fresh password", "csrf_token": csrf_token(page.text)}
    )
    assert done.status_code == 303
    assert AuthActions(app.test_client()).login(password="a fresh password").status_code == 302
    assert runner.invoke(args=["reset-password", "nobody"]).exit_code == 1


def test_disable_and_enable_user(app, runner, user):
    with app.app_context():
        add_user("bob", role="admin")
    session = AuthActions(app.test_client())
    session.login("bob")
    result = runner.invoke(args=["disable-user", "bob"])
    assert result.exit_code == 0 and "their sessions have ended" in result.output
    assert session.client.get("/account").status_code == 302
    assert roles(app)["bob"] == ("admin", True)
    assert runner.invoke(args=["list-users"]).output == "alice\tadmin\nbob\tadmin\tdisabled\n"
    assert runner.invoke(args=["enable-user", "bob"]).exit_code == 0
    assert session.login("bob").status_code == 302
    last = runner.invoke(args=["disable-user", "alice"])  # bob is an admin too: allowed
    assert last.exit_code == 0
    alone = runner.invoke(args=["disable-user", "bob"])
    assert alone.exit_code == 1 and "only admin" in alone.output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_server_starts_while_a_long_write_holds_the_database(app, server_factory):
    """A seed-demo's transaction can hold SQLite's write lock for minutes: the server stops waiting
    to record itself after the lock wait, serves, and says why commands won't find it."""
    with app.app_context(), write_transaction():
        db.session.execute(sa.update(ChangeCounter).values(value=ChangeCounter.value))  # the lock is taken
        server = server_factory(workers=1)
    assert "Could not record this server in the database" in server.output()
    assert "database is locked" in server.output()
