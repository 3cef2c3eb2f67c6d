"""Open311 GeoReport v2 (JSON): service list from the taxonomy, intake through the router, public reads of orders
(masked), the 90-day window, status filters, and the Open311 error format — on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from api.auth.keys import create_api_key, revoke_api_key
from api.ratelimit import RateLimiter
from hotline.core.db import transaction
from orders.models import OrderEmbedding, WorkOrder, utcnow
from orders.service import Actor, apply_action, create_order

BASE = "/open311/v2"
PHONE = "13812345678"
STALL = (f"岳麓区望月湖街道桃子湖路晚上好多摊贩占道摆摊卖烧烤，人行道都过不去！！😡 联系人：李四，电话{PHONE}，"
         "邮箱 lisi.cs@example.com（请尽快处理～）")
NOISE = "岳麓区望月湖街道旁边工地半夜还在打桩施工，噪音吵得睡不着😫 Please help!"
SYSTEM = Actor("dispatch", "system")


def _post(client, *, key: str | None = "dispatch", **fields):
    body = {"service_code": "0101", "description": STALL, "lat": "28.1912", "long": "112.9455", **fields}
    if key is not None:
        body["api_key"] = client.keys.get(key, key)
    return client.post(f"{BASE}/requests.json", data={k: v for k, v in body.items() if v is not None})


def _count(factory) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(WorkOrder))


def _order(factory, order_no: str) -> WorkOrder:
    with factory() as session:
        order = session.scalar(select(WorkOrder).where(WorkOrder.order_no == order_no))
        _ = order.events  # load while the session is open
        return order


def _error(response, status: int) -> str:
    """The Open311 error format: an array of {code, description}, code = the HTTP status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and len(body) == 1 and body[0]["code"] == status, body
    assert body[0]["description"]
    return body[0]["description"]


def _close(factory, order_no: str) -> None:
    """Through the real lifecycle: 受理 → 派单 → 签收 → 办结 → 审核通过 (已办结)."""
    order_id = _order(factory, order_no).id
    steps = [("accept", {}), ("dispatch", {"department_code": "430104001", "mode": "auto"}), ("sign", {}),
             ("complete", {"result": "已清理占道摊点"}), ("approve", {})]
    for action, data in steps:
        with transaction(factory) as session:
            apply_action(session, order_id=order_id, action=action, actor=SYSTEM, **data)


# -- discovery and services ------------------------------------------------------------------------------------
def test_discovery_names_the_spec_and_json_only(client):
    response = client.get(f"{BASE}/discovery.json")
    assert response.status_code == 200, response.text
    endpoint = response.json()["endpoints"][0]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["formats"] == ["application/json"] and endpoint["url"].endswith("/open311/v2")
    assert "12345" in response.json()["contact"]


def test_services_are_the_level2_categories_of_the_taxonomy(client):
    services = client.get(f"{BASE}/services.json").json()
    assert [s["service_code"] for s in services] == ["0101", "0301", "0302", "1001"]
    stall = services[0]
    assert stall["service_name"] == "城市管理/市容秩序" and stall["group"] == "城市管理" and stall["type"] == "realtime"
    assert "摆摊" in stall["keywords"].split(",") and "占道经营" in stall["description"]
    # Only a service with a real choice of subtype has attributes.
    assert {s["service_code"]: s["metadata"] for s in services} == {"0101": False, "0301": True, "0302": False,
                                                                    "1001": False}


def test_service_definition_offers_the_subtype_list(client):
    noise = client.get(f"{BASE}/services/0301.json").json()
    assert noise["service_code"] == "0301"
    (attribute,) = noise["attributes"]
    assert attribute["code"] == "subtype" and attribute["datatype"] == "singlevaluelist" and not attribute["required"]
    assert [(v["key"], v["name"]) for v in attribute["values"]] == [
        ("030101", "建筑施工噪声"), ("030102", "商业经营噪声"), ("030103", "邻里生活噪声")]
    assert client.get(f"{BASE}/services/0101.json").json()["attributes"] == []
    assert "9999" in _error(client.get(f"{BASE}/services/9999.json"), 404)


