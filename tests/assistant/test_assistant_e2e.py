"""End to end with the real parts: the app under uvicorn on loopback (tiny-city router, SQLite and PostgreSQL), the
real Rasa server (assistant.manage.start_rasa, the trained model from the cache) whose custom actions call back into
that app, and a citizen and an official talking through the app's web chat relay POST /api/v1/chat.

- A citizen (a cookie-keeping httpx client = one web session) files a complaint in conversation — description,
  place read back and confirmed, phone — and the order it names exists in the database with channel "web" and that
  session's OpenID; after the order has moved (accept → dispatch → sign through the API) "我的工单" and "order number
  + last 4 digits" both answer with the state stored in the database; another visitor does not see it.
- An official logs in (POST /api/v1/auth/token) and asks "本月岳麓区投诉多少件" (and the follow-up "那雨花区呢"): the
  number in the reply is the one GET /api/v1/indicators/order_count gives for the same month and district.

Rasa takes 60–70 s to load, so it is started once for the module, its action endpoint fixed to one app URL; each
database gets its own app, started on that same port in turn. Rasa and the apps share the assistant's API key (set
explicitly, as HOTLINE_ASSISTANT_API_KEY would): the webhook token Rasa sends is derived from it. Rasa's settings keep
the real cache folder (where the trained model is); the app's are the tiny city's.

Skips when the Rasa venv or a trained model is missing, unless HOTLINE_REQUIRE_RASA=1 (then it fails).
"""
from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from support import clean_postgres_url, free_port, fresh_router

from api.app import create_app
from api.auth.keys import create_api_key
from api.auth.staff import create_staff
from api.channels.chat import COOKIE, read_session_cookie
from assistant.manage import start_rasa, stop_process, wait_until_ready, why_rasa_cannot_run
from hotline.core.config import get_settings
from hotline.core.db import transaction
from hotline.core.migrate import upgrade
from orders.lifecycle import STATE_LABELS, State
from orders.models import RoutingDecision, WorkOrder

TURN_TIMEOUT_S = 30.0           # one chat turn (Rasa + actions + service); a cold TensorFlow graph is the slow part
RASA_READY_TIMEOUT_S = 300.0    # cold start is 60–70 s on 2 idle cores; the machine is shared
CITY_TZ = ZoneInfo("Asia/Shanghai")
OFFICIAL, OFFICIAL_PASSWORD = "wang.official", "长沙市12345-official!"
PHONE = "13812345678"
ORDER_NO = re.compile(r"工单号[:：]\s*([A-Z]{0,4}\d{8,})")
FALLBACK_DEPARTMENT = "430104-CHENGGUAN"   # the tiny city's 岳麓区城管, if routing named none


# -- Rasa, once for the module --------------------------------------------------------------------------------------
@dataclass
class Assistant:
    url: str              # Rasa
    app_port: int         # where Rasa sends its action calls: every app of this module listens here
    api_key: str          # the assistant's key, shared by Rasa's webhook token and the apps
    log_file: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_file.read_text(errors="replace")[-chars:] if self.log_file.exists() else "(no log)"


@pytest.fixture(scope="module")
def assistant(tmp_path_factory):
    why_not = why_rasa_cannot_run(get_settings())
    if why_not:
        if os.environ.get("HOTLINE_REQUIRE_RASA") == "1":
            pytest.fail(f"HOTLINE_REQUIRE_RASA=1 but {why_not}")
        pytest.skip(why_not)
    app_port, rasa_port = free_port(), free_port()
    api_key = "hlk_e2e_" + secrets.token_urlsafe(24)
    app_url = f"http://127.0.0.1:{app_port}"
    settings = get_settings().model_copy(update={"assistant_api_key": api_key, "service_url": app_url,
                                                 "state_dir": tmp_path_factory.mktemp("rasa-state")})
    log_file = tmp_path_factory.mktemp("rasa-log") / "rasa.log"
    process = start_rasa(settings, port=rasa_port, service_url=app_url, log_file=log_file)
    running = Assistant(url=f"http://127.0.0.1:{rasa_port}", app_port=app_port, api_key=api_key, log_file=log_file)
    try:
        wait_until_ready(running.url, timeout=RASA_READY_TIMEOUT_S, process=process)
        yield running
    except (TimeoutError, RuntimeError) as exc:
        pytest.fail(f"the Rasa server did not come up: {exc}\n{running.log_tail()}")
    finally:
        stop_process(process)


