"""Messente's callback signature: lowercase hex HMAC-SHA256 of the raw body bytes."""

import hashlib
import hmac


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None, secrets: list[str]) -> bool:
    """True when the signature matches the body under any of the secrets (rotation).

    Compares bytes in constant time; a header with non-ASCII characters simply fails.
    """
    if not signature:
        return False
    given = signature.strip().lower().encode("utf-8", "replace")
    matches = [hmac.compare_digest(sign(body, secret).encode(), given) for secret in secrets]
    return any(matches)
