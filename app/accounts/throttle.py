"""Logging in: passwords and two-factor codes checked under login throttling (state in the
database, shared by all workers), the device cookies it relies on, and unlocking.

Throttling follows OWASP's device cookies. A browser that logs in gets a signed cookie naming
the account and a random nonce (`device_cookie`). An attempt that brings a valid one for the
name it tries is counted against that device only: after LOGIN_MAX_FAILURES failures the device
is locked out, and its next attempts count as an unknown device's. Attempts from unknown devices
are counted three ways: per (username, client address), so nobody can lock a person out from
elsewhere; per address across usernames, which stops one address guessing through many names;
and per username across addresses (LOGIN_ACCOUNT_MAX_FAILURES), which slows guessing one account
from many addresses, for unknown devices only: a browser that logged in before keeps working.
Each count, at its limit, makes the next attempt wait LOGIN_DELAY_SECONDS, doubling with each
further failure up to LOGIN_MAX_DELAY_SECONDS (the address count: a fixed lockout). An attempt
is counted before its password is checked (and forgiven if the password is right), so parallel
guesses can't slip in between a check and a count. The two-factor code step is counted the same.
"""

import hashlib
import hmac
import logging
import math
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadData, URLSafeTimedSerializer

from app import audit, clock
from app.accounts import passwords, two_factor
from app.db.models import ADDRESS_LENGTH, USERNAME_LENGTH, LoginThrottle, User
from app.db.unit_of_work import write_transaction
from app.extensions import db

log = logging.getLogger(__name__)

# Where attempts across usernames are counted: the row of an address with this username.
# No login has it: names are stripped and must not be empty.
ANY_USERNAME = ""
# Where a username's attempts from unknown devices are counted, whatever the address.
ANY_ADDRESS = ""
# Old rows deleted per attempt at most: each attempt adds at most two, so purging keeps up.
PURGE_BATCH = 100


class LoginLocked(Exception):
    """`kind` says what is locked: "address" (logins from here) or "account" (this username
    from unknown devices)."""

    def __init__(self, until: datetime, kind: str = "address"):
        super().__init__(f"login locked until {until:%H:%M:%S} UTC")
        self.until = until
        self.kind = kind


# --- unlocking throttled logins ---------------------------------------------------------


def locked_logins(now: datetime) -> list[LoginThrottle]:
    return list(
        db.session.scalars(
            db.select(LoginThrottle).where(LoginThrottle.locked_until > now).order_by(LoginThrottle.locked_until.desc())
        )
    )


def unlock(throttle_id: int) -> LoginThrottle | None:
    """An admin forgets one row's failures (audited): its name or address may log in now."""
    with write_transaction():
        row = db.session.get(LoginThrottle, throttle_id)
        if row is not None:
            db.session.delete(row)
            audit.record("login_unlocked", {"username": row.username or "(any name)", "from": row.address})
    return row


# --- device cookies ----------------------------------------------------------------------


def device_cookie_name(username: str) -> str:
    """One cookie per account, so people sharing a browser each keep theirs. Named by a keyed
    hash of the username: the name alone does not say whose it is."""
    key = username.strip()[:USERNAME_LENGTH]
    digest = hmac.new(
        current_app.config["SECRET_KEY"].encode(), b"device cookie " + key.encode(), hashlib.sha256
    ).hexdigest()
    return f"device_{digest[:16]}"


def _device_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="login device")


def new_device_cookie(username: str) -> str:
    """The value of a new device cookie: signed (username, random nonce), as OWASP describes."""
    return _device_signer().dumps({"user": username, "nonce": secrets.token_urlsafe(16)})


def device_of(username: str, cookie: str | None) -> str | None:
    """The device (its nonce's sha256) if `cookie` is a valid, unexpired device cookie for this
    username; None for an unknown device."""
    if not cookie:
        return None
    try:
        data = _device_signer().loads(cookie, max_age=current_app.config["DEVICE_COOKIE_SECONDS"])
    except BadData:
        return None
    if (
        not isinstance(data, dict)
        or data.get("user") != username.strip()[:USERNAME_LENGTH]
        or not isinstance(data.get("nonce"), str)
    ):
        return None
    return passwords.token_hash(data["nonce"])


# --- logging in -------------------------------------------------------------------------


