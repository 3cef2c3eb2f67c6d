"""The work-order lifecycle as an explicit state machine (domain.md §2), and deadline arithmetic.

上报 → 受理 → 派单 → 签收 | 退单 → 办理 (延期申请 → 中心审批) → 办结待审核 → 办结 → 回访评价 → 归档, 重办 when the citizen is not
satisfied. Every move is checked here; an illegal one is refused with a reason in words. No database code here.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    RECEIVED = "received"        # 已登记（上报/发现）
    ACCEPTED = "accepted"        # 已受理（立案）
    REJECTED = "rejected"        # 不予受理
    DISPATCHED = "dispatched"    # 已派单
    SIGNED = "signed"            # 已签收
    RETURNED = "returned"        # 已退单（待重新派单）
    HANDLING = "handling"        # 办理中
    COMPLETED = "completed"      # 已办结待审核
    CLOSED = "closed"            # 已办结
    RATED = "rated"              # 已回访评价
    ARCHIVED = "archived"        # 已归档


STATE_LABELS = {
    State.RECEIVED: "已登记", State.ACCEPTED: "已受理", State.REJECTED: "不予受理", State.DISPATCHED: "已派单",
    State.SIGNED: "已签收", State.RETURNED: "已退单", State.HANDLING: "办理中", State.COMPLETED: "已办结待审核",
    State.CLOSED: "已办结", State.RATED: "已回访", State.ARCHIVED: "已归档",
}

OPEN_STATES = {State.RECEIVED, State.ACCEPTED, State.DISPATCHED, State.SIGNED, State.RETURNED, State.HANDLING,
               State.COMPLETED}


class Action(StrEnum):
    ACCEPT = "accept"                  # 受理
    REJECT = "reject"                  # 不予受理 (reason)
    DISPATCH = "dispatch"              # 派单 (department, mode)
    SIGN = "sign"                      # 签收 (by the department)
    RETURN = "return"                  # 退单 (reason, at_fault)
    HANDLE = "handle"                  # 办理记录 (note)
    EXTEND = "extend"                  # 延期 (days, reason): the centre itself moves the deadline
    REQUEST_EXTENSION = "extend_request"   # 延期申请 (days, reason): a department asks; the deadline stays
    APPROVE_EXTENSION = "extend_approve"   # 延期审批通过: the centre grants the pending request's days
    REFUSE_EXTENSION = "extend_refuse"     # 延期审批不通过 (reason): the deadline stays
    COMPLETE = "complete"              # 办结 (result)
    APPROVE = "approve"                # 审核通过
    SEND_BACK = "send_back"            # 审核不通过，退回重办 (reason)
    RATE = "rate"                      # 回访评价 (satisfaction)
    REOPEN = "reopen"                  # 重办 (reason)
    ARCHIVE = "archive"                # 归档
    SUPERVISE = "supervise"            # 督办 (type, note)


ACTION_LABELS = {
    Action.ACCEPT: "受理", Action.REJECT: "不予受理", Action.DISPATCH: "派单", Action.SIGN: "签收", Action.RETURN: "退单",
    Action.HANDLE: "办理", Action.EXTEND: "延期", Action.COMPLETE: "办结", Action.APPROVE: "审核通过",
    Action.SEND_BACK: "审核退回", Action.RATE: "回访评价", Action.REOPEN: "重办", Action.ARCHIVE: "归档",
    Action.SUPERVISE: "督办", Action.REQUEST_EXTENSION: "申请延期", Action.APPROVE_EXTENSION: "批准延期",
    Action.REFUSE_EXTENSION: "驳回延期",
}

# action -> (states it may start from, state it leads to; None = stays where it is)
TRANSITIONS: dict[Action, tuple[frozenset[State], State | None]] = {
    Action.ACCEPT: (frozenset({State.RECEIVED}), State.ACCEPTED),
    Action.REJECT: (frozenset({State.RECEIVED, State.ACCEPTED}), State.REJECTED),
    # 派单 from acceptance, after a return (改派), or while handling (转办 to another unit by the centre).
    Action.DISPATCH: (frozenset({State.ACCEPTED, State.RETURNED, State.SIGNED, State.HANDLING}), State.DISPATCHED),
    Action.SIGN: (frozenset({State.DISPATCHED}), State.SIGNED),
    Action.RETURN: (frozenset({State.DISPATCHED, State.SIGNED}), State.RETURNED),
    Action.HANDLE: (frozenset({State.SIGNED, State.HANDLING}), State.HANDLING),
    Action.EXTEND: (frozenset({State.SIGNED, State.HANDLING}), None),
    # 延期申请 → 审批: only one request may be pending; the deadline moves only when the centre approves.
    Action.REQUEST_EXTENSION: (frozenset({State.SIGNED, State.HANDLING}), None),
    Action.APPROVE_EXTENSION: (frozenset({State.SIGNED, State.HANDLING}), None),
    Action.REFUSE_EXTENSION: (frozenset({State.SIGNED, State.HANDLING}), None),
    Action.COMPLETE: (frozenset({State.SIGNED, State.HANDLING}), State.COMPLETED),
    Action.APPROVE: (frozenset({State.COMPLETED}), State.CLOSED),
    Action.SEND_BACK: (frozenset({State.COMPLETED}), State.HANDLING),
    Action.RATE: (frozenset({State.CLOSED}), State.RATED),
    Action.REOPEN: (frozenset({State.CLOSED, State.RATED}), State.DISPATCHED),
    Action.ARCHIVE: (frozenset({State.CLOSED, State.RATED, State.REJECTED}), State.ARCHIVED),
    Action.SUPERVISE: (frozenset(OPEN_STATES), None),
}

REQUIRED_FIELDS: dict[Action, tuple[str, ...]] = {
    Action.REJECT: ("reason",),
    Action.DISPATCH: ("department_code",),
    Action.RETURN: ("reason", "at_fault"),
    Action.HANDLE: ("note",),
    Action.EXTEND: ("days", "reason"),
    Action.REQUEST_EXTENSION: ("days", "reason"),
    Action.REFUSE_EXTENSION: ("reason",),
    Action.COMPLETE: ("result",),
    Action.SEND_BACK: ("reason",),
    Action.RATE: ("satisfaction",),
    Action.REOPEN: ("reason",),
    Action.SUPERVISE: ("supervision_type",),
}

SATISFACTION = ("满意", "基本满意", "不满意")
SUPERVISION_TYPES = ("系统督办", "书面督办", "联合督办", "专项督办")
DISPATCH_MODES = ("auto", "manual", "smart", "assisted")   # 自动 / 人工 / 智能 / 人机联动
MAX_EXTENSION_DAYS = 30


class IllegalTransition(ValueError):
    """The action is not allowed now; `reason` says why in words an agent can act on."""

    def __init__(self, action: str, state: str, reason: str):
        self.action, self.state, self.reason = action, state, reason
        super().__init__(reason)


def next_state(state: State, action: Action, data: dict) -> State:
    """The state after `action`, or IllegalTransition naming what is wrong."""
    allowed_from, target = TRANSITIONS[action]
    if state not in allowed_from:
        allowed = "、".join(STATE_LABELS[s] for s in sorted(allowed_from, key=list(State).index))
        raise IllegalTransition(action, state, f"工单当前状态为“{STATE_LABELS[state]}”，不能{ACTION_LABELS[action]}"
                                               f"（只有在{allowed}状态下可以）")
    missing = [f for f in REQUIRED_FIELDS.get(action, ()) if data.get(f) in (None, "")]
    if missing:
        raise IllegalTransition(action, state, f"{ACTION_LABELS[action]}需要填写：{'、'.join(missing)}")
    if action == Action.RATE and data["satisfaction"] not in SATISFACTION:
        raise IllegalTransition(action, state, f"满意度只能是 {'/'.join(SATISFACTION)}")
    if action == Action.SUPERVISE and data["supervision_type"] not in SUPERVISION_TYPES:
        raise IllegalTransition(action, state, f"督办类型只能是 {'/'.join(SUPERVISION_TYPES)}")
    if action in (Action.EXTEND, Action.REQUEST_EXTENSION) and not (isinstance(data["days"], int)
                                                               and 1 <= data["days"] <= MAX_EXTENSION_DAYS):
        raise IllegalTransition(action, state, f"延期天数须为 1–{MAX_EXTENSION_DAYS} 个工作日")
    if action == Action.DISPATCH and data.get("mode", "manual") not in DISPATCH_MODES:
        raise IllegalTransition(action, state, f"派单方式只能是 {'/'.join(DISPATCH_MODES)}")
    if action == Action.RETURN and not isinstance(data["at_fault"], bool):
        raise IllegalTransition(action, state, "退单须说明是否有责（at_fault: true/false）")
    return target or state


# -- deadlines ---------------------------------------------------------------------------------------------
def add_working_days(start: dt.datetime, days: int) -> dt.datetime:
    """`days` working days after `start` (Monday–Friday; public holidays are not modelled yet)."""
    current, remaining = start, days
    while remaining > 0:
        current += dt.timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current


@dataclass(frozen=True)
class Timeliness:
    label: str        # 提前办结 / 按时办结 / 临期办结 / 超期办结 / 严重超期办结, or for open orders 正常 / 临期 / 超期 / 严重超期
    used: float       # share of the time limit used (1.0 = exactly the deadline)


# Shares of the time limit: the one definition (口径) every indicator uses.
EARLY_SHARE, DUE_SOON_SHARE, SEVERE_SHARE = 0.5, 0.8, 2.0


def timeliness(started: dt.datetime, deadline: dt.datetime, *, finished: dt.datetime | None = None,
               now: dt.datetime | None = None) -> Timeliness:
    """Where an order stands against its deadline (finished orders: how they finished)."""
    end = finished or now or dt.datetime.now(dt.UTC)
    allowed = max((deadline - started).total_seconds(), 1.0)
    used = (end - started).total_seconds() / allowed
    if finished is not None:
        if used <= EARLY_SHARE:
            label = "提前办结"
        elif used <= DUE_SOON_SHARE:
            label = "按时办结"
        elif used <= 1.0:
            label = "临期办结"
        elif used <= SEVERE_SHARE:
            label = "超期办结"
        else:
            label = "严重超期办结"
    else:
        label = "正常" if used <= DUE_SOON_SHARE else "临期" if used <= 1.0 else "超期" if used <= SEVERE_SHARE else "严重超期"
    return Timeliness(label, round(used, 4))
