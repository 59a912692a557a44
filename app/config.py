"""Settings: defaults here, then `instance/config.py`, then environment variables.

Secrets are read from configuration only; nothing in this module logs them.
"""

import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from app.extensions import WRITE_LOCK_WAIT_SECONDS

MAX_CALLBACK_BYTES = 64 * 1024

# Written by `flask local-secret` (run by `make run`) for a local try without a Messente account.
LOCAL_SECRET_FILE = "messente-shared-secret"
SECRET_KEY_FILE = "secret-key"


def defaults(instance_path: str) -> dict:
    return {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{Path(instance_path) / 'sms-inbox.sqlite3'}",
        "MESSENTE_SHARED_SECRET": "",
        # Sending (replies, blacklist): Omnichannel API address and the API key's username and
        # password (dashboard: API keys); without both, nothing is sent. Senders per channel.
        "MESSENTE_API_URL": "https://api.messente.com/v1",
        "MESSENTE_API_USERNAME": "",
        "MESSENTE_API_PASSWORD": "",
        "MESSENTE_SMS_SENDER": "",
        "MESSENTE_VIBER_SENDER": "",
        "MESSENTE_WHATSAPP_SENDER": "",
        "MAX_CONTENT_LENGTH": MAX_CALLBACK_BYTES,
        # Seconds a writer waits for the database's write lock before it gives up ("database is
        # locked": pages answer 503, a callback 503 that Messente retries).
        "WRITE_LOCK_WAIT_SECONDS": WRITE_LOCK_WAIT_SECONDS,
        "PAGE_SIZE": 50,
        "POLL_SECONDS": 4,
        # Where `make run` serves, and the address people and Messente reach it at, if another.
        "BIND": "127.0.0.1:5000",
        "PUBLIC_URL": "",
        # Host names requests may name (a list); None: derived from PUBLIC_URL and BIND (trusted_hosts).
        "TRUSTED_HOSTS": None,
        # A login ends after this long without a page view (polls don't count) ...
        "IDLE_TIMEOUT_SECONDS": 8 * 60 * 60,
        # ... and this long after it began, however busy: a stolen cookie stops working.
        "SESSION_LIFETIME_SECONDS": 7 * 24 * 60 * 60,
        # Login throttling, per (username, client address): failures allowed before delays
        # begin; then the delay doubles from LOGIN_DELAY_SECONDS up to LOGIN_MAX_DELAY_SECONDS.
        # Failures are forgotten LOGIN_FAILURE_MEMORY_SECONDS after the last one.
        "LOGIN_MAX_FAILURES": 5,
        "LOGIN_DELAY_SECONDS": 1,
        "LOGIN_MAX_DELAY_SECONDS": 15 * 60,
        "LOGIN_FAILURE_MEMORY_SECONDS": 24 * 60 * 60,
        # Per username from unknown devices (no valid device cookie for it), whatever the address:
        # failures allowed before the same doubling delays begin for unknown devices only. A
        # browser that logged in before (its device cookie) is counted on its own instead.
        "LOGIN_ACCOUNT_MAX_FAILURES": 10,
        # How long a device cookie (given at each login) keeps a browser known.
        "DEVICE_COOKIE_SECONDS": 365 * 24 * 60 * 60,
        # How long the two-factor code step waits after the password before it starts over.
        "LOGIN_CODE_SECONDS": 5 * 60,
        # Per client address, whatever the usernames: this many failures within the window
        # refuse every login from that address for LOGIN_ADDRESS_LOCKOUT_SECONDS.
        "LOGIN_ADDRESS_MAX_FAILURES": 50,
        "LOGIN_ADDRESS_WINDOW_SECONDS": 15 * 60,
        "LOGIN_ADDRESS_LOCKOUT_SECONDS": 15 * 60,
        # Argon2 hashes computed at once per process (each takes 19 MiB and a core for a while).
        "PASSWORD_HASH_CONCURRENCY": 2,
        # How long a one-time link to set a password works (an admin passes it on by hand).
        "RESET_LINK_SECONDS": 24 * 60 * 60,
        # Days to keep messages (None: for ever; an admin can change it in the app), and the audit trail.
        "RETENTION_DAYS": None,
        "AUDIT_RETENTION_DAYS": 365,
        # The team's time zone (app/team), until an admin picks one in the app; empty: the server's.
        "TEAM_TIME_ZONE": "",
        # New messages: the country a number typed without its country code is read in (ISO
        # 3166, e.g. EE), until an admin picks one in the app; empty: a number needs its code.
        "DEFAULT_REGION": "",
        # The currency of the Messente account (ISO 4217), which delivery reports' prices are in,
        # until an admin picks one in the app (app/team/currency.py).
        "CURRENCY": "EUR",
        # A scheduled message whose time passed more than this many hours ago (the app was not
        # running) is not sent: it is marked missed for a person to send or cancel.
        "SCHEDULED_GRACE_HOURS": 12,
        # Number of reverse proxies in front of the app whose X-Forwarded-* headers we trust.
        "PROXY_COUNT": 0,
        # Replies: also put opted-out numbers on Messente's account-wide blacklist (it covers
        # every message the account sends, one-time passwords included: off unless asked for).
        "MESSENTE_BLACKLIST_SYNC": False,
        # Messente allows 150 requests/s per IP: every process and instance sharing the database
        # together starts at most this many calls a second (one budget, app/jobs/rate_budget.py).
        "MESSENTE_REQUESTS_PER_SECOND": 120,
        # Threads per process running background jobs (replies among them), so a slow API call
        # doesn't hold up the next reply.
        "JOB_THREADS": 4,
        # A runner looks for jobs other processes enqueued at least this often (its own at once).
        "JOBS_POLL_SECONDS": 2.0,
        # A reply whose send never reached Messente (no connection, 429) is tried again with
        # backoff for this long before it is shown failed.
        "REPLY_RETRY_SECONDS": 600,
        # Messente's client has no timeouts of its own: seconds to connect, and to wait for the answer.
        "MESSENTE_CONNECT_TIMEOUT": 5.0,
        "MESSENTE_READ_TIMEOUT": 15.0,
        # /api/v1: requests per minute per token, every process and instance together (a 429 past it).
        "API_RATE_LIMIT": 600,
        # Webhooks (app/webhooks/): networks besides the public internet that webhook URLs may
        # reach (CIDRs, comma-separated; plain http is allowed to them), how long events are kept,
        # and the timeouts of each delivery.
        "WEBHOOKS_ALLOWED_NETWORKS": "",
        "WEBHOOK_EVENT_RETENTION_DAYS": 7,
        "WEBHOOK_CONNECT_TIMEOUT": 5.0,
        "WEBHOOK_READ_TIMEOUT": 10.0,
        # An event is tried again for this long; an endpoint none of whose attempts succeeded for
        # the second is turned off (admins see it on the admin pages); a rotated secret still
        # signs deliveries for the third.
        "WEBHOOK_RETRY_HOURS": 72,
        "WEBHOOK_DISABLE_AFTER_HOURS": 120,
        "WEBHOOK_SECRET_OVERLAP_HOURS": 24,
        # Seconds between a change and the job that hands its event to the endpoints: the changes
        # of a burst share one (fewer, larger runs; less write load beside the callbacks).
        "WEBHOOK_DISPATCH_SECONDS": 1.0,
        # Endpoints whose deliveries run at once in each process (of its JOB_THREADS): each run
        # keeps a thread busy with Python, which the process's requests wait for. With 100
        # endpoints, two runs at once per process made callbacks' p99 100 ms slower, one 20 ms.
        "WEBHOOK_DELIVERY_THREADS": 1,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": False,
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session does
    }


