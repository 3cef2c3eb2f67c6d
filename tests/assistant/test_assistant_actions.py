"""The assistant's custom actions (assistant/actions), run with rasa_sdk's Tracker and CollectingDispatcher against
the real app served on a loopback port (tiny-city router; SQLite and PostgreSQL), plus pure tests of the Chinese
period parsing and the other word-level helpers. Nothing of our own service is mocked: a "service down" is a
closed port, a timeout a socket that never answers.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import zlib
from types import SimpleNamespace

import httpx
import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import func, select, update
from support import REPO_ROOT, free_port

from api.routes.indicators import list_indicators
from assistant.actions.catalogue import Catalogue, indicator_catalogue
from assistant.actions.client import ServiceClient, ServiceUnavailable
from assistant.actions.complaint import (
    BAD_PHONE,
    NO_PHONE,
    NO_PHONE_OK,
    PHONE_REQUIRED,
    WHY_PHONE,
    WHY_PHONE_REASON,
    ActionResetComplaint,
    ActionSubmitComplaint,
    ValidateComplaintForm,
    filed_reply,
    idempotency_key,
    is_refusal,
    parse_phone,
    readback,
    text_problem,
    wechat_message_key,
    yes_or_no,
)
from assistant.actions.context import BUSY, ActionContext, use_context
from assistant.actions.handoff import ActionHumanHandoff
from assistant.actions.indicators import (
    ASK_METRIC,
    LOGIN_REQUIRED,
    ActionQueryIndicator,
    merge,
    parse_turn,
    scope_words,
)
from assistant.actions.orders import ASK_LAST4, ASK_ORDER_NO, NOT_FOUND, ActionOrderStatus, normalize_order_no
from assistant.actions.periods import CITY_TZ, chinese_number, parse_period, today_in_city
from hotline.core.db import transaction
from hotline.core.secrets import webhook_token, webhook_token_for
from orders.models import WorkOrder
from orders.service import WECHAT_SCOPE, scoped_idempotency_key

TODAY = dt.date(2026, 11, 21)          # a Saturday
FROZEN_NOW = dt.datetime(2026, 11, 21, 10, 0, tzinfo=CITY_TZ)
FORM_SLOTS = ["complaint_text", "complaint_place", "complaint_phone"]
DOMAIN = {
    "forms": {"complaint_form": {"required_slots": FORM_SLOTS}},
    "slots": {name: {"type": "text", "mappings": [{"type": "from_text", "conditions": [
        {"active_loop": "complaint_form", "requested_slot": name}]}]} for name in FORM_SLOTS}
    | {"place_confirmed": {"type": "bool", "mappings": [{"type": "custom"}]},
       "order_id": {"type": "text", "mappings": [{"type": "from_entity", "entity": "order_id"}]},
       "phone": {"type": "text", "mappings": [{"type": "from_entity", "entity": "phone"}]},
       "indicator_query": {"type": "any", "mappings": [{"type": "custom"}]},
       "requested_slot": {"type": "any", "mappings": [{"type": "custom"}]}},
}
ALL_SLOTS = ("complaint_text", "complaint_place", "complaint_phone", "place_confirmed", "order_id", "phone",
             "indicator_query", "requested_slot", "metric", "district", "street", "category", "department", "period")
# What the action reads from GET /api/v1/indicators (the service's one catalogue), for the tests without a service.
CATALOGUE = Catalogue.from_listing(list_indicators())


# == pure: periods ====================================================================================================
@pytest.mark.parametrize("text, start, end", [
    ("今天", "2026-11-21", "2026-11-22"), ("今日投诉多少件", "2026-11-21", "2026-11-22"),
    ("昨天", "2026-11-20", "2026-11-21"), ("前天的诉求量", "2026-11-19", "2026-11-20"),
    ("本周", "2026-11-16", "2026-11-23"), ("这周", "2026-11-16", "2026-11-23"), ("这个星期", "2026-11-16", "2026-11-23"),
    ("上周", "2026-11-09", "2026-11-16"), ("上个礼拜", "2026-11-09", "2026-11-16"),
    ("本月", "2026-11-01", "2026-12-01"), ("这个月岳麓区", "2026-11-01", "2026-12-01"),
    ("上月", "2026-10-01", "2026-11-01"), ("上个月", "2026-10-01", "2026-11-01"), ("上一个月", "2026-10-01", "2026-11-01"),
    ("今年", "2026-01-01", "2027-01-01"), ("去年", "2025-01-01", "2026-01-01"), ("本年度", "2026-01-01", "2027-01-01"),
    ("近7天", "2026-11-15", "2026-11-22"), ("最近七天", "2026-11-15", "2026-11-22"), ("过去7日", "2026-11-15", "2026-11-22"),
    ("近 7 天", "2026-11-15", "2026-11-22"), ("近７天", "2026-11-15", "2026-11-22"), ("近一周", "2026-11-15", "2026-11-22"),
    ("近三十天", "2026-10-23", "2026-11-22"), ("近30天", "2026-10-23", "2026-11-22"), ("过去两周", "2026-11-08", "2026-11-22"),
    ("最近一个月", "2026-10-22", "2026-11-22"), ("近3个月", "2026-08-22", "2026-11-22"),
    ("3月", "2026-03-01", "2026-04-01"), ("三月份", "2026-03-01", "2026-04-01"), ("十月", "2026-10-01", "2026-11-01"),
    ("十一月份的满意率", "2026-11-01", "2026-12-01"), ("十二月", "2025-12-01", "2026-01-01"),   # a month still to come: last year's
    ("１１月", "2026-11-01", "2026-12-01"),
    ("2026年10月", "2026-10-01", "2026-11-01"), ("二〇二六年十月", "2026-10-01", "2026-11-01"),
    ("2025年3月份", "2025-03-01", "2025-04-01"), ("去年10月", "2025-10-01", "2025-11-01"), ("今年3月", "2026-03-01", "2026-04-01"),
    ("26年5月", "2026-05-01", "2026-06-01"), ("2026-10", "2026-10-01", "2026-11-01"), ("2025年", "2025-01-01", "2026-01-01"),
    ("10月1日到10月7日", "2026-10-01", "2026-10-08"), ("11月1日至15日", "2026-11-01", "2026-11-16"),
    ("2026-10-01至2026-10-31", "2026-10-01", "2026-11-01"), ("10月5号", "2026-10-05", "2026-10-06"),
    ("2026-10-01", "2026-10-01", "2026-10-02"),
    ("第三季度", "2026-07-01", "2026-10-01"), ("上季度", "2026-07-01", "2026-10-01"), ("本季度", "2026-10-01", "2027-01-01"),
    ("上半年", "2026-01-01", "2026-07-01"), ("2025年下半年", "2025-07-01", "2026-01-01"),
    ("最近一段时间", "2026-10-23", "2026-11-22"), ("上一个星期", "2026-11-09", "2026-11-16"),
    ("this month岳麓区投诉多少", "2026-11-01", "2026-12-01"), ("Last Month", "2026-10-01", "2026-11-01"),
    ("2026 年 10 月", "2026-10-01", "2026-11-01"),
    ("本月比上个月", "2026-11-01", "2026-12-01"),         # the leftmost period is the one asked about
])
def test_period_phrasings(text, start, end):
    period = parse_period(text, today=TODAY)
    assert period is not None, text
    assert (period.start.isoformat(), period.end.isoformat()) == (start, end)
    assert period.as_params() == {"start": start, "end": end}


@pytest.mark.parametrize("text", ["", "你好", "12345", "按时办结率最低的三个部门", "前三个部门", "13812345678",
                                  "帮我投诉一下楼下烧烤店", "CS20261121000001", "十三月", "2026年13月", "2月30日"])
def test_no_period(text):
    assert parse_period(text, today=TODAY) is None


def test_period_labels_say_which_dates():
    assert parse_period("上个月", today=TODAY).label == "上个月（2026年10月）"
    assert parse_period("近7天", today=TODAY).label == "近7天（2026年11月15日至11月21日）"
    assert parse_period("十月", today=TODAY).label == "2026年10月"
    assert parse_period("今天", today=TODAY).label == "今天（2026年11月21日）"
    assert parse_period("第三季度", today=TODAY).label == "2026年第三季度"


def test_periods_across_a_new_year():
    new_year = dt.date(2027, 1, 3)         # a Sunday
    assert parse_period("上个月", today=new_year).as_params() == {"start": "2026-12-01", "end": "2027-01-01"}
    assert parse_period("上周", today=new_year).as_params() == {"start": "2026-12-21", "end": "2026-12-28"}
    assert parse_period("十二月", today=new_year).as_params() == {"start": "2026-12-01", "end": "2027-01-01"}
    assert parse_period("近7天", today=new_year).as_params() == {"start": "2026-12-28", "end": "2027-01-04"}
    assert parse_period("上季度", today=new_year).as_params() == {"start": "2026-10-01", "end": "2027-01-01"}
    leap = dt.date(2028, 3, 31)
    assert parse_period("近1个月", today=leap).as_params() == {"start": "2028-03-01", "end": "2028-04-01"}
    assert parse_period("2月", today=leap).as_params() == {"start": "2028-02-01", "end": "2028-03-01"}


def test_today_is_the_shanghai_calendar_day():
    assert today_in_city(dt.datetime(2026, 11, 21, 17, 30, tzinfo=dt.UTC)) == dt.date(2026, 11, 22)
    assert today_in_city(dt.datetime(2026, 11, 21, 15, 59)) == dt.date(2026, 11, 21)   # naive = UTC
    assert ActionContext(base_url="http://x", api_key=None,
                         now=lambda: dt.datetime(2026, 12, 31, 16, 1, tzinfo=dt.UTC)).today() == dt.date(2027, 1, 1)


@pytest.mark.parametrize("word, value", [("3", 3), ("三", 3), ("十", 10), ("十二", 12), ("二十", 20), ("三十一", 31),
                                         ("两", 2), ("二〇二六", 2026), ("二零二五", 2025), ("十十", None), ("三百", None)])
def test_chinese_numbers(word, value):
    assert chinese_number(word) == value


# == pure: words of the other actions =================================================================================
@pytest.mark.parametrize("text, phone", [
    ("13812345678", "13812345678"), ("我的电话是１３８ １２３４ ５６７８", "13812345678"), ("+86 138-1234-5678", "13812345678"),
    ("电话：0731-88886666", "073188886666"), ("座机（0731）88886666", "073188886666"), ("138 1234 5678，谢谢！", "13812345678"),
    ("12345", None), ("010-88886666", None), ("1381234567", None), ("23812345678", None), ("不想留", None), ("", None),
])
def test_phone_numbers_accepted(text, phone):
    assert parse_phone(text) == phone


def test_refusals_and_yes_no():
    for text in ("不想留", "不给", "不方便留电话", "我不想提供", "保密", "没有电话", "算了吧不留了"):
        assert is_refusal(text), text
    assert is_refusal("嗯", "deny") and not is_refusal("13812345678", "deny")
    assert yes_or_no("对", None) is True and yes_or_no("是的！", None) is True and yes_or_no("嗯嗯", None) is True
    assert yes_or_no("不对", None) is False and yes_or_no("不是，在高桥", None) is False
    assert yes_or_no("是在高桥大市场门口", None) is None and yes_or_no("没毛病", "affirm") is True
    assert yes_or_no("没有问题", None) is True and yes_or_no("nice", None) is None and not is_refusal("nice")


@pytest.mark.parametrize("text, words", [
    ("", "请描述"), ("   ", "请描述"), ("😡😡😡", "表情"), ("👍", "表情"), ("帮我投诉一下", "请描述"), ("我要投诉！！", "请描述"),
    ("太吵了", "太简短"), ("x" * 2001, "太长"),
])
def test_complaint_text_is_refused_with_a_reason(text, words):
    assert words in text_problem(text)


@pytest.mark.parametrize("text", ["帮我投诉一下楼下烧烤店油烟太大", "路灯坏了三天了😡", "Wi-Fi热点旁边的工地半夜施工",
                                  "楼上邻居每天半夜跺脚"])
def test_complaint_text_accepted(text):
    assert text_problem(text) is None


def test_order_numbers_are_normalized():
    assert normalize_order_no("cs 2026 1121 000001") == "CS20261121000001"
    assert normalize_order_no("ＣＳ２０２６１１２１０００００１") == "CS20261121000001"
    assert normalize_order_no("../orders?openid=x") is None and normalize_order_no("你好") is None


@pytest.mark.parametrize("text, metric", [
    ("本月岳麓区噪音投诉多少件", "order_count"), ("按时办结率最低的三个部门", "on_time_rate"), ("投诉的办结率", "completion_rate"),
    ("满意度怎么样", "satisfaction_rate"), ("严重超期的有几件", "severe_overdue_count"), ("超期多少件", "overdue_count"),
    ("退单最多的部门", "return_ranking"), ("分拨准确率", "dispatch_accuracy"), ("平均处置时长", "average_handling_hours"),
    ("重复投诉", "repeat_requests"), ("这周有什么热点", "hot_topics"), ("那雨花区呢", None), ("按街道拆分", None),
])
def test_metric_words(text, metric):
    assert CATALOGUE.metric_of(text) == metric


def test_every_metric_and_period_word_of_the_nlu_vocabulary_is_understood():
    """The NLU's lookup tables (generated from the KB by assistant/generate.py) and the actions agree."""
    vocabulary = REPO_ROOT / "assistant" / "generated" / "vocabulary.yml"
    if not vocabulary.exists():
        pytest.skip("assistant/generated/vocabulary.yml not generated")
    items = yaml.safe_load(vocabulary.read_text(encoding="utf-8"))
    items = items.get("nlu", items) if isinstance(items, dict) else items
    lookups = {item["lookup"]: [line[2:].strip() for line in item["examples"].splitlines() if line.strip()]
               for item in items if "lookup" in item}
    assert [word for word in lookups["metric"] if CATALOGUE.metric_of(word) is None] == []
    assert [word for word in lookups["period"] if parse_period(word, today=TODAY) is None] == []


