"""The WeChat callback: verification, plaintext and safe mode, intake, dedupe of retries, hostile input."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from support import FakeRasa, closed_port_url, serving

from api.app import create_app
from api.auth.staff import create_staff
from api.channels.assistant_client import AssistantUnavailable, RasaRestClient, ScriptedAssistant
from api.channels.wechat.crypto import decrypt, encrypt, signature
from api.channels.wechat.messages import WECHAT_TEXT_BYTES, parse_message
from api.channels.wechat.models import WeChatMessage
from api.channels.wechat.sender import RecordingSender
from hotline.core.db import make_engine, session_factory, transaction
from orders.models import OrderEmbedding, WorkOrder, utcnow

TOKEN = "hotline-test-token"
APP_ID = "wx1234567890abcdef"
AES_KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode().rstrip("=")   # 43 characters
OLD_AES_KEY = base64.b64encode(b"fedcba9876543210fedcba9876543210").decode().rstrip("=")
OPENID = "oWx_citizen_001"


def _xml(msg_type: str, body: str, *, msg_id: str | None = "6123456789012345678", create_time: str = "1763700000") -> str:
    msg = f"<MsgId>{msg_id}</MsgId>" if msg_id else ""
    return (f"<xml><ToUserName><![CDATA[gh_12345]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{body}{msg}</xml>")


def _now() -> str:
    return str(int(time.time()))


def _signed(**extra) -> dict:
    timestamp, nonce = _now(), "n0nce42"
    return {"timestamp": timestamp, "nonce": nonce, "signature": signature(TOKEN, timestamp, nonce), **extra}


@pytest.fixture
def setup(router):
    settings = router.settings.model_copy(update={"wechat_token": TOKEN, "wechat_aes_key": AES_KEY,
                                                  "wechat_aes_key_previous": OLD_AES_KEY, "wechat_app_id": APP_ID})
    router.settings = settings
    sender = RecordingSender()
    app = create_app(settings, router=router, wechat_sender=sender)
    # Text now goes through the assistant first; with the assistant down (nothing listens on its port) the
    # callback falls back to filing the order directly, which is what the tests below check. The relay itself:
    # the tests at the end of this file.
    app.state.assistant = RasaRestClient(closed_port_url(), timeout_s=2.0)
    return app, sender, session_factory(make_engine(settings.database_url))


@pytest.fixture
def client(setup):
    app, sender, factory = setup
    with TestClient(app) as test_client:
        test_client.sender, test_client.factory = sender, factory
        yield test_client


def _orders(factory) -> list[WorkOrder]:
    """The citizens' orders (an auto-dispatched order may also have co-handler child orders)."""
    with factory() as session:
        return list(session.scalars(select(WorkOrder).where(WorkOrder.parent_id.is_(None))))


def test_verification_echoes_and_a_forged_signature_is_refused(client):
    ok = client.get("/wechat/callback", params=_signed(echostr="echo-123"))
    assert ok.status_code == 200 and ok.text == "echo-123"
    forged = _signed(echostr="echo-123") | {"signature": "0" * 40}
    assert client.get("/wechat/callback", params=forged).status_code == 403
    body = _xml("text", "<Content><![CDATA[路灯坏了]]></Content>")
    assert client.post("/wechat/callback", params=forged, content=body).status_code == 403
    assert _orders(client.factory) == []


@pytest.mark.parametrize("age_s", [3600, -3600, 10 ** 9 * 1.7])
def test_a_correctly_signed_but_old_or_future_callback_is_refused(client, age_s):
    """L1: a captured signed URL (plaintext mode signs only timestamp and nonce) cannot be replayed later."""
    timestamp = str(int(time.time() - age_s))
    params = {"timestamp": timestamp, "nonce": "n0nce42", "signature": signature(TOKEN, timestamp, "n0nce42")}
    body = _xml("text", "<Content><![CDATA[路灯坏了]]></Content>")
    refused = client.post("/wechat/callback", params=params, content=body)
    assert refused.status_code == 403 and "window" in refused.json()["detail"]
    assert client.get("/wechat/callback", params=params | {"echostr": "e"}).status_code == 403
    assert _orders(client.factory) == []
    fresh = client.post("/wechat/callback", params=_signed(), content=body)
    assert fresh.status_code == 200 and fresh.text == "success"


