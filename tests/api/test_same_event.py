"""Same-event search and merging through the API: the intake's `similar` field, GET /orders/{no}/similar,
POST /orders/{no}/merge and /link, and a merged caller's status lookup (SQLite and PostgreSQL, tiny city)."""
from __future__ import annotations

from support import GAOQIAO, WANGYUEHU

OUTAGE = [
    ("hotline", "停水问题：雨花区高桥街道高桥大市场后面的居民区从今天早上七点开始停水，到现在还没来水！！家里老人小孩都等着用水，"
                "请尽快处理。我电话13812345678"),
    ("wechat", "高桥街道高桥大市场后面停水一整天了😡😡 打自来水公司电话一直占线，到底什么时候恢复供水？"),
    ("web", "【紧急】雨花区高桥街道高桥大市场附近全片停水快十个小时了，没有任何停水通知，希望有关部门督促尽快恢复供水。"),
]


def _login(client, name: str) -> dict:
    response = client.post("/api/v1/auth/token", json={"username": name, "password": f"{name}-Passw0rd!"})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _file(client, channel: str, text: str, phone: str) -> dict:
    response = client.post("/api/v1/orders", json={"text": text, "channel": channel, "caller_phone": phone},
                           headers={"X-API-Key": client.keys["dispatch"]})
    assert response.status_code == 201, response.text
    return response.json()


def test_intake_shows_similar_open_orders_and_a_merged_caller_gets_the_result(client, staff):
    dispatch = {"X-API-Key": client.keys["dispatch"]}
    orders = [_file(client, channel, text, f"1390000000{i}") for i, (channel, text) in enumerate(OUTAGE)]
    assert orders[0]["similar"] == [] and orders[0]["street_id"] == GAOQIAO
    third = orders[2]["similar"]
    assert {s["order_no"] for s in third} == {orders[0]["order_no"], orders[1]["order_no"]}
    first_hit = next(s for s in third if s["order_no"] == orders[0]["order_no"])
    assert "同一街道" in first_hit["reason"] and first_hit["label"] == "疑似同一事件"
    assert "13812345678" not in first_hit["text"] and first_hit["channel"] == "hotline"

    listed = client.get(f"/api/v1/orders/{orders[0]['order_no']}/similar", headers=dispatch)
    assert listed.status_code == 200, listed.text
    assert {s["order_no"] for s in listed.json()["similar"]} == {orders[1]["order_no"], orders[2]["order_no"]}
    handler = _login(client, "yuhua")
    assert client.get(f"/api/v1/orders/{orders[0]['order_no']}/similar", headers=handler).status_code == 403

    handling = orders[0]["order_no"]
    agent = _login(client, "agent")
    for order in orders[1:]:
        merged = client.post(f"/api/v1/orders/{order['order_no']}/merge",
                             json={"into": handling, "reason": "同一停水事件", "expected_version": order["version"]},
                             headers=agent)
        assert merged.status_code == 200, merged.text
        assert merged.json()["order"]["parent_order_no"] == handling and merged.json()["order"]["role"] == "merged"
    into = client.get(f"/api/v1/orders/{handling}", headers=dispatch).json()
    assert into["merged_orders"] == [orders[1]["order_no"], orders[2]["order_no"]]
    assert [e["action"] for e in into["events"]][-2:] == ["merge_in", "merge_in"]
    # The handling order lists no merged caller as "similar" any more.
    assert client.get(f"/api/v1/orders/{handling}/similar", headers=dispatch).json()["similar"] == []

    for step in ({"action": "accept"}, {"action": "dispatch", "department_code": "430111-CHENGGUAN"},
                 {"action": "sign"}, {"action": "complete", "result": "供水管道已抢修完毕，当晚恢复供水"},
                 {"action": "approve"}):
        response = client.post(f"/api/v1/orders/{handling}/actions", json=step, headers=dispatch)
        assert response.status_code == 200, response.text
    status = client.get(f"/api/v1/public/orders/{orders[2]['order_no']}", params={"phone_last4": "0002"})
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["order_no"] == orders[2]["order_no"] and body["state_label"] == "已办结" and body["merged"] is True
    assert body["result"] == "供水管道已抢修完毕，当晚恢复供水" and body["last_step"]["action"] == "审核通过"


