"""Users, password hashing and login throttling (state in the database, shared by all workers).

Throttling counts failed logins per (username, client address), so nobody can lock a person
out from elsewhere: after LOGIN_MAX_FAILURES failures the next attempt from that address
waits LOGIN_DELAY_SECONDS, and each further failure doubles the wait up to
LOGIN_MAX_DELAY_SECONDS. Failures across all usernames are also counted per address, which
stops one address from guessing through many names. An attempt is counted before its password
is checked (and forgiven if the password is right), so parallel guesses can't slip in
between a check and a count.
"""
import logging
import math
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, has_app_context

from . import clock
from .extensions import db
from .models import ADDRESS_LENGTH, USERNAME_LENGTH, LoginThrottle, User
from .unit_of_work import write_transaction

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

# Argon2id at OWASP's floor (m=19 MiB, t=2, p=1): each hash holds its memory for its whole run,
# so memory per process is this times PASSWORD_HASH_CONCURRENCY. Hashes made with other
# parameters are rehashed with these at the next successful login.
hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
log = logging.getLogger(__name__)
_dummy_hash: str | None = None

# Where attempts across usernames are counted: the row of an address with this username.
# No login has it: names are stripped and must not be empty.
ANY_USERNAME = ""
# Old rows deleted per attempt at most: each attempt adds at most two, so purging keeps up.
PURGE_BATCH = 100


class LoginLocked(Exception):
    def __init__(self, until: datetime):
        super().__init__(f"login locked until {until:%H:%M:%S} UTC")
        self.until = until


# --- bounded hashing --------------------------------------------------------------------

class _HashingThreads:
    """Hashes run on at most `bound` long-lived threads of this process; callers wait their turn.

    The bound bounds memory (19 MiB a hash at once). Long-lived threads keep it bounded after a
    flood too: glibc gives each thread that allocates a hash its own heap and keeps the freed
    19 MiB there, so hashing on every request thread would hold one such block per thread
    (measured: 32 parallel logins took a worker to 356 MiB that way, to 109 MiB this way).
    Keeps the peak it has seen (`peak`), so tests and operators can check the bound holds.
    """

    def __init__(self):
        self._guard = threading.Lock()
        self._bound = None
        self._pool = None
        self.running = 0
        self.peak = 0

    def _threads(self, bound: int) -> ThreadPoolExecutor:
        with self._guard:
            if bound != self._bound:  # set once per process in practice; tests change it
                if self._pool is not None:
                    self._pool.shutdown(wait=False)
                self._bound, self._pool = bound, ThreadPoolExecutor(bound, thread_name_prefix="argon2")
            return self._pool

    def run(self, function, *args):
        bound = current_app.config["PASSWORD_HASH_CONCURRENCY"] if has_app_context() else 2
        return self._threads(max(1, bound)).submit(self._counted, function, *args).result()

    def _counted(self, function, *args):
        with self._guard:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return function(*args)
        finally:
            with self._guard:
                self.running -= 1

    def reset_peak(self) -> None:
        with self._guard:
            self.peak = self.running


hashing = _HashingThreads()


def hash_password(password: str) -> str:
    return hashing.run(hasher.hash, password)


def _verify(stored: str, password: str) -> bool:
    return hashing.run(hasher.verify, stored, password)


# --- users and sessions -----------------------------------------------------------------