def test_a_text_message_files_an_order_and_replies_with_its_number(client):
    body = _xml("text", "<Content><![CDATA[岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤😡]]></Content>")
    response = client.post("/wechat/callback", params=_signed(), content=body.encode())
    assert response.status_code == 200 and response.text == "success"
    [order] = _orders(client.factory)
    assert order.channel == "wechat" and order.caller_openid == OPENID and order.district_adcode == "430104"
    [(to, text)] = client.sender.sent
    assert to == OPENID and order.order_no in text and "办理时限" in text


def test_retries_of_the_same_message_are_dropped(client):
    body = _xml("text", "<Content><![CDATA[楼下烧烤店油烟太大]]></Content>").encode()
    for _ in range(3):
        assert client.post("/wechat/callback", params=_signed(), content=body).text == "success"
    assert len(_orders(client.factory)) == 1 and len(client.sender.sent) == 1
    assert 'hotline_wechat_duplicates_dropped_total 2.0' in client.get("/metrics").text


def test_safe_mode_round_trip_and_key_rotation(client):
    inner = _xml("text", "<Content><![CDATA[小区门口井盖丢了，很危险]]></Content>", msg_id="6000000000000000001")
    for key, msg_id in ((AES_KEY, "1"), (OLD_AES_KEY, "2")):   # the previous key still works during rotation
        encrypted = encrypt(inner.replace("6000000000000000001", msg_id), encoding_aes_key=key, app_id=APP_ID)
        params = _signed(encrypt_type="aes", msg_signature=signature(TOKEN, _now(), "n0nce42", encrypted))
        envelope = f"<xml><ToUserName>gh_12345</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        assert client.post("/wechat/callback", params=params, content=envelope).status_code == 200
    assert len(_orders(client.factory)) == 2
    encrypted = encrypt(inner, encoding_aes_key=AES_KEY, app_id=APP_ID)
    bad = _signed(encrypt_type="aes", msg_signature="f" * 40)
    envelope = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    assert client.post("/wechat/callback", params=bad, content=envelope).status_code == 403


def test_decrypt_refuses_another_app_and_tampering():
    encrypted = encrypt("<xml>hi</xml>", encoding_aes_key=AES_KEY, app_id=APP_ID)
    assert decrypt(encrypted, encoding_aes_key=AES_KEY, app_id=APP_ID) == "<xml>hi</xml>"
    with pytest.raises(ValueError, match="another AppId"):
        decrypt(encrypted, encoding_aes_key=AES_KEY, app_id="wxOTHER")
    with pytest.raises(ValueError):
        decrypt(encrypted[:-8] + "AAAAAAA=", encoding_aes_key=AES_KEY, app_id=APP_ID)


def test_voice_location_and_subscribe(client):
    location = _xml("location", "<Location_X>28.1834</Location_X><Location_Y>112.9420</Location_Y><Scale>15</Scale>"
                                "<Label><![CDATA[岳麓区]]></Label>", msg_id="7000000000000000001")
    assert client.post("/wechat/callback", params=_signed(), content=location).status_code == 200
    voice = _xml("voice", "<MediaId>m1</MediaId><Format>amr</Format><Recognition><![CDATA[这里垃圾三天没人收了]]>"
                          "</Recognition>", msg_id="7000000000000000002")
    assert client.post("/wechat/callback", params=_signed(), content=voice).status_code == 200
    empty_voice = _xml("voice", "<MediaId>m2</MediaId><Format>amr</Format><Recognition></Recognition>",
                       msg_id="7000000000000000003")
    assert client.post("/wechat/callback", params=_signed(), content=empty_voice).status_code == 200
    subscribe = _xml("event", "<Event><![CDATA[subscribe]]></Event>", msg_id=None)
    assert client.post("/wechat/callback", params=_signed(), content=subscribe).status_code == 200
    [order] = _orders(client.factory)
    assert order.text == "这里垃圾三天没人收了" and order.lat is not None   # the earlier location was attached
    replies = [text for _, text in client.sender.sent]
    assert replies[0].startswith("已收到您的位置") and order.order_no in replies[1]
    assert "没有识别到语音" in replies[2] and replies[3].startswith("欢迎关注")


