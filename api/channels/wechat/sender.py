"""Replies to citizens through the customer-service message API, behind `WeChatSender` (a test double records)."""
from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

import httpx

log = logging.getLogger("hotline.wechat")

class WeChatSender(Protocol):
    def send_text(self, openid: str, text: str) -> None: ...


class HttpWeChatSender:
    """Customer-service messages through WeChat's API; the access token is refreshed here and only here."""

    API = "https://api.weixin.qq.com/cgi-bin"

    def __init__(self, app_id: str, app_secret: str, *, client: httpx.Client | None = None):
        self.app_id, self.app_secret = app_id, app_secret
        self._client = client or httpx.Client(timeout=5.0)
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def _access_token(self) -> str:
        with self._lock:
            if self._token and self._token[1] > time.monotonic() + 60:
                return self._token[0]
            response = self._client.get(f"{self.API}/token", params={"grant_type": "client_credential",
                                                                     "appid": self.app_id, "secret": self.app_secret})
            data = response.json()
            if "access_token" not in data:
                raise RuntimeError(f"WeChat token refused: errcode {data.get('errcode')}")
            self._token = (data["access_token"], time.monotonic() + float(data.get("expires_in", 7200)))
            return self._token[0]

    def send_text(self, openid: str, text: str) -> None:
        response = self._client.post(f"{self.API}/message/custom/send", params={"access_token": self._access_token()},
                                     json={"touser": openid, "msgtype": "text", "text": {"content": text}})
        data = response.json()
        if data.get("errcode", 0) != 0:
            raise RuntimeError(f"WeChat send refused: errcode {data.get('errcode')}")


class UnconfiguredSender:
    """Without an AppSecret no reply can be sent: say so in the log instead of failing the intake."""

    def send_text(self, openid: str, text: str) -> None:
        log.warning("WeChat reply not sent (HOTLINE_WECHAT_APP_ID/APP_SECRET not configured)")


class RecordingSender:
    """Test double of the outbound API: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def send_text(self, openid: str, text: str) -> None:
        with self._lock:
            self.sent.append((openid, text))

