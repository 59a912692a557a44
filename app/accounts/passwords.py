"""Passwords: the rules they follow, Argon2 hashing on a bounded pool of threads, and checking
one against an account's hash; and the sha256 that random tokens are stored as."""

import hashlib
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, has_app_context

from app.db.models import User

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

# Argon2id at OWASP's floor (m=19 MiB, t=2, p=1): each hash holds its memory for its whole run,
# so memory per process is this times PASSWORD_HASH_CONCURRENCY. Hashes made with other
# parameters are rehashed with these at the next successful login.
hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_dummy_hash: str | None = None

# Stored instead of a hash for an account whose password is still to be set: no password matches.
NO_PASSWORD = "!"


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
        self._bound: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.running = 0
        self.peak = 0

    def _threads(self, bound: int) -> ThreadPoolExecutor:
        with self._guard:
            if bound != self._bound or self._pool is None:  # set once per process in practice; tests change it
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


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"The password must be at most {MAX_PASSWORD_LENGTH} characters.")


def password_matches(user: User | None, password: str) -> bool:
    """Whether the password is the user's. Without a user, or without a password yet (an invited
    account), a dummy hash is verified instead, so every answer takes one Argon2 verify."""
    global _dummy_hash
    has_password = user is not None and user.password_hash != NO_PASSWORD
    if user is not None and has_password:
        stored = user.password_hash
    else:
        _dummy_hash = _dummy_hash or hash_password(secrets.token_hex(8))
        stored = _dummy_hash
    try:
        return _verify(stored, password) and has_password
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