@pytest.mark.parametrize("payload, status", [
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml>&b;</xml>', 400),
    ("<xml><FromUserName>x</FromUserName>", 400),                                     # malformed
    ("<xml><Content>no sender</Content></xml>", 400),
    ("<xml>" + "<Content>长长的内容</Content>" * 5000 + "</xml>", 413),
])
def test_hostile_or_broken_bodies_are_refused_and_nothing_is_stored(client, payload, status):
    assert client.post("/wechat/callback", params=_signed(), content=payload.encode()).status_code == status
    with client.factory() as session:
        assert session.scalar(select(func.count()).select_from(WeChatMessage)) == 0


def test_the_channel_is_off_without_a_token(router):
    router.settings = router.settings.model_copy(update={"wechat_token": None})
    with TestClient(create_app(router.settings, router=router)) as test_client:
        assert test_client.get("/wechat/callback", params=_signed(echostr="x")).status_code == 404


async def _deliver_three_times(base: str, body: bytes) -> list[httpx.Response]:
    """The same signed callback three times at once, as WeChat's retries can arrive."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        return await asyncio.gather(*(http.post("/wechat/callback", params=_signed(), content=body) for _ in range(3)))


def test_three_concurrent_deliveries_make_one_order_and_one_reply(setup):
    app, sender, factory = setup
    with TestClient(app):
        pass   # lifespan: migrations
    body = _xml("text", "<Content><![CDATA[开福区伍家岭街道楼下KTV半夜还在唱]]></Content>", msg_id="8888").encode()
    with serving(app) as base:
        responses = asyncio.run(_deliver_three_times(base, body))
        time.sleep(0.5)   # the background reply runs after the response
    assert [r.text for r in responses] == ["success"] * 3
    assert len(_orders(factory)) == 1 and len(sender.sent) == 1


# -- text through the assistant (issue 4) ---------------------------------------------------------------------
def _answering(*messages: dict, then: tuple[dict, ...] = ()) -> ScriptedAssistant:
    """The assistant's answer to the first turn, then `then` to every later turn."""
    def answer(sender, message, metadata):
        return [dict(m, recipient_id=sender) for m in (then if assistant.turns[1:] else messages)]

    assistant = ScriptedAssistant(answer)
    return assistant


def _post_text(client, text: str, msg_id: str):
    body = _xml("text", f"<Content><![CDATA[{text}]]></Content>", msg_id=msg_id)
    response = client.post("/wechat/callback", params=_signed(), content=body.encode())
    assert response.status_code == 200 and response.text == "success"


def test_text_goes_through_the_assistant_and_comes_back_as_wechat_text(client):
    assistant = _answering(
        {"text": "请问具体地点在哪里？"},
        {"text": "您说的是岳麓区望月湖街道吗？", "buttons": [{"title": "是的", "payload": "/affirm"},
                                                         {"title": "不是", "payload": "/deny"}]},
        {"custom": {"chart": {"type": "bar", "title": "本月诉求量", "unit": "件", "labels": ["岳麓区"], "values": [3]}}},
        then=({"text": "请您描述一下具体位置。"},))
    client.app.state.assistant = assistant
    _post_text(client, "帮我投诉一下楼下烧烤店油烟太大😤", "9100000000000000001")
    [turn] = assistant.turns
    assert turn == {"sender": OPENID, "message": "帮我投诉一下楼下烧烤店油烟太大😤",
                    "metadata": {"channel": "wechat", "openid": OPENID, "role": "citizen",
                                 "message_key": "msg:9100000000000000001"}}
    [(to, text)] = client.sender.sent    # short answers are joined into one message; the chart is dropped
    assert to == OPENID
    assert text == "请问具体地点在哪里？\n\n您说的是岳麓区望月湖街道吗？\n1. 是的\n2. 不是\n（回复序号即可选择）"
    assert _orders(client.factory) == []   # the assistant's form files the order, not the callback

    _post_text(client, "２", "9100000000000000002")         # a numbered choice (here full-width) goes on as its payload
    assert assistant.turns[-1]["message"] == "/deny"
    _post_text(client, "2", "9100000000000000003")          # no choices on offer any more: just the text
    assert assistant.turns[-1]["message"] == "2"


