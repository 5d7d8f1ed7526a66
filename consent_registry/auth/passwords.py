"""Password hashing (Argon2id, memory-hard), password rules, and one-time passwords."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

MIN_PASSWORD_LENGTH = 12
_strong = PasswordHasher()
# Tests hash hundreds of passwords; the cheap parameters apply only where the config says so.
_fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
# Verified against when the account does not exist, so timing does not reveal which e-mails exist.
_DUMMY_HASH = _strong.hash(secrets.token_urlsafe(16))


def _hasher() -> PasswordHasher:
    """The hasher for this app: the strong one unless the config asks for speed."""
    return _fast if current_app.config.get("PASSWORD_HASH_FAST") else _strong


def hash_password(password: str) -> str:
    """Argon2id hash of a password."""
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether the password matches; spends the same effort when there is no account."""
    try:
        return _hasher().verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_problems(password: str, *, email: str) -> list[str]:
    """Reasons a new password is not acceptable, as message keys; empty when it is fine."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append("too_short")
    address = email.strip().lower()
    if password.strip().lower() in {address, address.split("@")[0]}:
        problems.append("like_email")
    if len(set(password)) < 5:
        problems.append("too_simple")
    return problems


def one_time_password() -> str:
    """A random password for a new account, to be changed at first login."""
    return secrets.token_urlsafe(12)
