"""The web chat: the page (self-hosted HTML/CSS/JS from api/static) and the relay `POST /api/v1/chat` to the Rasa
assistant (the contract: ../notes/assistant_contract.md — metadata channel, openid, role, auth_token).

The relay decides who is speaking, never the browser: an anonymous visitor is the random id in a signed HttpOnly
cookie ("web:<id>" is the OpenID their orders are filed under), and an official is whoever their staff JWT says.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.channels.assistant_client import UNAVAILABLE_MESSAGE, AssistantUnavailable, clean_message, get_assistant
from api.deps import ClientDep, JwtKeyDep, Principal, PublicLimiterDep, SessionsDep, staff_principal
from api.schemas import Location

log = logging.getLogger("hotline.chat")
router = APIRouter(tags=["assistant"])

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"   # api/static: the pages and their assets
ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".svg": "image/svg+xml"}
COOKIE = "hotline_chat"
COOKIE_MAX_AGE_S = 30 * 24 * 3600        # "my orders" on the web lasts as long as the browser keeps the cookie
MAX_BODY_BYTES = 16 * 1024               # 2,000 characters of Chinese is 6 KB of UTF-8; the rest is envelope
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
# Only our own files run: no remote or inline script, no inline style attribute, no framing by other sites.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


class ChatMetadataIn(BaseModel):
    """What the page may add: only a location. Identity keys (channel, openid, role, auth_token) are set by the
    server; anything else is ignored."""

    model_config = ConfigDict(extra="ignore")
    location: Location | None = None


class ChatIn(BaseModel):
    message: str = Field(description="what the person typed (1–2000 characters after control characters are removed)")
    sender: str | None = Field(default=None, max_length=128,
                               description="ignored: the conversation id comes from the session cookie")
    metadata: ChatMetadataIn | None = None

    @field_validator("message")
    @classmethod
    def _clean(cls, value: str) -> str:
        return clean_message(value)


# -- identity ------------------------------------------------------------------------------------------------
def _signature(session_id: str, key: str) -> str:
    # The purpose prefix keeps this MAC apart from anything else signed with the same installation key.
    return hmac.new(key.encode(), b"hotline-web-chat-session:" + session_id.encode(), hashlib.sha256).hexdigest()


def session_cookie(session_id: str, key: str) -> str:
    return f"{session_id}.{_signature(session_id, key)}"


def read_session_cookie(value: str | None, key: str) -> str | None:
    """The session id if the cookie is one we signed; None for a missing, forged or malformed cookie."""
    session_id, _, mac = (value or "").rpartition(".")
    if not _SESSION_ID.match(session_id) or not hmac.compare_digest(mac, _signature(session_id, key)):
        return None
    return session_id


def chat_session(request: Request, response: Response, key: JwtKeyDep) -> str:
    """The visitor's anonymous session id, issuing a new one (HttpOnly cookie) when there is none or it is forged."""
    session_id = read_session_cookie(request.cookies.get(COOKIE), key)
    if session_id is None:
        session_id = secrets.token_urlsafe(16)
        # Lax, not Strict: a visitor arriving by a link from elsewhere must keep their session (Strict would drop
        # the cookie on that navigation and hand out a new identity); cross-site POSTs still go without it.
        response.set_cookie(COOKIE, session_cookie(session_id, key), max_age=COOKIE_MAX_AGE_S, httponly=True,
                            samesite="lax", secure=request.url.scheme == "https", path="/")
    return session_id


def chat_staff(sessions: SessionsDep, jwt_key: JwtKeyDep,
                 authorization: Annotated[str | None, Header()] = None) -> tuple[str, Principal] | None:
    """The official's token and who it stands for now (disabled: refused; re-roled: the new role), None for an
    anonymous visitor; a bad token is refused (401) rather than silently downgraded, so the page knows to log in
    again."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    staff = staff_principal(sessions, jwt_key, token.strip()) if scheme.lower() == "bearer" else None
    if staff is None:
        raise HTTPException(401, "登录已失效，请重新登录 (invalid or expired staff token)",
                            headers={"WWW-Authenticate": "Bearer"})
    return token.strip(), staff


def chat_rate_limit(request: Request, limiter: PublicLimiterDep, client: ClientDep) -> None:
    """Per client address, on the app's public limiter (its own bucket, apart from the status lookups)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPException(413, "消息过长 (request body too large)")
    wait = limiter.check(f"chat:{client or 'unknown'}")
    if wait is not None:
        raise HTTPException(429, "发送太频繁，请稍后再试 (too many messages)",
                            headers={"Retry-After": str(int(wait) + 1)})


# -- the relay -----------------------------------------------------------------------------------------------
@router.post("/api/v1/chat", dependencies=[Depends(chat_rate_limit)])
async def chat(body: ChatIn, request: Request, response: Response,
               staff: Annotated[tuple[str, Principal] | None, Depends(chat_staff)],
               visitor: Annotated[str, Depends(chat_session)]) -> list[dict[str, Any]]:
    """One turn of the web chat: relayed to the assistant; the answer is Rasa's list of messages
    (`text`, `buttons`, `custom.chart`). 503 with a message to show when the assistant is unavailable."""
    openid = f"web:{visitor}"
    metadata: dict[str, Any] = {"channel": "web", "openid": openid, "role": "citizen"}
    if staff is not None:
        token, official = staff
        metadata.update(auth_token=token, role=official.role)
    if body.metadata and body.metadata.location:
        metadata["location"] = body.metadata.location.model_dump()
    try:
        return await get_assistant(request.app).send(sender=openid, message=body.message, metadata=metadata)
    except AssistantUnavailable as exc:
        # Never the message itself in the log: it may hold a phone number, an address, a name.
        log.warning("web chat turn not answered: %s", exc)
        raise HTTPException(503, UNAVAILABLE_MESSAGE, headers={"Retry-After": "30"}) from None


# -- the page ------------------------------------------------------------------------------------------------
def _protect(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


@router.get("/chat", include_in_schema=False)
def chat_page(request: Request, key: JwtKeyDep) -> Response:
    response = FileResponse(STATIC_DIR / "chat.html", media_type="text/html; charset=utf-8")
    chat_session(request, response, key)   # the page's visit starts the anonymous session
    return _protect(response)


# The files the page may load, listed once: a requested name is looked up here and never touches the file system
# (a name of 256+ bytes made Path.is_file() raise "File name too long", a 500; review 2026-12-06, L2).
ASSETS = {path.name: path for path in STATIC_DIR.iterdir() if path.suffix in ASSET_TYPES and path.is_file()}


@router.get("/chat/assets/{name}", include_in_schema=False)
def chat_asset(name: str) -> Response:
    # Only files that sit directly in api/static with a known type: no traversal, no directory listing.
    path = ASSETS.get(name)
    if path is None:
        raise HTTPException(404, "no such asset")
    return _protect(FileResponse(path, media_type=ASSET_TYPES[path.suffix]))
