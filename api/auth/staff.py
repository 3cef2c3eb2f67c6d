"""Staff accounts (agents, dispatchers, department handlers, supervisors, officials, admins), login with JWT,
and the audit trail of logins."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth.models import AuditRecord, StaffUser
from hotline.core.db import transaction
from orders.models import utcnow
from orders.roles import STAFF_ROLES

ROLES = STAFF_ROLES   # orders/roles.py
TOKEN_MINUTES = 8 * 60          # one shift
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_password(password: str) -> str:
    """scrypt (stdlib), salted; stored as scrypt$n$r$p$salt$hash."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                               dklen=len(digest) // 2)
    return hmac.compare_digest(candidate.hex(), digest)


def create_staff(session: Session, *, username: str, password: str, role: str,
                 department_code: str | None = None) -> StaffUser:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "handler" and not department_code:
        raise ValueError("a department handler needs a department code")
    if len(password) < 10:
        raise ValueError("a password needs at least 10 characters")
    if session.scalar(select(StaffUser).where(StaffUser.username == username)) is not None:
        raise ValueError(f"user {username!r} already exists")
    user = StaffUser(username=username, password_hash=hash_password(password), role=role,
                     department_code=department_code)
    session.add(user)
    session.flush()
    return user


_DUMMY_HASH: str | None = None


def _existing(session: Session, username: str) -> StaffUser:
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is None:
        raise ValueError(f"no staff user {username!r}")
    return user


def disable_staff(session: Session, *, username: str) -> bool:
    """Disable an account: its logins and its tokens already issued are refused from now on. False if it was
    already disabled."""
    user = _existing(session, username)
    if not user.active:
        return False
    user.active = False
    session.add(AuditRecord(actor=username[:64], action="staff_disabled", client=None, detail={}))
    return True


def set_staff_role(session: Session, *, username: str, role: str, department_code: str | None = None) -> StaffUser:
    """Change an account's role (and department, which only handlers keep); tokens already issued act with the
    new role from their next request."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    user = _existing(session, username)
    if role == "handler" and not (department_code or user.department_code):
        raise ValueError("a department handler needs a department code")
    before = {"role": user.role, "department_code": user.department_code}
    user.role = role
    user.department_code = (department_code or user.department_code) if role == "handler" else None
    session.add(AuditRecord(actor=username[:64], action="staff_role", client=None,
                            detail={"before": before, "after": {"role": role, "department_code": user.department_code}}))
    return user


def _dummy_hash() -> str:
    """One precomputed hash to check unknown usernames against: the same single scrypt as a real user (L13)."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def authenticate(session: Session, *, username: str, password: str, client: str | None) -> StaffUser | None:
    """The user if the password is right; every attempt is audited (the password never is). An unknown or
    inactive user costs the same one password check as a known one, so timing does not tell which names exist."""
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is not None and user.active:
        ok = check_password(password, user.password_hash)
    else:
        check_password(password, user.password_hash if user is not None else _dummy_hash())
        ok = False
    session.add(AuditRecord(actor=username[:64], action="login_ok" if ok else "login_failed", client=client,
                            detail={}))
    return user if ok else None


MIN_SECRET_BYTES = 32


class WeakSecretError(ValueError):
    """HOTLINE_JWT_SECRET is too short to sign staff tokens safely (a short HMAC key can be brute-forced)."""


def secret_key(configured: str | None, state_dir: Path) -> str:
    """The signing key: HOTLINE_JWT_SECRET, or one generated once for this installation (file mode 0600).

    A configured secret shorter than 32 bytes is refused (WeakSecretError): the service does not start with it."""
    if configured:
        if len(configured.encode("utf-8")) < MIN_SECRET_BYTES:
            raise WeakSecretError(
                f"HOTLINE_JWT_SECRET is {len(configured.encode('utf-8'))} bytes; at least {MIN_SECRET_BYTES} are "
                "needed to sign staff tokens safely. Set a long random value (python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))') or unset it to use a key generated into the state folder.")
        return configured
    path = state_dir / "jwt_secret"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def issue_token(user: StaffUser, key: str, *, minutes: int = TOKEN_MINUTES, now: dt.datetime | None = None) -> str:
    now = now or utcnow()
    claims = {"sub": user.username, "role": user.role, "dept": user.department_code,
              "iat": int(now.timestamp()), "exp": int((now + dt.timedelta(minutes=minutes)).timestamp())}
    return jwt.encode(claims, key, algorithm="HS256")


