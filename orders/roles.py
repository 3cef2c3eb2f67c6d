"""Who may do, see and act on what: one table for every role, read by the lifecycle (`orders.service`), the API's
authorisation (`api.routes.orders.require_scope`, the work views) and staff accounts (`api.auth.staff`).

A role rule says:
- `scopes`: what a staff member of that role may call through the API (machine clients get their key's scopes);
- `actions`: the lifecycle steps they may take on an order;
- `sees`: which orders they see — all of them, or only those their department holds ("department");
- `centre`: whether they work in the 12345 centre (queues, joint review, returns, the unfiled WeChat messages);
- `supervises`: whether they see the supervision and follow-up lists;
- `screens`: the staff web screens (api/screens/) the role works in: `desk` (坐席受理), `review` (派单/联合研判),
  `department` (承办单位), `supervision` (督办与回访), `cockpit` (驾驶舱), `admin` (管理);
- `merges`: whether they may merge callers' orders about one event into a handling order, or link orders
  (orders/merge.py): the centre decides what is one event, not a department judging its own load.

A new rule goes here, in the table, with its why; the places that check it ask this module.
"""
from __future__ import annotations

from dataclasses import dataclass

from orders.lifecycle import Action


@dataclass(frozen=True)
class RoleRule:
    label: str
    scopes: frozenset[str]
    actions: frozenset[Action]
    sees: str = "all"              # "all" | "department"
    centre: bool = False
    supervises: bool = False
    merges: bool = False
    staff: bool = True             # an account of this role can be created (system and citizen cannot)
    screens: tuple[str, ...] = ()  # in the order the landing page lists them


# A department asks for more time (extend_request); only the centre moves a deadline (extend_approve, or extend on
# its own decision). A department handler acts only on orders held by their own department.
EXTENSION_REVIEW = frozenset({Action.APPROVE_EXTENSION, Action.REFUSE_EXTENSION})
_READ_WRITE = frozenset({"orders:read", "orders:write"})

RULES: dict[str, RoleRule] = {
    "agent": RoleRule("坐席", _READ_WRITE | {"route"},
                      frozenset({Action.ACCEPT, Action.REJECT, Action.DISPATCH, Action.RATE, Action.REOPEN}),
                      centre=True, merges=True, screens=("desk",)),
    "dispatcher": RoleRule("派单员", _READ_WRITE | {"route"},
                           frozenset({Action.ACCEPT, Action.REJECT, Action.DISPATCH, Action.APPROVE, Action.SEND_BACK,
                                      Action.REOPEN, Action.ARCHIVE, Action.SUPERVISE, Action.EXTEND,
                                      *EXTENSION_REVIEW}),
                           centre=True, merges=True, screens=("review", "desk")),
    "handler": RoleRule("承办人员", _READ_WRITE,
                        frozenset({Action.SIGN, Action.RETURN, Action.HANDLE, Action.REQUEST_EXTENSION,
                                   Action.COMPLETE}),
                        sees="department", supervises=True, screens=("department",)),
    # 回访 (the follow-up call and its satisfaction) is the supervision office's work in most centres; supervisors
    # read the indicators and alerts their 督办 list is driven by (review 2026-12-06, feature 22).
    "supervisor": RoleRule("督办人员", _READ_WRITE | {"indicators:read"},
                           frozenset({Action.SUPERVISE, Action.RATE, *EXTENSION_REVIEW}), centre=True,
                           supervises=True, merges=True, screens=("supervision", "cockpit", "review")),
    "official": RoleRule("领导", frozenset({"orders:read", "indicators:read"}), frozenset(), supervises=True,
                         screens=("cockpit", "supervision")),
    "admin": RoleRule("管理员", _READ_WRITE | {"kb:write", "route", "indicators:read", "metrics:read", "access:admin"},
                      frozenset(Action), centre=True, supervises=True, merges=True,
                      screens=("desk", "review", "department", "supervision", "cockpit", "admin")),
    # Not accounts: the service's machine clients (their key's scopes) and citizens (through the channels).
    "system": RoleRule("系统", frozenset(), frozenset(Action), centre=True, supervises=True, merges=True,
                       staff=False),
    "citizen": RoleRule("市民", frozenset(), frozenset({Action.RATE, Action.REOPEN}), sees="none", staff=False),
}

STAFF_ROLES: tuple[str, ...] = tuple(role for role, rule in RULES.items() if rule.staff)


def rule(role: str) -> RoleRule | None:
    return RULES.get(role)


def may_act(role: str, action: Action) -> bool:
    found = RULES.get(role)
    return bool(found) and action in found.actions


def may_merge(role: str) -> bool:
    found = RULES.get(role)
    return bool(found) and found.merges


def scopes_of(role: str) -> frozenset[str]:
    found = RULES.get(role)
    return found.scopes if found else frozenset()


def sees_order(role: str, department_code: str | None, order_department: str | None) -> bool:
    """A department handler sees only orders their department holds (a lead order's co-handler sees its child)."""
    found = RULES.get(role)
    if found is None or found.sees == "none":
        return False
    return found.sees == "all" or (department_code is not None and order_department == department_code)


def acts_on(role: str, department_code: str | None, order_department: str | None) -> bool:
    """Whether a role's step may touch this order: a department's handler only on what their department holds."""
    found = RULES.get(role)
    return found is not None and (found.sees != "department" or
                                  (department_code is not None and order_department == department_code))


def in_centre(role: str) -> bool:
    found = RULES.get(role)
    return bool(found) and found.centre


def supervises(role: str) -> bool:
    found = RULES.get(role)
    return bool(found) and found.supervises


def screens_of(role: str) -> tuple[str, ...]:
    found = RULES.get(role)
    return found.screens if found else ()
