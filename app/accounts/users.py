"""Users: adding them, roles, disabling, changing one's own password, and the one-time links
that set a password."""

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from app import audit, clock
from app.accounts import passwords, sessions
from app.db.models import ROLES, USERNAME_LENGTH, User
from app.db.unit_of_work import write_transaction
from app.extensions import db


def create_user(username: str, password: str | None, admin: bool = False) -> User:
    """Add a user, in a write transaction (the caller's, if open). Raises ValueError with a
    message for people.

    The first user is an admin whatever is asked: someone must be able to add the others.
    Without a password, nobody can log in as the user until a set-password link is used.
    """
    username = username.strip()
    if not username or len(username) > USERNAME_LENGTH:
        raise ValueError(f"The username must be 1 to {USERNAME_LENGTH} characters.")
    if password is not None:
        passwords.check_password(password)
    # Slow on purpose: hashed before taking the write lock.
    password_hash = passwords.hash_password(password) if password is not None else passwords.NO_PASSWORD
    with write_transaction():
        if db.session.scalar(db.select(User.id).where(User.username == username)) is not None:
            raise ValueError(f"A user named {username!r} already exists.")
        first = db.session.scalar(db.select(User.id).limit(1)) is None
        user = User(username=username, role="admin" if admin or first else "agent", password_hash=password_hash)
        db.session.add(user)
        db.session.flush()
    return user


def invite(username: str, role: str) -> tuple[User, str]:
    """An admin adds someone without a password (audited): the user and the token of the
    one-time link that lets them set one. ValueError with a message for people."""
    with write_transaction():
        user = create_user(username, None, admin=role == "admin")
        token = issue_reset_link(user, clock.now())
        audit.record("user_added", {"user": user.username, "role": user.role})
    return user, token


def change_role(user: User, role: str) -> None:
    """An admin's change of someone's role, audited; ValueError as for `set_role`."""
    with write_transaction():
        before = user.role
        set_role(user, role)
        audit.record("user_changed", {"user": user.username, "role": role, "was": before})


def disable(user: User) -> None:
    """An admin disables an account (audited); ValueError for the last active admin."""
    with write_transaction():
        set_disabled(user, True)
        audit.record("user_disabled", {"user": user.username})


def enable(user: User) -> None:
    with write_transaction():
        set_disabled(user, False)
        audit.record("user_enabled", {"user": user.username})


def send_reset_link(user: User) -> str:
    """An admin's new set-password link for someone (audited); the token for the link."""
    with write_transaction():
        token = issue_reset_link(user, clock.now())
        audit.record("password_reset", {"user": user.username})
    return token


def user_by_id(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def everyone() -> list[User]:
    """Every account, by username."""
    return list(db.session.scalars(db.select(User).order_by(User.username)))


def user_named(username: str) -> User | None:
    return db.session.scalar(db.select(User).where(User.username == username.strip()))


def active_admins() -> int:
    return db.session.scalar(
        db.select(sa.func.count()).select_from(User).where(User.role == "admin", User.disabled == sa.false())
    )


def set_role(user: User, role: str) -> None:
    """Change a role, in a write transaction (the caller's, if open); the last active admin stays one."""
    if role not in ROLES:
        raise ValueError(f"The role must be one of: {', '.join(ROLES)}.")
    with write_transaction():
        if user.role == "admin" and role != "admin" and not user.disabled and active_admins() <= 1:
            raise ValueError("This is the only admin: make someone else an admin first.")
        user.role = role


def set_disabled(user: User, disabled: bool) -> None:
    """Disable (ending every session at once) or re-enable an account, in a write transaction
    (the caller's, if open)."""
    with write_transaction():
        if disabled and user.is_admin and not user.disabled and active_admins() <= 1:
            raise ValueError("This is the only admin: make someone else an admin first.")
        user.disabled = disabled
        if disabled:
            sessions.delete_sessions(user.id)
            # An outstanding set-password link dies too: re-enabling must not revive it.
            user.reset_token_hash = user.reset_expires_at = None


def change_password(user: User, old: str, new: str, keep_token: str | None) -> None:
    """A person's own change: the old password first. Ends the person's other sessions."""
    passwords.check_password(new)
    if not passwords.password_matches(user, old):
        raise ValueError("The current password is not right.")
    new_hash = passwords.hash_password(new)
    with write_transaction():
        user.password_hash = new_hash
        sessions.delete_sessions(user.id, keep=keep_token)
        audit.record("password_changed")


# --- one-time links to set a password ---------------------------------------------------


def issue_reset_link(user: User, now: datetime) -> str:
    """A new one-time token for `user` (in a write transaction, the caller's if open), replacing
    any earlier one.

    Only its sha256 is stored. The account's password and sessions stay as they are until the
    link is used, so a reset nobody asked for locks nobody out.
    """
    token = secrets.token_urlsafe(32)
    with write_transaction():
        user.reset_token_hash = passwords.token_hash(token)
        user.reset_expires_at = now + timedelta(seconds=current_app.config["RESET_LINK_SECONDS"])
    return token


def user_for_reset_token(token: str) -> User | None:
    """The user a link is for, while it is unused and unexpired (and the account enabled)."""
    if not token:
        return None
    user = db.session.scalar(db.select(User).where(User.reset_token_hash == passwords.token_hash(token)))
    if user is None or user.disabled or user.reset_expires_at <= clock.now():
        return None
    return user


def set_password_with_link(token: str, password: str) -> User | None:
    """Use a link: the new password, the link spent, every session of the account ended."""
    passwords.check_password(password)
    new_hash = passwords.hash_password(password)
    with write_transaction():
        user = user_for_reset_token(token)
        if user is None:
            return None
        user.password_hash = new_hash
        user.reset_token_hash = user.reset_expires_at = None
        sessions.delete_sessions(user.id)
        audit.record("password_set", {"user": user.username}, username=user.username)
    return user
