"""`action_human_handoff`: "转人工" — a person of the centre calls the citizen back.

The assistant never pretends to be a person. It files a call-back task (`POST /api/v1/callbacks`) with the
conversation so far (the service masks and bounds it), the phone the citizen gave in this conversation and the
order number being discussed, and tells the citizen when a person will call (the service's rule: within 30 minutes
in working hours, else the next working morning; see orders/callbacks.py). A second "转人工" while the task is open
files nothing new: the citizen hears the same time again. The hotline stays the way to reach a person at once
(国办发〔2020〕53号 asks every 12345 hotline to be staffed 7×24); if the service cannot be reached, that is all the
citizen is told, as before.
"""
from __future__ import annotations

import datetime as dt
import unicodedata

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from assistant.actions.client import ServiceClient, ServiceRefused, ServiceUnavailable
from assistant.actions.complaint import NO_PHONE, parse_phone
from assistant.actions.context import conversation_metadata, current_context, entity_values, latest_text
from assistant.actions.orders import normalize_order_no
from assistant.actions.speech import chinese_date, parse_moment
from nlp.pii import mask_phone

EMERGENCY = "如果情况紧急、涉及人身或财产安全，请立即拨打110、119或120。"
HOTLINE_NOW = "如需立即人工服务，请拨打12345政务服务便民热线（7×24小时接听）。"
HANDOFF = "需要人工服务的话，请直接拨打12345政务服务便民热线，人工坐席7×24小时接听。" + EMERGENCY
ASK_PHONE = "为便于回电，请发送“转人工”加您的手机号（例如“转人工 13812345678”），号码只用于这次回电。"
CONVERSATION_TURNS = 20     # the service keeps as many; sending more would only be cut there
WEEKDAYS = "一二三四五六日"


def due_words(due: dt.datetime, *, today: dt.date) -> str:
    """"今天 14:35", "明天 09:00", else "12月7日（周一）09:00" — in the city's time (the caller passes it so)."""
    days = (due.date() - today).days
    if days == 0:
        return f"今天 {due:%H:%M}"
    if days == 1:
        return f"明天 {due:%H:%M}"
    return f"{chinese_date(due, today=today)}（周{WEEKDAYS[due.weekday()]}）{due:%H:%M}"


def conversation_so_far(tracker: Tracker) -> list[dict]:
    """The citizen's and the assistant's texts, oldest first, the last CONVERSATION_TURNS of them."""
    turns = []
    for event in tracker.events or []:
        kind, text = event.get("event"), event.get("text")
        if kind not in ("user", "bot") or not isinstance(text, str) or not text.strip():
            continue
        stamp = event.get("timestamp")
        at = (dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat() if isinstance(stamp, (int, float)) else None)
        turns.append({"who": "citizen" if kind == "user" else "assistant", "text": text.strip(), "at": at})
    return turns[-CONVERSATION_TURNS:]


def phone_from(tracker: Tracker) -> str | None:
    """The number the citizen gave in this conversation: the slots, else the latest citizen message that has one."""
    for value in (tracker.get_slot("complaint_phone"), tracker.get_slot("phone"), *entity_values(tracker, "phone")):
        if value and value != NO_PHONE and parse_phone(value):
            return parse_phone(value)
    for event in reversed(tracker.events or []):
        if event.get("event") == "user" and parse_phone(event.get("text")):
            return parse_phone(event.get("text"))
    return None


def order_no_from(tracker: Tracker) -> str | None:
    for value in (*entity_values(tracker, "order_id"), tracker.get_slot("order_id")):
        number = normalize_order_no(value)
        if number:
            return number
    return None


def callback_reply(answer: dict, *, phone: str | None, today: dt.date) -> str:
    due = parse_moment(answer.get("due_at"))
    when = due_words(due, today=today) if due else "尽快"
    created = answer.get("created", True)
    head = ("已为您转人工，登记了回电：" if created else "您已登记过人工回电，不用重复登记：") + f"工作人员将在{when}前给您回电"
    if phone:
        head += f"（{mask_phone(phone)}）。"
    elif answer.get("has_phone"):
        head += "（您登记的号码）。"
    else:
        head += "。" + ASK_PHONE
    return head + HOTLINE_NOW + EMERGENCY


class ActionHumanHandoff(Action):
    def name(self) -> str:
        return "action_human_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        context = current_context()
        contact = (tracker.sender_id or "").strip()
        if not contact:
            dispatcher.utter_message(text=HANDOFF)   # nobody to call back: the hotline is the way
            return []
        channel = "wechat" if conversation_metadata(tracker).get("channel") == "wechat" else "web"
        phone = phone_from(tracker)
        reason = unicodedata.normalize("NFKC", latest_text(tracker))[:500] or None
        body = {"channel": channel, "contact": contact[:128], "phone": phone, "reason": reason,
                "conversation": conversation_so_far(tracker), "order_no": order_no_from(tracker)}
        try:
            async with ServiceClient(context) as api:
                answer = await api.request_callback(body)
        except (ServiceUnavailable, ServiceRefused):
            dispatcher.utter_message(text=HANDOFF)
            return []
        dispatcher.utter_message(text=callback_reply(answer, phone=phone, today=context.today()))
        return []
