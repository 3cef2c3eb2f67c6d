"""Filing a complaint in conversation: `validate_complaint_form`, `action_submit_complaint`, `action_reset_complaint`.

complaint_form asks for three slots — complaint_text, complaint_place, complaint_phone — and this module checks them:

- **complaint_text**: refused with a reason when empty, only emoji/punctuation, or too short to act on once the
  request words ("帮我投诉一下") are set aside; refused when longer than MAX_TEXT_CHARS. Nothing is masked here: the
  service masks phones and ID numbers when it stores the order. If the description already names a place the
  gazetteer knows down to the street, the place is filled from it and read back at once (one question fewer).
- **complaint_place**: geocoded through `POST /api/v1/route` — the place as said, and if that alone names no
  district, "place + description" ("我家楼下" + a description naming the compound) — and read back
  ("您说的位置是：长沙市岳麓区望月湖街道…，对吗？"). While it is unconfirmed the form also requires `place_confirmed`
  (added by `required_slots`): "对/是的" confirms; "不对" asks for the place again; "不对，是在高桥大市场" or any other
  new place is geocoded and read back in turn. A place in another city, an ambiguous one (the geocoder's own
  question is asked) or one that cannot be found is asked for again.
- **complaint_phone** — the rule:
  1. Accepted: an 11-digit mobile number (1[3-9]…, optionally +86) or a 长沙 landline 0731 + 8 digits; full-width
     digits, spaces, dashes and surrounding words are fine ("我的电话是１３８ １２３４ ５６７８").
  2. The first refusal ("不想留", "不给", "不方便", a `deny`) is answered with why a phone is needed (the handling
     unit calls back to check and to report the result; the number is used for this order only and shown masked),
     and the phone is asked for once more.
  3. A second refusal is accepted only when the conversation has an OpenID (metadata.openid: the WeChat user, or
     "web:<session>" in the web widget): the order is filed without a phone, tied to that OpenID, and the citizen
     follows it by asking for "my orders". The slot then holds NO_PHONE. Without an OpenID nobody could reach the
     citizen or prove the order is theirs, so a phone stays required (or the citizen calls 12345, or cancels).
  Refusals are counted from the conversation's events since the form last ended, so no extra slot is needed.

`action_submit_complaint` files the order with `POST /api/v1/orders` (channel and caller_openid from the metadata,
an Idempotency-Key derived from the sender and the request, so a retried action call never files twice) and names
the order number, the department, the time limit and the deadline; then it clears the form slots exactly as
`action_reset_complaint` does.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT

from assistant.actions.client import ServiceClient, ServiceRefused, ServiceUnavailable
from assistant.actions.context import BUSY, conversation_metadata, current_context, latest_intent, latest_text
from assistant.actions.speech import chinese_date, parse_moment
from nlp.pii import mask_phone

FORM = "complaint_form"
FORM_SLOTS = ("complaint_text", "complaint_place", "complaint_phone", "place_confirmed")
NO_PHONE = "不留电话"
MIN_MEANINGFUL_CHARS = 5
MAX_TEXT_CHARS = 2000
# Intents that mean the citizen stepped out of the form: never read them as a place or a phone.
OTHER_INTENTS = {"cancel", "faq", "human_handoff", "greet", "goodbye", "thank", "out_of_scope", "query_order_status",
                 "query_indicator"}

WHY_PHONE_REASON = "留个电话是为了承办单位核实情况、办结后向您反馈结果，号码只用于办理这件诉求，系统中会隐去中间四位。"
WHY_PHONE = WHY_PHONE_REASON + "请提供11位手机号，或0731开头的座机号。"
NO_PHONE_OK = "好的，不留电话也可以受理。之后在这里说“查询我的诉求”就能看到办理进度。"
PHONE_REQUIRED = ("没有联系电话，我们无法在这里为您登记（承办单位需要联系您核实）。您可以留下手机号，"
                  "或直接拨打12345热线登记；不想继续的话请说“取消”。")
BAD_PHONE = "这个号码好像不对。请提供11位手机号，或0731开头的长沙座机号（如0731-88886666）。"
ASK_PLACE_AGAIN = "好的，请再说一下事发的具体位置（区、街道、小区或路名、门牌都可以）。"
ASK_TEXT = "好的，请描述一下您要反映的具体问题，比如发生了什么、持续多久了。"
PLACE_NOT_FOUND = ("没能确定这个位置，请说得再具体一些，比如“岳麓区望月湖街道望月湖社区3栋”，"
                   "或者附近的路名、小区名、地标。")

_REQUEST_WORDS = re.compile(r"^(?:你好|您好|喂)?[，,。\s]*(?:我要|我想|想要|想|帮我|请帮我|麻烦|麻烦你|麻烦您|请|我)?"
                            r"(?:投诉|反映|反应|举报|报修|反馈|求助|报告)(?:一下|个事|一件事|个问题|下)?[：:，,。\s]*")
_MEANINGFUL = re.compile(r"[\u3400-\u9fffA-Za-z0-9]")
_EMOJI_OR_SYMBOL = re.compile(r"[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200d]")
_YES = re.compile(r"^(?:对|是|是的|对的|对啊|是啊|没错|没错的|正确|嗯+|恩+|好|好的|可以|确认|确定|没问题|没有问题|对对+|就是|"
                  r"就是这里|ok|okay|yes|y)[啊呀的了吧哈!！。.，,~～\s]*$", re.IGNORECASE)
_NO = re.compile(r"^(?:不对|不是|错了|不正确|有误|不准确|没有|否|no(?![a-z])|n(?![a-z]))(?:的|啊|呀)?[!！。.，,、\s]*",
                 re.IGNORECASE)
_REFUSAL = re.compile(r"不想留|不留|不给|不想给|不愿|不方便|不提供|不想提供|不告诉|不想说|没有电话|没电话|没手机|保密|匿名|"
                      r"别打电话|不要打电话|不需要电话|不用电话|不用留|算了")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86)?(1[3-9]\d{9})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(0731)(\d{8})(?!\d)")


# -- pure checks ----------------------------------------------------------------------------------------------------
def text_problem(text: str | None) -> str | None:
    """Why a description cannot be filed as it is (a sentence to say to the citizen), or None when it can."""
    text = (text or "").strip()
    if not text:
        return ASK_TEXT
    if len(text) > MAX_TEXT_CHARS:
        return f"描述有{len(text)}个字，太长了。请精简到{MAX_TEXT_CHARS}字以内，说清楚问题、地点和诉求就好。"
    meaningful = _MEANINGFUL.findall(_REQUEST_WORDS.sub("", unicodedata.normalize("NFKC", text)))
    if not meaningful:
        if _EMOJI_OR_SYMBOL.search(text):
            return "我看不懂表情符号😅，请用文字描述一下您遇到的问题。"
        return ASK_TEXT                                  # a bare "我要投诉": just ask for the details
    if len(meaningful) < MIN_MEANINGFUL_CHARS:
        return "描述太简短了，请说具体一些，比如：“楼下烧烤店油烟太大，每天晚上十点以后还在营业”。"
    return None


def parse_phone(text: str | None) -> str | None:
    """An 11-digit mobile ("13812345678") or a 0731 landline ("073188886666") found in `text`, else None."""
    prepared = unicodedata.normalize("NFKC", text or "")
    prepared = re.sub(r"(?<=\d)[\s\-–—()（）]+(?=\d)", "", prepared)
    prepared = re.sub(r"[()（）]", "", prepared)
    mobile = _MOBILE.search(prepared)
    if mobile:
        return mobile.group(1)
    landline = _LANDLINE.search(prepared)
    return landline.group(1) + landline.group(2) if landline else None


def is_refusal(text: str | None, intent: str | None = None) -> bool:
    if parse_phone(text):
        return False
    prepared = unicodedata.normalize("NFKC", text or "").strip()
    return intent == "deny" or bool(_REFUSAL.search(prepared)) or bool(_NO.match(prepared))


def yes_or_no(text: str | None, intent: str | None) -> bool | None:
    """True for "对/是的", False for "不对…", None for anything else (e.g. a new place)."""
    prepared = unicodedata.normalize("NFKC", text or "").strip()
    if _YES.match(prepared):
        return True
    if _NO.match(prepared):
        return False
    if intent == "affirm" and len(prepared) <= 8:
        return True
    if intent == "deny":
        return False
    return None


# Words around a place that are not part of it ("就在…", "…那边"): left over once the known names are removed.
_PLACE_FILLER = re.compile(r"^(?:不对|不是)?[，,\s]*(?:就|是|也)?(?:在|位于)?|(?:那边|这边|附近|那儿|这儿|这里|那里)$")


def readback(address: dict[str, Any], said: str | None, city_name: str) -> str:
    """The standard address from the city name on (citizens say 长沙市…), with what the citizen said if it adds to it."""
    standard = address.get("standard_address") or ""
    at = standard.find(city_name)
    if at > 0:
        standard = standard[at:]
    said = (said or "").strip(" ，,。.！!？?")
    if said and said not in standard:
        if not standard:
            return said
        # Only what the standard address lacks goes in brackets: "岳麓区望月湖街道桃子湖路" adds 桃子湖路, not the
        # district and street a second time.
        known = [(address.get(level) or {}).get("name") for level in ("district", "street")]
        known += [address.get("community"), city_name, city_name.removesuffix("市")]
        detail = said
        for name in sorted(filter(None, known), key=len, reverse=True):
            detail = detail.replace(name, "")
        detail = _PLACE_FILLER.sub("", detail.strip(" ，,。.！!？?")).strip(" ，,。.！!？?")
        if detail and detail not in standard:
            return f"{standard}（{detail}）"
    return standard


def domain_asks(domain: dict, slot: str) -> bool:
    """Whether the domain has its own question for `slot` (utter_ask_… / action_ask_…), which Rasa's form utters
    after this validation: then our messages give the reason only, and the read-back is the domain's question."""
    names = {f"{kind}_ask_{FORM}_{slot}" for kind in ("utter", "action")} | {f"{kind}_ask_{slot}" for kind in
                                                                             ("utter", "action")}
    return bool(names & (set(domain.get("responses") or {}) | set(domain.get("actions") or [])))


