"""The orders HTTP API: API keys and scopes, idempotent intake, lifecycle actions, and concurrency on a running server."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import func, select
from support import STALL

from api.auth.keys import create_api_key, revoke_api_key
from hotline.core.db import transaction
from orders.models import WorkOrder


def _count_orders(factory) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(WorkOrder))


def test_keys_are_required_and_scoped(client, app_and_keys):
    body = {"text": STALL, "channel": "hotline"}
    assert client.post("/api/v1/orders", json=body).status_code == 401
    assert client.post("/api/v1/orders", json=body, headers={"X-API-Key": "hlk_forged"}).status_code == 401
    refused = client.post("/api/v1/orders", json=body, headers={"X-API-Key": client.keys["reader"]})
    assert refused.status_code == 403 and "orders:write" in refused.json()["detail"]
    _, _, factory = app_and_keys
    with transaction(factory) as session:
        assert revoke_api_key(session, name="dispatch")
    assert client.post("/api/v1/orders", json=body, headers={"X-API-Key": client.keys["dispatch"]}).status_code == 401
    assert _count_orders(factory) == 0


def test_intake_routes_masks_and_is_idempotent(client, app_and_keys):
    headers = {"X-API-Key": client.keys["dispatch"], "Idempotency-Key": "call-20261121-0001"}
    first = client.post("/api/v1/orders", json={"text": STALL, "caller_phone": "13812345678"}, headers=headers)
    assert first.status_code == 201, first.text
    order = first.json()
    assert order["state"] == "received" and order["state_label"] == "已登记"
    assert order["caller_phone"] == "138****5678" and "13812345678" not in order["text"]
    assert order["routing"]["department"]["code"] and order["district_adcode"] == "430104"
    replay = client.post("/api/v1/orders", json={"text": STALL, "caller_phone": "13812345678"}, headers=headers)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["order_no"] == order["order_no"]
    conflict = client.post("/api/v1/orders", json={"text": "路灯坏了"}, headers=headers)
    assert conflict.status_code == 409
    assert _count_orders(app_and_keys[2]) == 1


@pytest.mark.parametrize("body, words", [({"text": "  "}, "empty"), ({"text": STALL, "channel": "pigeon"}, "channel"),
                                         ({"text": "x" * 30_000}, "limit")])
def test_bad_intake_is_a_4xx_with_a_reason_and_stores_nothing(client, app_and_keys, body, words):
    response = client.post("/api/v1/orders", json=body, headers={"X-API-Key": client.keys["dispatch"]})
    assert response.status_code == 422 and words in str(response.json()["detail"])
    assert _count_orders(app_and_keys[2]) == 0


def test_intake_dispatches_what_the_router_is_sure_of(client):
    client.app.state.settings = client.app.state.settings.model_copy(update={"auto_dispatch": True})
    headers = {"X-API-Key": client.keys["dispatch"]}
    order = client.post("/api/v1/orders", json={"text": STALL}, headers=headers).json()
    assert order["routing"]["decision"] == "auto" and order["state"] == "dispatched"
    assert order["department_code"] == order["routing"]["department"]["code"]
    vague = client.post("/api/v1/orders", json={"text": "有个事情想反映一下"}, headers=headers).json()
    assert vague["routing"]["decision"] != "auto" and vague["state"] == "received"


def test_lifecycle_through_the_api(client):
    headers = {"X-API-Key": client.keys["dispatch"]}
    order_no = client.post("/api/v1/orders", json={"text": STALL}, headers=headers).json()["order_no"]
    for step in ({"action": "accept"}, {"action": "dispatch", "department_code": "430104001", "mode": "auto"},
                 {"action": "sign"}, {"action": "complete", "result": "已清理"}):
        response = client.post(f"/api/v1/orders/{order_no}/actions", json=step, headers=headers)
        assert response.status_code == 200, response.text
    illegal = client.post(f"/api/v1/orders/{order_no}/actions", json={"action": "sign"}, headers=headers)
    assert illegal.status_code == 409 and "不能签收" in illegal.json()["detail"]
    stale = client.post(f"/api/v1/orders/{order_no}/actions", json={"action": "approve", "expected_version": 1},
                        headers=headers)
    assert stale.status_code == 409
    read = client.get(f"/api/v1/orders/{order_no}", headers={"X-API-Key": client.keys["reader"]})
    assert read.status_code == 200
    assert [e["action"] for e in read.json()["events"]] == ["create", "accept", "dispatch", "sign", "complete"]
    assert read.json()["state"] == "completed"
    assert client.get("/api/v1/orders/CS00000000000000", headers=headers).status_code == 404


# -- a real server on loopback --------------------------------------------------------------------------
async def _post_many(base: str, key: str, bodies: list[dict], idempotency: list[str | None]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        async def one(body, idem):
            headers = {"X-API-Key": key} | ({"Idempotency-Key": idem} if idem else {})
            return await http.post("/api/v1/orders", json=body, headers=headers)
        return await asyncio.gather(*(one(b, i) for b, i in zip(bodies, idempotency)))


def test_200_concurrent_creations_make_exactly_200_orders(server):
    base, keys, factory = server
    bodies = [{"text": f"第{i}号：小区门口垃圾三天没人收，苍蝇到处飞", "channel": "web"} for i in range(200)]
    responses = asyncio.run(_post_many(base, keys["dispatch"], bodies, [f"web-{i}" for i in range(200)]))
    assert [r.status_code for r in responses] == [201] * 200
    numbers = {r.json()["order_no"] for r in responses}
    assert len(numbers) == 200 and _count_orders(factory) == 200


def test_the_same_delivery_three_times_at_once_makes_one_order(server):
    base, keys, factory = server
    body = {"text": "微信留言：楼下烧烤店油烟太大", "channel": "wechat", "caller_openid": "oWx_user_1"}
    responses = asyncio.run(_post_many(base, keys["dispatch"], [body] * 3, ["wx-MsgId-1234567890"] * 3))
    assert sorted(r.status_code for r in responses) == [200, 200, 201]
    assert len({r.json()["order_no"] for r in responses}) == 1 and _count_orders(factory) == 1


# -- staff: login, roles, department scoping --------------------------------------------------------------
def _login(client, name: str) -> dict:
    response = client.post("/api/v1/auth/token", json={"username": name, "password": f"{name}-Passw0rd!"})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_idempotency_keys_are_scoped_to_their_sender_and_departments_do_not_file(client, staff, app_and_keys):
    """Review 2026-12-06, L12: a department-bound key sent the dispatch system's Idempotency-Key with the same body
    and got the dispatch system's order back (200, Idempotent-Replayed), an order not in its department; the same key
    could file orders (201); and any orders:write client could squat WeChat's predictable `msg:<MsgId>` keys."""
    from api.channels.wechat.filing import file_incoming
    from api.channels.wechat.messages import Incoming
    from api.channels.wechat.sender import RecordingSender

    app, keys, factory = app_and_keys
    with transaction(factory) as session:
        keys["portal"] = create_api_key(session, name="citizen-portal", scopes=["orders:read", "orders:write"])[1]
        keys["yuelu-system"] = create_api_key(session, name="yuelu-street-system", scopes=["orders:read", "orders:write"],
                                              department_code="430104001")[1]
    body = {"text": STALL, "caller_phone": "13812345678"}
    idem = {"Idempotency-Key": "call-20261206-0042"}
    first = client.post("/api/v1/orders", json=body, headers={"X-API-Key": keys["dispatch"]} | idem)
    assert first.status_code == 201, first.text
    # a department's system (or handler) files nothing, whatever key it sends
    for headers in ({"X-API-Key": keys["yuelu-system"]} | idem, {"X-API-Key": keys["yuelu-system"]},
                    _login(client, "yuelu") | idem):
        refused = client.post("/api/v1/orders", json=body, headers=headers)
        assert refused.status_code == 403 and "do not file" in refused.json()["detail"], refused.text
        assert first.json()["order_no"] not in refused.text and "Idempotent-Replayed" not in refused.headers
    # another channel's equal key is its own key: a new order, never the dispatch system's
    other = client.post("/api/v1/orders", json=body, headers={"X-API-Key": keys["portal"]} | idem)
    assert other.status_code == 201 and other.json()["order_no"] != first.json()["order_no"]
    assert "Idempotent-Replayed" not in other.headers
    agent = client.post("/api/v1/orders", json=body, headers=_login(client, "agent") | idem)
    assert agent.status_code == 201 and agent.json()["order_no"] not in (first.json()["order_no"],
                                                                           other.json()["order_no"])
    # each sender's retry still replays its own order
    again = client.post("/api/v1/orders", json=body, headers={"X-API-Key": keys["portal"]} | idem)
    assert again.status_code == 200 and again.json()["order_no"] == other.json()["order_no"]
    assert _count_orders(factory) == 3
    # a client that takes WeChat's next key (msg:<MsgId>) does not keep the citizen's message from being filed
    squat = client.post("/api/v1/orders", json={"text": "雨花区高桥街道路灯坏了一个星期没人修"},
                        headers={"X-API-Key": keys["portal"], "Idempotency-Key": "msg:24680135792468013579"})
    assert squat.status_code == 201
    app.state.wechat_sender = sender = RecordingSender()
    file_incoming(app, Incoming(openid="oWx_citizen_0042", msg_type="text", create_time="1795000000",
                              msg_id="24680135792468013579", text="岳麓区桔子洲街道小区门口流动摊贩占道，晚上吵到十二点"))
    with factory() as session:
        [filed] = session.scalars(select(WorkOrder).where(WorkOrder.caller_openid == "oWx_citizen_0042")).all()
        assert filed.order_no != squat.json()["order_no"] and filed.channel == "wechat"
    assert sender.sent and filed.order_no in sender.sent[-1][1]