def test_empty_and_very_long_messages():
    offline = _closed_port_context()          # none of these needs the service
    _, messages = run(offline, ActionOrderStatus(), make_tracker(""))
    assert texts(messages) == ASK_ORDER_NO
    _, messages = run(offline, ActionQueryIndicator(), make_tracker("", metadata={"auth_token": "t"}))
    assert texts(messages) == ASK_METRIC
    long_text = "楼下烧烤店油烟太大，" * 3000
    assert "太长" in text_problem(long_text)
    turn = parse_turn("本月" + "岳麓区按时办结率怎么样？" * 2000, {}, today=TODAY, catalogue=CATALOGUE)
    assert turn.metric == "on_time_rate" and turn.period.label == "本月（2026年11月）"
    assert parse_period("😀" * 5000 + "上个月", today=TODAY).as_params() == {"start": "2026-10-01", "end": "2026-11-01"}


def test_rankings_comparisons_and_follow_ups_are_read_from_words():
    turn = parse_turn("按时办结率最低的三个部门", {}, today=TODAY, catalogue=CATALOGUE)
    assert (turn.metric, turn.by, turn.order, turn.top) == ("on_time_rate", "department", "asc", 3)
    turn = parse_turn("平均处置时长最快的5个街道", {}, today=TODAY, catalogue=CATALOGUE)
    assert (turn.by, turn.order, turn.top) == ("street", "asc", 5)                  # fastest = fewest hours
    turn = parse_turn("重办率最差的两个区", {}, today=TODAY, catalogue=CATALOGUE)
    assert (turn.by, turn.order, turn.top) == ("district", "desc", 2)               # worst reopen rate = highest
    assert parse_turn("各区诉求量", {}, today=TODAY, catalogue=CATALOGUE).by == "district"
    assert parse_turn("哪个街道投诉最多", {}, today=TODAY, catalogue=CATALOGUE).by == "street"
    compared = parse_turn("本月满意率比上个月怎么样", {}, today=TODAY, catalogue=CATALOGUE)
    assert compared.compare and compared.period.as_params() == {"start": "2026-11-01", "end": "2026-12-01"}
    first = merge(None, parse_turn("上个月岳麓区诉求量", {"district": ["岳麓区"]}, today=TODAY, catalogue=CATALOGUE), today=TODAY)
    again = merge(first, parse_turn("那雨花区呢", {"district": ["雨花区"]}, today=TODAY, catalogue=CATALOGUE), today=TODAY)
    assert again | {"district": "岳麓区"} == first and again["district"] == "雨花区"
    split = merge(again, parse_turn("按街道拆分", {}, today=TODAY, catalogue=CATALOGUE), today=TODAY)
    assert split["by"] == "street" and split["district"] == "雨花区" and split["start"] == "2026-10-01"
    moved = merge(split, parse_turn("换成本月", {}, today=TODAY, catalogue=CATALOGUE), today=TODAY)
    assert moved["by"] == "street" and moved["start"] == "2026-11-01"
    fresh = merge(moved, parse_turn("满意率", {}, today=TODAY, catalogue=CATALOGUE), today=TODAY)
    assert fresh["metric"] == "satisfaction_rate" and fresh["district"] is None and fresh["by"] is None
    assert merge(None, parse_turn("你好", {}, today=TODAY, catalogue=CATALOGUE), today=TODAY) is None