def authenticate(username: str, password: str, address: str | None, device: str | None = None) -> User | None:
    """The user if the password is right; None if not. Raises LoginLocked while throttled.

    `address` is the client's (the socket's, or the X-Forwarded-For hop PROXY_COUNT trusts);
    `device` what `device_of` found in the request's device cookie for this name.
    Unknown names are throttled and take as long to refuse as known ones, so neither
    the message, the lockout nor the timing tells whether an account exists.
    """
    key = username.strip()[:USERNAME_LENGTH]
    user = db.session.scalar(db.select(User).where(User.username == key)) if key else None

    def right_password() -> bool:
        # Verified first whoever asks: an unknown name takes as long to refuse as a known one.
        return passwords.password_matches(user, password) and user is not None and not user.disabled

    # With a code step to come, the password's success forgives only itself: code guesses
    # made between right passwords still add up.
    if not _throttled_check(key, address, device, right_password, complete=not (user and user.totp_secret)):
        return None
    assert user is not None  # the password was right
    if passwords.hasher.check_needs_rehash(user.password_hash):
        new_hash = passwords.hash_password(password)  # slow on purpose: computed before taking the write lock
        with write_transaction():
            user.password_hash = new_hash
    return user


def check_second_factor(user: User, code: str, address: str | None, device: str | None) -> str | None:
    """The login's second step: "code" or "backup" for the kind of code that was right, None if
    wrong. Throttled with the password attempts of the same name, address and device. A backup
    code is spent in one transaction with its audit event."""
    used = []

    def right_code() -> bool:
        with write_transaction():
            used.append(two_factor.use_code(user, code))
            if used[-1] == "backup":
                audit.record(
                    "backup_code_used",
                    {"user": user.username, "left": two_factor.backup_codes_left(user)},
                    username=user.username,
                )
        return used[-1] is not None

    if not _throttled_check(user.username, address, device, right_code):
        return None
    return used[-1]


def _throttled_check(key: str, address: str | None, device: str | None, check, complete: bool = True) -> bool:
    """Count an attempt, run `check` (True when the password or code is right), forgive a right
    one (`complete`: a whole login, which forgets earlier failures too); log and audit the locks
    a wrong one sets. Raises LoginLocked while throttled."""
    address = (address or "unknown")[:ADDRESS_LENGTH]
    now = clock.now()
    with write_transaction():
        refused, device, locks = _count_attempt(key, address, device, now)
    if refused is not None:
        raise refused
    if check():
        with write_transaction():
            _forgive_attempt(key, address, device, complete)
        return True
    for message, *args in locks:
        log.warning(message, *args)
        audit.record("lockout", {"reason": message % tuple(args)}, username=None, address=address)
    return False


def confirm_identity(user: User, code_or_password: str, address: str | None) -> bool:
    """A logged-in person's current two-factor code, backup code or password, before changing
    their two-factor sign-in. Throttled as logins are (a stolen session must not guess)."""

    def right() -> bool:
        if two_factor.use_code(user, code_or_password) is not None:
            return True
        return passwords.password_matches(user, code_or_password)

    return _throttled_check(user.username, address, None, right)


def _count_attempt(key: str, address: str, device: str | None, now: datetime):
    """Count one attempt as a failure, unless it is throttled right now.

    Runs holding the write lock, so attempts are counted one at a time. Returns the LoginLocked
    to raise (None if counted), the device the attempt counts as (None: an unknown device), and
    the log lines for the locks this attempt will have set if it turns out wrong.
    """
    config = current_app.config
    _purge(now)
    if device is not None and key:
        row = _fresh(
            db.session.scalar(
                sa.select(LoginThrottle).where(LoginThrottle.username == key, LoginThrottle.address == device)
            ),
            now,
        )
        if row is None or not (row.locked_until and row.locked_until > now):
            row = row or _new_row(key, device, now, kind="device")
            lock = _count_failure(row, config["LOGIN_MAX_FAILURES"], now)
            locks = (
                []
                if lock is None
                else [
                    (
                        "login locked for %r on one of its devices for %s s, until %s UTC, after %d failed attempts",
                        key,
                        *lock,
                    )
                ]
            )
            return None, device, locks
        # A locked-out device cookie counts as no device cookie: the unknown devices' limits apply.

    rows = {
        (row.username, row.address): row
        for row in db.session.scalars(
            sa.select(LoginThrottle).where(
                sa.or_(
                    sa.and_(LoginThrottle.address == address, LoginThrottle.username.in_({key, ANY_USERNAME})),
                    sa.and_(LoginThrottle.username == key, LoginThrottle.address == ANY_ADDRESS),
                )
            )
        )
    }
    for row in rows.values():
        _fresh(row, now)
    locked = [(row.locked_until, row) for row in rows.values() if row.locked_until and row.locked_until > now]
    if locked:
        until, last = max(locked, key=lambda pair: pair[0])
        return LoginLocked(until, "account" if last.kind == "account" else "address"), None, []

    locks = []
    if key:
        row = rows.get((key, address)) or _new_row(key, address, now)
        lock = _count_failure(row, config["LOGIN_MAX_FAILURES"], now)
        if lock is not None:
            locks.append(
                ("login locked for %r from %s for %s s, until %s UTC, after %d failed attempts", key, address, *lock)
            )
        row = rows.get((key, ANY_ADDRESS)) or _new_row(key, ANY_ADDRESS, now, kind="account")
        lock = _count_failure(row, config["LOGIN_ACCOUNT_MAX_FAILURES"], now)
        if lock is not None:
            locks.append(
                (
                    "login locked for %r from unknown devices for %s s, until %s UTC, after %d "
                    "failed attempts from any address",
                    key,
                    *lock,
                )
            )

    row = rows.get((ANY_USERNAME, address))
    if row is None or row.failures == 0:  # a new window begins with this attempt
        row = row or _new_row(ANY_USERNAME, address, now)
        row.expires_at = now + timedelta(seconds=config["LOGIN_ADDRESS_WINDOW_SECONDS"])
    row.failures += 1
    if row.failures >= config["LOGIN_ADDRESS_MAX_FAILURES"]:
        row.locked_until = now + timedelta(seconds=config["LOGIN_ADDRESS_LOCKOUT_SECONDS"])
        row.expires_at = max(row.expires_at, row.locked_until)
        locks.append(
            (
                "logins from %s locked until %s UTC after %d failed attempts across usernames",
                address,
                row.locked_until,
                row.failures,
            )
        )
    return None, None, locks