def phone_refusals(tracker: Tracker) -> int:
    """How many times the citizen refused the phone since the complaint form last ended (this message included)."""
    count, requested = 0, None
    for event in tracker.events or []:
        kind = event.get("event")
        if kind == "active_loop" and event.get("name") != FORM:
            count = 0                                         # the form ended: a new filing starts afresh
        elif kind == "slot" and event.get("name") == REQUESTED_SLOT:
            requested = event.get("value")
        elif kind == "user" and requested == "complaint_phone":
            intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
            count += is_refusal(event.get("text"), intent)
    return count


# -- the form's validation ------------------------------------------------------------------------------------------
class ValidateComplaintForm(FormValidationAction):
    def name(self) -> str:
        return "validate_complaint_form"

    async def required_slots(self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: dict) -> list[str]:
        """The domain's slots, plus place_confirmed right after the place once there is a place to confirm."""
        slots = list(domain_slots)
        if "place_confirmed" not in slots and tracker.slots.get("complaint_place"):
            at = slots.index("complaint_place") + 1 if "complaint_place" in slots else len(slots)
            slots.insert(at, "place_confirmed")
        return slots

    async def next_requested_slot(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                  domain: dict) -> EventType | None:
        # As rasa_sdk's, except that an unconfirmed place (False, or a domain's initial false) is still missing.
        required = await self.required_slots(self.domain_slots(domain), dispatcher, tracker, domain)
        if required == self.domain_slots(domain):
            return None
        missing = (slot for slot in required
                   if (tracker.slots.get(slot) is not True if slot == "place_confirmed" else tracker.slots.get(slot) is None))
        return SlotSet(REQUESTED_SLOT, next(missing, None))

    # The citizen's answer to the read-back, and a refusal that the domain's mapping may not pass on as a value.
    async def extract_place_confirmed(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                      domain: dict) -> dict[str, Any]:
        if tracker.get_slot(REQUESTED_SLOT) != "place_confirmed" or latest_intent(tracker) in OTHER_INTENTS:
            return {}
        text = latest_text(tracker)
        answer = yes_or_no(text, latest_intent(tracker))
        if answer is True:
            return {"place_confirmed": True}
        rest = _NO.sub("", unicodedata.normalize("NFKC", text)).strip(" ，,。") if answer is False else text
        if len(_MEANINGFUL.findall(rest)) >= 2:
            return {"complaint_place": rest, "place_confirmed": None}   # "不对，是在…" or simply a new place
        return {"place_confirmed": False} if answer is False else {}

    async def extract_complaint_phone(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                      domain: dict) -> dict[str, Any]:
        if tracker.get_slot(REQUESTED_SLOT) != "complaint_phone" or latest_intent(tracker) in OTHER_INTENTS:
            return {}
        text = latest_text(tracker)
        return {"complaint_phone": text} if text else {}

    async def validate_complaint_text(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                      domain: dict) -> dict[str, Any]:
        text = value.strip() if isinstance(value, str) else ""
        problem = text_problem(text)
        if problem:
            if problem != ASK_TEXT or not domain_asks(domain, "complaint_text"):
                dispatcher.utter_message(text=problem)
            return {"complaint_text": None}
        if tracker.get_slot("complaint_place"):
            return {"complaint_text": text}
        # A description that already names a known place: read it back now instead of asking for it.
        context = current_context()
        try:
            async with ServiceClient(context) as api:
                routed = await api.route(text)
        except (ServiceUnavailable, ServiceRefused):
            return {"complaint_text": text}          # the place question comes next anyway
        address = routed.get("address") or {}
        if address.get("street") and not address.get("ambiguous") and not address.get("outside_city"):
            place = readback(address, None, context.city_name)
            self._read_back(place, dispatcher, domain)
            return {"complaint_text": text, "complaint_place": place, "place_confirmed": None}
        return {"complaint_text": text}

    async def validate_complaint_place(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                       domain: dict) -> dict[str, Any]:
        said = value.strip() if isinstance(value, str) else ""
        if len(_MEANINGFUL.findall(said)) < 2:
            if not domain_asks(domain, "complaint_place"):
                dispatcher.utter_message(text=ASK_PLACE_AGAIN)
            return {"complaint_place": None, "place_confirmed": None}
        context = current_context()
        description = tracker.get_slot("complaint_text") or ""
        try:
            async with ServiceClient(context) as api:
                # The place as said comes first: when the description names another place ("不对，是在…" after a
                # read-back of a place in the description), the answer to our question is what counts.
                routed = await api.route(said)
                found = routed.get("address") or {}
                if not found.get("district") and not found.get("outside_city") and description:
                    routed = await api.route(f"{said} {description}")
        except ServiceUnavailable:
            dispatcher.utter_message(text=BUSY)
            return {"complaint_place": None, "place_confirmed": None}
        except ServiceRefused as exc:
            dispatcher.utter_message(text=PLACE_NOT_FOUND if exc.status == 422 else BUSY)
            return {"complaint_place": None, "place_confirmed": None}
        address = routed.get("address") or {}
        if address.get("outside_city"):
            dispatcher.utter_message(text=f"您说的地点（{address['outside_city']}）好像不在{context.city_name}。"
                                          f"12345只能受理{context.city_name}范围内的诉求，请告诉我{context.city_name}内的具体位置。")
            return {"complaint_place": None, "place_confirmed": None}
        if address.get("ambiguous") and address.get("question"):
            dispatcher.utter_message(text=address["question"])
            return {"complaint_place": None, "place_confirmed": None}
        if not address.get("district"):
            dispatcher.utter_message(text=PLACE_NOT_FOUND)
            return {"complaint_place": None, "place_confirmed": None}
        place = readback(address, said, context.city_name)
        self._read_back(place, dispatcher, domain)
        return {"complaint_place": place, "place_confirmed": None}

    @staticmethod
    def _read_back(place: str, dispatcher: CollectingDispatcher, domain: dict) -> None:
        # The domain's utter_ask_place_confirmed reads {complaint_place} back itself; say it only when it does not.
        if not domain_asks(domain, "place_confirmed"):
            dispatcher.utter_message(text=f"您说的位置是：{place}，对吗？")

    async def validate_place_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                       domain: dict) -> dict[str, Any]:
        if value is True:
            return {"place_confirmed": True}
        if value is False:
            if not domain_asks(domain, "complaint_place"):
                dispatcher.utter_message(text=ASK_PLACE_AGAIN)
            return {"place_confirmed": None, "complaint_place": None}
        return {"place_confirmed": None}

    async def validate_complaint_phone(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                       domain: dict) -> dict[str, Any]:
        text = value.strip() if isinstance(value, str) else ""
        if text == NO_PHONE:
            return {"complaint_phone": NO_PHONE}
        phone = parse_phone(text)
        if phone:
            return {"complaint_phone": phone}
        if is_refusal(text, latest_intent(tracker)):
            if phone_refusals(tracker) < 2:
                dispatcher.utter_message(text=WHY_PHONE_REASON if domain_asks(domain, "complaint_phone") else WHY_PHONE)
                return {"complaint_phone": None}
            if conversation_metadata(tracker).get("openid"):
                dispatcher.utter_message(text=NO_PHONE_OK)
                return {"complaint_phone": NO_PHONE}
            dispatcher.utter_message(text=PHONE_REQUIRED)
            return {"complaint_phone": None}
        dispatcher.utter_message(text=BAD_PHONE)
        return {"complaint_phone": None}