def test_login_is_audited_and_a_wrong_password_refused(client, staff, app_and_keys):
    from api.auth.models import AuditRecord

    assert client.post("/api/v1/auth/token", json={"username": "agent", "password": "wrong-password"}).status_code == 401
    assert client.post("/api/v1/auth/token", json={"username": "nobody", "password": "x"}).status_code == 401
    _login(client, "agent")
    with app_and_keys[2]() as session:
        rows = [(r.actor, r.action) for r in session.scalars(select(AuditRecord).order_by(AuditRecord.id))]
    assert rows == [("agent", "login_failed"), ("nobody", "login_failed"), ("agent", "login_ok")]
    assert client.get("/api/v1/orders/CS1", headers={"Authorization": "Bearer forged.token.value"}).status_code == 401


def test_a_department_handler_sees_and_acts_on_its_own_orders_only(client, staff):
    agent, dispatcher = _login(client, "agent"), _login(client, "dispatcher")
    yuelu, yuhua, official = _login(client, "yuelu"), _login(client, "yuhua"), _login(client, "official")
    order_no = client.post("/api/v1/orders", json={"text": STALL}, headers=agent).json()["order_no"]
    assert client.post(f"/api/v1/orders/{order_no}/actions", json={"action": "accept"}, headers=agent).status_code == 200
    dispatched = client.post(f"/api/v1/orders/{order_no}/actions",
                             json={"action": "dispatch", "department_code": "430104001"}, headers=dispatcher)
    assert dispatched.status_code == 200
    assert client.get(f"/api/v1/orders/{order_no}", headers=yuelu).status_code == 200
    assert client.get(f"/api/v1/orders/{order_no}", headers=yuhua).status_code == 404      # another department's
    assert client.post(f"/api/v1/orders/{order_no}/actions", json={"action": "sign"}, headers=yuhua).status_code == 404
    assert client.post(f"/api/v1/orders/{order_no}/actions", json={"action": "sign"}, headers=agent).status_code == 403
    signed = client.post(f"/api/v1/orders/{order_no}/actions", json={"action": "sign"}, headers=yuelu)
    assert signed.status_code == 200 and signed.json()["handler"] == "yuelu"
    assert client.get(f"/api/v1/orders/{order_no}", headers=official).status_code == 200     # officials read …
    refused = client.post(f"/api/v1/orders/{order_no}/actions", json={"action": "handle", "note": "x"}, headers=official)
    assert refused.status_code == 403                                                        # … but do not act


