"""Commands for `flask --app app ...`, registered by the factory."""

import functools
import json
import secrets
import signal
import sys
import threading
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from typing import cast

import click
import flask_migrate
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import OperationalError, ProgrammingError
from werkzeug.local import LocalProxy

from app import audit, clock, config, replies
from app.accounts import users
from app.api import tokens
from app.callbacks import signing
from app.db.models import User
from app.db.unit_of_work import write_transaction
from app.extensions import db
from app.jobs import servers
from app.ops import copying, demo
from app.privacy import purge as retention_purge
from app.privacy import settings
from app.replies import delivery
from app.reports import rebuild


def init_app(app: Flask) -> None:
    for command in (
        init_db,
        create_user,
        create_token,
        list_users,
        reset_password,
        disable_user,
        enable_user,
        purge,
        send_test_message,
        local_secret,
        copy_db,
        seed_demo,
        worker,
        rebuild_reports,
    ):
        app.cli.add_command(command)


def one_line_database_errors(run):
    """A database without its tables, locked for too long or out of reach: one line, not a
    traceback. For the commands that use the app's database as it is: not init-db (which makes
    the tables) nor copy-db (whose problem may be the other database; it says which itself)."""

    @functools.wraps(run)
    def run_explaining_database_errors(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except (OperationalError, ProgrammingError) as exc:
            problem = str(exc.orig).strip().splitlines()[0]
            if "no such table" in problem or problem.startswith("relation") and "does not exist" in problem:
                raise click.ClickException(
                    f"The database has no tables yet, or not this version's ({problem}): run "
                    "`.venv/bin/flask --app app init-db` (`make run` does) first."
                ) from exc
            if isinstance(exc, ProgrammingError):
                raise
            if "locked" in problem:
                raise click.ClickException(
                    "The database stayed locked: another process is writing to it (a seed-demo, a purge?). "
                    "Try again when it is done."
                ) from exc
            raise click.ClickException(f"The database could not be used: {problem}") from exc

    return run_explaining_database_errors


@click.command("init-db")
@with_appcontext
def init_db():
    """Create or upgrade the database schema (safe to run again)."""
    flask_migrate.upgrade()
    click.echo("Database schema is up to date.")
    if db.session.scalar(db.select(User.id).limit(1)) is None:
        click.echo(
            "\nNo login yet. Create the first one (an admin, who adds everyone else in the app) with:\n"
            "    .venv/bin/flask --app app create-user YOUR_NAME\n"
            "Then, with the server running, send yourself a test message:\n"
            "    .venv/bin/flask --app app send-test-message --text 'Hello 👋'"
        )


@click.command("local-secret")
@with_appcontext
@one_line_database_errors
def local_secret():
    """Generate a shared secret in instance/ for a local try, unless one is configured."""
    if current_app.config["MESSENTE_SHARED_SECRETS"]:
        return
    config.write_instance_file(current_app.instance_path, config.LOCAL_SECRET_FILE, secrets.token_hex(24))
    click.echo(
        f"No MESSENTE_SHARED_SECRET set: generated a local one in instance/{config.LOCAL_SECRET_FILE} "
        "so that send-test-message works.\nFor real use, set MESSENTE_SHARED_SECRET to the Shared "
        "Secret from Messente's dashboard."
    )


def read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    # Piped: the same two lines a person would type, without echo games.
    first, second = sys.stdin.readline().rstrip("\r\n"), sys.stdin.readline().rstrip("\r\n")
    if first != second:
        raise click.ClickException("The two passwords do not match.")
    return first


@click.command("create-user")
@with_appcontext
@click.argument("username")
@click.option("--admin", is_flag=True, help="An admin (users, settings, audit trail). The first user always is.")
@one_line_database_errors
def create_user(username: str, admin: bool):
    """Create a login; asks for the password twice."""
    password = read_password()
    try:
        with write_transaction():
            user = users.create_user(username, password, admin=admin)
            audit.record("user_added", {"user": user.username, "role": user.role, "by": "command line"})
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    site = servers.site_address(current_app.config)
    if site.server_running or current_app.config["PUBLIC_URL"]:
        click.echo(f"Created {user.role} {user.username!r}. Log in at {site.url}/login")
    else:
        click.echo(f"Created {user.role} {user.username!r}. {servers.NO_SERVER}, then log in at {site.url}/login")


@click.command("create-token")
@with_appcontext
@click.argument("name")
@click.option("--scopes", default="read", show_default=True, help="Comma-separated: read, send, admin.")
@click.option("--expires-days", type=click.IntRange(1, 3650), default=None, help="Expires after this many days.")
@one_line_database_errors
def create_token(name: str, scopes: str, expires_days: int | None):
    """Make an API token (for scripted deployments); prints it alone on the last line.

    It is shown only here: only its hash is stored."""
    expires = clock.now() + timedelta(days=expires_days) if expires_days else None
    try:
        row, secret = tokens.create_token(name, tokens.parse_scopes(scopes), expires, by="command line")
    except tokens.TokenRefused as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created API token {row.name!r} ({row.scopes}); it is shown only now:", err=True)
    click.echo(secret)


@click.command("list-users")
@with_appcontext
@one_line_database_errors
def list_users():
    """List the logins: name, role, and whether disabled."""
    for user in db.session.scalars(db.select(User).order_by(User.username)):
        click.echo("\t".join([user.username, user.role] + (["disabled"] if user.disabled else [])))


def named_user(username: str) -> User:
    user = users.user_named(username)
    if user is None:
        raise click.ClickException(f"No user named {username!r}. See `list-users`.")
    return user


@click.command("reset-password")
@with_appcontext
@click.argument("username")
@one_line_database_errors
def reset_password(username: str):
    """Print a one-time link that sets a new password (for when nobody can log in)."""
    user = named_user(username)
    with write_transaction():
        token = users.issue_reset_link(user, clock.now())
        audit.record("password_reset", {"user": user.username, "by": "command line"})
    hours = current_app.config["RESET_LINK_SECONDS"] / 3600
    click.echo(
        f"Give {user.username} this link; it works once, for {hours:g} hours:\n"
        f"{servers.site_address(current_app.config).url}/set-password/{token}"
    )


@click.command("disable-user")
@with_appcontext
@click.argument("username")
@one_line_database_errors
def disable_user(username: str):
    """Disable a login and end its sessions at once."""
    user = named_user(username)
    try:
        with write_transaction():
            users.set_disabled(user, True)
            audit.record("user_disabled", {"user": user.username, "by": "command line"})
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Disabled {user.username!r}; their sessions have ended.")


@click.command("enable-user")
@with_appcontext
@click.argument("username")
@one_line_database_errors
def enable_user(username: str):
    """Re-enable a disabled login."""
    user = named_user(username)
    with write_transaction():
        users.set_disabled(user, False)
        audit.record("user_enabled", {"user": user.username, "by": "command line"})
    click.echo(f"Enabled {user.username!r}.")


@click.command("send-test-message")
@with_appcontext
@click.option("--url", help="The app's address. Default: PUBLIC_URL, else where the running server listens, else BIND.")
@click.option("--sender", default="+37255512345", show_default=True)
@click.option("--text", default="Tere! This is a test message 📨", show_default=True)
@click.option(
    "--channel", default="sms", show_default=True, type=click.Choice(["sms", "viber", "whatsapp", "telegram"])
)
@click.option(
    "--delivery-report",
    "report_status",
    type=click.Choice(sorted(delivery.STATUS_WORDS)),
    help="Instead of a message, send a delivery report with this status for the newest sent "
    "reply, signed with MESSENTE_API_PASSWORD as Messente signs them.",
)
@one_line_database_errors
def send_test_message(url: str | None, sender: str, text: str, channel: str, report_status: str | None):
    """Sign a realistic inbound message (or delivery report) and POST it to the app, as Messente would."""
    site = servers.site_address(current_app.config)
    # Where nobody said where to send it and no server is known to run, say so if it fails.
    hint = "" if url or site.server_running else f" {servers.NO_SERVER}."
    url = (url or site.url).rstrip("/")
    if report_status:
        password = current_app.config["MESSENTE_API_PASSWORD"]
        newest = replies.newest_sent_reply()
        if not password or newest is None:
            raise click.ClickException("A test delivery report needs MESSENTE_API_PASSWORD and a sent reply.")
        omnimessage_id, to, reply_channel = newest
        body = json.dumps(
            {
                "status": report_status,
                "err": 0 if report_status in ("DELIVRD", "SEEN", "ACK", "ACCEPTD") else 1,
                "error": None,
                "message_id": str(uuid.uuid4()),
                "omnimessage_id": omnimessage_id,
                "to": to,
                "channel": reply_channel,
                "sender": "sms-inbox test",
                "timestamp": clock.now().isoformat(timespec="microseconds"),
                "price_info": None,
            }
        ).encode()
        post_signed(f"{url}/callbacks/delivery", body, password, hint)
        return
    configured = current_app.config["MESSENTE_SHARED_SECRETS"]
    if not configured:
        raise click.ClickException("No shared secret: set MESSENTE_SHARED_SECRET or run `make run` once.")
    body = json.dumps(
        {
            "msg_id": str(uuid.uuid4()),
            "sub_msg_id": str(uuid.uuid4()),
            "channel": channel,
            "recipient": "+37250000000",
            "time": clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "text": text,
            "sender": sender,
        },
        ensure_ascii=False,
    ).encode()
    post_signed(f"{url}/callbacks/inbound", body, configured[0], hint)


def post_signed(url: str, body: bytes, key: str, hint: str = "") -> None:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Messente-Signature": signing.sign(body, key),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, answer = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.read().decode()
    except OSError as exc:  # URLError (refused, unknown host) or a timeout or reset while reading
        reason = getattr(exc, "reason", None) or exc
        raise click.ClickException(f"Could not reach {url}: {reason}.{hint or ' Is the server running?'}") from exc
    click.echo(f"{status} {answer.strip()}")
    if status != 200:
        sys.exit(1)


@click.command("copy-db")
@with_appcontext
@click.option(
    "--to",
    "target_url",
    required=True,
    metavar="URL",
    help="The database to copy into, e.g. postgresql://user:password@host/dbname.",
)
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1), help="Rows per transaction.")
def copy_db(target_url: str, batch_size: int):
    """Copy every row of this app's database to another one, e.g. from SQLite to PostgreSQL.

    Migrates the target first; keeps every id; resumes where an interrupted run stopped;
    verifies counts and checksums at the end (exit status 1 when they differ).
    """
    source = db.engine
    target = copying.open_database(target_url)
    try:
        copying.upgrade_schema(target)
        click.echo(f"Schema of {target.url.render_as_string(hide_password=True)} is up to date.")
        for table in copying.TABLES:
            with click.progressbar(
                length=copying.rows_to_copy(source, target, table), label=f"{table.name:<15}", show_pos=True
            ) as bar:
                for copied in copying.copy_table(source, target, table, batch_size):
                    bar.update(copied)
            click.echo(
                f"{table.name}: {bar.pos} rows copied, {copying.count_rows(target, table) - bar.pos} were already there"
            )
        copying.continue_numbering(source, target)
        copying.analyze(target)
        checks = copying.verify(source, target, batch_size)
    except OperationalError as exc:
        raise click.ClickException(f"{exc.orig}\nRun the same command again to continue where it stopped.") from exc
    finally:
        target.dispose()

    click.echo("\nVerification (rows and sha256 on both sides):")
    for check in checks:
        if check.matches:
            click.echo(f"  {check.table:<15} {check.source_rows:>9} rows  {check.source_sha256[:16]}  same")
        else:
            click.echo(
                f"  {check.table:<15} DIFFERENT: source {check.source_rows} rows "
                f"{check.source_sha256[:16]}, target {check.target_rows} rows "
                f"{check.target_sha256[:16]}"
            )
    different = [check.table for check in checks if not check.matches]
    if different:
        raise click.ClickException(
            f"The target differs from the source in: {', '.join(different)}. Copy into an empty "
            "database, with the app stopped so that nothing changes during the copy."
        )
    click.echo("Copy verified: every table holds the same rows on both sides.")