# -- the app, once per database, on the port Rasa calls -------------------------------------------------------------
@dataclass
class RunningApp:
    url: str
    app: object
    dispatch_key: str

    @property
    def sessions(self):
        return self.app.state.sessions


def _database_url(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'hotline.sqlite3'}"
    url = clean_postgres_url()
    upgrade(url)   # the real migrations
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, assistant, base_router, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"app-{request.param}")
    database_url = _database_url(request.param, tmp)
    router = fresh_router(base_router, cache_dir=tmp, database_url=database_url)
    # Orders stay "received" at intake, so the test moves them itself (the state it asks for is not the initial one).
    settings = router.settings.model_copy(update={
        "assistant_api_key": assistant.api_key, "service_url": f"http://127.0.0.1:{assistant.app_port}",
        "rasa_url": assistant.url, "assistant_timeout_s": TURN_TIMEOUT_S - 5, "auto_dispatch": False})
    router.settings = settings
    app = create_app(settings, router=router)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=assistant.app_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"the app did not start on port {assistant.app_port}")
            time.sleep(0.05)
        with transaction(app.state.sessions) as session:
            dispatch_key = create_api_key(session, name="e2e-dispatch", scopes=["orders:read", "orders:write"])[1]
        yield RunningApp(url=f"http://127.0.0.1:{assistant.app_port}", app=app, dispatch_key=dispatch_key)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        app.state.sessions.kw["bind"].dispose()


# -- talking ------------------------------------------------------------------------------------------------------
class Chat:
    """One web visitor (the cookie jar is their identity), optionally logged in as staff."""

    def __init__(self, served: RunningApp, assistant: Assistant, token: str | None = None):
        self.client = httpx.Client(base_url=served.url, timeout=TURN_TIMEOUT_S)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.assistant = assistant
        self.transcript: list[str] = []

    def say(self, message: str) -> str:
        response = self.client.post("/api/v1/chat", json={"message": message}, headers=self.headers)
        self.transcript.append(f"> {message}")
        assert response.status_code == 200, f"{response.status_code} {response.text}\n{self.assistant.log_tail()}"
        reply = "\n".join(m["text"] for m in response.json() if m.get("text"))
        self.transcript.append(reply)
        return reply

    def __str__(self) -> str:
        return "\n".join(self.transcript)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def chat(served, assistant):
    opened: list[Chat] = []

    def open_chat(token: str | None = None) -> Chat:
        opened.append(Chat(served, assistant, token))
        return opened[-1]

    yield open_chat
    for conversation in opened:
        conversation.close()


def _stored_order(served: RunningApp, order_no: str) -> WorkOrder | None:
    with served.sessions() as session:
        order = session.scalar(select(WorkOrder).where(WorkOrder.order_no == order_no))
        if order is not None:
            session.expunge(order)
        return order


def _move(served: RunningApp, order_no: str) -> None:
    """受理 → 派单 (to the routed department) → 签收, through the orders API as a dispatch system would."""
    with served.sessions() as session:
        order = session.scalar(select(WorkOrder).where(WorkOrder.order_no == order_no))
        routed = session.scalar(select(RoutingDecision.department_code).where(RoutingDecision.order_id == order.id))
    headers = {"X-API-Key": served.dispatch_key}
    with httpx.Client(base_url=served.url, timeout=10) as api:
        for step in ({"action": "accept"},
                     {"action": "dispatch", "department_code": routed or FALLBACK_DEPARTMENT},
                     {"action": "sign"}):
            response = api.post(f"/api/v1/orders/{order_no}/actions", json=step, headers=headers)
            assert response.status_code == 200, response.text


def _this_month() -> tuple[str, str]:
    """本月 as the action computes it: the calendar month in Asia/Shanghai, end exclusive."""
    today = dt.datetime.now(CITY_TZ).date()
    start = today.replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start.isoformat(), end.isoformat()


def _count_in_reply(reply: str) -> int:
    found = re.search(r"工单数为\s*(\d+)\s*件", reply)
    assert found, f"no 工单数 figure in the reply: {reply}"
    return int(found.group(1))


