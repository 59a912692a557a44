"""Signatures as Standard Webhooks specify them, so a receiver checks ours with any of its libraries.

A secret is `whsec_` and the base64 of 32 random bytes. A delivery carries `webhook-id` (the
event's: the same on every attempt, for receivers to drop repeats), `webhook-timestamp` (seconds
since the epoch when this attempt was signed: the real time, which receivers compare with
theirs) and `webhook-signature`: `v1,` and the base64 of HMAC-SHA256 over `id.timestamp.body`
with the secret's bytes, one per valid secret, space-separated (both while a rotated secret
is still honoured).
"""

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def key_of(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key_of(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(signing_secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one attempt, signed with each secret given (newest first)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(secret, msg_id, timestamp, body) for secret in signing_secrets),
    }