# -- citizens ---------------------------------------------------------------------------------------------
def test_a_citizen_sees_their_order_with_the_right_phone_digits_only(client):
    headers = {"X-API-Key": client.keys["dispatch"]}
    mine = client.post("/api/v1/orders", json={"text": STALL, "caller_phone": "13812345678"}, headers=headers).json()
    other = client.post("/api/v1/orders", json={"text": "楼上天天半夜拖凳子", "caller_phone": "13900001111"},
                        headers=headers).json()
    seen = client.get(f"/api/v1/public/orders/{mine['order_no']}", params={"phone_last4": "5678"})
    assert seen.status_code == 200
    body = seen.json()
    assert body["state_label"] == "已登记" and body["last_step"]["action"] == "登记"
    assert "text" not in body and "caller_phone" not in body            # no complaint text, no phone
    wrong = client.get(f"/api/v1/public/orders/{other['order_no']}", params={"phone_last4": "5678"})
    unknown = client.get("/api/v1/public/orders/CS20990101999999", params={"phone_last4": "5678"})
    assert wrong.status_code == unknown.status_code == 404 and wrong.json() == unknown.json()
    assert client.get(f"/api/v1/public/orders/{mine['order_no']}", params={"phone_last4": "56"}).status_code == 422


def test_public_lookups_are_rate_limited(client):
    # Other order numbers each time: the per-order lock on wrong digits (below) would answer 429 sooner.
    answers = [client.get(f"/api/v1/public/orders/CS{n}", params={"phone_last4": "0000"}).status_code
               for n in range(35)]
    assert answers[:30] == [404] * 30 and set(answers[30:]) == {429}