@click.command("seed-demo")
@with_appcontext
@click.option(
    "--messages", default=10_000, show_default=True, type=click.IntRange(min=1), help="How many messages to add."
)
@click.option(
    "--senders",
    default=500,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many new senders they come from (a few busy, most with a handful).",
)
@one_line_database_errors
def seed_demo(messages: int, senders: int):
    """Add realistic demo messages in bulk (over the last 60 days), to try the inbox at scale."""
    with click.progressbar(length=messages, label="Seeding demo messages") as bar:
        demo.seed(messages, senders, progress=bar.update)
    click.echo(f"Added {messages:,} messages from {min(senders, messages):,} senders.")


@click.command("rebuild-reports")
@with_appcontext
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    default=None,
    help="Recount from this UTC time on. Default: the oldest stored message or event.",
)
@one_line_database_errors
def rebuild_reports(since):
    """Recompute the reports' tallies (all but cost and parts) and conversation openings from
    stored messages and events, in one transaction."""
    result = rebuild.rebuild(since)
    if result.since is None:
        click.echo("Nothing stored to count.")
        return
    counted = ", ".join(f"{name} {count:,}" for name, count in sorted(result.counts.items())) or "nothing"
    click.echo(f"Recounted from {result.since:%Y-%m-%d %H:%M} UTC: {counted}; {result.openings:,} openings.")