def from_environment(environ=os.environ) -> dict:
    """The settings a deployment gives as environment variables."""
    found = {}
    if environ.get("MESSENTE_SHARED_SECRET"):
        found["MESSENTE_SHARED_SECRET"] = environ["MESSENTE_SHARED_SECRET"]
    for name in (
        "MESSENTE_API_URL",
        "MESSENTE_API_USERNAME",
        "MESSENTE_API_PASSWORD",
        "MESSENTE_SMS_SENDER",
        "MESSENTE_VIBER_SENDER",
        "MESSENTE_WHATSAPP_SENDER",
    ):
        if environ.get(name):
            found[name] = environ[name]
    if environ.get("DATABASE_URL"):
        found["SQLALCHEMY_DATABASE_URI"] = database_url(environ["DATABASE_URL"])
    if environ.get("SECRET_KEY"):
        found["SECRET_KEY"] = environ["SECRET_KEY"]
    if environ.get("SESSION_COOKIE_SECURE"):
        found["SESSION_COOKIE_SECURE"] = environ["SESSION_COOKIE_SECURE"].lower() in ("1", "true", "yes")
    if environ.get("PROXY_COUNT"):
        found["PROXY_COUNT"] = int(environ["PROXY_COUNT"])
    if environ.get("MESSENTE_BLACKLIST_SYNC"):
        found["MESSENTE_BLACKLIST_SYNC"] = environ["MESSENTE_BLACKLIST_SYNC"].lower() in ("1", "true", "yes")
    for name in ("BIND", "PUBLIC_URL", "TEAM_TIME_ZONE", "DEFAULT_REGION", "CURRENCY", "WEBHOOKS_ALLOWED_NETWORKS"):
        if environ.get(name):
            found[name] = environ[name]
    if environ.get("TRUSTED_HOSTS"):
        found["TRUSTED_HOSTS"] = [host.strip() for host in environ["TRUSTED_HOSTS"].split(",") if host.strip()]
    for name in (
        "IDLE_TIMEOUT_SECONDS",
        "SESSION_LIFETIME_SECONDS",
        "JOB_THREADS",
        "REPLY_RETRY_SECONDS",
        "RETENTION_DAYS",
        "AUDIT_RETENTION_DAYS",
        "SCHEDULED_GRACE_HOURS",
        "API_RATE_LIMIT",
        "WEBHOOK_EVENT_RETENTION_DAYS",
        "WEBHOOK_DELIVERY_THREADS",
    ):
        if environ.get(name):
            found[name] = int(environ[name])
    for name in (
        "MESSENTE_CONNECT_TIMEOUT",
        "MESSENTE_READ_TIMEOUT",
        "MESSENTE_REQUESTS_PER_SECOND",
        "JOBS_POLL_SECONDS",
    ):
        if environ.get(name):
            found[name] = float(environ[name])
    return found


