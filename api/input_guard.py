"""What the app refuses before any endpoint sees it, and what a refusal may echo (review 2026-12-06, M1).

Python's json reads `NaN`, `Infinity` and `1e400` (as inf), and `"\\ud800"` as a lone UTF-16 surrogate. None of them
is data a citizen or a system means to send, and each ended as an HTTP 500: FastAPI's 422 handler echoes the rejected
input and cannot encode a non-finite float or a surrogate, and a surrogate that passed validation crashed the SQLite
write. So JSON bodies are read strictly once, here, for every endpoint; and a 422 shows a short, encodable preview of
what it refused instead of the input itself (a 2 MB username came back as a 2 MB answer).
"""
from __future__ import annotations

import email.message
import json
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

ECHO_CHARS = 120          # of a rejected string: enough to recognise it
ECHO_ITEMS = 5            # of a rejected list or object
ECHO_DEPTH = 3
OFF_LOOP_BYTES = 64 * 1024
DETAIL_CHARS = 500        # an error message that quotes the caller's value (e.g. "unknown department '…'")
# Bodies that are parsed by their own code, not FastAPI's: the assistant's action calls (token-protected, possibly
# compressed, written by Rasa's own serialiser).
OWN_PARSERS = ("/api/v1/assistant/webhook",)
# Top-level fields whose endpoint drops lone surrogates itself: what a person types in the web chat may end in half an
# emoji (a textarea's maxlength counts UTF-16 units), and clean_message removes it rather than refuse the message.
SURROGATES_DROPPED = {"/api/v1/chat": ("message",)}


class NotStrictJSON(ValueError):
    pass


def _constant(name: str) -> Any:
    raise NotStrictJSON(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJSON(f"the number {text[:40]} is too large")
    return value


def _refuse_surrogates(value: Any, dropped: tuple[str, ...] = ()) -> None:
    stack = [value]
    if dropped and isinstance(value, dict):
        stack = [*value.keys(), *(v for k, v in value.items() if not (k in dropped and isinstance(v, str)))]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise NotStrictJSON("a string holds a lone UTF-16 surrogate (\\ud800–\\udfff)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def strict_loads(body: bytes, *, surrogates_dropped: tuple[str, ...] = ()) -> Any:
    """json.loads, refusing NaN/Infinity, numbers beyond a float, and lone surrogates in strings and keys (except in
    the named top-level fields, which their endpoint cleans)."""
    value = json.loads(body, parse_constant=_constant, parse_float=_finite)
    _refuse_surrogates(value, surrogates_dropped)
    return value


def _is_json(content_type: str | None) -> bool:
    # The same test FastAPI uses to decide that a body is JSON (a body without a content type is not parsed).
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _invalid(path: str, reason: str) -> JSONResponse:
    if path.startswith("/open311/"):   # that API's own error shape (GeoReport v2), as its views answer
        return JSONResponse([{"code": 400, "description": f"body: {reason}"}], status_code=400)
    return JSONResponse({"detail": [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error",
                                     "input": {}, "ctx": {"error": reason}}]}, status_code=422)


class StrictJSONMiddleware:
    """Reads a JSON request body once, strictly, and answers 422 when it is not strict JSON; otherwise hands the same
    bytes on. Plain ASGI, so nothing but the body is buffered (FastAPI reads bodies whole anyway)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OWN_PARSERS:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        encoding = headers.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
        if not _is_json(headers.get(b"content-type", b"").decode("latin-1")) or encoding not in ("", "identity"):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            dropped = SURROGATES_DROPPED.get(scope["path"], ())
            try:
                if len(body) > OFF_LOOP_BYTES:   # a big body is parsed in a worker thread: the event loop stays free
                    await run_in_threadpool(strict_loads, body, surrogates_dropped=dropped)
                else:
                    strict_loads(body, surrogates_dropped=dropped)
            except NotStrictJSON as exc:
                await _invalid(scope["path"], str(exc))(scope, receive, send)
                return
            except RecursionError:   # not a ValueError; FastAPI's own answer gave no reason (review 2026-12-06, L3)
                await _invalid(scope["path"], "the JSON is nested too deeply")(scope, receive, send)
                return
            except ValueError:
                pass   # malformed: FastAPI answers it as it always has
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _cut(text: str, limit: int) -> str:
    # backslashreplace: a lone surrogate is shown as \ud800, which UTF-8 can carry.
    shown = text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")
    return shown + f"…(+{len(text) - limit} characters)" if len(text) > limit else shown


def echo(value: Any, depth: int = 0) -> Any:
    """A preview of a rejected value that JSON and UTF-8 can carry and that stays small."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else _cut(f"{value:e}", ECHO_CHARS)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _cut(value, ECHO_CHARS)
    if isinstance(value, (bytes, bytearray)):
        return _cut(bytes(value[:ECHO_CHARS * 4]).decode("utf-8", "replace"), ECHO_CHARS)
    if depth >= ECHO_DEPTH:
        return "…"
    if isinstance(value, dict):
        shown = {echo(str(k)): echo(v, depth + 1) for k, v in list(value.items())[:ECHO_ITEMS]}
        if len(value) > ECHO_ITEMS:
            shown["…"] = f"+{len(value) - ECHO_ITEMS} keys"
        return shown
    if isinstance(value, (list, tuple)):
        shown = [echo(v, depth + 1) for v in list(value[:ECHO_ITEMS])]
        return shown + [f"…(+{len(value) - ECHO_ITEMS} items)"] if len(value) > ECHO_ITEMS else shown
    return _cut(str(value), ECHO_CHARS)


def _shown(error: dict) -> dict:
    """FastAPI's error shape (type, loc, msg, input, ctx), with the caller's values previewed."""
    shown = {}
    for key, value in error.items():
        if key == "loc":
            shown[key] = [echo(part) for part in value][:ECHO_DEPTH * 4]
        elif key in ("input", "ctx"):
            shown[key] = echo(value)
        else:
            shown[key] = _cut(str(value), DETAIL_CHARS)
    return shown


def install(app: FastAPI) -> None:
    """Strict JSON bodies, and 422/4xx answers that never fail to encode and never echo megabytes."""
    app.add_middleware(StrictJSONMiddleware)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": [_shown(error) for error in exc.errors()[:20]]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if isinstance(exc.detail, str) and len(exc.detail) > DETAIL_CHARS:
            exc = StarletteHTTPException(exc.status_code, _cut(exc.detail, DETAIL_CHARS), headers=exc.headers)
        return await http_exception_handler(request, exc)