# -- filing ---------------------------------------------------------------------------------------------------------
def idempotency_key(sender_id: str, body: dict, *, message_key: str | None = None) -> str:
    """The same sender filing the same request gets the same key (≤ 128 chars; no phone or OpenID in clear).
    A WeChat message's own key (its MsgId) when the channel gives one: the WeChat relay files the same message
    under that key when the assistant does not answer in time, and one key means one order."""
    if isinstance(message_key, str) and message_key.startswith("msg:") and len(message_key) <= 128:
        return message_key
    sender = hashlib.sha256(sender_id.encode()).hexdigest()[:16]
    request = hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:32]
    return f"assistant-{sender}-{request}"


def wechat_message_key(tracker: Tracker) -> str | None:
    """The key of the WeChat message being answered (only this message's: an older one was another request)."""
    metadata = (tracker.latest_message or {}).get("metadata")
    if isinstance(metadata, dict) and metadata.get("channel") == "wechat":
        return metadata.get("message_key")
    return None


def order_text(description: str, place: str | None) -> str:
    return f"{description}（事发地点：{place}）" if place else description


def filed_reply(order: dict, *, replayed: bool, has_phone: bool, context) -> str:
    routing = order.get("routing") or {}
    # An unlisted territorial office (no code) is still to be confirmed by an agent: no name is promised.
    department = (routing.get("department") or {}).get("name") if (routing.get("department") or {}).get("code") else None
    parts = [("这条诉求刚才已经登记过了" if replayed else "您的诉求已登记") + f"，工单号：{order['order_no']}。"]
    if department:
        parts.append(f"已派至{department}办理" if order.get("state") == "dispatched"
                     else f"初步判断由{department}办理，经工作人员核实后派单")
    else:
        parts.append("工作人员会尽快核实并派至相关部门办理")
    limit = order.get("time_limit_days")
    deadline = parse_moment(order.get("deadline_at"))
    if limit:
        parts[-1] += f"，办理时限{limit}个工作日"
        parts[-1] += f"，预计{chinese_date(deadline, today=context.today())}前办结。" if deadline else "（从派单之日起计算）。"
    else:
        parts[-1] += "。"
    parts.append("查询进度请告诉我工单号和手机号后四位。" if has_phone else "查询进度请在这里说“查询我的诉求”。")
    return "".join(parts)