def test_jurisdiction_is_this_city_or_absent(client):
    assert client.get(f"{BASE}/services.json", params={"jurisdiction_id": "changsha.gov.cn"}).status_code == 200
    assert "jurisdiction" in _error(client.get(f"{BASE}/services.json", params={"jurisdiction_id": "sf.gov"}), 404)
    assert "jurisdiction" in _error(_post(client, jurisdiction_id="sf.gov"), 404)


# -- intake ----------------------------------------------------------------------------------------------------
def test_post_files_a_routed_order_and_the_public_sees_it_masked(client, app_and_keys):
    factory = app_and_keys[2]
    response = _post(client, media_url="https://img.example.cn/a/1.jpg", email="lisi@example.com",
                     first_name="四", last_name="李", device_id="ios-abc-123", phone=PHONE)
    assert response.status_code == 201, response.text
    (created,) = response.json()
    order_no = created["service_request_id"]
    assert order_no.startswith("CS") and created["account_id"] is None and order_no in created["service_notice"]

    order = _order(factory, order_no)
    assert order.channel == "open311" and order.caller_phone == PHONE and order.parent_id is None
    assert "open311:service=0101" in order.tags and "open311:service_differs" not in order.tags
    assert order.events[0].data["open311"] == {"service_code": "0101", "subtype": None,
                                               "media_url": "https://img.example.cn/a/1.jpg"}
    # The matter's vector is kept for same-event search, as every channel's filing keeps it.
    with factory() as session:
        assert session.query(OrderEmbedding).filter_by(order_id=order.id).count() == 1
    # The personal fields we do not need were dropped, not stored anywhere.
    stored = f"{order.text} {order.events[0].data} {order.tags}"
    assert "lisi@example.com" not in stored and "ios-abc-123" not in stored

    (public,) = client.get(f"{BASE}/requests/{order_no}.json").json()
    assert public["status"] == "open" and public["service_code"] == "0101"
    assert public["service_name"] == "城市管理/市容秩序"
    assert PHONE not in public["description"] and "138****5678" in public["description"]
    assert "李四" not in public["description"] and "lisi.cs@example.com" not in public["description"]
    assert "😡" in public["description"] and "人行道都过不去！！" in public["description"]
    assert public["lat"] == pytest.approx(28.1912) and public["long"] == pytest.approx(112.9455)
    assert public["media_url"] == "https://img.example.cn/a/1.jpg"
    assert public["requested_datetime"].endswith("+08:00") and public["status_notes"] == "已登记"
    assert public["address"].startswith("湖南省长沙市岳麓区")
    assert public["agency_responsible"] is None         # no unit holds it until it is dispatched
    for personal in ("phone", "email", "first_name", "last_name", "caller_openid", "device_id"):
        assert personal not in public


def test_an_unlisted_territorial_office_is_not_promised_to_the_citizen(client, app_and_keys):
    # A neighbour-noise matter (a street office's) in a town the list does not know: the router names "青山镇人民政府"
    # without a code, for an agent to confirm; the citizen is only told the order will be assigned.
    letter = ("反映青山镇梅花村楼上邻居天天半夜吵闹。尊敬的领导：您好！我住在青山镇梅花村三组，楼上邻居每天晚上十二点以后"
              "还在跺脚、拖凳子，吵得全家睡不着，找村里调解了几次都没用。谢谢！")
    response = _post(client, description=letter, lat=None, long=None, address_string="青山镇梅花村三组",
                     service_code="0301")
    assert response.status_code == 201, response.text
    (created,) = response.json()
    assert "青山镇" not in created["service_notice"] and "待核实" not in created["service_notice"]
    assert "尽快分派办理" in created["service_notice"]


def test_service_code_is_a_hint_the_router_decides(client, app_and_keys):
    # The client says 供水 (1001); the complaint is about street stalls: the router's answer stands, flagged.
    response = _post(client, service_code="1001", description="晚上好多摊贩占道摆摊卖烧烤，人行道都过不去", lat=None,
                     long=None, address_string="岳麓区望月湖街道桃子湖路")
    assert response.status_code == 201, response.text
    order_no = response.json()[0]["service_request_id"]
    order = _order(app_and_keys[2], order_no)
    assert "open311:service=1001" in order.tags and "open311:service_differs" in order.tags
    assert order.text.endswith("地址：岳麓区望月湖街道桃子湖路") and order.lat is None
    (public,) = client.get(f"{BASE}/requests/{order_no}.json").json()
    assert public["service_code"] == "0101" and public["address"].startswith("湖南省长沙市岳麓区望月湖街道")