def test_wrong_digits_for_one_order_pause_its_lookups_whoever_sends_them(client, app_and_keys):
    """Review M2: guesses spread over many users (or addresses) are counted on the order number: after 10 wrong
    last-4 digits in an hour, that order's lookups pause, the right digits included; other orders are not touched."""
    headers = {"X-API-Key": client.keys["dispatch"]}
    target = client.post("/api/v1/orders", json={"text": STALL, "caller_phone": "13812345678"}, headers=headers).json()
    other = client.post("/api/v1/orders", json={"text": "楼上天天半夜拖凳子", "caller_phone": "13900001111"},
                        headers=headers).json()
    with transaction(app_and_keys[2]) as session:
        relay = {"X-API-Key": create_api_key(session, name="relay", scopes=["lookup:on_behalf"])[1]}

    def ask(order_no, digits, user):
        return client.get(f"/api/v1/public/orders/{order_no}", params={"phone_last4": digits},
                          headers={**relay, "X-On-Behalf-Of": f"web:{user}"})

    assert ask(target["order_no"], "5678", "owner").status_code == 200
    guesses = [ask(target["order_no"], f"{n:04d}", f"guesser{n}").status_code for n in range(10)]
    assert guesses == [404] * 10                       # ten users, one guess each: no per-user limit is reached
    paused = ask(target["order_no"], "5678", "owner")   # the right digits, now refused
    assert paused.status_code == 429 and int(paused.headers["Retry-After"]) > 3000 and "12345" in paused.json()["detail"]
    assert ask(target["order_no"].lower(), "5678", "owner").status_code == 429          # however the number is written
    assert ask(other["order_no"], "1111", "owner").status_code == 200                   # another order: untouched
    unknown = [ask("CS20990101999999", "0000", f"u{n}").status_code for n in range(11)]
    assert unknown == [404] * 10 + [429]               # an unknown number is counted the same: existence not told


def test_the_assistant_relaying_chat_users_is_limited_per_user_not_as_one_address(client, app_and_keys):
    with transaction(app_and_keys[2]) as session:   # a channel key that relays citizens (like the assistant's)
        relay = {"X-API-Key": create_api_key(session, name="relay", scopes=["lookup:on_behalf"])[1]}
    numbers = iter(range(1000))

    def ask(headers):   # another order number each time: the per-order lock on wrong digits is tested below
        return client.get(f"/api/v1/public/orders/CS{next(numbers)}", params={"phone_last4": "0000"},
                          headers=headers).status_code
    assert [ask({**relay, "X-On-Behalf-Of": "web:alice"}) for _ in range(31)][-1] == 429
    assert ask({**relay, "X-On-Behalf-Of": "web:bob"}) == 404          # bob has his own allowance
    assert ask({"X-API-Key": "hlk_forged", "X-On-Behalf-Of": "web:carol"}) == 404   # counted against the address
    assert [ask({"X-On-Behalf-Of": f"web:{n}"}) for n in range(30)][-1] == 429     # no key: the address decides


