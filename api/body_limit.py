"""A request-body size limit before anything parses the body (review 2026-12-06, L4).

Without it, anonymous 10 MB bodies were read and parsed whole, and the chat's 16 KB guard looked only at
Content-Length, which a chunked body does not send. Here a declared Content-Length over the limit is refused at once,
and every other body is counted as it arrives and refused (413) as soon as it passes the limit, before the app sees
any of it. The app reads bodies whole anyway, so holding up to the limit in memory costs nothing extra.
"""
from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large(path: str, limit: int) -> tuple[int, bytes]:
    reason = f"请求内容过大，最多 {limit} 字节 (request body too large: at most {limit} bytes)"
    if path.startswith("/open311/"):   # that API's own error shape (GeoReport v2)
        return 413, json.dumps([{"code": 413, "description": reason}], ensure_ascii=False).encode()
    return 413, json.dumps({"detail": reason}, ensure_ascii=False).encode()


class BodyLimitMiddleware:
    """Refuses request bodies larger than `default_limit` bytes (or the path's own limit in `limits`) with 413."""

    def __init__(self, app: ASGIApp, *, default_limit: int, limits: dict[str, int] | None = None,
                 patterns: dict[str, int] | None = None) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits = dict(limits or {})
        # Paths with a part that varies (an order number): a regular expression matched against the whole path.
        self.patterns = [(re.compile(pattern), limit) for pattern, limit in (patterns or {}).items()]

    def limit_for(self, path: str) -> int:
        if path in self.limits:
            return self.limits[path]
        return next((limit for pattern, limit in self.patterns if pattern.fullmatch(path)), self.default_limit)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        status, body = _too_large(scope["path"], limit)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope.get("headers") or []:
            if name.lower() == b"content-length":
                if value.strip().isdigit() and int(value) > limit:
                    await self._refuse(scope, send, limit)
                    return
                break
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:   # a chunked body (or one longer than it said): stop reading here
                await self._refuse(scope, send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()   # after the body: http.disconnect, as the server tells it

        await self.app(scope, replay, send)