def test_a_comparison_follow_up_keeps_the_ranking_and_matter_detail_is_a_dimension():
    """"各区诉求量" then "和上个月比呢" compares each district (review 2026-12-06, feature 15: it was misread);
    "按细类" breaks down by the taxonomy's third level."""
    ranked = merge(None, parse_turn("本月各区诉求量", {}, today=TODAY, catalogue=CATALOGUE), today=TODAY)
    compared = merge(ranked, parse_turn("和上个月比呢", {}, today=TODAY, catalogue=CATALOGUE), today=TODAY)
    assert compared["by"] == "district" and compared["compare"] and compared["start"] == "2026-11-01"
    one_question = merge(None, parse_turn("按时办结率最低的三个部门和上个月比怎么样", {}, today=TODAY,
                                          catalogue=CATALOGUE), today=TODAY)
    assert (one_question["by"], one_question["order"], one_question["top"], one_question["compare"]) == (
        "department", "asc", 3, True)
    # The NLU marks 上个月 as a period: as the comparison's target it must not become the period asked about.
    for said, value in (("和上个月比呢", "上个月"), ("和上个月比呢", "上月"), ("跟上月相比呢", "上月")):   # value: canonical
        entity_compared = merge(ranked, parse_turn(said, {"period": [value]}, today=TODAY, catalogue=CATALOGUE),
                                today=TODAY)
        assert entity_compared["start"] == "2026-11-01" and entity_compared["compare"], (said, value)
    both = parse_turn("本月比上个月怎么样", {"period": ["本月", "上个月"]}, today=TODAY, catalogue=CATALOGUE)
    assert both.period.as_params() == {"start": "2026-11-01", "end": "2026-12-01"} and both.compare
    moved = parse_turn("上个月的呢", {"period": ["上个月"]}, today=TODAY, catalogue=CATALOGUE)
    assert moved.period.as_params() == {"start": "2026-10-01", "end": "2026-11-01"} and not moved.compare
    assert parse_turn("本月投诉按细类拆分", {}, today=TODAY, catalogue=CATALOGUE).by == "category3"
    assert parse_turn("哪个小类投诉最多", {}, today=TODAY, catalogue=CATALOGUE).by == "category3"


# == tracker plumbing =================================================================================================
def make_tracker(text: str = "", *, slots: dict | None = None, entities: dict | None = None, intent: str | None = None,
                 metadata: dict | None = None, history: list | None = None, sender: str = "web:session-1",
                 active_loop: dict | None = None) -> Tracker:
    entity_list = [{"entity": name, "value": value} for name, values in (entities or {}).items() for value in values]
    latest = {"text": text, "intent": {"name": intent, "confidence": 1.0} if intent else {}, "entities": entity_list,
              "metadata": metadata or {}}
    events = list(history or []) + [{"event": "user", "text": text, "parse_data": latest, "metadata": metadata or {}}]
    all_slots = {name: None for name in ALL_SLOTS} | (slots or {})
    return Tracker(sender, all_slots, latest, events, False, None, active_loop or {}, "action_listen")


def run(context: ActionContext, action, tracker: Tracker) -> tuple[list[dict], list[dict]]:
    dispatcher = CollectingDispatcher()
    with use_context(context):
        events = asyncio.run(action.run(dispatcher, tracker, DOMAIN))
    return events, dispatcher.messages


def texts(messages: list[dict]) -> str:
    return "\n".join(m["text"] for m in messages if m.get("text"))


def slot_values(events: list[dict]) -> dict:
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