def test_merge_refusals_are_4xx_with_a_reason(client, staff):
    dispatch = {"X-API-Key": client.keys["dispatch"]}
    a, b = (_file(client, channel, text, "13900000009") for channel, text in OUTAGE[:2])
    url = f"/api/v1/orders/{b['order_no']}/merge"
    itself = client.post(url, json={"into": b["order_no"]}, headers=dispatch)
    assert itself.status_code == 422 and "它自己" in itself.json()["detail"]
    unknown = client.post(url, json={"into": "CS20990101999999"}, headers=dispatch)
    assert unknown.status_code == 422 and "CS20990101999999" in unknown.json()["detail"]
    assert client.post(url, json={}, headers=dispatch).status_code == 422
    assert client.post(url, json={"into": a["order_no"]}, headers={"X-API-Key": client.keys["reader"]}).status_code == 403
    assert client.post(url, json={"into": a["order_no"]}, headers=_login(client, "yuhua")).status_code == 403
    stale = client.post(url, json={"into": a["order_no"], "expected_version": b["version"] + 5}, headers=dispatch)
    assert stale.status_code == 409
    assert client.post(url, json={"into": a["order_no"]}, headers=dispatch).status_code == 200
    again = client.post(url, json={"into": a["order_no"]}, headers=dispatch)
    assert again.status_code == 409 and "已合并到" in again.json()["detail"]
    into_child = client.post(f"/api/v1/orders/{a['order_no']}/merge", json={"into": b["order_no"]}, headers=dispatch)
    assert into_child.status_code == 409 and "不是主办工单" in into_child.json()["detail"]
    assert client.post("/api/v1/orders/CS20990101999999/merge", json={"into": a["order_no"]},
                       headers=dispatch).status_code == 404


def test_the_same_words_in_another_district_are_not_proposed_and_orders_can_be_linked(client):
    dispatch = {"X-API-Key": client.keys["dispatch"]}
    here = _file(client, "hotline", OUTAGE[2][1], "13900000011")
    there = _file(client, "hotline", OUTAGE[2][1].replace("雨花区高桥街道高桥大市场附近", "岳麓区望月湖街道桃子湖路附近"),
                  "13900000012")
    assert there["street_id"] == WANGYUEHU and there["similar"] == []
    linked = client.post(f"/api/v1/orders/{here['order_no']}/link", json={"other": there["order_no"]}, headers=dispatch)
    assert linked.status_code == 200 and linked.json()["linked_orders"] == [there["order_no"]]
    assert linked.json()["state"] == "received"


def test_a_failing_search_after_filing_still_answers_201_and_keeps_the_order(client, monkeypatch):
    """The search runs after the filing commits: if it fails, the order is stored and its sender gets its number
    (a 500 would invite a second filing of the same complaint)."""
    import api.routes.orders as orders_routes

    def broken(*args, **kwargs):
        raise RuntimeError("the search broke")

    monkeypatch.setattr(orders_routes, "similar_to_order", broken)
    filed = client.post("/api/v1/orders", json={"text": OUTAGE[0][1], "channel": "hotline"},
                        headers={"X-API-Key": client.keys["dispatch"]})
    assert filed.status_code == 201, filed.text
    assert filed.json()["similar"] == [] and filed.json()["similar_unavailable"] is True
    stored = client.get(f"/api/v1/orders/{filed.json()['order_no']}", headers={"X-API-Key": client.keys["dispatch"]})
    assert stored.status_code == 200 and stored.json()["state"] == "received"