# -- the tests ------------------------------------------------------------------------------------------------------
def test_a_citizen_files_a_complaint_in_chat_and_follows_it(served, chat):
    citizen = chat()
    asked_place = citizen.say("我要投诉，晚上好多摊贩占道摆摊卖烧烤，人行道都过不去")
    assert "哪里" in asked_place or "位置" in asked_place or "地点" in asked_place, citizen

    read_back = citizen.say("岳麓区望月湖街道桃子湖路")
    assert "望月湖街道" in read_back and "对吗" in read_back, citizen      # geocoded and read back

    asked_phone = citizen.say("对的")
    assert "电话" in asked_phone, citizen

    filed = citizen.say(f"我的手机是{PHONE}")
    found = ORDER_NO.search(filed)
    assert found, citizen
    order_no = found.group(1)
    assert PHONE not in filed and "5678" in filed, citizen             # the phone is only read back masked

    order = _stored_order(served, order_no)
    assert order is not None, f"{order_no} is not in the database\n{citizen}"
    session_id = read_session_cookie(citizen.client.cookies.get(COOKIE), served.app.state.jwt_key)
    assert order.channel == "web" and order.caller_openid == f"web:{session_id}"
    assert order.caller_phone_last4 == PHONE[-4:] and "烧烤" in order.text_masked
    assert order.state == State.RECEIVED.value

    _move(served, order_no)
    moved = _stored_order(served, order_no)
    assert moved.state == State.SIGNED.value
    stored_label = STATE_LABELS[State(moved.state)]

    mine = citizen.say("我的工单处理得怎么样了")
    assert order_no in mine and f"当前状态：{stored_label}" in mine, citizen

    by_number = citizen.say(f"查一下工单{order_no}，手机尾号{PHONE[-4:]}")
    assert order_no in by_number and f"当前状态：{stored_label}" in by_number, citizen

    wrong_digits = citizen.say(f"查一下工单{order_no}，手机尾号0000")
    assert "没有查到" in wrong_digits and stored_label not in wrong_digits, citizen

    # Completed and approved by the centre: the citizen's answer carries the 办理结果.
    headers = {"X-API-Key": served.dispatch_key}
    with httpx.Client(base_url=served.url, timeout=10) as api:
        for step in ({"action": "complete", "result": "已联合城管中队清理占道烧烤摊，每晚巡查"}, {"action": "approve"}):
            response = api.post(f"/api/v1/orders/{order_no}/actions", json=step, headers=headers)
            assert response.status_code == 200, response.text
    done = citizen.say(f"查一下工单{order_no}，手机尾号{PHONE[-4:]}")
    assert "办理结果" in done and "已联合城管中队清理占道烧烤摊" in done, citizen

    stranger = chat()                                                  # another browser: not their order
    theirs = stranger.say("我的工单处理得怎么样了")
    assert order_no not in theirs and "还没有登记" in theirs, stranger


def test_an_officials_indicator_question_matches_the_indicators_api(served, chat):
    headers = {"X-API-Key": served.dispatch_key}
    with httpx.Client(base_url=served.url, timeout=30) as api:
        for complaint in ("岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤，人行道都过不去",
                          "岳麓区桔子洲街道楼上邻居每天半夜跺脚拖椅子，吵得睡不着",
                          "岳麓区望月湖街道工地半夜还在打桩施工，噪音吵得睡不着",
                          "雨花区高桥街道商铺门口音响喇叭放得震天响招揽顾客"):
            assert api.post("/api/v1/orders", json={"text": complaint}, headers=headers).status_code == 201
        with transaction(served.sessions) as session:
            create_staff(session, username=OFFICIAL, password=OFFICIAL_PASSWORD, role="official")
        login = api.post("/api/v1/auth/token", json={"username": OFFICIAL, "password": OFFICIAL_PASSWORD})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        start, end = _this_month()

        def from_api(district: str) -> int:
            response = api.get("/api/v1/indicators/order_count", headers={"Authorization": f"Bearer {token}"},
                               params={"start": start, "end": end, "district": district})
            assert response.status_code == 200, response.text
            return int(response.json()["value"])

        official = chat(token)
        yuelu = official.say("本月岳麓区投诉多少件")
        assert _count_in_reply(yuelu) == from_api("岳麓区") >= 3 and "岳麓区" in yuelu, official
        yuhua = official.say("那雨花区呢")                                # a follow-up keeps metric and period
        assert _count_in_reply(yuhua) == from_api("雨花区") >= 1 and "雨花区" in yuhua, official

    anonymous = chat()                                                 # no staff token: no figures
    refused = anonymous.say("本月岳麓区投诉多少件")
    assert "登录" in refused and not re.search(r"\d+件", refused), anonymous