class FormConversation:
    """Plays Rasa's part around validate_complaint_form: each turn the citizen's text fills the requested slot
    (the domain's mappings), the validation action runs on a tracker shaped like Rasa's temporary one, and the next
    slot is requested as Rasa's FormAction would.

    With the minimal DOMAIN, affirm/deny answers are NOT mapped to slots, so the validation's own extraction is what
    reads them; with the project's domain (assistant/domain.yml) they are mapped as that file says."""

    def __init__(self, context: ActionContext, *, metadata: dict, sender: str = "wechat:oWx_citizen",
                 domain: dict = DOMAIN):
        self.context, self.metadata, self.sender, self.domain = context, metadata, sender, domain
        self.required = domain["forms"]["complaint_form"]["required_slots"]
        self.project_domain = domain is not DOMAIN
        self.slots: dict = {name: None for name in ALL_SLOTS}
        self.history: list[dict] = [{"event": "active_loop", "name": "complaint_form"}]
        self.said: list[str] = []

    def ask(self, slot: str | None) -> None:
        """The form requests `slot` (Rasa's SlotSet(requested_slot) before the citizen answers)."""
        self.slots["requested_slot"] = slot
        self.history.append({"event": "slot", "name": "requested_slot", "value": slot})

    def say(self, text: str, intent: str = "inform") -> str:
        requested = self.slots["requested_slot"]
        latest = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "entities": [],
                  "metadata": self.metadata}
        user = {"event": "user", "text": text, "parse_data": latest, "metadata": self.metadata}
        candidates = self._mapped(requested, text, intent)
        events = self.history + [user, {"event": "slot", "name": "requested_slot", "value": requested},
                                 {"event": "action", "name": "complaint_form"}]
        events += [{"event": "slot", "name": name, "value": value} for name, value in candidates.items()]
        tracker = Tracker(self.sender, dict(self.slots) | candidates, latest, events, False, None,
                          {"name": "complaint_form"}, "action_listen")
        dispatcher = CollectingDispatcher()
        with use_context(self.context):
            returned = asyncio.run(ValidateComplaintForm().run(dispatcher, tracker, self.domain))
        self.slots.update(candidates)
        self.slots.update(slot_values(returned))
        self.history += [user] + [{"event": "slot", "name": k, "value": v} for k, v in candidates.items()] + returned
        self.history += [{"event": "bot", "text": m["text"]} for m in dispatcher.messages if m.get("text")]
        chosen = slot_values(returned).get("requested_slot", "unset")
        # Without a choice by the validation action, Rasa requests the next empty slot of the domain's list.
        self.ask(next((s for s in self.required if self.slots[s] is None), None) if chosen == "unset" else chosen)
        reply = texts(dispatcher.messages)
        self.said.append(reply)
        return reply

    def _mapped(self, requested: str | None, text: str, intent: str) -> dict:
        if not self.project_domain:
            return {requested: text} if requested in FORM_SLOTS and intent not in ("deny", "affirm") else {}
        if requested is None and intent == "submit_complaint":
            return {"complaint_text": text}                  # from_text on submit_complaint, active_loop: null
        if requested == "place_confirmed":
            return {"place_confirmed": {"affirm": True, "deny": False}[intent]} if intent in ("affirm", "deny") else {}
        if requested in FORM_SLOTS and intent not in ("cancel", "human_handoff", "goodbye"):
            return {requested: text}
        return {}

    def submit(self) -> tuple[dict, str]:
        tracker = make_tracker("", slots=self.slots, metadata=self.metadata, history=self.history, sender=self.sender)
        events, messages = run(self.context, ActionSubmitComplaint(), tracker)
        return slot_values(events), texts(messages)


# == against the running service ======================================================================================
@pytest.fixture
def service(app_and_keys, server):  # noqa: F811
    """The app on a loopback port; actions get a context pointing at it (the webhook's settings point there too)."""
    app, keys, factory = app_and_keys
    base = server[0]
    app.state.settings = app.state.settings.model_copy(update={"service_url": base})
    assert app.state.assistant_api_key, "the app provisions the assistant's API key at start-up"
    context = ActionContext(base_url=base, api_key=app.state.assistant_api_key, timeout_s=20)
    return SimpleNamespace(app=app, base=base, keys=keys, factory=factory, context=context)


def file_order(service, text: str, *, phone: str | None = None, openid: str | None = None, channel: str = "web",
               dispatch_to: str | None = None) -> dict:
    headers = {"X-API-Key": service.keys["dispatch"]}
    with httpx.Client(base_url=service.base, timeout=30) as http:
        response = http.post("/api/v1/orders", json={"text": text, "caller_phone": phone, "caller_openid": openid,
                                                     "channel": channel}, headers=headers)
        assert response.status_code == 201, response.text
        order = response.json()
        if dispatch_to:
            for step in ({"action": "accept"}, {"action": "dispatch", "department_code": dispatch_to}):
                assert http.post(f"/api/v1/orders/{order['order_no']}/actions", json=step,
                                 headers=headers).status_code == 200
    return order


def _closed_port_context() -> ActionContext:
    return ActionContext(base_url=f"http://127.0.0.1:{free_port()}", api_key="hlk_nothing-listens-here", timeout_s=2)


def test_status_by_number_and_last4(service):
    order = file_order(service, "岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤，人行道都过不去", phone="13812345678",
                       dispatch_to="430104001")
    events, messages = run(service.context, ActionOrderStatus(),
                           make_tracker(f"{order['order_no']} 手机尾号5678", slots={"order_id": order["order_no"]},
                                        entities={"order_id": [order["order_no"]], "phone": ["5678"]}))
    reply = texts(messages)
    assert order["order_no"] in reply and "已派单" in reply and "望月湖街道办事处" in reply
    assert "办理期限" in reply and "最近一步：派单" in reply and "已超期" not in reply
    assert "13812345678" not in reply and "5678" not in reply
    assert slot_values(events) == {"order_id": None, "phone": None}       # no carry-over to the next question


def test_status_asks_for_the_digits_then_answers(service):
    order = file_order(service, "高桥大市场门口商铺大喇叭招揽顾客太吵", phone="0731-88886666")
    events, messages = run(service.context, ActionOrderStatus(),
                           make_tracker(f"帮我查下{order['order_no']}", entities={"order_id": [order["order_no"]]}))
    assert texts(messages) == ASK_LAST4 and slot_values(events) == {"order_id": order["order_no"], "phone": None}
    history = [{"event": "bot", "text": ASK_LAST4}]
    events, messages = run(service.context, ActionOrderStatus(),
                           make_tracker("６６６６", slots={"order_id": order["order_no"]}, history=history))
    assert "已登记" in texts(messages) and "派单后按该类事项的办理时限计算" in texts(messages)


def test_a_wrong_number_or_wrong_digits_reveal_nothing(service):
    order = file_order(service, "楼上邻居每天半夜跺脚拖椅子", phone="13900001111")
    wrong_digits = texts(run(service.context, ActionOrderStatus(),
                             make_tracker("", slots={"order_id": order["order_no"], "phone": "5678"}))[1])
    unknown = texts(run(service.context, ActionOrderStatus(),
                        make_tracker("", slots={"order_id": "CS20990101999999", "phone": "1111"}))[1])
    nonsense = texts(run(service.context, ActionOrderStatus(), make_tracker("", slots={"order_id": "不知道",
                                                                                      "phone": "1111"}))[1])
    assert wrong_digits == unknown == nonsense == NOT_FOUND


def test_my_orders_by_openid_and_nobody_elses(service):
    mine = [file_order(service, text, openid="oWx_A", channel="wechat", phone="13700001234")
            for text in ("路灯坏了好几天，晚上黑漆漆的", "井盖丢了很危险", "小区停水一整天了", "工地半夜打桩施工")]
    theirs = file_order(service, "别人家楼下的烧烤店油烟", openid="oWx_B", channel="wechat")
    _, messages = run(service.context, ActionOrderStatus(),
                      make_tracker("我的投诉处理得怎么样了", metadata={"channel": "wechat", "openid": "oWx_A"}))
    reply = texts(messages)
    assert [o["order_no"] for o in mine if o["order_no"] in reply] == [o["order_no"] for o in mine[1:]]  # newest 3
    assert reply.index(mine[-1]["order_no"]) < reply.index(mine[-2]["order_no"])        # newest first
    assert theirs["order_no"] not in reply and "13700001234" not in reply
    _, messages = run(service.context, ActionOrderStatus(),
                      make_tracker("我的诉求", metadata={"channel": "web", "openid": "web:someone-else"}))
    other = texts(messages)
    assert "还没有登记过" in other and not any(o["order_no"] in other for o in [*mine, theirs])
    _, messages = run(service.context, ActionOrderStatus(), make_tracker("我的诉求", metadata={"channel": "web"}))
    assert texts(messages) == ASK_ORDER_NO


