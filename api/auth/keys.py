"""API keys for machine clients (the dispatch system, department systems): stored hashed, with scopes."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth.models import ApiKey
from hotline.core.secrets import KEY_PREFIX
from orders.models import utcnow

SCOPES = ("route", "orders:read", "orders:write", "kb:write", "indicators:read",
          # a channel that relays citizens (the assistant): its X-On-Behalf-Of lookups count per relayed user
          # (each key still bounded as a whole) instead of against its address
          "lookup:on_behalf",
          # GET /metrics when HOTLINE_METRICS_PUBLIC=false (a Prometheus scraper's key)
          "metrics:read")


def _digest(key: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, *, name: str, scopes: list[str],
                   department_code: str | None = None) -> tuple[ApiKey, str]:
    """(row, the key in clear): the clear key is shown once and never stored."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not scopes:
        raise ValueError("an API key needs at least one scope")
    if session.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
        raise ValueError(f"an API key named {name!r} already exists")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, lookup=key[: len(KEY_PREFIX) + 8], key_hash=_digest(key), scopes=sorted(set(scopes)),
                 department_code=department_code)
    session.add(row)
    session.flush()
    return row, key


def verify_api_key(session: Session, key: str) -> ApiKey | None:
    """The key's row if the key is valid and not revoked; compared in constant time."""
    if not key or not key.startswith(KEY_PREFIX):
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.lookup == key[: len(KEY_PREFIX) + 8]))
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.key_hash, _digest(key)) else None


def ensure_api_key(session: Session, *, name: str, key: str, scopes: list[str]) -> ApiKey:
    """Make `key` the valid key called `name` with exactly `scopes` (for the service's own clients, whose clear key
    lives in a setting or the state folder): created if missing, re-hashed and un-revoked if the key changed."""
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + 16:
        raise ValueError(f"an API key must start with {KEY_PREFIX!r} and be at least 16 characters after it")
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        row = ApiKey(name=name)
        session.add(row)
    row.lookup, row.key_hash, row.scopes, row.revoked_at = key[: len(KEY_PREFIX) + 8], _digest(key), sorted(set(scopes)), None
    session.flush()
    return row


def revoke_api_key(session: Session, *, name: str) -> bool:
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key (hashes never leave this module's callers' hands: they show names, scopes and dates)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.name)))
