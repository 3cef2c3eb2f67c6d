"""Staff accounts (agents, dispatchers, department handlers, supervisors, officials, admins), login with JWT,
and the audit trail of logins."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import jwt
from sqlalchemy import JSON, Boolean, DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from hotline.db import Base
from orders.models import utcnow

ROLES = ("agent", "dispatcher", "handler", "supervisor", "official", "admin")
TOKEN_MINUTES = 8 * 60          # one shift
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(160))
    role: Mapped[str] = mapped_column(String(16))
    department_code: Mapped[str | None] = mapped_column(String(32))     # handlers: the only department they see
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditRecord(Base):
    """Logins (successful or not) and bulk exports: who, when, from where, what."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))      # login_ok / login_failed / export
    client: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


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


def authenticate(session: Session, *, username: str, password: str, client: str | None) -> StaffUser | None:
    """The user if the password is right; every attempt is audited (the password never is)."""
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    ok = user is not None and user.active and check_password(password, user.password_hash)
    if user is None:
        check_password(password, hash_password("timing-equaliser"))   # same work for unknown users
    session.add(AuditRecord(actor=username[:64], action="login_ok" if ok else "login_failed", client=client,
                            detail={}))
    return user if ok else None


def secret_key(configured: str | None, state_dir: Path) -> str:
    """The signing key: HOTLINE_JWT_SECRET, or one generated once for this installation (file mode 0600)."""
    if configured:
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