def test_filing_a_complaint_end_to_end(service):
    metadata = {"channel": "wechat", "openid": "oWx_citizen_1", "role": "citizen"}
    chat = FormConversation(service.context, metadata=metadata)
    assert chat.say("我要投诉", intent="submit_complaint") == "" and chat.slots["requested_slot"] == "complaint_text"
    assert "请描述" in chat.say("帮我投诉一下") and chat.slots["complaint_text"] is None
    chat.say("楼下烧烤店油烟太大😡，晚上十一点还在营业，熏得窗户都不敢开")
    assert chat.slots["complaint_text"] and chat.slots["requested_slot"] == "complaint_place"
    reply = chat.say("望月湖社区3栋")
    assert reply.startswith("您说的位置是：长沙市岳麓区望月湖街道望月湖社区") and reply.endswith("对吗？")
    assert chat.slots["requested_slot"] == "place_confirmed"
    chat.say("对", intent="affirm")
    assert chat.slots["place_confirmed"] is True and chat.slots["requested_slot"] == "complaint_phone"
    chat.say("我的电话是１３８ １２３４ ５６７８")
    assert chat.slots["complaint_phone"] == "13812345678" and chat.slots["requested_slot"] is None
    filled = dict(chat.slots)
    cleared, reply = chat.submit()
    assert cleared == {"complaint_text": None, "complaint_place": None, "complaint_phone": None,
                       "place_confirmed": None, "requested_slot": None}
    with service.factory() as session:
        order = session.scalar(select(WorkOrder).where(WorkOrder.caller_openid == "oWx_citizen_1"))
        assert order.channel == "wechat" and order.caller_phone_last4 == "5678"
        assert order.district_adcode == "430104" and "油烟" in order.text
    assert f"工单号：{order.order_no}" in reply and "办理时限5个工作日" in reply and "生态环境局" in reply
    assert "13812345678" not in reply and "138****5678" in reply
    # A retried submit (same sender, same request) files nothing new and names the same order.
    chat.slots.update(filled)
    _, again = chat.submit()
    assert order.order_no in again and "已经登记过" in again
    with service.factory() as session:
        assert session.scalar(select(func.count()).select_from(WorkOrder)) == 1
    # … and the citizen can follow it by number and phone digits.
    _, messages = run(service.context, ActionOrderStatus(),
                      make_tracker("", slots={"order_id": order.order_no.lower(), "phone": "5678"}))
    assert "已登记" in texts(messages)


def test_a_place_is_read_back_and_can_be_corrected(service):
    chat = FormConversation(service.context, metadata={"channel": "web", "openid": "web:s2"})
    chat.ask("complaint_text")
    # A description that names a known place is read back at once.
    reply = chat.say("高桥大市场门口的手机店大喇叭一天到晚喊清仓甩卖")
    assert "雨花区高桥街道" in reply and chat.slots["requested_slot"] == "place_confirmed"
    reply = chat.say("不对，是在望月湖社区门口", intent="deny")
    assert "岳麓区望月湖街道" in reply and chat.slots["place_confirmed"] is None
    chat.say("不是", intent="deny")
    assert chat.slots["complaint_place"] is None and chat.slots["requested_slot"] == "complaint_place"
    assert "不在长沙市" in chat.say("北京市朝阳区三里屯") and chat.slots["complaint_place"] is None
    assert "桔子洲街道" in chat.say("橘子洲头") and chat.slots["requested_slot"] == "place_confirmed"
    chat.say("是的", intent="affirm")
    assert chat.slots["place_confirmed"] is True and chat.slots["requested_slot"] == "complaint_phone"
    # "我家楼下" with a description that names no place either: asked again.
    vague = FormConversation(service.context, metadata={"channel": "web", "openid": "web:s5"})
    vague.ask("complaint_text")
    vague.say("楼下烧烤店油烟太大，熏得窗户都不敢开")
    assert vague.slots["requested_slot"] == "complaint_place"
    assert "没能确定这个位置" in vague.say("我家楼下") and vague.slots["complaint_place"] is None
    # … but a vague place with a description that names one is found through the description.
    chat.ask("complaint_place")
    assert "高桥" in chat.say("店门口")


def test_refusing_the_phone(service):
    with_openid = FormConversation(service.context, metadata={"channel": "web", "openid": "web:s3"}, sender="web:s3")
    with_openid.slots.update(complaint_text="楼上邻居每天半夜跺脚拖椅子，吵得睡不着",
                             complaint_place="长沙市岳麓区望月湖街道望月湖社区", place_confirmed=True)
    with_openid.ask("complaint_phone")
    assert with_openid.say("12345") == BAD_PHONE
    assert with_openid.say("不想留", intent="deny") == WHY_PHONE and with_openid.slots["complaint_phone"] is None
    assert with_openid.say("不给") == NO_PHONE_OK and with_openid.slots["complaint_phone"] == NO_PHONE
    assert with_openid.slots["requested_slot"] is None
    _, reply = with_openid.submit()
    assert "查询我的诉求" in reply and "联系电话" not in reply
    with service.factory() as session:
        order = session.scalar(select(WorkOrder).where(WorkOrder.caller_openid == "web:s3"))
        assert order.caller_phone is None and order.channel == "web"
    # Without an OpenID (no channel identity) a second refusal is not enough.
    anonymous = FormConversation(service.context, metadata={}, sender="rest-anonymous")
    anonymous.slots.update(with_openid.slots | {"complaint_phone": None})
    anonymous.ask("complaint_phone")
    assert anonymous.say("不想留") == WHY_PHONE
    assert anonymous.say("不方便给") == PHONE_REQUIRED and anonymous.slots["complaint_phone"] is None
    assert anonymous.say("那就13912345678吧") == "" and anonymous.slots["complaint_phone"] == "13912345678"


def test_the_complaint_text_is_checked(service):
    chat = FormConversation(service.context, metadata={"channel": "web", "openid": "web:s4"})
    chat.ask("complaint_text")
    assert "表情" in chat.say("😡😡😡") and chat.slots["complaint_text"] is None
    assert "太简短" in chat.say("太吵") and chat.slots["complaint_text"] is None
    chat.say("小区门口流动摊贩推着三轮车占道卖水果")
    assert chat.slots["complaint_text"] == "小区门口流动摊贩推着三轮车占道卖水果"
    events, _ = run(service.context, ActionResetComplaint(), make_tracker("取消", slots=chat.slots))
    assert all(value is None for value in slot_values(events).values()) and "complaint_text" in slot_values(events)