def test_long_answers_are_split_at_2048_bytes_and_capped_at_five_messages(client):
    paragraph = "根据《长沙市城市管理条例》，占道经营由所在区城管执法部门依法查处。" * 45   # ~4,500 bytes
    client.app.state.assistant = _answering({"text": paragraph}, {"text": paragraph}, {"text": paragraph})
    _post_text(client, "占道经营归谁管？", "9200000000000000001")
    texts = [text for _, text in client.sender.sent]
    assert len(texts) == 5 and all(len(t.encode()) <= WECHAT_TEXT_BYTES for t in texts)
    assert all(t.endswith("。") for t in texts[:4]) and texts[-1].endswith("（内容较长，已截断）")
    client.sender.sent.clear()
    client.app.state.assistant = _answering({"text": "好的😀" * 500})   # 5,000 bytes, no sentence end
    _post_text(client, "谢谢", "9200000000000000002")
    texts = [text for _, text in client.sender.sent]
    assert len(texts) == 3 and "".join(texts) == "好的😀" * 500 and all(len(t.encode()) <= 2048 for t in texts)


def test_voice_goes_through_the_assistant_with_the_last_location(client):
    assistant = _answering({"text": "已为您记录，请问您的联系电话？"})
    client.app.state.assistant = assistant
    location = _xml("location", "<Location_X>28.1834</Location_X><Location_Y>112.9420</Location_Y><Scale>15</Scale>",
                    msg_id="9300000000000000001")
    assert client.post("/wechat/callback", params=_signed(), content=location).status_code == 200
    voice = _xml("voice", "<MediaId>m1</MediaId><Format>amr</Format><Recognition><![CDATA[这里垃圾三天没人收了]]>"
                          "</Recognition>", msg_id="9300000000000000002")
    assert client.post("/wechat/callback", params=_signed(), content=voice).status_code == 200
    [turn] = assistant.turns
    assert turn["message"] == "这里垃圾三天没人收了"
    assert turn["metadata"]["location"] == {"lat": 28.1834, "lng": 112.942, "datum": "gcj02"}
    assert [text for _, text in client.sender.sent][-1] == "已为您记录，请问您的联系电话？"


def test_when_the_assistant_is_unavailable_the_message_is_filed_directly(client):
    def down(sender, message, metadata):
        raise AssistantUnavailable("Rasa did not answer within 8.0 s")

    client.app.state.assistant = ScriptedAssistant(down)
    _post_text(client, "雨花区高桥街道小区停水两天了，没人管", "9400000000000000001")
    with FakeRasa() as rasa:   # a Rasa that answers, but with an error
        rasa.status = 500
        client.app.state.assistant = RasaRestClient(rasa.url, timeout_s=2.0)
        _post_text(client, "岳麓区望月湖街道晚上摊贩占道", "9400000000000000002")
        assert len(rasa.turns) == 1
    orders = _orders(client.factory)
    assert sorted(o.text for o in orders) == ["岳麓区望月湖街道晚上摊贩占道", "雨花区高桥街道小区停水两天了，没人管"]
    assert all(o.caller_openid == OPENID and o.channel == "wechat" for o in orders)
    replies = [text for _, text in client.sender.sent]
    assert len(replies) == 2 and all(o.order_no in " ".join(replies) for o in orders)


