"""`action_order_status`: a citizen asks how their complaint is doing.

With an order number, the phone digits prove it is theirs: the public lookup needs the last 4 digits of the phone
given when filing ("请提供登记时留的手机号后四位" when missing). A wrong number and a wrong phone get the same answer,
so nobody learns which order numbers exist. Without a number, "my orders" are the orders filed from this WeChat
account or web session (metadata.openid), looked up with the assistant's API key — never anyone else's.
The order_id and phone slots are cleared after answering: Rasa keeps slots between turns, and the next question
must not reuse an old number.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from assistant.actions.client import ServiceClient, ServiceRefused, ServiceUnavailable
from assistant.actions.context import BUSY, conversation_metadata, current_context, entity_values, latest_text
from assistant.actions.speech import chinese_date, chinese_time, parse_moment
from nlp.entities import find_order_numbers

ASK_LAST4 = "请提供登记时留的手机号后四位，我来帮您查询。"
ASK_ORDER_NO = "请告诉我工单号（例如 CS20261121000001）和登记时留的手机号后四位，我来帮您查询。"
NOT_FOUND = ("没有查到与这个工单号和手机号后四位相符的工单。请核对工单号（短信或回复里以 CS 开头的一串字符）"
             "和登记时留的手机号后四位后再试；也可以拨打12345人工查询。")
# 429: too many lookups from this user (a minute), or too many wrong phone digits for this order (up to an hour).
RATE_LIMITED = "查询太频繁或手机号后四位错误次数过多，请稍后再试，也可拨打12345热线查询。"
MY_ORDERS_SHOWN = 3
RESULT_CHARS = 400   # a chat bubble, not a report: the rest by phone

_ORDER_NO = re.compile(r"^[A-Z]{0,4}\d[A-Z0-9\-]{5,30}$")
_FOUR_DIGITS = re.compile(r"(?<!\d)(\d{4})(?!\d)")
_MOBILE_OR_LANDLINE = re.compile(r"(?<!\d)(?:1[3-9]\d{9}|0\d{9,11})(?!\d)")
_CUED_DIGITS = re.compile(r"(?:尾号|后四位|后4位|手机|电话)\D{0,6}?(\d{4})(?!\d)")


def normalize_order_no(value: str | None) -> str | None:
    """"cs 2026 1121 000001" / full-width → "CS20261121000001"; None if it cannot be an order number."""
    if not value:
        return None
    compact = re.sub(r"[\s\u3000]+", "", unicodedata.normalize("NFKC", value)).upper()
    return compact if _ORDER_NO.match(compact) else None


def phone_last4(value: str | None) -> str | None:
    """The last 4 digits of whatever the citizen gave (a whole phone number or just 尾号 digits)."""
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", value or ""))
    return digits[-4:] if len(digits) >= 4 else None


def _order_no_from(tracker: Tracker) -> str | None:
    for candidate in [*entity_values(tracker, "order_id"), tracker.get_slot("order_id")]:
        number = normalize_order_no(candidate)
        if number:
            return number
    spans = find_order_numbers(unicodedata.normalize("NFKC", latest_text(tracker)))
    return normalize_order_no(spans[0].value) if spans else None


def _last4_from(tracker: Tracker, order_no: str | None) -> str | None:
    for candidate in [*entity_values(tracker, "phone"), tracker.get_slot("phone")]:
        digits = phone_last4(candidate)
        if digits:
            return digits
    # NLU may miss a bare "5678" answer to our question: read the digits that are not the order number.
    text = unicodedata.normalize("NFKC", latest_text(tracker)).upper()
    if order_no:
        text = text.replace(order_no, " ")
    text = re.sub(r"(?<=\d)[\s\-]+(?=\d)", "", text)
    whole = _MOBILE_OR_LANDLINE.search(text)
    if whole:
        return whole.group(0)[-4:]
    cued = _CUED_DIGITS.search(text)
    if cued:
        return cued.group(1)
    # A bare 4-digit number counts only as the answer to our question (else "2026年" would be taken for digits).
    four = _FOUR_DIGITS.findall(text) if _last_bot_text(tracker) == ASK_LAST4 else []
    return four[-1] if four else None


def _last_bot_text(tracker: Tracker) -> str | None:
    for event in reversed(tracker.events or []):
        if event.get("event") == "bot":
            return event.get("text")
    return None


def describe_order(order: dict[str, Any], *, context) -> str:
    """State, unit, deadline (and whether it is past) and the last step, in plain words."""
    now = context.now()
    today = context.today()
    parts = [f"当前状态：{order.get('state_label') or '处理中'}"]
    if order.get("department"):
        parts.append(f"承办单位：{order['department']}")
    deadline = parse_moment(order.get("deadline_at"))
    if deadline is not None:
        late = deadline < now and bool(order.get("open"))
        parts.append(f"办理期限：{chinese_date(deadline, today=today)}" + ("（已超期，我们会督促办理）" if late else ""))
    elif order.get("open"):
        parts.append("办理期限：派单后按该类事项的办理时限计算")
    step = order.get("last_step") or {}
    step_at = parse_moment(step.get("at"))
    if step.get("action"):
        parts.append(f"最近一步：{step['action']}" + (f"（{chinese_time(step_at, today=today)}）" if step_at else ""))
    matter = (order.get("category") or "").split("/")[-1]
    head = f"工单 {order.get('order_no')}" + (f"（{matter}）" if matter else "")
    return f"{head}{'，'.join(parts)}。" + result_words(order, today=today)


def result_words(order: dict[str, Any], *, today) -> str:
    """"办理结果（12月3日办结）：…。" once the service gives the result (a closed order), else nothing."""
    result = " ".join((order.get("result") or "").split())
    if not result:
        return ""
    if len(result) > RESULT_CHARS:
        result = result[:RESULT_CHARS] + "…（完整结果可拨打12345查询）"
    elif result[-1] not in "。！？!?…）)":
        result += "。"
    done_at = parse_moment(order.get("completed_at"))
    return "办理结果" + (f"（{chinese_date(done_at, today=today)}办结）" if done_at else "") + f"：{result}"


class ActionOrderStatus(Action):
    def name(self) -> str:
        return "action_order_status"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        context = current_context()
        order_no = _order_no_from(tracker)
        if order_no is None and (tracker.get_slot("order_id") or entity_values(tracker, "order_id")):
            dispatcher.utter_message(text=NOT_FOUND)   # something that cannot be an order number
            return _reset()
        try:
            async with ServiceClient(context) as api:
                if order_no:
                    last4 = _last4_from(tracker, order_no)
                    if last4 is None:
                        dispatcher.utter_message(text=ASK_LAST4)
                        return [SlotSet("order_id", order_no), SlotSet("phone", None)]
                    order = await api.public_order(order_no, last4, on_behalf_of=tracker.sender_id or "")
                    dispatcher.utter_message(text=describe_order(order, context=context) if order else NOT_FOUND)
                    return _reset()
                openid = conversation_metadata(tracker).get("openid")
                if not openid:
                    dispatcher.utter_message(text=ASK_ORDER_NO)
                    return _reset()
                orders = await api.my_orders(str(openid))
        except ServiceUnavailable:
            dispatcher.utter_message(text=BUSY)
            return _reset()
        except ServiceRefused as exc:
            dispatcher.utter_message(text=RATE_LIMITED if exc.status == 429 else BUSY)
            return _reset()
        dispatcher.utter_message(text=_my_orders_text(orders, context=context))
        return _reset()


def _my_orders_text(orders: list[dict], *, context) -> str:
    if not orders:
        return "您在这里还没有登记过诉求。如果您有工单号，请告诉我工单号和登记时留的手机号后四位。"
    shown = orders[:MY_ORDERS_SHOWN]
    if len(shown) == 1:
        return "您登记的诉求：" + describe_order(shown[0], context=context)
    lines = [f"您最近登记的{len(shown)}件诉求（最新的在前）："]
    lines += [f"{i}. {describe_order(order, context=context)}" for i, order in enumerate(shown, start=1)]
    if len(orders) > MY_ORDERS_SHOWN:
        lines.append("更早的工单请告诉我工单号和手机号后四位查询。")
    return "\n".join(lines)


def _reset() -> list[EventType]:
    return [SlotSet("order_id", None), SlotSet("phone", None)]