@click.command("purge")
@with_appcontext
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option(
    "--batch-size",
    default=retention_purge.BATCH_SIZE,
    show_default=True,
    type=click.IntRange(min=1),
    help="Messages per transaction: callbacks wait at most one batch.",
)
@one_line_database_errors
def purge(yes: bool, dry_run: bool, batch_size: int):
    """Delete what is older than the retention settings now (the app also does it daily)."""
    days, audit_days, now = settings.days(), settings.audit_days(), clock.now()
    plan = retention_purge.purge(now, days, audit_days, dry_run=True)
    kept = f"older than {days} days" if days else "none (messages are kept for ever)"
    audit_kept = f"older than {audit_days} days" if audit_days else "none, kept for ever"
    click.echo(
        f"Messages to delete: {plan.messages:,} ({kept}); dead letters: {plan.dead_letters:,}; "
        f"audit events: {plan.audit_events:,} ({audit_kept})."
    )
    if dry_run:
        return
    if not yes:
        if sys.stdin.isatty():
            click.confirm("Delete them?", abort=True)
        elif sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise click.ClickException("Not confirmed: pipe `y` or pass --yes.")
    with click.progressbar(length=plan.messages, label="Deleting messages", show_pos=True) as bar:
        result = retention_purge.run_scheduled(force=True, batch_size=batch_size, progress=bar.update)
    if result is None:
        raise click.ClickException("Another process is purging right now; try again in a few minutes.")
    click.echo(
        f"Deleted {result.messages:,} messages ({result.conversations_removed:,} conversations left "
        f"empty and removed), {result.dead_letters:,} dead letters, {result.audit_events:,} audit "
        f"events, {result.login_rows + result.sessions:,} old login rows."
    )


@click.command("worker")
@with_appcontext
@one_line_database_errors
def worker():
    """Run background jobs (replies, blacklist sync, the daily purge) in this process until stopped.

    Every server process runs them already; this is for a deployment that wants them elsewhere.
    """
    from app.jobs import runner

    # Flask types current_app as the app itself; it is the proxy that finds it.
    app = cast("LocalProxy[Flask]", current_app)._get_current_object()
    server_id = servers.record_worker()
    stopped = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopped.set())
    click.echo(f"Running jobs with {app.config['JOB_THREADS']} threads; Ctrl-C stops.")
    runner.start(app, server_id)
    try:
        stopped.wait()
    finally:
        click.echo("Stopping: waiting for the jobs running now to finish.")
        runner.stop(app, timeout=app.config["MESSENTE_CONNECT_TIMEOUT"] + app.config["MESSENTE_READ_TIMEOUT"] + 5)
        servers.remove(server_id)