def test_three_concurrent_deliveries_reach_the_assistant_once_and_get_one_reply(setup):
    app, sender, factory = setup
    with TestClient(app):
        pass   # lifespan: migrations
    with FakeRasa() as rasa:
        app.state.assistant = RasaRestClient(rasa.url, timeout_s=5.0)
        body = _xml("text", "<Content><![CDATA[我上周反映的路灯坏了处理得怎么样了]]></Content>", msg_id="9500").encode()
        with serving(app) as base:
            responses = asyncio.run(_deliver_three_times(base, body))
            deadline = time.monotonic() + 10
            while not sender.sent and time.monotonic() < deadline:   # the reply is sent after the response
                time.sleep(0.05)
            time.sleep(0.3)   # room for a (wrong) second reply to show up
    assert [r.text for r in responses] == ["success"] * 3
    assert len(rasa.turns) == 1 and rasa.turns[0]["sender"] == OPENID
    assert sender.sent == [(OPENID, "收到您的消息：我上周反映的路灯坏了处理得怎么样了")]
    assert _orders(factory) == []


# -- review 2026-12-06, H1: bad coordinates and a background filing that fails --------------------------------------
def _down(sender, message, metadata):
    raise AssistantUnavailable("Rasa is down")


def _location(x: str, y: str, msg_id: str) -> str:
    return _xml("location", f"<Location_X>{x}</Location_X><Location_Y>{y}</Location_Y><Scale>15</Scale>", msg_id=msg_id)


@pytest.mark.parametrize("x, y", [("nan", "nan"), ("inf", "-inf"), ("1e999", "112.94"), ("999", "999"),
                                  ("28.18", "-180.5"), ("", "112.94")])
def test_a_location_with_bad_coordinates_is_refused_and_later_texts_are_still_filed(client, x, y):
    """The review's reproduction: a NaN location (stored as NULL) made every later directly-filed text crash in
    the background task: no order, no reply."""
    client.app.state.assistant = ScriptedAssistant(_down)
    refused = client.post("/wechat/callback", params=_signed(), content=_location(x, y, "9600000000000000001"))
    assert refused.status_code == 400
    with client.factory() as session:
        assert session.scalar(select(func.count()).select_from(WeChatMessage)) == 0
    _post_text(client, "岳麓区望月湖街道路灯坏了", "9600000000000000002")
    _post_text(client, "岳麓区望月湖街道晚上摊贩占道" * 200, "9600000000000000003")   # over 2,000 characters
    orders = _orders(client.factory)
    assert len(orders) == 2 and all(o.lat is None and o.lng is None for o in orders)
    assert len(client.sender.sent) == 2 and all(o.order_no in " ".join(t for _, t in client.sender.sent) for o in orders)


def test_a_stored_location_without_coordinates_is_no_location(client):
    """Rows written before coordinates were checked (SQLite stores NaN as NULL) must not break the next filing."""
    with transaction(client.factory) as session:
        session.add(WeChatMessage(dedupe_key="msg:9610000000000000001", openid=OPENID, msg_type="location",
                                  lat=None, lng=None))
    assistant = _answering({"text": "请问具体地点在哪里？"})
    client.app.state.assistant = assistant
    _post_text(client, "路灯坏了", "9610000000000000002")
    assert "location" not in assistant.turns[0]["metadata"]      # not {"lat": None, "lng": None}
    client.app.state.assistant = ScriptedAssistant(_down)
    _post_text(client, "岳麓区望月湖街道路灯坏了", "9610000000000000003")
    [order] = _orders(client.factory)
    assert order.lat is None and order.order_no in client.sender.sent[-1][1]


