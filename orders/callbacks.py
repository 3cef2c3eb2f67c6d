"""Call-back tasks (回电任务): a citizen in the chat (web or WeChat) said "转人工", and a person of the centre calls back.

Keyword-only functions that take the session; the caller owns the transaction.

**When we promise to call back** (`callback_due`), in Beijing time:
- in working hours — Monday to Friday 8:30–17:30 — within 30 minutes;
- otherwise at 9:00 on the next working morning (the same day when asked before 8:30 on a working day).
Why: a call-back is an outbound call made by the day shift. The night and weekend agents answer incoming calls
(the hotline itself is staffed 7×24, and the assistant says so), and phoning a citizen late in the evening or on a
Sunday is not the service people expect. 17:30, not 18:00, ends the 30-minute promise so a request is never due
after the day shift has gone home; 9:00, not 8:30, gives the morning shift half an hour to read the night's list.
Public holidays are not modelled, as in `orders.lifecycle.add_working_days`.

One task per citizen at a time: while a contact (the channel's user id) has an open or taken task, a second
"转人工" returns that task instead of queueing a second call — with the newer conversation, and the phone or order
number if the first request lacked them.

What is stored of the conversation is masked (`nlp.pii.mask_pii`) and bounded (the last CONVERSATION_TURNS turns,
TURN_CHARS characters each): the agent needs the gist, not a transcript with ID numbers in it. The phone is kept
whole (the agent calls it) and shown masked in lists; `take_callback` hands it to the agent who takes the task.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.core.clock import CITY_TZ, as_utc
from nlp.pii import mask_phone, mask_pii
from orders.lifecycle import add_working_days
from orders.models import CallbackRequest, WorkOrder

CHANNELS = ("web", "wechat")
OPEN_STATUSES = ("open", "taken")
STATUS_LABELS = {"open": "待回电", "taken": "回电中", "done": "已回电"}

DAY_STARTS, PROMISE_ENDS = dt.time(8, 30), dt.time(17, 30)
NEXT_MORNING = dt.time(9, 0)
PROMISE = dt.timedelta(minutes=30)

CONVERSATION_TURNS = 20
TURN_CHARS = 500
REASON_CHARS = 500
NOTE_CHARS = 2000
CONTACT_CHARS = 128
SPEAKERS = ("citizen", "assistant")

_PHONE = re.compile(r"^\+?\d{7,20}$")


class CallbackNotFound(LookupError):
    pass


class CallbackConflict(RuntimeError):
    """The task is not in a state for this step (taken by someone else, already done)."""


class CallbackInvalid(ValueError):
    """Bad input, with the reason in words."""


def callback_due(now: dt.datetime) -> dt.datetime:
    """When a call-back asked for at `now` is due (the rule in the module docstring), as an aware UTC moment."""
    local = as_utc(now).astimezone(CITY_TZ)
    working_day = local.weekday() < 5
    if working_day and DAY_STARTS <= local.time() <= PROMISE_ENDS:
        return (local + PROMISE).astimezone(dt.UTC)
    morning = local.replace(hour=NEXT_MORNING.hour, minute=NEXT_MORNING.minute, second=0, microsecond=0)
    if not (working_day and local.time() < DAY_STARTS):
        morning = add_working_days(morning, 1)
    return morning.astimezone(dt.UTC)


def normalize_phone(phone: str | None) -> str | None:
    """The digits of a phone number ("138 1234 5678", "０７３１-８８８８６６６６"), or None; CallbackInvalid when it
    cannot be one."""
    if phone is None or not phone.strip():
        return None
    compact = re.sub(r"[\s\-–—()（）]", "", unicodedata.normalize("NFKC", phone))
    if not _PHONE.match(compact):
        raise CallbackInvalid("联系电话格式不对：请给手机号或座机号（7 至 20 位数字）")
    return compact


def bounded_conversation(conversation: Sequence[dict] | None) -> list[dict]:
    """The last CONVERSATION_TURNS turns, each masked, then cut to TURN_CHARS (masking first: a cut could split a
    phone number and leave its digits unmasked)."""
    turns = []
    for turn in list(conversation or [])[-CONVERSATION_TURNS:]:
        if not isinstance(turn, dict) or turn.get("who") not in SPEAKERS or not isinstance(turn.get("text"), str):
            raise CallbackInvalid(f"conversation turns are {{who: {'|'.join(SPEAKERS)}, text, at?}}")
        text = _bounded(mask_pii(turn["text"].replace("\x00", "")), TURN_CHARS)
        if text.strip():
            turns.append({"who": turn["who"], "text": text, "at": turn.get("at") if isinstance(turn.get("at"), str)
                          else None})
    return turns


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _clean(text: str | None, limit: int) -> str | None:
    if text is None or not text.strip():
        return None
    return _bounded(mask_pii(text.replace("\x00", "").strip()), limit)


def request_callback(session: Session, *, channel: str, contact: str, phone: str | None, reason: str | None,
                     conversation: Sequence[dict] | None, order_no: str | None,
                     now: dt.datetime) -> tuple[CallbackRequest, bool]:
    """(task, created): a new call-back task, or the contact's task still open (with the newer details)."""
    if channel not in CHANNELS:
        raise CallbackInvalid(f"channel must be one of {', '.join(CHANNELS)}")
    contact = (contact or "").strip()
    if not contact or len(contact) > CONTACT_CHARS or "\x00" in contact:
        raise CallbackInvalid(f"contact (the channel's user id) must be 1 to {CONTACT_CHARS} characters")
    phone = normalize_phone(phone)
    order_no = _known_order_no(session, order_no)
    turns = bounded_conversation(conversation)
    reason = _clean(reason, REASON_CHARS)
    existing = session.scalar(select(CallbackRequest)
                              .where(CallbackRequest.channel == channel, CallbackRequest.contact == contact,
                                     CallbackRequest.status.in_(OPEN_STATUSES))
                              .order_by(CallbackRequest.id).limit(1))
    if existing is not None:
        # The same citizen again: one call covers both requests; keep what the agent will want to know.
        existing.phone = existing.phone or phone
        existing.order_no = existing.order_no or order_no
        existing.reason = existing.reason or reason
        if len(turns) >= len(existing.conversation or []):
            existing.conversation = turns
        session.flush()
        return existing, False
    task = CallbackRequest(channel=channel, contact=contact, phone=phone, reason=reason, conversation=turns,
                           order_no=order_no, status="open", created_at=as_utc(now), due_at=callback_due(now))
    session.add(task)
    session.flush()
    return task, True


