"""Security headers on every response (issue 11 L7): API, docs, health, metrics, WeChat and the chat page.

Headers a route sets itself (the chat page's full Content-Security-Policy) are left as they are."""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
          (b"x-frame-options", b"DENY"))
# HTML pages (/docs, /redoc, /chat) may not be framed (clickjacking). Only frame-ancestors: the Swagger and
# ReDoc pages load their scripts from a CDN, which a full policy would block.
HTML_ONLY = ((b"content-security-policy", b"frame-ancestors 'none'"),)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
                extra = ALWAYS + (HTML_ONLY if content_type.lower().startswith(b"text/html") else ())
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
