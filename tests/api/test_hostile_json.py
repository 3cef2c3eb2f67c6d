"""Review 2026-12-06, M1: JSON the service cannot answer in kind. NaN/Infinity/1e400 literals and lone UTF-16
surrogates made FastAPI's 422 handler fail to encode what it echoes (a 500, even without credentials), and a
surrogate that passed validation crashed the SQLite write. Every endpoint answers 4xx, and a 422 never echoes
megabytes of input."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from support import STALL

from api.auth.keys import create_api_key
from hotline.core.db import transaction
from orders.models import WorkOrder
from orders.service import Actor, create_order

CHENGGUAN = "430104-CHENGGUAN"

S = "\\ud800"   # a lone surrogate, as JSON text spells it
NO = "{order_no}"

# (name, method, path, credentials, raw JSON body): the review's 28 server errors, and their relatives.
CASES = [
    ("login username NaN", "/api/v1/auth/token", None, '{"username": NaN, "password": "x"}'),
    ("login password Infinity", "/api/v1/auth/token", None, '{"username": "a", "password": Infinity}'),
    ("login password -Infinity", "/api/v1/auth/token", None, '{"username": "a", "password": -Infinity}'),
    ("login username one surrogate", "/api/v1/auth/token", None, f'{{"username": "{S}", "password": "x"}}'),
    ("login username 65 surrogates", "/api/v1/auth/token", None, f'{{"username": "{S * 65}", "password": "x"}}'),
    ("login surrogate in a key", "/api/v1/auth/token", None, f'{{"username": "a", "password": "x", "{S}": 1}}'),
    ("chat message NaN", "/api/v1/chat", None, '{"message": NaN}'),
    ("chat message surrogates", "/api/v1/chat", None, '{"message": "\\udc00\\ud800"}'),
    ("chat sender 129 surrogates", "/api/v1/chat", None, f'{{"message": "hi", "sender": "{S * 129}"}}'),
    ("chat location lat NaN", "/api/v1/chat", None,
     '{"message": "路灯坏了", "metadata": {"location": {"lat": NaN, "lng": 112.9}}}'),
    ("route lat NaN", "/api/v1/route", "route", '{"text": "路灯坏了", "location": {"lat": NaN, "lng": 112.9}}'),
    ("route lat Infinity", "/api/v1/route", "route", '{"text": "路灯坏了", "location": {"lat": Infinity, "lng": 1}}'),
    ("route lat 1e400", "/api/v1/route", "route", '{"text": "路灯坏了", "location": {"lat": 1e400, "lng": 112.9}}'),
    ("route text surrogate", "/api/v1/route", "route", f'{{"text": "路灯{S}坏了"}}'),
    ("order lat NaN", "/api/v1/orders", "dispatch", '{"text": "路灯坏了", "location": {"lat": NaN, "lng": 112.9}}'),
    ("order text surrogate", "/api/v1/orders", "dispatch", f'{{"text": "路灯坏了{S}"}}'),
    ("order caller_openid surrogate", "/api/v1/orders", "dispatch", f'{{"text": "路灯坏了", "caller_openid": "{S}"}}'),
    ("order caller_phone surrogate", "/api/v1/orders", "dispatch", f'{{"text": "路灯坏了", "caller_phone": "{S}"}}'),
    ("confirm note surrogate", f"/api/v1/orders/{NO}/confirm", "dispatch", f'{{"note": "确认{S}"}}'),
    ("supervise note surrogate", f"/api/v1/orders/{NO}/actions", "dispatch",
     f'{{"action": "supervise", "supervision_type": "系统督办", "note": "督办{S}"}}'),
    ("extend days 1e400", f"/api/v1/orders/{NO}/actions", "dispatch", '{"action": "extend", "days": 1e400}'),
    ("callback event_id surrogate", "/api/v1/callbacks/status", "chengguan",
     f'{{"event_id": "{S}", "order_no": "{NO}", "action": "sign"}}'),
    ("callback reason surrogate", "/api/v1/callbacks/status", "chengguan",
     f'{{"event_id": "e-1", "order_no": "{NO}", "action": "return", "reason": "不归我们{S}"}}'),
    ("correction text surrogate", "/api/v1/route/corrections", "route",
     f'{{"text": "路灯{S}", "department_code": "{CHENGGUAN}"}}'),
]


@pytest.fixture
def hostile(app_and_keys):  # noqa: F811
    """The app, its keys (the centre's dispatch system, a reader, a router client, a department system) and one order
    dispatched to that department."""
    app, keys, factory = app_and_keys
    routing = {"decision": "auto", "confidence": 0.97, "department": {"code": CHENGGUAN, "name": "岳麓区城管局"},
               "kb_item": {"id": "KB-01-001"}, "category": ["城市管理", "市容秩序", "占道经营"], "time_limit_days": 3,
               "candidates": [], "address": {"district": {"adcode": "430104"}}}
    with transaction(factory) as session:
        keys["route"] = create_api_key(session, name="router-client", scopes=["route"])[1]
        keys["chengguan"] = create_api_key(session, name="yuelu-chengguan-system", scopes=["orders:read", "orders:write"],
                                           department_code=CHENGGUAN)[1]
        order, _ = create_order(session, text=STALL, channel="hotline", actor=Actor("dispatch-system", "system"),
                                routing=routing, auto_dispatch=True)
        order_no = order.order_no
    with TestClient(app) as client:
        yield client, keys, factory, order_no


def _count(factory) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(WorkOrder))


def _version(factory, order_no: str) -> int:
    with factory() as session:
        return session.scalar(select(WorkOrder.version).where(WorkOrder.order_no == order_no))


@pytest.mark.parametrize("name, path, key, body", CASES, ids=[c[0] for c in CASES])
def test_odd_json_values_are_a_4xx_never_a_500(hostile, name, path, key, body):
    client, keys, factory, order_no = hostile
    before = _count(factory), _version(factory, order_no)
    headers = {"content-type": "application/json"} | ({"X-API-Key": keys[key]} if key else {})
    response = client.post(path.replace(NO, order_no), content=body.replace(NO, order_no).encode(), headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.status_code == 422
    json.loads(response.content.decode("utf-8"))   # well-formed UTF-8 JSON, whatever was sent
    assert (_count(factory), _version(factory, order_no)) == before   # nothing written, nothing half-written


@pytest.mark.parametrize("path, body", [   # under the 1 MB body limit (L4), which refuses bigger ones with 413
    ("/api/v1/auth/token", {"username": "甲" * 150_000, "password": "x"}),
    ("/api/v1/auth/token", {"username": ["x" * 45_000] * 20, "password": "x"}),
    ("/api/v1/auth/token", {"username": {"a" * 50_000: "b" * 50_000}, "password": "x"}),
])
def test_a_422_never_echoes_megabytes(hostile, path, body):
    client, *_ = hostile
    response = client.post(path, json=body)
    assert response.status_code == 422
    assert len(response.content) < 4_000, len(response.content)
    assert response.json()["detail"][0]["loc"][:2] == ["body", "username"]


def test_valid_json_still_works_and_422s_keep_their_shape(hostile):
    client, keys, factory, order_no = hostile
    created = client.post("/api/v1/orders", json={"text": "岳麓区望月湖街道路灯坏了😡", "caller_phone": "13812345678",
                                                  "location": {"lat": 28.18, "lng": 112.94}},
                          headers={"X-API-Key": keys["dispatch"]})
    assert created.status_code == 201, created.text
    wrong = client.post("/api/v1/auth/token", content=b'{"username": 1.5, "password": "x"}',
                        headers={"content-type": "application/json"})
    assert wrong.status_code == 422
    [error] = wrong.json()["detail"]
    assert error["loc"] == ["body", "username"] and error["input"] == 1.5 and error["type"] == "string_type"
    nan = client.post("/api/v1/auth/token", content=b'{"username": NaN, "password": "x"}',
                      headers={"content-type": "application/json"})
    assert "NaN" in json.dumps(nan.json()) and nan.json()["detail"][0]["loc"][0] == "body"
    broken = client.post("/api/v1/auth/token", content=b'{"username": ', headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"


def test_open311_keeps_its_own_error_shape(hostile):
    client, *_ = hostile
    response = client.post("/open311/v2/requests.json", content=b'{"service_code": "0101", "lat": NaN}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()[0]["code"] == 400 and "NaN" in response.json()[0]["description"]


def test_an_error_message_quoting_the_callers_value_is_cut(hostile):
    client, keys, _, order_no = hostile
    response = client.post(f"/api/v1/orders/{order_no}/confirm", json={"department_code": "X" * 1_000_000},
                           headers={"X-API-Key": keys["dispatch"]})
    assert response.status_code == 422 and len(response.content) < 4_000
    assert response.json()["detail"].startswith("unknown department 'XXX")


def test_the_web_chat_still_drops_half_an_emoji_from_what_a_person_typed(hostile):
    """The one place a lone surrogate is cleaned instead of refused: the chat message (the page's textarea can cut
    an emoji in half). Anywhere else in the same body it is refused."""
    from api.channels.assistant_client import ScriptedAssistant

    client, *_ = hostile
    assistant = ScriptedAssistant(lambda sender, message, metadata: [{"recipient_id": sender, "text": "收到"}])
    client.app.state.assistant = assistant
    headers = {"content-type": "application/json"}
    sent = client.post("/api/v1/chat", content=b'{"message": "\\u8def\\u706f\\u574f\\u4e86\\ud83d"}', headers=headers)
    assert sent.status_code == 200, sent.text
    assert assistant.turns[-1]["message"] == "路灯坏了"
    refused = client.post("/api/v1/chat", content=b'{"message": "hi", "sender": "\\ud83d"}', headers=headers)
    assert refused.status_code == 422 and len(assistant.turns) == 1


def _nested(depth: int) -> bytes:
    return b'{"next_action": "action_query_status", "tracker": ' + b'{"a": [' * depth + b"1" + b"]}" * depth + b"}"


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_deeply_nested_json_is_a_4xx_on_every_json_path(hostile, depth):
    """Review 2026-12-06, L3: json.loads raises RecursionError (not a ValueError) at depth ≥ 1,000; the assistant
    webhook, which parses its own (possibly gzip-compressed) bodies, answered 500."""
    import gzip

    from hotline.core.secrets import webhook_token

    client, keys, factory, order_no = hostile
    body = _nested(depth)
    url = f"/api/v1/assistant/webhook?token={webhook_token(client.app.state.assistant_api_key)}"
    for content, extra in ((body, {}), (gzip.compress(body), {"content-encoding": "gzip"})):
        response = client.post(url, content=content, headers={"content-type": "application/json"} | extra)
        assert response.status_code == 400, (response.status_code, response.text[:200])
        assert "nested" in response.json()["detail"]
    deep_text = b'{"text": "' + "岳麓区望月湖街道路灯坏了".encode() + b'", "location": ' + b'{"x": ' * depth + b"1" + b"}" * depth + b"}"
    for path, key in (("/api/v1/auth/token", None), ("/api/v1/orders", "dispatch"), ("/api/v1/chat", None),
                      ("/open311/v2/requests.json", None), (f"/api/v1/orders/{order_no}/actions", "dispatch")):
        headers = {"content-type": "application/json"} | ({"X-API-Key": keys[key]} if key else {})
        response = client.post(path, content=deep_text, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:200])
        assert "nested too deeply" in response.text or (response.status_code == 413 and path == "/api/v1/chat")
        json.loads(response.content.decode("utf-8"))
    assert _count(factory) == 1


def test_bodies_over_the_size_limit_are_refused_before_parsing_chunked_or_not(hostile):
    """Review 2026-12-06, L4: anonymous 10 MB bodies were read and parsed whole; a 2 MB username came back in a 2 MB
    422; a chunked chat body (no Content-Length) passed the chat's 16 KB guard."""
    client, keys, factory, _ = hostile
    big = json.dumps({"username": "张" * 2_000_000, "password": "x"}, ensure_ascii=False).encode()
    response = client.post("/api/v1/auth/token", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and len(response.content) < 1_000
    assert "request body too large" in response.json()["detail"]

    def chunked(body: bytes, size: int = 4096):
        for start in range(0, len(body), size):
            yield body[start:start + size]

    headers = {"content-type": "application/json"}
    for path, key, body in (
        ("/api/v1/auth/token", None, big),
        ("/api/v1/orders", "dispatch", json.dumps({"text": "楼下烧烤店油烟太大" * 120_000}, ensure_ascii=False).encode()),
        ("/api/v1/chat", None, json.dumps({"message": "小区门口流动摊贩占道经营" * 2_000}, ensure_ascii=False).encode()),
    ):
        sent = client.post(path, content=chunked(body), headers=headers | ({"X-API-Key": keys[key]} if key else {}))
        assert sent.status_code == 413, (path, sent.status_code, sent.text[:200])
        assert "请求内容过大" in sent.json()["detail"]
    open311 = client.post("/open311/v2/requests.json", content=chunked(big), headers=headers)
    assert open311.status_code == 413 and open311.json()[0]["code"] == 413
    assert _count(factory) == 1
    # ordinary bodies, chunked or not, still go through
    ok = client.post("/api/v1/orders", content=chunked(json.dumps({"text": "岳麓区望月湖街道路灯坏了"}).encode(), 7),
                     headers=headers | {"X-API-Key": keys["dispatch"]})
    assert ok.status_code == 201, ok.text


def test_the_body_limit_is_a_setting(router, tmp_path):
    from api.app import create_app

    settings = router.settings.model_copy(update={"max_body_bytes": 4096})
    with TestClient(create_app(settings, router=router)) as client:
        login = {"username": "李" * 3000, "password": "x"}
        assert client.post("/api/v1/auth/token", json=login).status_code == 413
        login["username"] = "李明"
        assert client.post("/api/v1/auth/token", json=login).status_code == 401


@pytest.mark.parametrize("field, limit, step", [
    ("note", 5000, {"action": "supervise", "supervision_type": "系统督办"}),
    ("reason", 2000, {"action": "return"}),
    ("result", 5000, {"action": "handle"}),
    ("supervision_type", 32, {"action": "supervise"}),
])
def test_free_text_action_fields_are_bounded(hostile, field, limit, step):
    """Review 2026-12-06, L14: ActionIn's note, reason and result had no length limit (a 1 MB supervise note was
    stored); they are bounded like CallbackIn's (2,000–5,000 characters), with a 422 that names the limit."""
    client, keys, factory, order_no = hostile
    before = _version(factory, order_no)
    text = ("市民反映岳麓区望月湖街道夜市摊贩占道经营，" * 30_000)[:limit + 1]
    response = client.post(f"/api/v1/orders/{order_no}/actions", json=step | {field: text},
                           headers={"X-API-Key": keys["dispatch"]})
    assert response.status_code == 422, response.text[:300]
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field] and f"at most {limit} characters" in error["msg"]
    assert len(response.content) < 4_000 and _version(factory, order_no) == before
    if field == "note":   # at the limit it is still taken
        taken = client.post(f"/api/v1/orders/{order_no}/actions", json=step | {field: text[:limit]},
                            headers={"X-API-Key": keys["dispatch"]})
        assert taken.status_code == 200, taken.text[:300]
