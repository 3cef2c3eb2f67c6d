"""The staff screens' login: the JWT the API issues, kept in an HttpOnly cookie, and a CSRF token on every form.

The cookie is SameSite=Strict (never sent on a request another site starts) and HttpOnly (no script reads it); a
form also carries a token derived from the session's JWT, so a forged POST fails even in a browser that ignores
SameSite. The account is re-read on each page (a disabled or re-roled account takes effect at once, as for tokens).
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Form, HTTPException, Request

from api.deps import STAFF_COOKIE, JwtKeyDep, Principal, SessionsDep, staff_principal
from orders import roles

COOKIE = STAFF_COOKIE


class LoginRequired(Exception):
    """No valid staff session: the page redirects to /login and comes back to `next_path` afterwards."""

    def __init__(self, next_path: str):
        self.next_path = next_path

    @property
    def location(self) -> str:
        return f"/login?next={quote(self.next_path, safe='/')}"


def csrf_token(jwt_key: str, session_token: str) -> str:
    return hmac.new(jwt_key.encode(), b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()[:40]


def staff_from_cookie(request: Request, sessions: SessionsDep, jwt_key: JwtKeyDep) -> Principal | None:
    return staff_principal(sessions, jwt_key, request.cookies.get(COOKIE) or "")


OptionalStaff = Annotated[Principal | None, Depends(staff_from_cookie)]


def staff_screen(screen: str):
    """Dependency for a page of `screen`: the logged-in staff member whose role works there (orders/roles.py);
    no session → the login page, another role → 403."""
    def check(request: Request, staff: OptionalStaff) -> Principal:
        if staff is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(target)
        if screen not in roles.screens_of(staff.role):
            label = roles.RULES[staff.role].label if staff.role in roles.RULES else staff.role
            raise HTTPException(403, f"{label}不使用此页面")
        return staff
    return check


def any_staff(request: Request, staff: OptionalStaff) -> Principal:
    if staff is None:
        raise LoginRequired(request.url.path)
    return staff


AnyStaff = Annotated[Principal, Depends(any_staff)]


def require_csrf(request: Request, jwt_key: JwtKeyDep, csrf: Annotated[str, Form(max_length=64)] = "") -> None:
    """Forms post a token bound to the session; a POST without it (another site's form) is refused."""
    token = request.cookies.get(COOKIE) or ""
    if not token or not hmac.compare_digest(csrf, csrf_token(jwt_key, token)):
        raise HTTPException(403, "表单已过期或来源不明，请刷新页面后重试")


CsrfChecked = Depends(require_csrf)