def read_token(token: str, key: str) -> dict | None:
    try:
        return jwt.decode(token, key, algorithms=["HS256"], options={"require": ["exp", "sub", "role"]})
    except jwt.PyJWTError:
        return None


def current_claims(session: Session, claims: dict) -> dict | None:
    """The token's claims with the account's current role and department, or None when the account no longer
    exists or is disabled: a token never outlives its account's state (M7)."""
    user = session.scalar(select(StaffUser).where(StaffUser.username == claims["sub"]))
    if user is None or not user.active:
        return None
    return {**claims, "role": user.role, "dept": user.department_code}


class LoginThrottle:
    """Failed staff logins, per username and per client address (one process): after `max_failures` within
    `window_s`, that username or address is locked out for `lockout_s`."""

    def __init__(self, max_failures: int, window_s: float, lockout_s: float):
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(username: str, client: str | None) -> list[str]:
        return [f"user:{username.casefold()}", f"addr:{client or 'unknown'}"]

    def wait(self, username: str, client: str | None, *, now: float | None = None) -> float | None:
        """Seconds until a login may be tried again, None if it may be tried now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            waits = [until - now for key in self._keys(username, client)
                     if (until := self._locked_until.get(key, 0.0)) > now]
        return max(waits) if waits else None

    def failed(self, username: str, client: str | None, *, now: float | None = None) -> bool:
        """Count a failure; True when it locked the username or the address out."""
        now = time.monotonic() if now is None else now
        locked = False
        with self._lock:
            if len(self._failures) > 50_000:   # bounded memory: forget failures older than the window
                self._failures = {k: v for k, v in self._failures.items() if v and v[-1] > now - self.window_s}
                self._locked_until = {k: v for k, v in self._locked_until.items() if v > now}
            for key in self._keys(username, client):
                recent = [t for t in self._failures.get(key, []) if t > now - self.window_s] + [now]
                if len(recent) >= self.max_failures:
                    self._locked_until[key] = now + self.lockout_s
                    recent, locked = [], True
                self._failures[key] = recent
        return locked

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{username.casefold()}", None)


def list_staff(session: Session) -> list[StaffUser]:
    """Every account, active first, then by username (for the admins' screen and GET /api/v1/staff)."""
    return list(session.scalars(select(StaffUser).order_by(StaffUser.active.desc(), StaffUser.username)))


def record_audit(session: Session, *, actor: str, action: str, client: str | None, **detail) -> None:
    """One line of the audit trail: who (cut to the column), what, from where, and the details."""
    session.add(AuditRecord(actor=actor[:64], action=action, client=client, detail=detail))


@dataclass(frozen=True)
class LoginOutcome:
    user: StaffUser | None = None
    token: str | None = None
    retry_after_s: int | None = None   # locked out: the password was not even checked


def log_in(sessions, throttle: LoginThrottle, *, username: str, password: str, client: str | None,
           jwt_key: str) -> LoginOutcome:
    """Staff login, the same for the API's token and the screens' cookie: refused without a password check while
    the account or address is locked out (M6), every attempt audited, failures counted towards the lockout."""
    wait = throttle.wait(username, client)
    if wait is not None:
        with transaction(sessions) as session:
            record_audit(session, actor=username, action="login_locked", client=client, retry_after_s=int(wait) + 1)
        return LoginOutcome(retry_after_s=int(wait) + 1)
    with transaction(sessions) as session:
        user = authenticate(session, username=username, password=password, client=client)
        token = issue_token(user, jwt_key) if user else None
    if token is None:
        throttle.failed(username, client)
        return LoginOutcome()
    throttle.succeeded(username)
    return LoginOutcome(user, token)
