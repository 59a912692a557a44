"""Two-factor sign-in: TOTP codes (RFC 6238, as authenticator apps make them) and backup codes.

A person turns it on from their account page: a new key, shown as a QR code and as text,
takes effect once a code made from it is entered. Each code is accepted once: the time step of
the last one used is stored, and only later steps count. Ten backup codes are shown once and
stored as sha256 only; each works once. An admin can require two-factor sign-in for everyone
(a Setting) and reset it for a person who lost their phone.
"""

import hashlib
import hmac
import secrets
from datetime import UTC

import pyotp
import segno
import sqlalchemy as sa
from markupsafe import Markup

from app import audit, clock
from app.db import settings
from app.db.models import BackupCode, User
from app.db.unit_of_work import rows_matched, write_transaction
from app.extensions import db

ISSUER = "sms-inbox"  # what authenticator apps show above the account's name
# Codes of the step before and after the current one count too: clocks drift, people type slowly.
VALID_WINDOW = 1
BACKUP_CODE_COUNT = 10
# No 0/o, 1/l/i: backup codes are read off paper. Ten of these are 49 bits.
BACKUP_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
BACKUP_CODE_LENGTH = 10
REQUIRED_SETTING = "two_factor_required"


def new_key() -> str:
    return pyotp.random_base32()  # 160 bits, as RFC 4226 recommends


def grouped(key: str) -> str:
    """The key in groups of four, for typing into an app by hand."""
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def qr_code(key: str, username: str) -> Markup:
    """An inline SVG QR code of the otpauth:// address apps scan (no script, no external file)."""
    address = pyotp.TOTP(key).provisioning_uri(name=username, issuer_name=ISSUER)
    svg = segno.make(address, error="m").svg_inline(scale=5, dark="#000", light="#fff")
    label = "QR code for your authenticator app"
    return Markup(svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1))


def _step_of(key: str, code: str, after: int | None) -> int | None:
    """The time step `code` is right for (the current one or a neighbour), if later than `after`."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(key)
    current = int(clock.now().replace(tzinfo=UTC).timestamp()) // totp.interval
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if (after is None or step > after) and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def turn_on(user: User, key: str, code: str) -> list[str] | None:
    """Take `key` into use if `code` is right for it; returns the new backup codes (shown once)."""
    step = _step_of(key, code, None)
    if step is None:
        return None
    with write_transaction():
        user.totp_secret, user.totp_last_step = key, step
        audit.record("two_factor_on", {"user": user.username})
        return _replace_backup_codes(user)


def turn_off(user: User) -> None:
    """A person's own choice (audited): the key and backup codes are gone."""
    with write_transaction():
        _forget_key(user)
        audit.record("two_factor_off", {"user": user.username})


def reset(user: User) -> None:
    """An admin's reset for someone who lost their phone (audited where there was a key)."""
    with write_transaction():
        if user.totp_secret:
            _forget_key(user)
            audit.record("two_factor_reset", {"user": user.username})


def _forget_key(user: User) -> None:
    user.totp_secret = user.totp_last_step = None
    db.session.execute(sa.delete(BackupCode).where(BackupCode.user_id == user.id))


def new_backup_codes(user: User) -> list[str]:
    with write_transaction():
        audit.record("backup_codes_new", {"user": user.username})
        return _replace_backup_codes(user)


def _replace_backup_codes(user: User) -> list[str]:
    db.session.execute(sa.delete(BackupCode).where(BackupCode.user_id == user.id))
    codes = [
        "".join(secrets.choice(BACKUP_CODE_ALPHABET) for _ in range(BACKUP_CODE_LENGTH))
        for _ in range(BACKUP_CODE_COUNT)
    ]
    db.session.add_all(BackupCode(user_id=user.id, code_hash=_backup_hash(code)) for code in codes)
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def _backup_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _normalised_backup_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def use_code(user: User, code: str) -> str | None:
    """Check a code of the user's and spend it: "code" for an app's code, "backup" for a backup
    code, None if neither. Safe against two requests with one code: the spending is a conditional
    UPDATE (or DELETE) that only one of them can make."""
    if not user.totp_secret or not code or len(code) > 64:
        return None
    step = _step_of(user.totp_secret, code, user.totp_last_step)
    with write_transaction():
        if step is not None:
            spent = db.session.execute(
                sa.update(User)
                .where(User.id == user.id, sa.or_(User.totp_last_step.is_(None), User.totp_last_step < step))
                .values(totp_last_step=step),
                execution_options={"synchronize_session": False},
            )
            return "code" if rows_matched(spent) == 1 else None
        spent = db.session.execute(
            sa.delete(BackupCode).where(
                BackupCode.user_id == user.id, BackupCode.code_hash == _backup_hash(_normalised_backup_code(code))
            )
        )
        return "backup" if rows_matched(spent) == 1 else None


def backup_codes_left(user: User) -> int:
    return (
        db.session.scalar(sa.select(sa.func.count()).select_from(BackupCode).where(BackupCode.user_id == user.id)) or 0
    )


def required() -> bool:
    """Whether an admin requires two-factor sign-in for everyone."""
    return settings.stored(REQUIRED_SETTING) == "1"


def set_required(value: bool) -> None:
    """An admin's choice for everyone, audited where it changes."""
    with write_transaction():
        if value == required():
            return
        settings.save(REQUIRED_SETTING, "1" if value else "0")
        audit.record("two_factor_required", {"required": "yes" if value else "no"})
