"""One intake (orders/intake.py) behind every channel: the same confident complaint is dispatched at once whether it
comes through the REST API, WeChat or Open311, and waits for an agent on every channel when auto-dispatch is off.
(Open311 never auto-dispatched before: its own copy of the intake had drifted, and no test noticed.)"""
from __future__ import annotations

import base64
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from support import STALL, closed_port_url

from api.app import create_app
from api.auth.keys import create_api_key
from api.channels.assistant_client import RasaRestClient
from api.channels.wechat.crypto import signature
from api.channels.wechat.sender import RecordingSender
from hotline.core.db import make_engine, session_factory, transaction
from orders.models import RoutingDecision, WorkOrder

TOKEN = "hotline-intake-token"
AES_KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode().rstrip("=")
# The same complaint, told by a citizen on each channel: a long, angry letter-like message with a phone number.
COMPLAINT = STALL + "！！已经反映好多次了😡"


def _wechat_text(client: TestClient, text: str, msg_id: str) -> None:
    timestamp, nonce = str(int(time.time())), "n0nce7"
    xml = (f"<xml><ToUserName><![CDATA[gh_12345]]></ToUserName><FromUserName><![CDATA[oWx_intake_1]]></FromUserName>"
           f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
           f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>")
    response = client.post("/wechat/callback", content=xml.encode(),
                           params={"timestamp": timestamp, "nonce": nonce, "signature": signature(TOKEN, timestamp, nonce)})
    assert response.status_code == 200 and response.text == "success", response.text


@pytest.fixture(params=[True, False], ids=["auto-dispatch on", "auto-dispatch off"])
def channels(request, router):
    settings = router.settings.model_copy(update={"auto_dispatch": request.param, "wechat_token": TOKEN,
                                                  "wechat_aes_key": AES_KEY, "wechat_app_id": "wx1234567890abcdef"})
    router.settings = settings
    app = create_app(settings, router=router, wechat_sender=RecordingSender())
    app.state.assistant = RasaRestClient(closed_port_url(), timeout_s=2.0)   # WeChat files directly
    factory = session_factory(make_engine(settings.database_url))
    with TestClient(app) as client:
        with transaction(factory) as session:
            client.key = create_api_key(session, name="dispatch", scopes=["orders:read", "orders:write"])[1]
        yield client, factory, request.param


def test_every_channel_files_through_the_one_intake_and_dispatches_alike(channels):
    client, factory, auto = channels
    rest = client.post("/api/v1/orders", json={"text": COMPLAINT, "channel": "web"}, headers={"X-API-Key": client.key})
    assert rest.status_code == 201, rest.text
    assert rest.json()["routing"]["decision"] == "auto"          # the router is sure of this one
    _wechat_text(client, COMPLAINT, "6100000000000000001")
    open311 = client.post("/open311/v2/requests.json", data={"service_code": "0101", "description": COMPLAINT, "address_string": "岳麓区望月湖街道",
                                                             "api_key": client.key})
    assert open311.status_code == 201, open311.text

    with factory() as session:
        orders = {o.channel: o for o in session.scalars(select(WorkOrder).where(WorkOrder.parent_id.is_(None)))}
        decisions = {d.order_id: d.decision for d in session.scalars(select(RoutingDecision))}
    assert set(orders) == {"web", "wechat", "open311"}
    expected_state = "dispatched" if auto else "received"
    for channel, order in orders.items():
        assert order.state == expected_state, channel
        assert order.department_code == (rest.json()["routing"]["department"]["code"] if auto else None), channel
        assert decisions[order.id] == "auto", channel
        assert "13812345678" not in order.text_masked, channel
