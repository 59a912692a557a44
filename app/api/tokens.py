"""API tokens: made by an admin (or `flask create-token`), shown once, stored as a sha256 only,
scoped, perhaps expiring, revocable; their last use written at most once a minute.

A request with a token acts as the token's principal: audit events name it "API: <name>", the
replies it sends are its own (Message.api_token_id), and it never owns a conversation.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from app import audit, clock
from app.accounts.passwords import token_hash
from app.db.models import API_TOKEN_NAME_LENGTH, ApiToken
from app.db.unit_of_work import write_transaction
from app.extensions import db

# read: everything there is to read. send: replies, and the changes a person makes working a
# conversation (notes, owner, labels, status, contact, opt-outs). admin: users, labels, webhooks,
# and lifting a customer's own STOP.
SCOPES = ("read", "send", "admin")
SECRET_PREFIX = "smsi_"  # what a secret starts with: scanners and people can tell it for one
SHOWN_PREFIX = len(SECRET_PREFIX) + 6  # the start of a secret kept to tell tokens apart
TOUCH_EVERY = timedelta(minutes=1)
AUDIT_NAME = "API: "  # + the token's name: who did it, in the audit trail and as a reply's author


class TokenRefused(ValueError):
    """Why a token can't be made, for people."""


@dataclass(frozen=True)
class Principal:
    """Who an API request is: a token. It stands where Flask-Login's user does (current_user),
    so services that record who did something (app/audit) name the token."""

    token_id: int
    name: str
    scopes: frozenset[str]
    is_authenticated = True
    is_active = True
    is_anonymous = False
    id = None  # no person: nothing is ever owned by, or assigned to, a token

    @property
    def username(self) -> str:
        return display_name(self.name)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def get_id(self) -> None:
        return None


def display_name(name: str) -> str:
    return AUDIT_NAME + name


def parse_scopes(text: str | list[str]) -> list[str]:
    """Scopes from "read,send" or a list; TokenRefused for an unknown one or none."""
    given = text.split(",") if isinstance(text, str) else text
    wanted = {scope.strip().lower() for scope in given if scope.strip()}
    unknown = wanted - set(SCOPES)
    if unknown:
        raise TokenRefused(f"Unknown scope {', '.join(sorted(unknown))}: choose from {', '.join(SCOPES)}.")
    if not wanted:
        raise TokenRefused("Give a token at least one scope.")
    return [scope for scope in SCOPES if scope in wanted]


def create_token(
    name: str, scopes: list[str], expires_at: datetime | None = None, created_by: str | None = None, **audited
) -> tuple[ApiToken, str]:
    """Make a token (audited, in the caller's transaction if one is open); its secret is
    returned here only. `audited` goes into the audit event (e.g. by="command line")."""
    name = " ".join(name.split())
    if not name or len(name) > API_TOKEN_NAME_LENGTH:
        raise TokenRefused(f"The name must be 1 to {API_TOKEN_NAME_LENGTH} characters.")
    scopes = parse_scopes(scopes)
    now = clock.now()
    if expires_at is not None and expires_at <= now:
        raise TokenRefused("The expiry must be in the future.")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with write_transaction() as session:
        if session.scalar(sa.select(ApiToken.id).where(ApiToken.name == name)) is not None:
            raise TokenRefused(f"A token named {name!r} already exists: names tell tokens apart.")
        token = ApiToken(
            name=name,
            token_hash=token_hash(secret),
            prefix=secret[:SHOWN_PREFIX],
            scopes=",".join(scopes),
            created_at=now,
            created_by=created_by,
            expires_at=expires_at,
        )
        session.add(token)
        session.flush()
        audit.record("api_token_created", {"token": name, "scopes": ",".join(scopes), "expires": expires_at, **audited})
    return token, secret


def all_tokens() -> list[ApiToken]:
    """Every token, the newest first (revoked ones too: messages and events name them)."""
    return list(db.session.scalars(sa.select(ApiToken).order_by(ApiToken.id.desc())))


def token(token_id: int) -> ApiToken | None:
    return db.session.get(ApiToken, token_id)


def scopes_of(row: ApiToken) -> list[str]:
    return [scope for scope in row.scopes.split(",") if scope]


def as_dict(row: ApiToken) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "scopes": scopes_of(row),
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "last_used_at": row.last_used_at,
    }


def state(row: ApiToken, now: datetime) -> str:
    """ "active", "revoked" or "expired"."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def revoke(token_id: int) -> bool:
    """Revoke a token (audited): its next request gets 401. False when it was already revoked."""
    with write_transaction() as session:
        name = session.scalar(
            sa.update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=clock.now())
            .returning(ApiToken.name)
        )
        if name is None:
            return False
        audit.record("api_token_revoked", {"token": name})
    return True


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an `Authorization: Bearer <secret>` header; None without one."""
    scheme, _, secret = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def verify(secret: str | None, now: datetime) -> ApiToken | None:
    """The token a secret is, while it is neither revoked nor expired; None otherwise."""
    if not secret or len(secret) > 200:
        return None
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == token_hash(secret)))
    if row is None or state(row, now) != "active":
        return None
    return row


def principal_of(row: ApiToken) -> Principal:
    return Principal(row.id, row.name, frozenset(scopes_of(row)))


def touch(row: ApiToken, now: datetime) -> None:
    """Note the token's use, at most once a minute (one conditional UPDATE, so that many
    processes write it once between them)."""
    if row.last_used_at is not None and row.last_used_at > now - TOUCH_EVERY:
        return
    with write_transaction() as session:
        session.execute(
            sa.update(ApiToken)
            .where(
                ApiToken.id == row.id,
                sa.or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - TOUCH_EVERY),
            )
            .values(last_used_at=now)
        )