def _known_order_no(session: Session, order_no: str | None) -> str | None:
    """The order number as stored, if there is such an order; a number that names none is dropped for a citizen's
    request (they may have mistyped it) — see close_callback for the agent's."""
    if not order_no or not order_no.strip():
        return None
    number = unicodedata.normalize("NFKC", order_no).strip().upper()
    if "\x00" in number or len(number) > 32:
        return None
    return number if session.scalar(select(WorkOrder.id).where(WorkOrder.order_no == number)) else None


def open_callbacks(session: Session, limit: int = 50) -> list[dict]:
    """The agents' list: open and taken tasks, the most pressing first, masked (see callback_row)."""
    tasks = session.scalars(select(CallbackRequest).where(CallbackRequest.status.in_(OPEN_STATUSES))
                            .order_by(CallbackRequest.due_at, CallbackRequest.id).limit(limit))
    return [callback_row(task) for task in tasks]


def callback_row(task: CallbackRequest, *, now: dt.datetime | None = None) -> dict:
    """A task as staff see it in lists: the phone masked, the conversation as stored (masked at intake)."""
    due = as_utc(task.due_at)
    current = as_utc(now) if now else dt.datetime.now(dt.UTC)
    return {"id": task.id, "channel": task.channel, "status": task.status, "status_label": STATUS_LABELS[task.status],
            "phone": mask_phone(task.phone) if task.phone else None, "reason": task.reason,
            "conversation": list(task.conversation or []), "order_no": task.order_no,
            "created_at": as_utc(task.created_at).isoformat(), "due_at": due.isoformat(),
            "overdue": task.status != "done" and due < current,
            "taken_by": task.taken_by, "done_at": as_utc(task.done_at).isoformat() if task.done_at else None,
            "note": task.note}


def get_callback(session: Session, *, id: int) -> CallbackRequest:
    task = session.get(CallbackRequest, id)
    if task is None:
        raise CallbackNotFound(f"no call-back task {id}")
    return task


def take_callback(session: Session, *, id: int, actor: str) -> CallbackRequest:
    """An agent takes the task (taking it again is a no-op); someone else's task is a CallbackConflict."""
    task = get_callback(session, id=id)
    if task.status == "done":
        raise CallbackConflict("这条回电任务已经办结")
    if task.status == "taken" and task.taken_by != actor:
        raise CallbackConflict(f"这条回电任务已由 {task.taken_by} 认领")
    task.status, task.taken_by = "taken", actor
    session.flush()
    return task


def close_callback(session: Session, *, id: int, actor: str, note: str | None, order_no: str | None,
                   now: dt.datetime | None = None) -> CallbackRequest:
    """The call is made: done, with what was said (note) and the order filed or looked at in the call, if any.
    An open task is closed by whoever calls back; a task another agent took stays theirs."""
    task = get_callback(session, id=id)
    if task.status == "done":
        raise CallbackConflict("这条回电任务已经办结")
    if task.status == "taken" and task.taken_by != actor:
        raise CallbackConflict(f"这条回电任务已由 {task.taken_by} 认领，请由认领人办结")
    if order_no and order_no.strip():
        known = _known_order_no(session, order_no)
        if known is None:
            raise CallbackInvalid(f"没有工单 {order_no.strip()[:32]}")
        task.order_no = known
    task.status, task.taken_by = "done", task.taken_by or actor
    task.note = _clean(note, NOTE_CHARS)
    task.done_at = as_utc(now) if now else dt.datetime.now(dt.UTC)
    session.flush()
    return task