def test_subtype_attribute_is_checked_and_kept(client, app_and_keys):
    response = _post(client, service_code="0301", description=NOISE, **{"attribute[subtype]": "030101"})
    assert response.status_code == 201, response.text
    order = _order(app_and_keys[2], response.json()[0]["service_request_id"])
    assert order.events[0].data["open311"]["subtype"] == "030101"


@pytest.mark.parametrize("key", [None, "", "hlk_forged", "reader", "department", "revoked"])
def test_a_bad_api_key_is_403_and_stores_nothing(client, app_and_keys, key):
    factory = app_and_keys[2]
    with transaction(factory) as session:
        client.keys["department"] = create_api_key(session, name="street-office", scopes=["orders:write"],
                                                   department_code="430104001")[1]
        client.keys["revoked"] = create_api_key(session, name="old-app", scopes=["orders:write"])[1]
        revoke_api_key(session, name="old-app")
    assert "api_key" in _error(_post(client, key=key), 403)
    assert _count(factory) == 0


@pytest.mark.parametrize("fields, words", [
    ({"description": ""}, "description is required"),
    ({"description": "　　 \u200b "}, "description"),
    ({"description": "路边摊占道经营，" * 600}, "limit is 4000"),
    ({"description": "x" * 20_000}, "description"),
    ({"service_code": "9999"}, "service_code"),
    ({"service_code": ""}, "service_code"),
    ({"lat": None, "long": None}, "location is required"),
    ({"lat": None, "long": None, "address_id": "A-1"}, "address_id"),
    ({"long": None}, "lat and long"),
    ({"lat": "北纬28度"}, "lat"),
    ({"lat": "91"}, "lat"),
    ({"long": "nan"}, "long"),
    ({"media_url": "javascript:alert(1)"}, "media_url"),
    ({"attribute[subtype]": "030101"}, "unknown attribute"),
    ({"service_code": "0301", "description": NOISE, "attribute[subtype]": "010101"}, "not a subtype"),
    ({"phone": "1" * 40}, "phone"),
])
def test_bad_input_is_a_400_with_a_reason_and_stores_nothing(client, app_and_keys, fields, words):
    assert words in _error(_post(client, **fields), 400)
    assert _count(app_and_keys[2]) == 0


# -- reading requests ------------------------------------------------------------------------------------------
def test_a_request_closed_through_the_lifecycle_shows_as_closed(client, app_and_keys):
    factory = app_and_keys[2]
    closing = _post(client).json()[0]["service_request_id"]
    staying = _post(client, service_code="0301", description=NOISE).json()[0]["service_request_id"]
    _close(factory, closing)

    (closed,) = client.get(f"{BASE}/requests/{closing}.json").json()
    assert closed["status"] == "closed" and closed["status_notes"].startswith("已办结；最近一步：审核通过")
    assert "已清理占道摊点" not in closed["status_notes"]       # staff comments stay internal
    assert closed["agency_responsible"] == "望月湖街道办事处" and closed["expected_datetime"]

    def ids(**params):
        response = client.get(f"{BASE}/requests.json", params=params)
        assert response.status_code == 200, response.text
        return [r["service_request_id"] for r in response.json()]

    assert ids(status="closed") == [closing]
    assert ids(status="open") == [staying]
    assert set(ids(status="open,closed")) == set(ids()) == {closing, staying}
    assert ids(service_code="0301") == [staying]
    assert set(ids(service_code="0101,0301")) == {closing, staying}
    assert ids(service_request_id=f"{closing},{staying.lower()},CS00000000000000", status="open") == [staying, closing]
    assert "status" in _error(client.get(f"{BASE}/requests.json", params={"status": "pending"}), 400)
    assert "9999" in _error(client.get(f"{BASE}/requests.json", params={"service_code": "9999"}), 400)