def site_url(settings) -> str:
    """The app's address for links printed by commands: PUBLIC_URL, else where it serves."""
    if settings["PUBLIC_URL"]:
        return settings["PUBLIC_URL"].rstrip("/")
    host, _, port = settings["BIND"].rpartition(":")
    return f"http://{'127.0.0.1' if host in ('', '0.0.0.0', '[::]') else host}:{port}"


LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("", "0.0.0.0", "::", "[::]")


def trusted_hosts(settings) -> list[str] | None:
    """The host names requests may give (Flask's TRUSTED_HOSTS; others get 400), when the app knows
    them: PUBLIC_URL's (with BIND's, and the loopback names so local checks still work), or, with
    no PUBLIC_URL and no proxy in front, the loopback names when BIND is a loopback address.
    Otherwise None (any host): the name people use is not known. Links never come from the
    request's host either way (`site_url`)."""
    bind_host = settings["BIND"].rpartition(":")[0].strip("[]")
    if settings["PUBLIC_URL"]:
        hosts = [urlsplit(settings["PUBLIC_URL"]).hostname, *LOOPBACK]
        if bind_host not in WILDCARD:
            hosts.append(bind_host)
        return list(dict.fromkeys(host for host in hosts if host))
    if bind_host in LOOPBACK and not settings.get("PROXY_COUNT"):
        return list(LOOPBACK)
    return None


def database_url(url: str) -> str:
    """Accept the URLs hosting providers hand out and use psycopg 3 for PostgreSQL."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def shared_secrets(value) -> list[str]:
    """One secret, or several comma-separated (or a list) while rotating."""
    if isinstance(value, str):
        value = value.split(",")
    return [secret.strip() for secret in value or [] if secret.strip()]


def read_instance_file(instance_path: str, name: str) -> str | None:
    path = Path(instance_path) / name
    return path.read_text().strip() if path.exists() else None


def write_instance_file(instance_path: str, name: str, value: str) -> None:
    """Create a private file in instance/ (mode 0600) holding one generated secret;
    FileExistsError if there is one already.

    Written whole under another name, then linked into place: a worker starting at the same
    moment never reads the file empty (and takes an empty SECRET_KEY)."""
    directory = Path(instance_path)
    directory.mkdir(parents=True, exist_ok=True)
    fd, written = tempfile.mkstemp(dir=directory, prefix=f".{name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            file.write(value + "\n")
        try:
            os.link(written, directory / name)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: created in place, as exclusively
            with os.fdopen(os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                file.write(value + "\n")
    finally:
        os.unlink(written)


def persistent_secret_key(instance_path: str) -> str:
    """Generated once and kept in instance/, so sessions survive restarts."""
    key = read_instance_file(instance_path, SECRET_KEY_FILE)
    if key is not None:
        return key
    key = secrets.token_hex(32)
    try:
        write_instance_file(instance_path, SECRET_KEY_FILE, key)
    except FileExistsError:  # another worker wrote it first: all of them use that one
        return (Path(instance_path) / SECRET_KEY_FILE).read_text().strip()
    return key
