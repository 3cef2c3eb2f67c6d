"""What a citizen hears after filing: the 办理结果 in the status answer (`action_order_status`), and "转人工" filing a
call-back task with the conversation so far (`action_human_handoff`). Against the real app on a loopback port (tiny
city; SQLite and PostgreSQL); a "service down" is a closed port."""
from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

import httpx
import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select
from support import free_port, serving

from api.routes import callbacks
from assistant.actions.context import ActionContext, use_context
from assistant.actions.handoff import ASK_PHONE, HANDOFF, ActionHumanHandoff, callback_reply, due_words
from assistant.actions.orders import ActionOrderStatus, describe_order
from hotline.core.clock import CITY_TZ
from hotline.core.secrets import webhook_token
from orders.models import CallbackRequest

SLOTS = ("complaint_text", "complaint_place", "complaint_phone", "place_confirmed", "order_id", "phone",
         "requested_slot")
STAMP = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC).timestamp()
HISTORY = [
    {"event": "user", "text": "你们这个12345到底管不管事？？楼下烧烤摊每天油烟熏得窗户都不敢开😤", "timestamp": STAMP},
    {"event": "bot", "text": "很抱歉给您带来困扰。我可以帮您登记诉求，请描述一下具体位置。", "timestamp": STAMP + 5},
    {"event": "action", "name": "action_listen"},
    {"event": "user", "text": "岳麓区望月湖街道，身份证430104199001011237，上次投诉了也没用！", "timestamp": STAMP + 30},
]


def make_tracker(text: str, *, sender: str = "web:visitor-7", slots: dict | None = None,
                 metadata: dict | None = None, history: list | None = None) -> Tracker:
    latest = {"text": text, "intent": {"name": "human_handoff", "confidence": 0.98}, "entities": [],
              "metadata": metadata or {}}
    events = list(history or []) + [{"event": "user", "text": text, "parse_data": latest,
                                     "metadata": metadata or {}, "timestamp": STAMP + 60}]
    return Tracker(sender, {name: None for name in SLOTS} | (slots or {}), latest, events, False, None, {},
                   "action_listen")


def run(context: ActionContext, action, tracker: Tracker) -> str:
    dispatcher = CollectingDispatcher()
    with use_context(context):
        asyncio.run(action.run(dispatcher, tracker, {}))
    return "\n".join(m["text"] for m in dispatcher.messages if m.get("text"))


@pytest.fixture
def service(app_and_keys):
    """The app (with the callbacks routes, until api/app.py lists them) on a loopback port."""
    app, keys, factory = app_and_keys
    if not any(getattr(route, "path", "") == "/api/v1/callbacks" for route in app.routes):
        app.include_router(callbacks.router)
    with serving(app) as base:
        app.state.settings = app.state.settings.model_copy(update={"service_url": base})
        context = ActionContext(base_url=base, api_key=app.state.assistant_api_key, timeout_s=20)
        yield SimpleNamespace(app=app, base=base, keys=keys, factory=factory, context=context)


def tasks(service) -> list[CallbackRequest]:
    with service.factory() as session:
        return list(session.scalars(select(CallbackRequest).order_by(CallbackRequest.id)))


def file_order(service, text: str, phone: str) -> str:
    with httpx.Client(base_url=service.base, timeout=30, headers={"X-API-Key": service.keys["dispatch"]}) as http:
        response = http.post("/api/v1/orders", json={"text": text, "caller_phone": phone, "channel": "web"})
        assert response.status_code == 201, response.text
        return response.json()["order_no"]


# -- 转人工 --------------------------------------------------------------------------------------------------------------
def test_handoff_files_a_call_back_with_the_conversation_and_says_when(service):
    order_no = file_order(service, "岳麓区望月湖街道烧烤摊油烟扰民，窗户都不敢开", "13812345678")
    tracker = make_tracker("转人工！！我电话１３８ １２３４ ５６７８", history=HISTORY, metadata={"channel": "web"},
                           slots={"order_id": order_no})
    reply = run(service.context, ActionHumanHandoff(), tracker)
    assert "已为您转人工" in reply and "138****5678" in reply and "12345" in reply and "110" in reply
    assert any(word in reply for word in ("今天", "明天", "（周")) and "前给您回电" in reply
    [task] = tasks(service)
    assert (task.channel, task.contact, task.phone, task.order_no) == ("web", "web:visitor-7", "13812345678", order_no)
    assert [turn["who"] for turn in task.conversation] == ["citizen", "assistant", "citizen", "citizen"]
    assert task.conversation[0]["at"] == dt.datetime.fromtimestamp(STAMP, dt.UTC).isoformat()
    assert "430104199001011237" not in str(task.conversation) and "😤" in task.conversation[0]["text"]
    due_local = task.due_at.astimezone(CITY_TZ)
    assert f"{due_local:%H:%M}" in reply

    again = run(service.context, ActionHumanHandoff(), make_tracker("转人工", history=HISTORY))
    assert "您已登记过人工回电" in again and f"{due_local:%H:%M}" in again and "您登记的号码" in again
    assert len(tasks(service)) == 1