def test_the_window_is_90_days_at_most_and_defaults_to_the_last_90(client, app_and_keys):
    factory = app_and_keys[2]
    recent = _post(client).json()[0]["service_request_id"]
    old_time = utcnow() - dt.timedelta(days=120)
    with transaction(factory) as session:
        old, _ = create_order(session, text=STALL, channel="open311", actor=SYSTEM, now=old_time)
        old_no = old.order_no

    def ids(**params):
        response = client.get(f"{BASE}/requests.json", params=params)
        assert response.status_code == 200, response.text
        return [r["service_request_id"] for r in response.json()]

    assert ids() == [recent]
    local = dt.timezone(dt.timedelta(hours=8))
    start = (old_time - dt.timedelta(days=1)).astimezone(local)
    assert ids(start_date=start.isoformat()) == [old_no]                                # start + 90 days
    assert ids(start_date=start.isoformat(), end_date=(start + dt.timedelta(days=90)).isoformat()) == [old_no]
    assert ids(end_date=(old_time + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")) == [old_no]
    too_wide = {"start_date": "2026-01-01T00:00:00+08:00", "end_date": "2026-04-02T00:00:00+08:00"}   # 91 days
    assert "at most 90 days" in _error(client.get(f"{BASE}/requests.json", params=too_wide), 400)
    reversed_ = {"start_date": "2026-04-01T00:00:00Z", "end_date": "2026-03-01T00:00:00Z"}
    assert "after" in _error(client.get(f"{BASE}/requests.json", params=reversed_), 400)
    assert "ISO 8601" in _error(client.get(f"{BASE}/requests.json", params={"start_date": "上个月"}), 400)


def test_co_handler_child_orders_are_not_public(client, app_and_keys):
    factory = app_and_keys[2]
    order_no = _post(client).json()[0]["service_request_id"]
    order_id = _order(factory, order_no).id
    with transaction(factory) as session:
        apply_action(session, order_id=order_id, action="accept", actor=SYSTEM)
        apply_action(session, order_id=order_id, action="dispatch", actor=SYSTEM, department_code="430104-CHENGGUAN",
                     co_handlers=["430104001"])
    assert [r["service_request_id"] for r in client.get(f"{BASE}/requests.json").json()] == [order_no]
    _error(client.get(f"{BASE}/requests/{order_no}-1.json"), 404)
    (lead,) = client.get(f"{BASE}/requests/{order_no}.json").json()
    assert lead["agency_responsible"] == "岳麓区城市管理和综合执法局" and lead["status"] == "open"


def test_unknown_requests_tokens_and_paths_are_open311_404s(client):
    assert "CS20260101999999" in _error(client.get(f"{BASE}/requests/CS20260101999999.json"), 404)
    assert "token" in _error(client.get(f"{BASE}/tokens/abc-123.json"), 404)
    _error(client.get(f"{BASE}/requests.xml"), 404)
    # Other paths keep the app's own error format.
    elsewhere = client.get("/api/v1/orders/CS00000000000000", headers={"X-API-Key": client.keys["reader"]})
    assert elsewhere.status_code == 404 and "detail" in elsewhere.json()


def test_public_reads_are_rate_limited(client, app_and_keys):
    app = app_and_keys[0]
    app.state.public_limiter = RateLimiter(2, 60.0)
    assert client.get(f"{BASE}/services.json").status_code == 200
    assert client.get(f"{BASE}/requests.json").status_code == 200
    limited = client.get(f"{BASE}/requests.json")
    assert "too many" in _error(limited, 429) and int(limited.headers["Retry-After"]) >= 1


# -- review 2026-12-06 M3: publish only what the city chooses, masked, in sane pages ----------------------------
PII_TEXT = ("岳麓区望月湖街道3栋2单元501室楼上漏水，我叫李建国，电话１３８１２３４５６８２，身份证 430104 19900101 1235，"
            "邮箱wangxm@163.com")


def _publish(app_and_keys, choice: str) -> None:
    app = app_and_keys[0]
    app.state.settings = app.state.settings.model_copy(update={"open311_publish": choice})


def _file(factory, channel: str, text: str = NOISE, **fields) -> str:
    with transaction(factory) as session:
        order, _ = create_order(session, text=text, channel=channel, actor=SYSTEM, **fields)
        return order.order_no


def test_only_open311_requests_are_published_by_default(client, app_and_keys):
    factory = app_and_keys[2]
    assert app_and_keys[0].state.settings.open311_publish == "open311"
    public = _post(client).json()[0]["service_request_id"]
    private = [_file(factory, channel, lat=28.19, lng=112.94) for channel in ("hotline", "wechat", "web", "grid")]
    assert [r["service_request_id"] for r in client.get(f"{BASE}/requests.json").json()] == [public]
    by_ids = client.get(f"{BASE}/requests.json", params={"service_request_id": ",".join([public, *private])})
    assert [r["service_request_id"] for r in by_ids.json()] == [public]
    for order_no in private:   # answered exactly like a number that does not exist
        assert _error(client.get(f"{BASE}/requests/{order_no}.json"), 404) == f"no service request {order_no!r}"
    assert len(client.get(f"{BASE}/requests/{public}.json").json()) == 1


def test_the_city_may_publish_every_order_or_none(client, app_and_keys):
    factory = app_and_keys[2]
    public = _post(client).json()[0]["service_request_id"]
    hotline = _file(factory, "hotline", PII_TEXT, lat=28.19, lng=112.94)
    _publish(app_and_keys, "all")
    assert {r["service_request_id"] for r in client.get(f"{BASE}/requests.json").json()} == {public, hotline}
    (shown,) = client.get(f"{BASE}/requests/{hotline}.json").json()
    assert shown["lat"] is None and shown["long"] is None      # a point only when the citizen gave it to Open311
    for secret in ("建国", "501", "１３８１２３４５６８２", "430104 19900101 1235", "wangxm"):
        assert secret not in shown["description"], shown["description"]
    assert "我叫李**" in shown["description"] and "3栋2单元***室" in shown["description"]
    _publish(app_and_keys, "none")
    assert client.get(f"{BASE}/requests.json").json() == []
    _error(client.get(f"{BASE}/requests/{public}.json"), 404)
    assert "no request is published" in client.get(f"{BASE}/discovery.json").json()["key_service"]


def test_public_text_is_masked_with_todays_rules_even_for_older_rows(client, app_and_keys):
    factory = app_and_keys[2]
    order_no = _post(client, description=PII_TEXT).json()[0]["service_request_id"]
    older = _post(client).json()[0]["service_request_id"]
    with transaction(factory) as session:   # a row masked by the old rules: these forms were left in clear
        session.scalar(select(WorkOrder).where(WorkOrder.order_no == older)).text_masked = PII_TEXT
    for number in (order_no, older):
        (public,) = client.get(f"{BASE}/requests/{number}.json").json()
        for secret in ("建国", "501室", "１３８１２３４５６８２", "430104 19900101 1235", "wangxm"):
            assert secret not in public["description"], public["description"]
        assert "岳麓区望月湖街道3栋2单元" in public["description"]


def test_lists_come_in_pages_of_50_at_most_200(client, app_and_keys):
    factory = app_and_keys[2]
    numbers = [_file(factory, "open311") for _ in range(60)]
    first = client.get(f"{BASE}/requests.json").json()
    assert len(first) == 50 and {r["service_request_id"] for r in first} <= set(numbers)
    second = client.get(f"{BASE}/requests.json", params={"page": 2}).json()
    assert {r["service_request_id"] for r in first + second} == set(numbers) and len(second) == 10
    assert len(client.get(f"{BASE}/requests.json", params={"page_size": 200}).json()) == 60
    assert len(client.get(f"{BASE}/requests.json", params={"page_size": 7, "page": 3}).json()) == 7
    assert "page_size" in _error(client.get(f"{BASE}/requests.json", params={"page_size": 201}), 400)
    _error(client.get(f"{BASE}/requests.json", params={"page_size": 0}), 400)
    key_service = client.get(f"{BASE}/discovery.json").json()["key_service"]
    assert "page_size 50" in key_service and "at most 200" in key_service and "filed through Open311" in key_service
