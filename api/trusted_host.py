"""Only Host headers this service answers to (review 2026-12-06, L8).

Absolute URLs are built from the request's Host: the slash redirect's Location (`/chat/` → `http://<Host>/chat`) and
Open311 discovery's `url`. A forged `Host: evil.example` was reflected in both, which a cache that does not key on
Host would hand to others. A request naming any other host is refused with 400 before anything builds a URL from it.
"""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

# Always allowed: loopback (the assistant's actions, health checks on the box) and Starlette's TestClient.
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1", "testserver")
_NAME = re.compile(r"^(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])$")


def _hostname(url: str | None) -> str | None:
    try:
        return urlsplit(url).hostname if url else None
    except ValueError:
        return None


def allowed_hosts(settings) -> list[str]:
    """The defaults, HOTLINE_ALLOWED_HOSTS, and the hosts of HOTLINE_PUBLIC_BASE_URL and HOTLINE_SERVICE_URL."""
    hosts = [*DEFAULT_HOSTS, *settings.allowed_hosts,
             *filter(None, (_hostname(settings.public_base_url), _hostname(settings.service_url)))]
    return list(dict.fromkeys(host.strip().lower().strip("[]") for host in hosts if host.strip()))


def host_of(header: str) -> str | None:
    """The host part of a Host header (port removed, IPv6 brackets removed), None when it is not a host name."""
    header = header.strip().lower()
    if header.startswith("["):
        name, _, rest = header.partition("]")
        name, port = name + "]", rest[1:] if rest.startswith(":") else rest
    else:
        name, _, port = header.partition(":")
    if not _NAME.match(name) or (port and not port.isdigit()):
        return None
    return name.strip("[]").rstrip(".")


class TrustedHostMiddleware:
    def __init__(self, app: ASGIApp, *, allowed: list[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.exact = {host for host in allowed if not host.startswith("*.")}
        self.suffixes = tuple(host[1:] for host in allowed if host.startswith("*."))   # "*.gov.cn" → ".gov.cn"

    def allows(self, header: str) -> bool:
        host = host_of(header)
        return host is not None and (host in self.exact or host.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k.lower() == b"host"), "")
        if self.allows(header):
            await self.app(scope, receive, send)
            return
        reason = "the Host header names no host this service answers to (HOTLINE_ALLOWED_HOSTS)"
        body = [{"code": 400, "description": reason}] if scope["path"].startswith("/open311/") else {"detail": reason}
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
