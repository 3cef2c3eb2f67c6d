"""An agent's 派单: confirm the router's suggested department (人机联动) or pick another (人工).

The order is accepted first when it is still only received, then dispatched; a changed department marks the stored
routing decision wrong, and the caller hands the complaint to the router's correction memory after the commit.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from orders.lifecycle import Action, State
from orders.models import WorkOrder
from orders.queues import latest_decision
from orders.service import Actor, apply_action


class NothingToConfirm(ValueError):
    """No department named and no suggestion to confirm, or a department the knowledge base does not know."""


@dataclass(frozen=True)
class Confirmed:
    order: WorkOrder
    department_code: str
    changed: bool          # the agent chose another unit than the router: the router should learn it


def confirm_department(session: Session, *, order: WorkOrder, actor: Actor, department_code: str | None = None,
                       co_handlers: list[str] | None = None, note: str | None = None,
                       expected_version: int | None = None, known_departments: set[str] | None = None) -> Confirmed:
    decision = latest_decision(session, order=order)
    suggested = decision.department_code if decision else None
    department = department_code or suggested
    if not department:
        raise NothingToConfirm("no suggestion to confirm: name a department_code")
    if known_departments and department not in known_departments:
        raise NothingToConfirm(f"unknown department {department!r}")
    if order.state == State.RECEIVED:
        apply_action(session, order_id=order.id, action=Action.ACCEPT, actor=actor, expected_version=expected_version)
        expected_version = None   # checked once, before the first step
    changed = suggested is not None and department != suggested
    apply_action(session, order_id=order.id, action=Action.DISPATCH, actor=actor, expected_version=expected_version,
                 department_code=department, co_handlers=co_handlers or [], mode="manual" if changed else "assisted",
                 note=note)
    if changed and decision is not None and decision.correct is None:
        decision.correct, decision.final_department_code = False, department
    return Confirmed(order, department, changed)