def create_user(username: str, password: str) -> User:
    """Add a user (flushed, not committed). Raises ValueError with a message for people."""
    username = username.strip()
    if not username or len(username) > USERNAME_LENGTH:
        raise ValueError(f"The username must be 1 to {USERNAME_LENGTH} characters.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"The password must be at most {MAX_PASSWORD_LENGTH} characters.")
    if db.session.scalar(db.select(User.id).where(User.username == username)) is not None:
        raise ValueError(f"A user named {username!r} already exists.")
    user = User(username=username, password_hash=hash_password(password),
                session_token=secrets.token_hex(16))
    db.session.add(user)
    db.session.flush()
    return user


def load_session_user(session_id: str) -> User | None:
    """The user a login cookie names, if its token is still current (not logged out since)."""
    user_id, _, token = session_id.partition(":")
    if not user_id.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not secrets.compare_digest(user.session_token, token):
        return None
    return user


def end_sessions(user: User) -> None:
    """Invalidate every cookie issued to this user (logout)."""
    with write_transaction():
        user.session_token = secrets.token_hex(16)


# --- logging in -------------------------------------------------------------------------

def authenticate(username: str, password: str, address: str | None) -> User | None:
    """The user if the password is right; None if not. Raises LoginLocked while throttled.

    `address` is the client's (the socket's, or the X-Forwarded-For hop PROXY_COUNT trusts).
    Unknown names are throttled and take as long to refuse as known ones, so neither
    the message, the lockout nor the timing tells whether an account exists.
    """
    key = username.strip()[:USERNAME_LENGTH]
    address = (address or "unknown")[:ADDRESS_LENGTH]
    now = clock.now()
    with write_transaction():
        refused_until, locks = _count_attempt(key, address, now)
    if refused_until is not None:
        raise LoginLocked(refused_until)

    user = db.session.scalar(db.select(User).where(User.username == key)) if key else None
    if _password_matches(user, password):
        # Slow on purpose: computed before taking the write lock.
        new_hash = hash_password(password) if hasher.check_needs_rehash(user.password_hash) else None
        with write_transaction():
            _forgive_attempt(key, address)
            if new_hash:
                user.password_hash = new_hash
        return user

    for message, *args in locks:
        log.warning(message, *args)
    return None


def _password_matches(user: User | None, password: str) -> bool:
    global _dummy_hash
    if user is None:
        _dummy_hash = _dummy_hash or hash_password(secrets.token_hex(8))
        stored = _dummy_hash
    else:
        stored = user.password_hash
    try:
        return _verify(stored, password) and user is not None
    except (VerificationError, InvalidHashError):
        return False


def _count_attempt(key: str, address: str, now: datetime):
    """Count one attempt as a failure, unless the name or address is throttled right now.

    Runs holding the write lock, so attempts are counted one at a time. Returns the time a
    refused attempt may be retried (None if counted), and the log lines for the locks this
    attempt will have set if its password turns out wrong.
    """
    config = current_app.config
    _purge(now)
    rows = {row.username: row for row in db.session.scalars(
        sa.select(LoginThrottle).where(LoginThrottle.address == address,
                                       LoginThrottle.username.in_({key, ANY_USERNAME})))}
    for row in rows.values():
        if row.expires_at <= now:  # stale: counts as no row at all
            row.failures, row.locked_until, row.expires_at = 0, None, now
    locked = [row.locked_until for row in rows.values() if row.locked_until and row.locked_until > now]
    if locked:
        return max(locked), []

    locks = []
    if key:
        row = rows.get(key) or _new_row(key, address, now)
        row.failures += 1
        if row.failures >= config["LOGIN_MAX_FAILURES"]:
            doublings = min(row.failures - config["LOGIN_MAX_FAILURES"], 32)
            delay = min(config["LOGIN_DELAY_SECONDS"] * 2 ** doublings, config["LOGIN_MAX_DELAY_SECONDS"])
            row.locked_until = now + timedelta(seconds=delay)
            locks.append(("login locked for %r from %s for %s s, until %s UTC, after %d failed "
                          "attempts", key, address, delay, row.locked_until, row.failures))
        row.expires_at = max(now + timedelta(seconds=config["LOGIN_FAILURE_MEMORY_SECONDS"]),
                             row.locked_until or now)

    row = rows.get(ANY_USERNAME)
    if row is None or row.failures == 0:  # a new window begins with this attempt
        row = row or _new_row(ANY_USERNAME, address, now)
        row.expires_at = now + timedelta(seconds=config["LOGIN_ADDRESS_WINDOW_SECONDS"])
    row.failures += 1
    if row.failures >= config["LOGIN_ADDRESS_MAX_FAILURES"]:
        row.locked_until = now + timedelta(seconds=config["LOGIN_ADDRESS_LOCKOUT_SECONDS"])
        row.expires_at = max(row.expires_at, row.locked_until)
        locks.append(("logins from %s locked until %s UTC after %d failed attempts across "
                      "usernames", address, row.locked_until, row.failures))
    return None, locks


def _new_row(username: str, address: str, now: datetime) -> LoginThrottle:
    row = LoginThrottle(username=username, address=address, failures=0, expires_at=now)
    db.session.add(row)
    return row


def _forgive_attempt(key: str, address: str) -> None:
    """The password was right: forget this name's failures from this address, and take this
    attempt off the address's count (its failures with other names still count)."""
    db.session.execute(sa.delete(LoginThrottle).where(
        LoginThrottle.username == key, LoginThrottle.address == address, LoginThrottle.username != ANY_USERNAME))
    row = db.session.scalar(sa.select(LoginThrottle).where(
        LoginThrottle.username == ANY_USERNAME, LoginThrottle.address == address))
    if row is None:
        return
    row.failures -= 1
    if row.failures <= 0:
        db.session.delete(row)
    elif row.failures < current_app.config["LOGIN_ADDRESS_MAX_FAILURES"]:
        row.locked_until = None  # set by this very attempt, if at all


def _purge(now: datetime) -> None:
    """Delete a batch of rows that no longer count (found by the index on `expires_at`)."""
    stale = (sa.select(LoginThrottle.id).where(LoginThrottle.expires_at <= now)
             .order_by(LoginThrottle.expires_at).limit(PURGE_BATCH))
    db.session.execute(sa.delete(LoginThrottle).where(LoginThrottle.id.in_(stale.scalar_subquery())),
                       execution_options={"synchronize_session": False})


def retry_after_seconds(until: datetime) -> int:
    """Whole seconds from now until a lock ends (at least 1)."""
    return max(1, math.ceil((until - clock.now()).total_seconds()))