def test_with_the_projects_domain_the_form_asks_and_the_validation_explains(service):
    """assistant/domain.yml asks every slot itself (utter_ask_place_confirmed reads {complaint_place} back): the
    validation then only fills, rewrites and explains, so no question is asked twice."""
    domain_file = REPO_ROOT / "assistant" / "domain.yml"
    if not domain_file.exists():
        pytest.skip("no assistant/domain.yml")
    domain = yaml.safe_load(domain_file.read_text(encoding="utf-8"))
    assert set(domain["forms"]["complaint_form"]["required_slots"]) >= set(FORM_SLOTS)
    chat = FormConversation(service.context, metadata={"channel": "wechat", "openid": "oWx_domain"}, domain=domain)
    assert chat.say("我要投诉", intent="submit_complaint") == ""            # the domain's question follows
    assert chat.slots["complaint_text"] is None and chat.slots["requested_slot"] == "complaint_text"
    assert chat.say("晚上好多摊贩占道摆摊卖烧烤，人行道都过不去") == ""
    assert chat.say("桃子湖路") == "" and chat.slots["requested_slot"] == "place_confirmed"
    # read back by the domain's question; the standard address now names the recognised road itself, so nothing is
    # left to add in brackets
    assert chat.slots["complaint_place"] == "长沙市岳麓区望月湖街道桃子湖路"
    chat.say("不对", intent="deny")
    assert chat.slots["complaint_place"] is None and chat.slots["requested_slot"] == "complaint_place"
    assert chat.say("不对，是在高桥大市场门口", intent="inform") == ""
    assert "高桥街道" in chat.slots["complaint_place"]
    chat.say("对的", intent="affirm")
    assert chat.slots["place_confirmed"] is True and chat.slots["requested_slot"] == "complaint_phone"
    assert chat.say("不想留电话", intent="deny") == WHY_PHONE_REASON
    assert chat.say("不留", intent="deny") == NO_PHONE_OK and chat.slots["requested_slot"] is None
    _, reply = chat.submit()
    assert "工单号：CS" in reply and "查询我的诉求" in reply


def test_the_service_down_gets_a_polite_answer():
    down = _closed_port_context()
    for action, tracker in [
        (ActionOrderStatus(), make_tracker("", slots={"order_id": "CS20261121000001", "phone": "5678"})),
        (ActionOrderStatus(), make_tracker("我的诉求", metadata={"openid": "oWx_A"})),
        (ActionQueryIndicator(), make_tracker("本月诉求量", metadata={"auth_token": "x.y.z"})),
    ]:
        _, messages = run(down, action, tracker)
        assert texts(messages) == BUSY
    _, messages = run(down, ActionSubmitComplaint(), make_tracker("", slots={"complaint_text": "路灯坏了三天了",
                                                                              "complaint_phone": "13812345678"}))
    assert "还没有登记成功" in texts(messages) and "Traceback" not in texts(messages)


def test_a_service_that_never_answers_times_out_politely():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)      # accepts connections in the kernel, never answers
        silent = ActionContext(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}", api_key="hlk_x",
                               timeout_s=0.3)
        _, messages = run(silent, ActionOrderStatus(), make_tracker("", slots={"order_id": "CS20261121000001",
                                                                                "phone": "5678"}))
    assert texts(messages) == BUSY


# -- indicators ------------------------------------------------------------------------------------------------------
@pytest.fixture
def official(service, staff):  # noqa: F811
    with httpx.Client(base_url=service.base, timeout=30) as http:
        response = http.post("/api/v1/auth/token", json={"username": "official", "password": "official-Passw0rd!"})
    assert response.status_code == 200, response.text
    return {"channel": "web", "openid": "web:official", "auth_token": response.json()["access_token"],
            "role": "official"}


@pytest.fixture
def october(service):
    """Orders with known dates: in October 2026 three in 岳麓区 and two in 雨花区; one in 岳麓区 in November."""
    placed = {
        "2026-10-08T03:00:00+00:00": "岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤，人行道都过不去",
        "2026-10-15T03:00:00+00:00": "岳麓区望月湖街道楼上邻居每天半夜跺脚拖椅子",
        "2026-10-20T03:00:00+00:00": "岳麓区桔子洲街道工地半夜还在打桩施工，噪音吵得睡不着",
        "2026-10-21T03:00:00+00:00": "雨花区高桥街道高桥大市场门口喇叭放得震天响招揽顾客",
        "2026-10-22T03:00:00+00:00": "雨花区高桥街道小区停水一整天了",
        "2026-11-10T03:00:00+00:00": "岳麓区望月湖街道早餐店把桌子摆到人行道上占道经营",
    }
    numbers = {at: file_order(service, text_)["order_no"] for at, text_ in placed.items()}
    with transaction(service.factory) as session:
        for at, number in numbers.items():
            session.execute(update(WorkOrder).where(WorkOrder.order_no == number)
                            .values(created_at=dt.datetime.fromisoformat(at)))


def _frozen(service) -> ActionContext:
    return ActionContext(base_url=service.base, api_key=service.context.api_key, timeout_s=20, now=lambda: FROZEN_NOW)


def test_indicator_with_period_words_and_a_follow_up(service, official, october):
    context = _frozen(service)
    events, messages = run(context, ActionQueryIndicator(),
                           make_tracker("上个月岳麓区投诉多少件", entities={"district": ["岳麓区"]}, metadata=official))
    reply = texts(messages)
    assert reply.startswith("上个月（2026年10月）岳麓区工单数为3件。") and "口径" in reply
    query = slot_values(events)["indicator_query"]
    assert (query["start"], query["end"], query["district"]) == ("2026-10-01", "2026-11-01", "岳麓区")
    with httpx.Client(base_url=service.base, timeout=30) as http:   # the same number as the indicators API
        direct = http.get("/api/v1/indicators/order_count", params={"start": "2026-10-01", "end": "2026-11-01",
                                                                     "district": "430104"},
                          headers={"Authorization": f"Bearer {official['auth_token']}"}).json()
    assert direct["value"] == 3
    events, messages = run(context, ActionQueryIndicator(),
                           make_tracker("那雨花区呢", entities={"district": ["雨花区"]}, metadata=official,
                                        slots={"indicator_query": query}))
    assert texts(messages).startswith("上个月（2026年10月）雨花区工单数为2件。")
    assert slot_values(events)["indicator_query"] | {"district": "岳麓区"} == query
    _, messages = run(context, ActionQueryIndicator(), make_tracker("换成本月", metadata=official,
                                                                    slots={"indicator_query": query}))
    assert texts(messages).startswith("本月（2026年11月）岳麓区工单数为1件。")


def test_indicator_ranking_comparison_and_chart(service, official, october):
    context = _frozen(service)
    _, messages = run(context, ActionQueryIndicator(), make_tracker("上个月诉求量最多的两个区", metadata=official))
    assert texts(messages).startswith("上个月（2026年10月）工单数最多的2个区县：岳麓区 3件、雨花区 2件。")
    chart = next(m["custom"]["chart"] for m in messages if m.get("custom"))
    assert chart == {"type": "bar", "title": "上个月（2026年10月）工单数（按区县）", "unit": "件",
                     "labels": ["岳麓区", "雨花区"], "values": [3.0, 2.0]}
    _, messages = run(context, ActionQueryIndicator(), make_tracker("本月诉求量环比怎么样", metadata=official))
    reply = texts(messages)
    assert "本月（2026年11月）工单数为1件" in reply and "上一周期（2026年10月2日至10月31日）为5件" in reply
    assert "减少80.0%" in reply
    chart = next(m["custom"]["chart"] for m in messages if m.get("custom"))
    assert chart["labels"] == ["上一周期", "本期"] and chart["values"] == [5.0, 1.0]
    _, messages = run(context, ActionQueryIndicator(),
                      make_tracker("上个月投诉按街道拆分", metadata=official))
    chart = next(m["custom"]["chart"] for m in messages if m.get("custom"))
    assert dict(zip(chart["labels"], chart["values"])) == {"望月湖街道": 2.0, "高桥街道": 2.0, "桔子洲街道": 1.0}