def test_a_directly_filed_message_keeps_the_vector_it_was_routed_with(client):
    """Routed like the HTTP intake (batched, in the routing pool), the filing keeps the matter's vector, so the
    same-event search does not embed the complaint again."""
    client.app.state.assistant = ScriptedAssistant(_down)
    _post_text(client, "岳麓区望月湖街道望月湖社区路灯坏了一个多星期，晚上一片漆黑😡", "9620000000000000077")
    [order] = _orders(client.factory)
    model_id = client.app.state.router.matcher.encoders.embedders[0].model_id
    with client.factory() as session:
        stored = session.scalars(select(OrderEmbedding.model_id).where(OrderEmbedding.order_id == order.id)).all()
    assert stored == [model_id]


def test_an_order_is_filed_even_when_routing_fails(client, monkeypatch):
    client.app.state.assistant = ScriptedAssistant(_down)

    def broken(*args, **kwargs):
        raise RuntimeError("index file vanished")

    router = client.app.state.router
    monkeypatch.setattr(router, "route_prepared", broken)
    monkeypatch.delitem(router.__dict__, "_service_route_batcher", raising=False)   # a batcher holds the old method
    _post_text(client, "岳麓区望月湖街道路灯坏了", "9620000000000000001")
    [order] = _orders(client.factory)
    assert order.department_code is None and order.order_no in client.sender.sent[-1][1]   # an agent routes it


def _agent_token(client) -> str:
    with transaction(client.factory) as session:
        create_staff(session, username="wang.agent", password="s3cret-长沙-2026", role="agent")
        create_staff(session, username="li.handler", password="s3cret-长沙-2026", role="handler",
                     department_code="430104-CHENGGUAN")
    login = client.post("/api/v1/auth/token", json={"username": "wang.agent", "password": "s3cret-长沙-2026"})
    return login.json()["access_token"]


