"""The web chat relay and page: identity from the signed cookie (never the browser's word), staff tokens passed on,
bad messages refused with a reason, Rasa down or slow → 503, rate limit, the page and its Content-Security-Policy.

The relay is tested against the in-process test double (ScriptedAssistant) and against FakeRasa, a real HTTP
server on loopback that speaks Rasa's REST webhook protocol (in tests/support.py; the browser tests use it too).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from support import FakeRasa, closed_port_url, fake_rasa_answer

from api.app import create_app
from api.auth.models import StaffUser
from api.auth.staff import create_staff, issue_token
from api.channels.assistant_client import (
    UNAVAILABLE_MESSAGE,
    AssistantUnavailable,
    RasaRestClient,
    ScriptedAssistant,
    clean_messages,
)
from api.channels.chat import COOKIE, session_cookie
from hotline.core.db import transaction

OFFICIAL_PASSWORD = "长沙12345-official"
SVG_NS_URL = "http://www.w3.org/2000/svg"   # the one URL the page's script may contain: a namespace, not a fetch


# -- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture
def make_client(router):
    """A TestClient over the tiny-city app with settings overrides and an optional assistant (test double)."""
    clients = []

    def build(assistant=None, **overrides) -> TestClient:
        settings = router.settings.model_copy(update=overrides)
        router.settings = settings
        app = create_app(settings, router=router)
        if assistant is not None:
            app.state.assistant = assistant
        client = TestClient(app)
        client.__enter__()   # lifespan: migrates the embedded SQLite
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def echo_assistant() -> ScriptedAssistant:
    return ScriptedAssistant(lambda sender, message, metadata: fake_rasa_answer(sender, message))


def _official_token(client: TestClient) -> str:
    with transaction(client.app.state.sessions) as session:
        create_staff(session, username="zhang.official", password=OFFICIAL_PASSWORD, role="official")
    response = client.post("/api/v1/auth/token", json={"username": "zhang.official", "password": OFFICIAL_PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


# -- the page ------------------------------------------------------------------------------------------------
def test_the_page_is_served_self_contained_with_a_strict_csp_and_a_session_cookie(make_client):
    client = make_client(echo_assistant())
    page = client.get("/chat")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert "frame-ancestors 'none'" in csp and page.headers["x-content-type-options"] == "nosniff"
    html = page.text
    assert 'lang="zh-CN"' in html and "工作人员登录" in html and 'name="viewport"' in html
    assert "/chat/assets/chat.js" in html and "/chat/assets/chat.css" in html
    assert "http://" not in html and "https://" not in html and "<script>" not in html   # no CDN, no inline script
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    for asset, kind in (("chat.js", "text/javascript"), ("chat.css", "text/css")):
        served = client.get(f"/chat/assets/{asset}")
        assert served.status_code == 200 and served.headers["content-type"].startswith(kind)
        assert served.headers["content-security-policy"] == csp
    script = client.get("/chat/assets/chat.js").text
    assert "innerHTML" not in script and "eval(" not in script and "http" not in script.replace(SVG_NS_URL, "")
    for missing in ("nope.js", "..%2Fchat.py", "chat.html.bak", "%2E%2E%2F%2E%2E%2Fpyproject.toml"):
        assert client.get(f"/chat/assets/{missing}").status_code == 404
    # a second visit with the cookie keeps the same session: no new cookie
    assert "set-cookie" not in client.get("/chat").headers


def test_asset_names_too_long_for_the_file_system_are_a_404_not_a_500(make_client):
    # Review 2026-12-06, L2: a name of 256+ bytes raised OSError (File name too long) in Path.is_file().
    client = make_client(echo_assistant())
    for name in ("a" * 256 + ".js", "投诉" * 100 + ".css", "b" * 5000 + ".svg", "%E6%8A%95" * 200 + ".js"):
        response = client.get(f"/chat/assets/{name}")
        assert response.status_code == 404, (len(name), response.status_code)
    assert client.get("/chat/assets/chat.js").status_code == 200


# -- identity ------------------------------------------------------------------------------------------------
def test_identity_comes_from_the_signed_cookie_not_from_the_browser(make_client):
    assistant = echo_assistant()
    client = make_client(assistant)
    client.get("/chat")
    session_id = client.cookies[COOKIE].split(".")[0]
    forged = {"message": "我上周反映的路灯坏了处理得怎么样了？", "sender": "oWx_someone_else",
              "metadata": {"openid": "oWx_someone_else", "role": "admin", "auth_token": "stolen", "channel": "wechat"}}
    first = client.post("/api/v1/chat", json=forged)
    second = client.post("/api/v1/chat", json={"message": "谢谢👍"})
    assert first.status_code == 200 and second.status_code == 200
    assert first.json()[0]["text"] == "收到您的消息：我上周反映的路灯坏了处理得怎么样了？"
    for turn in assistant.turns:
        assert turn["sender"] == f"web:{session_id}"
        assert turn["metadata"] == {"channel": "web", "openid": f"web:{session_id}", "role": "citizen"}

    other = TestClient(client.app)   # another browser: another anonymous identity
    assert other.post("/api/v1/chat", json={"message": "你好"}).status_code == 200
    assert assistant.turns[-1]["sender"].startswith("web:") and assistant.turns[-1]["sender"] != f"web:{session_id}"

    # A cookie naming someone's session id without our signature is not that session: a new one is issued.
    tampered = TestClient(client.app, cookies={COOKIE: f"{session_id}.{'0' * 64}"})
    reply = tampered.post("/api/v1/chat", json={"message": "我的工单"})
    assert reply.status_code == 200 and assistant.turns[-1]["sender"] != f"web:{session_id}"
    assert COOKIE in reply.headers["set-cookie"]
    # A correctly signed cookie is honoured (the page's own GET /chat issues exactly this).
    signed = TestClient(client.app, cookies={COOKIE: session_cookie("A" * 22, client.app.state.jwt_key)})
    assert signed.post("/api/v1/chat", json={"message": "我的工单"}).status_code == 200
    assert assistant.turns[-1]["metadata"]["openid"] == "web:" + "A" * 22


def test_a_valid_staff_token_is_passed_on_and_an_invalid_one_is_refused(make_client):
    assistant = echo_assistant()
    client = make_client(assistant)
    token = _official_token(client)
    asked = client.post("/api/v1/chat", json={"message": "本月岳麓区噪音投诉多少件"},
                        headers={"Authorization": f"Bearer {token}"})
    assert asked.status_code == 200
    metadata = assistant.turns[-1]["metadata"]
    assert metadata["auth_token"] == token and metadata["role"] == "official" and metadata["channel"] == "web"
    assert metadata["openid"].startswith("web:")

    key = client.app.state.jwt_key
    official = StaffUser(username="zhang.official", role="official", department_code=None)
    expired = issue_token(official, key, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=9))
    foreign = issue_token(official, "another-installation-key-" * 2)
    turns = len(assistant.turns)
    for header in (f"Bearer {expired}", f"Bearer {foreign}", "Bearer ", "Bearer not.a.jwt", f"Basic {token}"):
        refused = client.post("/api/v1/chat", json={"message": "按时办结率最低的三个部门"},
                              headers={"Authorization": header})
        assert refused.status_code == 401, header
        assert "登录" in refused.json()["detail"] and refused.headers["www-authenticate"] == "Bearer"
    assert len(assistant.turns) == turns   # nothing reached the assistant


# -- messages ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, reason", [
    ({"message": ""}, "empty"),
    ({"message": "   \n\t  "}, "empty"),
    ({"message": "\x00\x07\x1b\x7f"}, "empty"),                         # only control characters
    ({"message": "噪" * 2001}, "too long"),
    ({"message": "本月岳麓区噪音投诉多少件？" * 200}, "too long"),       # 2,600 characters
    ({}, "Field required"),
    ({"message": 12345}, "string"),
])
def test_bad_messages_are_refused_with_a_reason(make_client, body, reason):
    assistant = echo_assistant()
    client = make_client(assistant)
    response = client.post("/api/v1/chat", json=body)
    assert response.status_code == 422 and reason in json.dumps(response.json(), ensure_ascii=False)
    assert assistant.turns == []


def test_control_characters_are_stripped_and_real_text_passes(make_client):
    assistant = echo_assistant()
    client = make_client(assistant)
    messy = "\x00岳麓区望月湖街道\x1b[31m晚上\t摊贩占道（ＫＴＶ太吵）😡\r\n电话13812345678\u0007  "
    assert client.post("/api/v1/chat", json={"message": messy}).status_code == 200
    assert assistant.turns[-1]["message"] == "岳麓区望月湖街道[31m晚上 摊贩占道（ＫＴＶ太吵）😡\n电话13812345678"
    longest = "路灯坏了😀" * 400   # exactly 2,000 characters (an emoji is one)
    assert client.post("/api/v1/chat", json={"message": longest}).status_code == 200
    # a lone surrogate cannot be sent on as UTF-8: dropped, not a 500
    raw = '{"message": "mixed English 和中文 \\ud800 ok"}'.encode()
    response = client.post("/api/v1/chat", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and assistant.turns[-1]["message"] == "mixed English 和中文  ok"
    huge = client.post("/api/v1/chat", content=b'{"message": "' + b"a" * 100_000 + b'"}',
                       headers={"Content-Type": "application/json"})
    assert huge.status_code == 413


def test_the_assistants_answer_is_cleaned_before_the_page_sees_it():
    cleaned = clean_messages([
        "not a message", {"recipient_id": "u", "text": "  "},
        {"recipient_id": "u", "text": "按时办结率最低的三个部门：", "buttons": [{"title": "按街道拆分"}, {"payload": "x"}]},
        {"recipient_id": "u", "custom": {"chart": {"type": "bar", "labels": ["a", "b"], "values": [1]}}},
        {"recipient_id": "u", "custom": {"chart": {"type": "bar", "labels": ["a"], "values": [float("nan")]}}},
        {"recipient_id": "u", "custom": {"chart": {"labels": ["岳麓区"], "values": [0.93], "unit": "%"}}},
    ])
    assert cleaned == [
        {"recipient_id": "u", "text": "按时办结率最低的三个部门：",
         "buttons": [{"title": "按街道拆分", "payload": "按街道拆分"}]},
        {"recipient_id": "u", "custom": {"chart": {"type": "bar", "title": "", "unit": "%", "labels": ["岳麓区"],
                                                   "values": [0.93]}}},
    ]


def test_only_links_to_this_sites_pages_reach_the_page():
    """An answer may link to the cockpit view that shows it; never to another site or a script."""
    links = ["/cockpit?start=2026-11-01&end=2026-12-01&district=430104", "https://evil.example/cockpit", "//evil.example",
             "javascript:alert(1)", "/\\evil.example", "/cockpit?x=1 2", 42]
    cleaned = clean_messages([{"recipient_id": "u", "text": "本月工单数为12件。",
                               "custom": {"link": {"href": href, "title": "在驾驶舱查看"}}} for href in links]
                             + [{"recipient_id": "u", "custom": {"link": {"href": "/cockpit", "title": "  "}}}])
    assert [m.get("custom", {}).get("link") for m in cleaned] == [
        {"href": "/cockpit?start=2026-11-01&end=2026-12-01&district=430104", "title": "在驾驶舱查看"},
        None, None, None, None, None, None]


# -- the real protocol, a real (fake) Rasa -------------------------------------------------------------------
def test_the_relay_speaks_rasas_rest_webhook_protocol(make_client):
    with FakeRasa() as rasa:
        client = make_client(rasa_url=rasa.url)
        client.get("/chat")
        session_id = client.cookies[COOKIE].split(".")[0]
        body = {"message": "本月各区诉求量排名，给我选择", "metadata": {"location": {"lat": 28.18, "lng": 112.94}}}
        response = client.post("/api/v1/chat", json=body)
        assert response.status_code == 200, response.text
        [turn] = rasa.turns
        assert turn == {"sender": f"web:{session_id}", "message": "本月各区诉求量排名，给我选择",
                        "metadata": {"channel": "web", "openid": f"web:{session_id}", "role": "citizen",
                                     "location": {"lat": 28.18, "lng": 112.94, "datum": "wgs84"}}}
        text, choose, chart = response.json()
        assert text["text"] == "收到您的消息：本月各区诉求量排名，给我选择" and text["recipient_id"] == f"web:{session_id}"
        assert [b["payload"] for b in choose["buttons"]] == ["/query_order_status", "/submit_complaint"]
        assert chart["custom"]["chart"]["labels"] == ["岳麓区", "雨花区", "开福区"]
        assert chart["custom"]["chart"]["values"] == [128, 96.5, 40]


def test_rasa_down_slow_or_broken_is_a_503_with_the_message_the_page_shows(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "我家电话13812345678，身份证430104199001011234，楼下烧烤店油烟太大"
    down = make_client(rasa_url=closed_port_url())
    response = down.post("/api/v1/chat", json={"message": secret})
    assert response.status_code == 503 and response.json()["detail"] == UNAVAILABLE_MESSAGE == "助手暂时不可用，请拨打12345"
    assert response.headers["retry-after"]
    with FakeRasa() as rasa:
        slow = make_client(rasa_url=rasa.url, assistant_timeout_s=0.3)
        rasa.delay_s = 1.0
        assert slow.post("/api/v1/chat", json={"message": secret}).status_code == 503
        rasa.delay_s = 0.0
        for status, raw in ((500, None), (200, b"<html>not json</html>"), (200, b'{"not": "a list"}')):
            rasa.status, rasa.raw_body = status, raw
            assert slow.post("/api/v1/chat", json={"message": secret}).status_code == 503
    # The message (and so the phone and ID numbers in it) never reaches the log, masked or not.
    assert "13812345678" not in caplog.text and "4301041990" not in caplog.text and "烧烤店" not in caplog.text
    assert "web chat turn not answered" in caplog.text


def test_the_http_client_maps_every_failure_to_unavailable():
    with FakeRasa() as rasa:
        client = RasaRestClient(rasa.url + "/", timeout_s=2.0)
        answer = asyncio.run(client.send(sender="oWx_1", message="你好", metadata={"channel": "wechat"}))
        assert answer == [{"recipient_id": "oWx_1", "text": "收到您的消息：你好"}]
        rasa.status = 502
        with pytest.raises(AssistantUnavailable, match="502"):
            asyncio.run(client.send(sender="oWx_1", message="你好", metadata={}))
    with pytest.raises(AssistantUnavailable, match="unreachable"):
        asyncio.run(RasaRestClient(closed_port_url(), timeout_s=2.0).send(sender="x", message="你好", metadata={}))


class DripRasa:
    """A Rasa that answers 200 at once and then drips its (valid) reply a byte every `drip_s` seconds: each read
    gets something well within any per-read timeout, but the whole answer takes len(reply) * drip_s."""

    def __init__(self, reply: bytes, drip_s: float) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                try:
                    for i in range(len(reply)):
                        self.wfile.write(reply[i:i + 1])
                        self.wfile.flush()
                        time.sleep(drip_s)
                except OSError:   # the client gave up: what the test wants
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DripRasa:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_drip_fed_rasa_reply_is_cut_off_at_the_turns_deadline(make_client):
    """Review 2026-12-06, L5: the timeout applied per read, so a reply dripped a byte at a time held the web request
    20 s with HOTLINE_ASSISTANT_TIMEOUT_S=3. The whole turn now ends at the deadline (503)."""
    reply = json.dumps([{"recipient_id": "u", "text": "您的工单已受理，请耐心等待处理"}], ensure_ascii=False).encode()
    with DripRasa(reply, drip_s=0.1) as rasa:   # the whole reply would take 8+ s
        started = time.monotonic()
        with pytest.raises(AssistantUnavailable, match="within"):
            asyncio.run(RasaRestClient(rasa.url, timeout_s=1.0).send(sender="u", message="我的工单", metadata={}))
        assert time.monotonic() - started < 2.5
        client = make_client(rasa_url=rasa.url, assistant_timeout_s=1.0)
        started = time.monotonic()
        response = client.post("/api/v1/chat", json={"message": "我想查一下上周投诉的路灯工单"})
        assert response.status_code == 503 and response.json()["detail"] == UNAVAILABLE_MESSAGE
        assert time.monotonic() - started < 2.5


def test_a_huge_rasa_reply_is_refused_not_relayed(make_client):
    """L5: a 9 MB reply was relayed whole; the answer is read up to 256 KB, then the turn is a 503."""
    huge = json.dumps([{"recipient_id": "u", "text": "长沙市岳麓区" * 500_000}], ensure_ascii=False).encode()
    with FakeRasa() as rasa:
        rasa.raw_body = huge
        with pytest.raises(AssistantUnavailable, match="larger than"):
            asyncio.run(RasaRestClient(rasa.url, timeout_s=5.0).send(sender="u", message="你好", metadata={}))
        client = make_client(rasa_url=rasa.url, assistant_timeout_s=5.0)
        response = client.post("/api/v1/chat", json={"message": "你好"})
        assert response.status_code == 503 and len(response.content) < 1_000
        rasa.raw_body = json.dumps([{"recipient_id": "u", "text": "您好，这里是12345热线" * 1_000}],
                                   ensure_ascii=False).encode()   # 30 KB: a long answer still comes through
        assert client.post("/api/v1/chat", json={"message": "你好"}).status_code == 200
        rasa.raw_body = b"[" * 50_000 + b"]" * 50_000                    # valid JSON, too deep for json.loads
        assert client.post("/api/v1/chat", json={"message": "你好"}).status_code == 503


def test_only_http_or_relative_image_urls_reach_the_page():
    """L5: `image: "javascript:…"` was passed through to the page."""
    images = ["https://12345.changsha.gov.cn/static/流程图.png", "http://127.0.0.1:8000/chat/assets/logo.svg",
              "/chat/assets/logo.svg", "images/map.png",
              "javascript:alert(document.cookie)", "JavaScript:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)",
              "java\nscript:alert(1)", "data:image/svg+xml;base64,PHN2Zz4=", "vbscript:msgbox", "https:", ""]
    cleaned = clean_messages([{"recipient_id": "u", "text": "示意图", "image": image} for image in images])
    assert [m.get("image") for m in cleaned] == images[:4] + [None] * (len(images) - 4)


def test_the_chat_is_rate_limited_per_client(make_client):
    client = make_client(echo_assistant(), public_rate_limit_per_minute=3)
    for _ in range(3):
        assert client.post("/api/v1/chat", json={"message": "你好"}).status_code == 200
    limited = client.post("/api/v1/chat", json={"message": "你好"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "频繁" in limited.json()["detail"]
