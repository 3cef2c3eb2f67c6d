"""The service's HTTP API as the actions use it: async, with a timeout, failures sorted into two kinds.

`ServiceUnavailable` — the service cannot answer now (refused connection, timeout, 5xx, garbage): the action says
`BUSY` politely. `ServiceRefused` — the service answered with a 4xx that the action explains in words (a wrong
order number, an expired login, an unknown district). Actions never reach the database: only this client.
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx

from assistant.actions.context import ActionContext

log = logging.getLogger("hotline.assistant.actions")


class ServiceUnavailable(Exception):
    """The service did not answer usefully (down, timeout, 5xx)."""


class ServiceRefused(Exception):
    """A 4xx answer: `status` and the service's `detail` (for the action to put into words)."""

    def __init__(self, status: int, detail: Any):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class ServiceClient:
    """One per action call (`async with ServiceClient(context) as api:`): an AsyncClient must not outlive its loop."""

    def __init__(self, context: ActionContext):
        self.context = context
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> ServiceClient:
        self._http = httpx.AsyncClient(base_url=self.context.base_url.rstrip("/"), timeout=self.context.timeout_s,
                                       transport=self.context.transport)
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _key_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.context.api_key} if self.context.api_key else {}

    async def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        assert self._http is not None, "use ServiceClient as an async context manager"
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            log.warning("service timeout after %.1f s on %s", self.context.timeout_s, path.split("?")[0])
            raise ServiceUnavailable("timeout") from None
        except httpx.HTTPError as exc:
            log.warning("service unreachable (%s)", type(exc).__name__)
            raise ServiceUnavailable(type(exc).__name__) from None
        if response.status_code >= 500:
            log.warning("service answered HTTP %s", response.status_code)
            raise ServiceUnavailable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except (ValueError, AttributeError):
                detail = response.text[:200]
            raise ServiceRefused(response.status_code, detail)
        return response

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ServiceUnavailable("the service answered with something that is not JSON") from None

    # -- citizens ------------------------------------------------------------------------------------------------------
    async def public_order(self, order_no: str, phone_last4: str, *, on_behalf_of: str = "") -> dict | None:
        """The citizen view of an order, or None when number and phone digits do not match (one answer for both).
        Sent with our key and the chat user's id, so the lookup limit applies per chat user, not to all of them
        together (every assistant call comes from 127.0.0.1)."""
        headers = {**self._key_headers(), "X-On-Behalf-Of": on_behalf_of[:128]} if on_behalf_of else {}
        try:
            response = await self._call("GET", f"/api/v1/public/orders/{quote(order_no, safe='')}",
                                        params={"phone_last4": phone_last4}, headers=headers)
        except ServiceRefused as exc:
            if exc.status in (404, 422):
                return None
            raise
        return self._json(response)

    async def my_orders(self, openid: str) -> list[dict]:
        response = await self._call("GET", "/api/v1/orders", params={"openid": openid}, headers=self._key_headers())
        orders = self._json(response)
        if not isinstance(orders, list):
            raise ServiceUnavailable("unexpected answer to the orders-by-openid lookup")
        return orders

    async def route(self, text: str) -> dict:
        """Route (and geocode) a text without storing anything: used to read the citizen's place back."""
        response = await self._call("POST", "/api/v1/route", json={"text": text}, headers=self._key_headers())
        return self._json(response)

    async def create_order(self, body: dict, *, idempotency_key: str) -> tuple[dict, bool]:
        """(order, replayed): replayed is True when the same request had already filed this order."""
        headers = self._key_headers() | {"Idempotency-Key": idempotency_key}
        response = await self._call("POST", "/api/v1/orders", json=body, headers=headers)
        return self._json(response), response.headers.get("Idempotent-Replayed") == "true"

    async def request_callback(self, body: dict) -> dict:
        """File a call-back task for the citizen (转人工), or get their open one: {id, status, due_at, has_phone, …}."""
        response = await self._call("POST", "/api/v1/callbacks", json=body, headers=self._key_headers())
        answer = self._json(response)
        if not isinstance(answer, dict) or not answer.get("due_at"):
            raise ServiceUnavailable("unexpected answer to the call-back request")
        return answer

    # -- officials -----------------------------------------------------------------------------------------------------
    async def indicator(self, name: str, params: dict[str, Any], *, token: str) -> dict:
        response = await self._call("GET", f"/api/v1/indicators/{quote(name, safe='')}",
                                    params={k: v for k, v in params.items() if v not in (None, "", False)},
                                    headers={"Authorization": f"Bearer {token}"})
        return self._json(response)

    async def vitals(self, params: dict[str, Any], *, token: str) -> dict:
        """The latest reading of every city vital sign (by area) with its level and staleness."""
        response = await self._call("GET", "/api/v1/vitals", params={k: v for k, v in params.items() if v},
                                    headers={"Authorization": f"Bearer {token}"})
        return self._json(response)

    async def indicator_catalogue(self, *, token: str) -> Any:
        response = await self._call("GET", "/api/v1/indicators", headers={"Authorization": f"Bearer {token}"})
        return self._json(response)
