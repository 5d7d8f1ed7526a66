"""Account operations: logging in with throttling, creating users, changing passwords."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..audit import Actor, record
from ..db import db, utcnow
from .models import ROLES, LoginAttempt, User
from .passwords import hash_password, one_time_password, password_problems, verify_password
from .throttle import ThrottlePolicy, locked_until
from .tokens import revoke_all_tokens

ATTEMPT_RETENTION = timedelta(days=1)


class AccountError(ValueError):
    """A request about accounts that cannot be carried out; `code` says why."""

    def __init__(self, code: str, detail: str = "") -> None:
        """Keep a machine-readable code beside the message."""
        super().__init__(detail or code)
        self.code = code


def normalise_email(email: str) -> str:
    """E-mail addresses compare case-insensitively and without surrounding space."""
    return email.strip().lower()


def _keyed(value: str) -> str:
    """A keyed hash, so the attempts table holds no e-mail addresses or IP addresses."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _policies() -> tuple[ThrottlePolicy, ThrottlePolicy]:
    """The account and address throttling policies from the configuration."""
    cfg = current_app.config
    window = timedelta(minutes=cfg["LOGIN_FAILURE_WINDOW_MINUTES"])
    lockout = timedelta(minutes=cfg["LOGIN_LOCKOUT_MINUTES"])
    return (
        ThrottlePolicy(cfg["LOGIN_MAX_FAILURES_PER_ACCOUNT"], window, lockout),
        ThrottlePolicy(cfg["LOGIN_MAX_FAILURES_PER_ADDRESS"], window, lockout),
    )


def _attempts(column: sa.orm.InstrumentedAttribute[str], key: str, since: datetime) -> list:
    """Recent (moment, succeeded) pairs for one key."""
    rows = db.session.execute(
        sa.select(LoginAttempt.at, LoginAttempt.succeeded).where(column == key, LoginAttempt.at > since)
    ).all()
    return [(at, ok) for at, ok in rows]


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The outcome of a login attempt: a user, or the reason there is none."""

    user: User | None
    locked_until: datetime | None = None


def find_user(email: str) -> User | None:
    """The account with this e-mail address, if any."""
    return db.session.execute(
        sa.select(User).where(User.email == normalise_email(email))
    ).scalar_one_or_none()


def attempt_login(email: str, password: str, *, address: str) -> LoginResult:
    """Check a password, throttled per account and per address, and audit the outcome."""
    now = utcnow()
    account_policy, address_policy = _policies()
    email_key, address_key = _keyed(normalise_email(email)), _keyed(address)
    since = now - max(account_policy.window, address_policy.window) - account_policy.lockout
    blocked = max(
        (
            moment
            for moment in (
                locked_until(
                    _attempts(LoginAttempt.email_key, email_key, since),
                    now=now, policy=account_policy, success_resets=True,
                ),
                locked_until(
                    _attempts(LoginAttempt.address_key, address_key, since),
                    now=now, policy=address_policy, success_resets=False,
                ),
            )
            if moment is not None
        ),
        default=None,
    )
    user = find_user(email)
    if blocked is not None:
        record(
            "auth:login_throttled",
            actor=Actor("user", user.id) if user else Actor("system"),
            subject_type="user" if user else None,
            subject_id=user.id if user else None,
            details={"until": blocked.isoformat()},
        )
        db.session.commit()
        return LoginResult(None, blocked)
    ok = verify_password(user.password_hash if user else None, password)
    ok = ok and user is not None and user.active
    db.session.add(LoginAttempt(email_key=email_key, address_key=address_key, at=now, succeeded=ok))
    # Attempts matter only for throttling; older ones are removed rather than kept as a log.
    db.session.execute(sa.delete(LoginAttempt).where(LoginAttempt.at < now - ATTEMPT_RETENTION))
    if ok:
        assert user is not None
        user.last_login_at = now
        record("auth:login", actor=Actor("user", user.id), subject_type="user", subject_id=user.id)
    else:
        record(
            "auth:login_failed",
            actor=Actor("system"),
            subject_type="user" if user else None,
            subject_id=user.id if user else None,
            details={"known_account": user is not None},
        )
    db.session.commit()
    return LoginResult(user if ok else None)


def create_user(
    *, email: str, role: str, name: str = "", password: str | None = None, actor: Actor
) -> tuple[User, str | None]:
    """Create an account; without a password it gets a one-time password, which is returned."""
    email = normalise_email(email)
    if role not in ROLES:
        raise AccountError("unknown_role", f"role must be one of {', '.join(ROLES)}")
    if "@" not in email or len(email) > 254:
        raise AccountError("invalid_email", "not an e-mail address")
    if find_user(email) is not None:
        raise AccountError("duplicate_email", "an account with this e-mail exists")
    generated = None
    if password is None:
        generated = password = one_time_password()
    elif problems := password_problems(password, email=email):
        raise AccountError("weak_password", ", ".join(problems))
    user = User(
        email=email,
        name=name.strip()[:200],
        role=role,
        password_hash=hash_password(password),
        must_change_password=generated is not None,
    )
    db.session.add(user)
    db.session.flush()
    record("user:create", actor=actor, subject_type="user", subject_id=user.id, details={"role": role})
    return user, generated


def set_new_password(user: User, *, current: str, new: str) -> None:
    """Replace a user's password after checking the current one; other sessions end."""
    if not verify_password(user.password_hash, current):
        raise AccountError("wrong_password")
    if problems := password_problems(new, email=user.email):
        raise AccountError("weak_password", ", ".join(problems))
    if verify_password(user.password_hash, new):
        raise AccountError("same_password")
    user.password_hash = hash_password(new)
    user.must_change_password = False
    user.auth_version += 1
    record("user:password_change", actor=Actor("user", user.id), subject_type="user", subject_id=user.id)


def reset_password(user: User, *, actor: Actor) -> str:
    """Give a user a new one-time password (an admin's act) and end their sessions."""
    password = one_time_password()
    user.password_hash = hash_password(password)
    user.must_change_password = True
    user.auth_version += 1
    record("user:password_reset", actor=actor, subject_type="user", subject_id=user.id)
    # A reset means the account may be in other hands: its tokens go with its sessions.
    revoke_all_tokens(user, actor=actor, reason="password_reset")
    return password


def set_role(user: User, role: str, *, actor: Actor) -> None:
    """Change a user's role."""
    if role not in ROLES:
        raise AccountError("unknown_role")
    if user.role == "admin" and role != "admin" and _active_admins() <= 1:
        raise AccountError("last_admin")
    if role != user.role:
        record("user:role_change", actor=actor, subject_type="user", subject_id=user.id,
               details={"from": user.role, "to": role})
        user.role = role
        user.auth_version += 1


def set_active(user: User, active: bool, *, actor: Actor) -> None:
    """Deactivate or reactivate an account; deactivation ends its sessions and revokes its tokens."""
    if not active and user.role == "admin" and user.active and _active_admins() <= 1:
        raise AccountError("last_admin")
    if user.active != active:
        user.active = active
        user.auth_version += 1
        record("user:activate" if active else "user:deactivate", actor=actor,
               subject_type="user", subject_id=user.id)
        if not active:
            # Revoked, not merely unusable while inactive: reactivating brings no old token back.
            revoke_all_tokens(user, actor=actor, reason="deactivated")


def _active_admins() -> int:
    """How many active admin accounts exist; the last one cannot be removed."""
    return db.session.execute(
        sa.select(sa.func.count()).select_from(User).where(User.role == "admin", User.active)
    ).scalar_one()