def test_rank_and_compare_in_one_question_and_a_link_to_the_cockpit(service, official, october):
    context = _frozen(service)
    events, messages = run(context, ActionQueryIndicator(), make_tracker("本月各区诉求量和上个月比", metadata=official))
    reply = texts(messages)
    assert "本月（2026年11月）工单数按区县：岳麓区 1件（上一周期3件，比上一周期减少66.7%）。" in reply, reply
    with httpx.Client(base_url=service.base, timeout=30) as http:   # the numbers the indicators API gives
        direct = http.get("/api/v1/indicators/order_count",
                          params={"start": "2026-11-01", "end": "2026-12-01", "by": "district", "compare": True},
                          headers={"Authorization": f"Bearer {official['auth_token']}"}).json()
    assert (direct["breakdown"]["430104"]["value"], direct["breakdown"]["430104"]["previous"]) == (1, 3)
    link = next(m["custom"]["link"] for m in messages if m.get("custom", {}).get("link"))
    assert link == {"href": "/cockpit?start=2026-11-01&end=2026-12-01", "title": "在驾驶舱查看"}
    query = slot_values(events)["indicator_query"]
    _, messages = run(context, ActionQueryIndicator(), make_tracker("上个月岳麓区呢", entities={"district": ["岳麓区"]},
                                                                    metadata=official, slots={"indicator_query": query}))
    link = next(m["custom"]["link"] for m in messages if m.get("custom", {}).get("link"))
    assert link["href"] == "/cockpit?start=2026-10-01&end=2026-11-01&district=430104"


@pytest.fixture
def city_vitals(service):
    from hotline.core.config import Settings
    from orders.vitals.files import import_sample_if_empty

    assert import_sample_if_empty(service.factory, Settings()) > 0   # the bundled 长沙 sample (ends 2026-11-20)


def test_vitals_questions_give_the_services_readings_with_levels_and_staleness(service, official, city_vitals):
    headers = {"Authorization": f"Bearer {official['auth_token']}"}
    with httpx.Client(base_url=service.base, timeout=30) as http:
        readings = http.get("/api/v1/vitals", headers=headers).json()["vitals"]
    air = [r for r in readings if r["metric"] in ("aqi", "pm25")]
    bad_air = [r for r in air if r["level"] in ("alarm", "warn")]
    assert bad_air and len(bad_air) < len(air)          # the sample's stagnant-air spell: some districts only
    events, messages = run(_frozen(service), ActionQueryIndicator(),
                           make_tracker("今天哪些区空气质量超标？", metadata=official))
    reply = texts(messages)
    assert f"超过预警线的有{len(bad_air)}项" in reply, reply
    for r in bad_air:
        assert f"{r['area']}{r['name']} {r['value']:g}{r['unit']}（{r['level_label']}" in reply
    for r in air:
        if r not in bad_air:
            assert f"{r['area']}{r['name']} " not in reply      # only what is over the line
    assert "已过期" in reply and "不代表现在的情况" in reply     # the sample stopped on 11-20: never read as today
    link = next(m["custom"]["link"] for m in messages if m.get("custom", {}).get("link"))
    assert link["href"] == "/cockpit#vitals"
    query = slot_values(events)["indicator_query"]
    assert query["vitals"] and set(query["signs"]) == {"aqi", "pm25"}
    _, messages = run(_frozen(service), ActionQueryIndicator(),
                      make_tracker("那岳麓区呢", entities={"district": ["岳麓区"]}, metadata=official,
                                   slots={"indicator_query": query}))
    yuelu = [r for r in air if r["area"] == "岳麓区"]
    reply = texts(messages)
    assert reply.startswith("岳麓区") and all(r["area"] == "岳麓区" for r in yuelu)
    water = next(r for r in readings if r["metric"] == "xiangjiang_level")
    _, messages = run(_frozen(service), ActionQueryIndicator(), make_tracker("湘江水位现在多少", metadata=official))
    assert f"{water['value']:g}{water['unit']}" in texts(messages) and "空气" not in texts(messages)
    # An order count about the air is still an order count, not a reading.
    _, messages = run(_frozen(service), ActionQueryIndicator(), make_tracker("本月空气污染投诉多少件", metadata=official))
    assert "工单数" in texts(messages)


def test_on_time_rate_lowest_departments_with_a_chart(service, official):
    """"近7天按时办结率最低的两个部门": five completed orders per unit, two of one unit's finished late."""
    headers = {"X-API-Key": service.keys["dispatch"]}
    units = {"430104001": "岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤", "430104-CHENGGUAN": "岳麓区望月湖街道商铺门口音响喇叭放得震天响"}
    late = []
    with httpx.Client(base_url=service.base, timeout=30) as http:
        for unit, text_ in units.items():
            for i in range(5):
                number = file_order(service, f"{text_}（第{i + 1}次反映）", dispatch_to=unit)["order_no"]
                assert http.post(f"/api/v1/orders/{number}/actions", json={"action": "sign"},
                                 headers=headers).status_code == 200
                if unit == "430104-CHENGGUAN" and i < 2:
                    late.append(number)
                    now = dt.datetime.now(dt.UTC)
                    with transaction(service.factory) as session:   # dispatched ten days ago, due three days ago
                        session.execute(update(WorkOrder).where(WorkOrder.order_no == number).values(
                            dispatched_at=now - dt.timedelta(days=10), deadline_at=now - dt.timedelta(days=3)))
                done = http.post(f"/api/v1/orders/{number}/actions", json={"action": "complete", "result": "已处理"},
                                 headers=headers)
                assert done.status_code == 200, done.text
    _, messages = run(service.context, ActionQueryIndicator(),
                      make_tracker("近7天按时办结率最低的两个部门", metadata=official))
    reply = texts(messages)
    assert "按时办结率最低的2个部门：岳麓区城市管理和综合执法局 60.0%、望月湖街道办事处 100.0%。" in reply
    assert "最低的是岳麓区城市管理和综合执法局（60.0%），总体为80.0%。" in reply
    chart = next(m["custom"]["chart"] for m in messages if m.get("custom"))
    assert chart["unit"] == "%" and chart["values"] == [60.0, 100.0] and len(late) == 2


def test_the_catalogue_is_read_once_per_service(service, official):
    async def twice():
        async with ServiceClient(service.context) as api:
            return (await indicator_catalogue(api, token=official["auth_token"]),
                    await indicator_catalogue(api, token=official["auth_token"]))

    first, second = asyncio.run(twice())
    assert first is second and first.metrics == CATALOGUE.metrics and first.words == CATALOGUE.words


def test_a_listing_that_is_no_catalogue_is_a_service_failure():
    for listing in ({}, {"indicators": [{"name": "x"}], "channels": []}, {"indicators": [], "channels": []}):
        with pytest.raises(ServiceUnavailable):
            Catalogue.from_listing(listing)


def test_channels_are_named_with_the_catalogues_labels():
    turn = parse_turn("上个月来自微信渠道的诉求量", {}, today=TODAY, catalogue=CATALOGUE)
    query = merge(None, turn, today=TODAY)
    assert query["channel"] == "wechat" and query["metric"] == "order_count"
    assert scope_words(query, CATALOGUE.channel_labels) == "上个月（2026年10月）微信公众号渠道"


def test_indicators_need_a_logged_in_official(service, official, october):
    events, messages = run(service.context, ActionQueryIndicator(),
                           make_tracker("本月诉求量", metadata={"channel": "web", "openid": "web:citizen"}))
    assert texts(messages) == LOGIN_REQUIRED and events == []
    _, messages = run(service.context, ActionQueryIndicator(),
                      make_tracker("本月诉求量", metadata={"auth_token": "forged.token.value"}))
    assert "重新登录" in texts(messages)
    _, messages = run(_frozen(service), ActionQueryIndicator(),
                      make_tracker("上个月火星区诉求量", entities={"district": ["火星区"]}, metadata=official))
    assert texts(messages).startswith("查询条件有误：") and "火星区" in texts(messages)


