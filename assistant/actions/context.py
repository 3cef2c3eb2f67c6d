"""What every action needs besides the tracker: where the service is, its credentials, the clock.

The webhook view (api/routes/assistant_webhook.py) sets an `ActionContext` for the duration of one action call; tests set
their own with `use_context`. A context variable (not a global) keeps two apps in one process — the tests run
several — from seeing each other's service URL or key. Without a context (e.g. the actions served by rasa_sdk's own
action server) the settings from the environment are used.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx

from hotline.core.clock import CITY_TZ

BUSY = "系统暂时繁忙，请稍后再试或拨打12345人工服务。"


def city_now() -> dt.datetime:
    return dt.datetime.now(CITY_TZ)


@dataclass(frozen=True)
class ActionContext:
    base_url: str                                  # the service, e.g. http://127.0.0.1:8000
    api_key: str | None                            # the assistant's key: orders:read, orders:write, route
    timeout_s: float = 8.0
    city_name: str = "长沙市"
    now: Callable[[], dt.datetime] = city_now      # injectable clock (aware datetimes)
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)

    def today(self) -> dt.date:
        return self.now().astimezone(CITY_TZ).date()


_current: ContextVar[ActionContext | None] = ContextVar("assistant_action_context", default=None)


@contextmanager
def use_context(context: ActionContext) -> Iterator[ActionContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current_context() -> ActionContext:
    context = _current.get()
    if context is not None:
        return context
    from hotline.core.config import get_settings  # only without a context (run outside the app): settings on demand

    settings = get_settings()
    return ActionContext(base_url=settings.service_url, api_key=settings.assistant_api_key,
                         timeout_s=settings.assistant_timeout_s, city_name=settings.city_name)


# -- the conversation's metadata (set by the app's chat relay / WeChat) -----------------------------------------------
def conversation_metadata(tracker) -> dict[str, Any]:
    """channel, openid, auth_token, role: from the latest message, else from the latest user message that had some."""
    latest = (tracker.latest_message or {}).get("metadata")
    if isinstance(latest, dict) and latest:
        return latest
    for event in reversed(tracker.events or []):
        if event.get("event") == "user" and isinstance(event.get("metadata"), dict) and event["metadata"]:
            return event["metadata"]
    return {}


def latest_text(tracker) -> str:
    return ((tracker.latest_message or {}).get("text") or "").strip()


def latest_intent(tracker) -> str | None:
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


def entity_values(tracker, name: str) -> list[str]:
    """Distinct values of one entity in the latest message (the regex extractor and DIET may both report it)."""
    values = []
    for entity in (tracker.latest_message or {}).get("entities") or []:
        value = entity.get("value")
        if entity.get("entity") == name and isinstance(value, str) and value.strip() and value.strip() not in values:
            values.append(value.strip())
    return values