def test_my_orders_by_openid_for_channel_systems_only(client, staff):
    headers = {"X-API-Key": client.keys["dispatch"]}
    for text in ("路灯坏了好几天", "井盖丢了"):
        client.post("/api/v1/orders", json={"text": text, "channel": "wechat", "caller_openid": "oWx_A"}, headers=headers)
    client.post("/api/v1/orders", json={"text": "别人的投诉", "channel": "wechat", "caller_openid": "oWx_B"},
                headers=headers)
    mine = client.get("/api/v1/orders", params={"openid": "oWx_A"}, headers=headers)
    assert mine.status_code == 200 and len(mine.json()) == 2
    assert client.get("/api/v1/orders", params={"openid": "oWx_A"}, headers=_login(client, "agent")).status_code == 403


def test_a_redispatch_teaches_the_router_at_once(client, router):
    headers = {"X-API-Key": client.keys["dispatch"]}
    text_ = "岳麓区望月湖街道小区门口的快递柜天天占道，快递车也乱停"
    order_no = client.post("/api/v1/orders", json={"text": text_}, headers=headers).json()["order_no"]
    before = len(router.feedback)
    for step in ({"action": "accept"}, {"action": "dispatch", "department_code": "430104-CHENGGUAN"},
                 {"action": "return", "reason": "属街道职责", "at_fault": False},
                 {"action": "dispatch", "department_code": "430104001"}):
        assert client.post(f"/api/v1/orders/{order_no}/actions", json=step, headers=headers).status_code == 200
    assert len(router.feedback) == before + 1
    assert router.route(text_)["department"]["code"] == "430104001"


def test_a_failure_limit_counts_only_what_is_recorded_and_forgets_after_its_window():
    from api.ratelimit import RateLimiter

    failures = RateLimiter(2, 3600.0)
    assert failures.blocked("CS1", now=0.0) is None and failures.blocked("CS1", now=1.0) is None   # looks count nothing
    failures.record("CS1", now=10.0)
    failures.record("CS1", now=20.0)
    assert failures.blocked("CS1", now=30.0) == 3580.0 and failures.blocked("CS2", now=30.0) is None
    assert failures.blocked("CS1", now=3611.0) is None      # the first failure has left the hour


def test_rate_limiter_window_slides():
    from api.ratelimit import RateLimiter

    limiter = RateLimiter(2, 60.0)
    assert limiter.check("1.2.3.4", now=0.0) is None and limiter.check("1.2.3.4", now=1.0) is None
    assert limiter.check("1.2.3.4", now=2.0) == 58.0          # wait until the first hit leaves the window
    assert limiter.check("5.6.7.8", now=2.0) is None          # another client is not affected
    assert limiter.check("1.2.3.4", now=60.5) is None


def test_rate_limiter_memory_is_bounded_and_limits_still_hold():
    """Review 2026-12-06, L11: a key whose deque still held hits was never dropped (100,202 keys an hour later), and
    beyond 100,000 keys each check scanned the whole table under the lock."""
    from api.ratelimit import RateLimiter

    limiter = RateLimiter(3, 60.0, max_keys=50_000)
    for _ in range(3):
        assert limiter.check("chat:10.20.30.40", now=0.0) is None
    started = time.perf_counter()
    for i in range(200_000):   # rotating IPv6 addresses (or X-On-Behalf-Of values) within one minute
        assert limiter.check(f"key:wechat-relay:oWx_{i:06d}", now=1.0 + i * 1e-5) is None
        if i % 10_000 == 0:
            assert len(limiter) <= 50_000, (i, len(limiter))
    assert len(limiter) <= 50_000 and time.perf_counter() - started < 20
    # limits still apply to a client seen recently, however many others came and went
    for _ in range(3):
        assert limiter.check("chat:2408:8207:1851::1", now=5.0) is None
    assert limiter.check("chat:2408:8207:1851::1", now=5.5) == 59.5
    assert limiter.check("chat:2408:8207:1851::1", now=64.0) == 1.0   # its hits at 5.0 are still in the window
    # once their hits leave the window, idle clients are forgotten (not only empty buckets)
    assert limiter.check("chat:10.20.30.40", now=70.0) is None and len(limiter) == 1