class ActionSubmitComplaint(Action):
    def name(self) -> str:
        return "action_submit_complaint"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        description = tracker.get_slot("complaint_text")
        if not description:
            dispatcher.utter_message(text="还没有收到诉求内容，请先说一下您要反映的问题。")
            return reset_events()
        metadata = conversation_metadata(tracker)
        phone = tracker.get_slot("complaint_phone")
        phone = parse_phone(phone) if phone and phone != NO_PHONE else None
        openid = metadata.get("openid") or None
        body = {"text": order_text(description, tracker.get_slot("complaint_place")),
                "channel": "wechat" if metadata.get("channel") == "wechat" else "web",
                "caller_phone": phone, "caller_openid": str(openid)[:64] if openid else None}
        context = current_context()
        try:
            async with ServiceClient(context) as api:
                order, replayed = await api.create_order(body, idempotency_key=idempotency_key(
                    tracker.sender_id, body, message_key=wechat_message_key(tracker)))
        except ServiceUnavailable:
            dispatcher.utter_message(text="系统暂时繁忙，您的诉求还没有登记成功，请稍后再试或拨打12345人工服务。")
            return reset_events()
        except ServiceRefused as exc:
            reason = exc.detail if exc.status == 422 and isinstance(exc.detail, str) else None
            dispatcher.utter_message(text=f"这条诉求没能登记（{reason}），请修改后再试或拨打12345。" if reason else BUSY)
            return reset_events()
        dispatcher.utter_message(text=filed_reply(order, replayed=replayed, has_phone=phone is not None,
                                                  context=context))
        if phone:
            dispatcher.utter_message(text=f"联系电话 {mask_phone(phone)} 已登记，承办单位可能会与您联系核实。")
        return reset_events()


class ActionResetComplaint(Action):
    def name(self) -> str:
        return "action_reset_complaint"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        return reset_events()


def reset_events() -> list[EventType]:
    return [SlotSet(slot, None) for slot in FORM_SLOTS] + [SlotSet(REQUESTED_SLOT, None)]