def test_a_wechat_handoff_without_a_phone_asks_for_one(service):
    reply = run(service.context, ActionHumanHandoff(),
                make_tracker("人工客服", sender="oWx_no_phone", metadata={"channel": "wechat", "openid": "oWx_no_phone"}))
    assert ASK_PHONE in reply and "12345" in reply
    [task] = tasks(service)
    assert task.channel == "wechat" and task.phone is None and task.contact == "oWx_no_phone"
    # "转人工 + 手机号" then completes the same task.
    reply = run(service.context, ActionHumanHandoff(),
                make_tracker("转人工 13912345678", sender="oWx_no_phone", metadata={"channel": "wechat"}))
    assert "139****5678" in reply and "您已登记过人工回电" in reply
    [task] = tasks(service)
    assert task.phone == "13912345678"


def test_the_webhook_runs_the_handoff_for_rasa(service):
    tracker = make_tracker("转人工", sender="web:visitor-hook", history=HISTORY, metadata={"channel": "web"})
    state = {"sender_id": tracker.sender_id, "slots": tracker.slots, "latest_message": tracker.latest_message,
             "events": tracker.events, "paused": False, "followup_action": None, "active_loop": {},
             "latest_action_name": "action_listen"}
    call = {"next_action": "action_human_handoff", "sender_id": tracker.sender_id, "tracker": state, "domain": {},
            "version": "3.6.21"}
    with httpx.Client(base_url=service.base, timeout=30) as http:
        answer = http.post("/api/v1/assistant/webhook", params={"token": webhook_token(service.app.state.assistant_api_key)},
                           json=call)
    assert answer.status_code == 200, answer.text
    assert "已为您转人工" in answer.json()["responses"][0]["text"]
    assert [task.contact for task in tasks(service)] == ["web:visitor-hook"]


def test_the_service_down_still_names_the_hotline():
    closed = ActionContext(base_url=f"http://127.0.0.1:{free_port()}", api_key="hlk_nothing", timeout_s=2)
    assert run(closed, ActionHumanHandoff(), make_tracker("转人工", history=HISTORY)) == HANDOFF


@pytest.mark.parametrize("due, words", [
    (dt.datetime(2026, 12, 7, 14, 35, tzinfo=CITY_TZ), "今天 14:35"),
    (dt.datetime(2026, 12, 8, 9, 0, tzinfo=CITY_TZ), "明天 09:00"),
    (dt.datetime(2026, 12, 14, 9, 0, tzinfo=CITY_TZ), "12月14日（周一）09:00"),
])
def test_due_words(due, words):
    assert due_words(due, today=dt.date(2026, 12, 7)) == words


def test_the_reply_for_a_task_on_file_without_our_phone():
    answer = {"due_at": "2026-12-07T01:00:00+00:00", "created": False, "has_phone": True}
    reply = callback_reply(answer, phone=None, today=dt.date(2026, 12, 5))
    assert reply.startswith("您已登记过人工回电，不用重复登记：工作人员将在12月7日（周一）09:00前给您回电（您登记的号码）。")


# -- the 办理结果 in the status answer ------------------------------------------------------------------------------------
RESULT = ("经现场核查，望月湖街道执法中队已依法取缔该烧烤摊，并对周边商户进行了油烟净化设施检查，"
          "后续将加强夜间巡查。如有反复请联系13912345678。")


def test_the_status_answer_gives_the_result_once_closed(service):
    order_no = file_order(service, "岳麓区望月湖街道烧烤摊油烟扰民，窗户都不敢开😤", "13812345678")
    with httpx.Client(base_url=service.base, timeout=30, headers={"X-API-Key": service.keys["dispatch"]}) as http:
        for step in ({"action": "accept"}, {"action": "dispatch", "department_code": "430104001"}, {"action": "sign"},
                     {"action": "complete", "result": RESULT}, {"action": "approve"}):
            assert http.post(f"/api/v1/orders/{order_no}/actions", json=step).status_code == 200
    tracker = make_tracker(f"查一下{order_no} 尾号5678", slots={"order_id": order_no, "phone": "5678"})
    reply = run(service.context, ActionOrderStatus(), tracker)
    today = dt.datetime.now(CITY_TZ).date()
    assert "已办结" in reply and f"办理结果（{today.month}月{today.day}日办结）：经现场核查" in reply
    assert "13912345678" not in reply and "139****5678" in reply


def test_a_long_result_is_cut_for_the_chat():
    order = {"order_no": "CS20261207000001", "state_label": "已办结", "open": False,
             "result": "已处理。" * 300, "completed_at": "2026-12-03T08:00:00+00:00"}
    context = ActionContext(base_url="http://127.0.0.1:1", api_key=None,
                            now=lambda: dt.datetime(2026, 12, 7, 10, 0, tzinfo=CITY_TZ))
    reply = describe_order(order, context=context)
    assert "办理结果（12月3日办结）：已处理。" in reply and reply.endswith("…（完整结果可拨打12345查询）")
    assert len(reply) < 600
    assert "办理结果" not in describe_order(order | {"result": None}, context=context)