def _fresh(row: LoginThrottle | None, now: datetime) -> LoginThrottle | None:
    if row is not None and row.expires_at <= now:  # stale: counts as no row at all
        row.failures, row.locked_until, row.expires_at = 0, None, now
    return row


def _count_failure(row: LoginThrottle, limit: int, now: datetime):
    """One more failure on a row; from `limit` on, a delay doubling from LOGIN_DELAY_SECONDS.
    Returns (delay, until, failures) when this failure locks the row."""
    config = current_app.config
    row.failures += 1
    lock = None
    if row.failures >= limit:
        doublings = min(row.failures - limit, 32)
        delay = min(config["LOGIN_DELAY_SECONDS"] * 2**doublings, config["LOGIN_MAX_DELAY_SECONDS"])
        row.locked_until = now + timedelta(seconds=delay)
        lock = (delay, row.locked_until, row.failures)
    row.expires_at = max(now + timedelta(seconds=config["LOGIN_FAILURE_MEMORY_SECONDS"]), row.locked_until or now)
    return lock


def _new_row(username: str, address: str, now: datetime, kind: str = "address") -> LoginThrottle:
    row = LoginThrottle(username=username, address=address, failures=0, expires_at=now, kind=kind)
    db.session.add(row)
    return row


def _forgive_attempt(key: str, address: str, device: str | None, complete: bool) -> None:
    """The password (or code) was right. A whole login forgets this device's failures (from a
    known device) or this name's from this address (from an unknown one); else (a password with
    a code to come) only this attempt is taken back. The address's and the account's counts
    lose this attempt only: their other failures still count."""
    if device is not None:
        _take_back(key, device, everything=complete)
        return
    _take_back(key, address, everything=complete)
    _take_back(ANY_USERNAME, address)
    _take_back(key, ANY_ADDRESS)


def _take_back(username: str, address: str, everything: bool = False) -> None:
    row = db.session.scalar(
        sa.select(LoginThrottle).where(LoginThrottle.username == username, LoginThrottle.address == address)
    )
    if row is None:
        return
    row.failures -= 1
    if everything or row.failures <= 0:
        db.session.delete(row)
    else:
        row.locked_until = None  # the row was not locked before this attempt: any lock is its own


def _purge(now: datetime) -> None:
    """Delete a batch of rows that no longer count (found by the index on `expires_at`)."""
    stale = (
        sa.select(LoginThrottle.id)
        .where(LoginThrottle.expires_at <= now)
        .order_by(LoginThrottle.expires_at)
        .limit(PURGE_BATCH)
    )
    db.session.execute(
        sa.delete(LoginThrottle).where(LoginThrottle.id.in_(stale.scalar_subquery())),
        execution_options={"synchronize_session": False},
    )


def retry_after_seconds(until: datetime) -> int:
    """Whole seconds from now until a lock ends (at least 1)."""
    return max(1, math.ceil((until - clock.now()).total_seconds()))
