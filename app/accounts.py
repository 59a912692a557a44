"""Users, password hashing and login throttling (state in the database, shared by all workers)."""
import logging
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from .extensions import begin_write, db, upsert
from .ingest import utcnow
from .models import USERNAME_LENGTH, LoginThrottle, User

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

# Argon2id with argon2-cffi's RFC 9106 "low memory" profile (t=3, m=64 MiB, p=4),
# above OWASP's minimum for Argon2id (m=19 MiB, t=2, p=1).
hasher = PasswordHasher()
log = logging.getLogger(__name__)
_dummy_hash: str | None = None


class LoginLocked(Exception):
    def __init__(self, until: datetime):
        super().__init__(f"login locked until {until:%H:%M} UTC")
        self.until = until


def hash_password(password: str) -> str:
    return hasher.hash(password)


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
    begin_write()
    user.session_token = secrets.token_hex(16)


def authenticate(username: str, password: str) -> User | None:
    """The user if the password is right; None if not. Raises LoginLocked while throttled.

    Unknown names are throttled and take as long to refuse as known ones, so neither
    the message, the lockout nor the timing tells whether an account exists.
    """
    key = username.strip()[:USERNAME_LENGTH]
    now = utcnow()
    throttle = db.session.get(LoginThrottle, key)
    if throttle and throttle.locked_until and throttle.locked_until > now:
        raise LoginLocked(throttle.locked_until)

    user = db.session.scalar(db.select(User).where(User.username == key))
    if _password_matches(user, password):
        if throttle:
            begin_write()
            db.session.execute(sa.delete(LoginThrottle).where(LoginThrottle.username == key))
        if hasher.check_needs_rehash(user.password_hash):
            password_hash = hash_password(password)  # slow on purpose: not while holding the lock
            begin_write()
            user.password_hash = password_hash
        return user

    _record_failure(key, now)
    return None


def _password_matches(user: User | None, password: str) -> bool:
    global _dummy_hash
    if user is None:
        _dummy_hash = _dummy_hash or hash_password(secrets.token_hex(8))
        stored = _dummy_hash
    else:
        stored = user.password_hash
    try:
        return hasher.verify(stored, password) and user is not None
    except (VerificationError, InvalidHashError):
        return False


def _record_failure(key: str, now: datetime) -> None:
    limit = current_app.config["LOGIN_MAX_FAILURES"]
    begin_write()
    insert = upsert(LoginThrottle).values(username=key, failures=1, locked_until=None)
    failures = db.session.scalar(
        insert.on_conflict_do_update(
            index_elements=["username"],
            set_={"failures": LoginThrottle.failures + 1},
        ).returning(LoginThrottle.failures)
    )
    if failures >= limit:
        until = now + timedelta(seconds=current_app.config["LOGIN_LOCKOUT_SECONDS"])
        db.session.execute(
            sa.update(LoginThrottle)
            .where(LoginThrottle.username == key)
            .values(failures=0, locked_until=until)
        )
        log.warning("login locked for %r until %s UTC after %d failed attempts", key, until, failures)
