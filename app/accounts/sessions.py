"""Login sessions: one row per login, found by the sha256 of the token its cookie carries; and
the short description of the browser each is listed with."""

import secrets
from datetime import timedelta

import sqlalchemy as sa

from app import audit, clock
from app.accounts import passwords
from app.db.models import ADDRESS_LENGTH, USER_AGENT_LENGTH, LoginSession, User
from app.db.unit_of_work import write_transaction
from app.extensions import db

# How stale `last_seen_at` may get before a request writes it again (each write takes the lock).
LAST_SEEN_RESOLUTION = timedelta(minutes=5)


def start_session(user: User, address: str | None, user_agent: str | None) -> str:
    """Record a new login, audited with it; returns the token its cookie carries."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    with write_transaction():
        db.session.add(
            LoginSession(
                user_id=user.id,
                token_hash=passwords.token_hash(token),
                created_at=now,
                last_seen_at=now,
                address=(address or "unknown")[:ADDRESS_LENGTH],
                user_agent=describe_user_agent(user_agent),
            )
        )
        audit.record("login", username=user.username)
    user.login_token = token
    return token


def load_session_user(session_id: str) -> User | None:
    """The user a login cookie names, while its session row exists and the account is enabled."""
    user_id, _, token = session_id.partition(":")
    if not user_id.isdigit() or not token:
        return None
    # One statement for the session and its user: every logged-in request and poll pays it.
    found = db.session.execute(
        db.select(User, LoginSession.id, LoginSession.last_seen_at)
        .join(LoginSession, LoginSession.user_id == User.id)
        .where(LoginSession.token_hash == passwords.token_hash(token))
    ).first()
    if found is None:
        return None
    user, session_row_id, last_seen_at = found
    if user.id != int(user_id) or user.disabled:
        return None
    user.login_token = token
    now = clock.now()
    if now - last_seen_at >= LAST_SEEN_RESOLUTION:
        with write_transaction():
            db.session.execute(
                sa.update(LoginSession).where(LoginSession.id == session_row_id).values(last_seen_at=now)
            )
    return user


def sessions_of(user: User) -> list[LoginSession]:
    return list(
        db.session.scalars(
            db.select(LoginSession)
            .where(LoginSession.user_id == user.id)
            .order_by(LoginSession.last_seen_at.desc(), LoginSession.id.desc())
        )
    )


def log_out(user: User) -> None:
    """End the session this request belongs to (audited)."""
    with write_transaction():
        db.session.execute(
            sa.delete(LoginSession).where(
                LoginSession.user_id == user.id, LoginSession.token_hash == passwords.token_hash(user.login_token or "")
            )
        )
        audit.record("logout")


def end_session(user: User, session_row_id: int) -> None:
    """End one of the user's sessions, from the account page's list (audited)."""
    with write_transaction():
        db.session.execute(
            sa.delete(LoginSession).where(LoginSession.user_id == user.id, LoginSession.id == session_row_id)
        )
        audit.record("sessions_ended", {"user": user.username, "sessions": "one"})


def end_sessions(user: User) -> None:
    """End every session of the user's, everywhere ("Sign out everywhere"; audited)."""
    with write_transaction():
        delete_sessions(user.id)
        audit.record("sessions_ended", {"user": user.username, "sessions": "all"})


def delete_sessions(user_id: int, keep: str | None = None) -> None:
    """Delete the user's sessions (but the one whose token is `keep`), in the caller's write transaction."""
    query = sa.delete(LoginSession).where(LoginSession.user_id == user_id)
    if keep:
        query = query.where(LoginSession.token_hash != passwords.token_hash(keep))
    db.session.execute(query)


def describe_user_agent(user_agent: str | None) -> str:
    """ "Firefox on Linux": enough to recognise one's own devices, without storing the whole header."""
    text = user_agent or ""
    browser = next((name for marker, name in BROWSERS if marker in text), None)
    system = next((name for marker, name in SYSTEMS if marker in text), None)
    if browser and system:
        return f"{browser} on {system}"
    return (browser or system or text or "Unknown browser")[:USER_AGENT_LENGTH]


# First match wins: Edge and Opera say "Chrome" too, Chrome says "Safari", Android says "Linux".
BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
)
SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)