def test_indicators_endpoint_uses_the_same_definitions(client, staff):
    headers = {"X-API-Key": client.keys["dispatch"]}
    for text_ in ("岳麓区望月湖街道摊贩占道", "岳麓区望月湖街道垃圾没人收"):
        client.post("/api/v1/orders", json={"text": text_}, headers=headers)
    from hotline.core.clock import CITY_TZ

    today = __import__("datetime").datetime.now(CITY_TZ).date()   # periods are the city's days
    period = {"start": str(today), "end": str(today + __import__("datetime").timedelta(days=1))}
    official = _login(client, "official")
    count = client.get("/api/v1/indicators/order_count", params=period, headers=official)
    assert count.status_code == 200 and count.json()["value"] == 2 and "工单数" == count.json()["name"]
    by_district = client.get("/api/v1/indicators/ranking", params=period | {"dimension": "district"}, headers=official)
    assert by_district.json()["breakdown"] == {"430104": 2}
    compared = client.get("/api/v1/indicators/order_count", params=period | {"compare": True}, headers=official)
    assert compared.json()["previous"]["value"] == 0 and compared.json()["change"] is None
    assert client.get("/api/v1/indicators/order_count", params=period, headers=headers).status_code == 403  # no scope
    assert client.get("/api/v1/indicators/nope", params=period, headers=official).status_code == 404
    backwards = {"start": period["end"], "end": period["start"]}
    assert client.get("/api/v1/indicators/order_count", params=backwards, headers=official).status_code == 422


# -- review 2026-12-06 (issue 11) -----------------------------------------------------------------------------
def test_dispatch_to_a_unit_the_knowledge_base_does_not_know_is_refused_and_changes_nothing(client):
    """M8: /actions dispatch took NO-SUCH-DEPT (and co-handler ALSO-NOT-REAL) and stranded the order in no queue."""
    headers = {"X-API-Key": client.keys["dispatch"]}
    order_no = client.post("/api/v1/orders", json={"text": STALL}, headers=headers).json()["order_no"]
    assert client.post(f"/api/v1/orders/{order_no}/actions", json={"action": "accept"}, headers=headers).status_code == 200
    before = client.get(f"/api/v1/orders/{order_no}", headers=headers).json()
    for step, named in (({"department_code": "NO-SUCH-DEPT"}, "NO-SUCH-DEPT"),
                        ({"department_code": "430104001", "co_handlers": ["ALSO-NOT-REAL"]}, "ALSO-NOT-REAL")):
        refused = client.post(f"/api/v1/orders/{order_no}/actions", json={"action": "dispatch", **step},
                              headers=headers)
        assert refused.status_code == 422 and named in refused.json()["detail"], refused.text
    after = client.get(f"/api/v1/orders/{order_no}", headers=headers).json()
    assert after == before and after["state"] == "accepted" and after["department_code"] is None
    ok = client.post(f"/api/v1/orders/{order_no}/actions", headers=headers,
                     json={"action": "dispatch", "department_code": "430104001", "co_handlers": ["430104-CHENGGUAN"]})
    assert ok.status_code == 200 and ok.json()["department_code"] == "430104001"


def test_a_knife_attack_reaches_the_agent_as_urgent_and_for_110(client):
    headers = {"X-API-Key": client.keys["dispatch"]}
    created = client.post("/api/v1/orders", json={"text": "岳麓区望月湖街道有人在小区门口持刀打人，快派人来"},
                          headers=headers)
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["state"] == "received" and order["urgency"] == "紧急" and "转110" in order["tags"]
    listed = [o for queue in ("intake", "review")
              for o in client.get(f"/api/v1/queues/{queue}", headers=headers).json()["items"]
              if o["order_no"] == order["order_no"]]
    assert listed and listed[0]["urgency"] == "紧急" and "转110" in listed[0]["tags"]


def test_an_order_keeps_the_routers_reasons_after_intake(client):
    """GET /orders/{no} answered `routing: null` once the order was stored (review 2026-12-06, feature 7): the
    reasons the agent saw at intake are kept with the decision."""
    headers = {"X-API-Key": client.keys["dispatch"]}
    filed = client.post("/api/v1/orders", json={"text": STALL}, headers=headers).json()
    order = client.get(f"/api/v1/orders/{filed['order_no']}", headers=headers).json()
    routing = order["routing"]
    assert routing["decision"] in {"auto", "suggest", "review"} and routing["department_code"]
    assert routing["reasons"]["explanation"].startswith("事项：") and routing["reasons"]["kb_item"]["id"]
    assert routing["candidates"] and "jurisdiction" in routing["reasons"]