def test_the_filing_reply_names_number_unit_time_limit_and_deadline():
    context = ActionContext(base_url="http://unused", api_key=None, now=lambda: FROZEN_NOW)
    order = {"order_no": "CS20261121000042", "state": "dispatched", "time_limit_days": 5,
             "deadline_at": "2026-11-27T16:30:00+00:00",
             "routing": {"department": {"code": "430104001", "name": "望月湖街道办事处"}}}
    assert filed_reply(order, replayed=False, has_phone=True, context=context) == (
        "您的诉求已登记，工单号：CS20261121000042。已派至望月湖街道办事处办理，办理时限5个工作日，预计11月28日前办结。"
        "查询进度请告诉我工单号和手机号后四位。")
    pending = order | {"state": "received", "deadline_at": None}
    assert "初步判断由望月湖街道办事处办理" in filed_reply(pending, replayed=True, has_phone=False, context=context)


def test_handoff_names_the_hotline():
    _, messages = run(_closed_port_context(), ActionHumanHandoff(), make_tracker("转人工"))
    assert "12345" in texts(messages)


# -- the webhook the Rasa server calls ---------------------------------------------------------------------------------
def _action_call(action: str, tracker: Tracker) -> dict:
    state = {"sender_id": tracker.sender_id, "slots": tracker.slots, "latest_message": tracker.latest_message,
             "events": tracker.events, "paused": False, "followup_action": None, "active_loop": {},
             "latest_action_name": "action_listen"}
    return {"next_action": action, "sender_id": tracker.sender_id, "tracker": state, "domain": DOMAIN,
            "version": "3.6.21"}


def test_the_webhook_runs_actions_for_rasa(service):
    order = file_order(service, "路灯坏了好几天", openid="oWx_hook", channel="wechat")
    url = "/api/v1/assistant/webhook"
    token = webhook_token(service.app.state.assistant_api_key)
    assert webhook_token_for(service.app.state.settings) == token      # what Rasa's endpoints file gets
    call = _action_call("action_order_status", make_tracker("我的投诉", metadata={"openid": "oWx_hook"}))
    with httpx.Client(base_url=service.base, timeout=30) as http:
        assert http.post(url, json=call).status_code == 401
        assert http.post(url, params={"token": "0" * 64}, json=call).status_code == 401
        answer = http.post(url, params={"token": token}, json=call)     # the action calls back into the same app
        assert answer.status_code == 200, answer.text
        assert order["order_no"] in answer.json()["responses"][0]["text"]
        assert {"event": "slot", "name": "order_id", "value": None} in [
            {k: e[k] for k in ("event", "name", "value")} for e in answer.json()["events"]]
        compressed = http.post(url, params={"token": token}, content=zlib.compress(json.dumps(call).encode()),
                               headers={"Content-Encoding": "deflate", "Content-Type": "application/json"})
        assert compressed.status_code == 200 and order["order_no"] in compressed.text
        unknown = http.post(url, params={"token": token}, json=call | {"next_action": "action_nope"})
        assert unknown.status_code == 404 and unknown.json()["action_name"] == "action_nope"
        assert http.post(url, params={"token": token}, content=b"not json").status_code == 400
        bomb = zlib.compress(b" " * (64 * 1024 * 1024))          # 64 MB of spaces in 64 KB
        assert http.post(url, params={"token": token}, content=bomb,
                         headers={"Content-Encoding": "deflate"}).status_code == 413
        assert http.post(url, params={"token": token}, json={"next_action": "x"}).status_code == 400


@pytest.mark.parametrize("said, expected", [
    ("岳麓区望月湖街道桃子湖路", "长沙市岳麓区望月湖街道（桃子湖路）"),          # district and street not said twice
    ("长沙岳麓区望月湖街道 桃子湖路３号！", "长沙市岳麓区望月湖街道（桃子湖路３号）"),
    ("望月湖街道", "长沙市岳麓区望月湖街道"),                                  # nothing new: no brackets
    ("就在岳麓区望月湖街道", "长沙市岳麓区望月湖街道"),                        # fillers are not a place
    ("不对，是在望月湖街道桃子湖路那边", "长沙市岳麓区望月湖街道（桃子湖路）"),
    ("", "长沙市岳麓区望月湖街道"),
    (None, "长沙市岳麓区望月湖街道"),
])
def test_read_back_names_each_place_once(said, expected):
    address = {"standard_address": "湖南省长沙市岳麓区望月湖街道", "district": {"adcode": "430104", "name": "岳麓区"},
               "street": {"id": "430104005", "name": "望月湖街道"}, "community": None}
    assert readback(address, said, "长沙市") == expected


def test_read_back_without_a_standard_address_keeps_what_was_said():
    assert readback({"standard_address": ""}, "高桥大市场门口🙏", "长沙市") == "高桥大市场门口🙏"


def test_a_wechat_message_filed_by_the_form_is_not_filed_again_by_the_relays_fallback(service):
    """Rasa's form files on the citizen's last WeChat message and then answers too late: the relay's direct filing
    of that same message (same MsgId) makes no second order and tells the citizen the first one's number."""
    from api.channels.wechat.filing import file_incoming
    from api.channels.wechat.messages import Incoming
    from api.channels.wechat.sender import RecordingSender

    metadata = {"channel": "wechat", "openid": "oWx_late", "role": "citizen", "message_key": "msg:9700000000000000001"}
    slots = {"complaint_text": "芙蓉区五里牌街道晚上KTV唱歌太吵了🎤，吵得孩子睡不着", "place_confirmed": True,
             "complaint_place": "长沙市芙蓉区五里牌街道", "complaint_phone": "13900001234"}
    events, messages = run(service.context, ActionSubmitComplaint(),
                           make_tracker("13900001234", slots=slots, metadata=metadata, sender="oWx_late"))
    with service.factory() as session:
        [order] = session.scalars(select(WorkOrder).where(WorkOrder.caller_openid == "oWx_late")).all()
        # filed under the message's own key, in the WeChat channel's scope (review 2026-12-06, L12)
        assert order.idempotency_key == scoped_idempotency_key(WECHAT_SCOPE, "msg:9700000000000000001")
    assert order.order_no in texts(messages)

    sender = service.app.state.wechat_sender = RecordingSender()
    file_incoming(service.app, Incoming(openid="oWx_late", msg_type="text", create_time="1795000000",
                                      msg_id="9700000000000000001", text="13900001234"))
    with service.factory() as session:
        assert session.scalar(select(func.count()).select_from(WorkOrder)
                              .where(WorkOrder.caller_openid == "oWx_late")) == 1
    assert sender.sent == [("oWx_late", f"您的诉求已登记，工单号 {order.order_no}。回复工单号可查询进度。")]


def test_only_a_wechat_message_id_becomes_the_orders_key():
    body = {"text": "小区停水", "channel": "web"}
    assert idempotency_key("web:s1", body, message_key="msg:123") == "msg:123"
    assert idempotency_key("web:s1", body, message_key="evt:oWx_secret:1795000000:").startswith("assistant-")
    assert idempotency_key("web:s1", body, message_key=None) == idempotency_key("web:s1", body)
    assert "oWx" not in idempotency_key("oWx_secret", body)
    tracker = make_tracker("好的", metadata={"channel": "web", "message_key": "msg:1"})
    assert wechat_message_key(tracker) is None