def test_a_filing_that_fails_is_kept_answered_retried_and_shown_to_staff(client, monkeypatch):
    import api.channels.wechat.filing as wechat

    client.app.state.assistant = ScriptedAssistant(_down)
    real_create = wechat.file_complaint

    def database_down(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(wechat, "file_complaint", database_down)
    _post_text(client, "岳麓区望月湖街道路灯坏了，电话13812345678", "9630000000000000001")
    assert _orders(client.factory) == []
    [(to, holding)] = client.sender.sent
    assert to == OPENID and "已收到" in holding                      # the citizen is answered at once

    staff = {"Authorization": f"Bearer {_agent_token(client)}"}
    assert client.get("/api/v1/wechat/unfiled").status_code == 401
    listing = client.get("/api/v1/wechat/unfiled", headers=staff)
    assert listing.status_code == 200, listing.text
    [item] = listing.json()["items"]
    assert item["filing"] == "pending" and item["attempts"] == 1 and item["openid"] == OPENID
    assert "路灯坏了" in item["text"] and "13812345678" not in item["text"]   # masked for the list
    assert "OperationalError" in item["last_error"]
    handler = client.post("/api/v1/auth/token", json={"username": "li.handler", "password": "s3cret-长沙-2026"})
    assert client.get("/api/v1/wechat/unfiled",
                      headers={"Authorization": f"Bearer {handler.json()['access_token']}"}).status_code == 403

    # Not due yet: the worker leaves it; once due, it fails again and backs off, still listed.
    assert wechat.file_due(client.app) == 0
    later = utcnow() + dt.timedelta(hours=1)
    assert wechat.file_due(client.app, now=later) == 1
    assert client.get("/api/v1/wechat/unfiled", headers=staff).json()["items"][0]["attempts"] == 2
    assert len(client.sender.sent) == 1                               # no second holding answer

    monkeypatch.setattr(wechat, "file_complaint", real_create)          # the database is back
    assert wechat.file_due(client.app, now=later + dt.timedelta(hours=6)) == 1
    [order] = _orders(client.factory)
    assert order.text.startswith("岳麓区望月湖街道路灯坏了") and order.caller_openid == OPENID
    assert order.order_no in client.sender.sent[-1][1]
    assert client.get("/api/v1/wechat/unfiled", headers=staff).json()["items"] == []
    with client.factory() as session:
        row = session.scalar(select(WeChatMessage).where(WeChatMessage.dedupe_key == "msg:9630000000000000001"))
        assert row.filing == "filed" and row.order_no == order.order_no and row.text is None   # no second copy
    assert wechat.file_due(client.app, now=later + dt.timedelta(days=2)) == 0


def test_a_filing_that_keeps_failing_is_given_up_and_staff_retry_it(client, monkeypatch):
    import api.channels.wechat.filing as wechat

    client.app.state.assistant = ScriptedAssistant(_down)
    real_create = wechat.file_complaint
    monkeypatch.setattr(wechat, "file_complaint", lambda *a, **k: 1 / 0)
    _post_text(client, "雨花区高桥街道小区停水两天了", "9640000000000000001")
    moment = utcnow()
    for _ in range(wechat.FILING_MAX_ATTEMPTS):
        moment += dt.timedelta(days=1)
        wechat.file_due(client.app, now=moment)
    staff = {"Authorization": f"Bearer {_agent_token(client)}"}
    [item] = client.get("/api/v1/wechat/unfiled", headers=staff).json()["items"]
    assert item["filing"] == "failed" and item["attempts"] == wechat.FILING_MAX_ATTEMPTS
    assert wechat.file_due(client.app, now=moment + dt.timedelta(days=30)) == 0   # no more automatic attempts

    monkeypatch.setattr(wechat, "file_complaint", real_create)
    retried = client.post(f"/api/v1/wechat/unfiled/{item['id']}/retry", headers=staff)
    assert retried.status_code == 200, retried.text
    [order] = _orders(client.factory)
    assert retried.json()["filing"] == "filed" and retried.json()["order_no"] == order.order_no
    assert client.post(f"/api/v1/wechat/unfiled/{item['id']}/retry", headers=staff).status_code == 409
    assert client.post("/api/v1/wechat/unfiled/999999/retry", headers=staff).status_code == 404


def test_a_message_left_unsettled_by_a_dead_process_is_filed_by_the_worker(client):
    """The message is stored before "success"; if the process dies before relaying or filing it, the worker files
    it once it is overdue."""
    import api.channels.wechat.filing as wechat

    client.app.state.assistant = ScriptedAssistant(_down)
    incoming = parse_message(_xml("text", "<Content><![CDATA[岳麓区望月湖街道路灯坏了]]></Content>",
                                         msg_id="9650000000000000001").encode())
    with transaction(client.factory) as session:   # what _accept stores; the background task never ran
        session.add(wechat.stored_message(incoming, now=utcnow()))
    assert wechat.file_due(client.app) == 0        # it may still be with the assistant
    assert wechat.file_due(client.app, now=utcnow() + dt.timedelta(minutes=30)) == 1
    [order] = _orders(client.factory)
    assert order.order_no in client.sender.sent[-1][1]


def test_with_the_assistant_turned_off_nothing_is_relayed_to_the_rasa_port(router):
    """Features review: `hotline serve --no-assistant` still relayed to whatever listened on :5005 (another
    instance's Rasa). Turned off, the chat answers 503 and WeChat files the message directly; Rasa sees nothing."""
    with FakeRasa() as rasa:
        settings = router.settings.model_copy(update={"wechat_token": TOKEN, "rasa_url": rasa.url,
                                                      "assistant_enabled": False})
        router.settings = settings
        app = create_app(settings, router=router, wechat_sender=RecordingSender())
        with TestClient(app) as client:
            client.factory = session_factory(make_engine(settings.database_url))
            chat = client.post("/api/v1/chat", json={"message": "我要投诉路灯坏了"})
            assert chat.status_code == 503
            _post_text(client, "岳麓区望月湖街道晚上摊贩占道", "9600000000000000001")
            assert [o.text for o in _orders(client.factory)] == ["岳麓区望月湖街道晚上摊贩占道"]
        assert rasa.turns == []
