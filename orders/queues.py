"""The work queues staff pick orders from, and the routing decision stored with each order.

- intake: orders an agent must confirm (the router only suggested a department);
- review: disputed responsibility (职责交叉, the router said `review`) and orders a unit returned — joint review by
  dispatchers;
- department: a unit's open orders (child orders of co-handlers included), the one that runs out of time first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from orders.lifecycle import State
from orders.models import RoutingDecision, WorkOrder

Queue = Literal["intake", "review", "department"]
QUEUE_STATES: dict[str, tuple[State, ...]] = {
    "intake": (State.RECEIVED, State.ACCEPTED),
    "review": (State.RECEIVED, State.ACCEPTED, State.RETURNED),
    "department": (State.DISPATCHED, State.SIGNED, State.HANDLING, State.COMPLETED),
}
MAX_SCANNED = 5000   # a queue longer than this is a backlog to fix, not a list to show


@dataclass(frozen=True)
class QueueItem:
    order: WorkOrder
    decision: RoutingDecision | None


def latest_decision(session: Session, *, order: WorkOrder) -> RoutingDecision | None:
    """The router's last answer for an order (at intake, or a later re-route)."""
    return session.scalar(select(RoutingDecision).where(RoutingDecision.order_id == order.id)
                          .order_by(RoutingDecision.id.desc()).limit(1))


def _belongs(queue: Queue, order: WorkOrder, decision: RoutingDecision | None) -> bool:
    disputed = decision is not None and decision.decision == "review"
    if queue == "intake":
        return order.state != State.RETURNED and not disputed
    if queue == "review":
        return order.state == State.RETURNED or disputed
    return True


def queue_items(session: Session, *, queue: Queue, department_code: str | None = None) -> list[QueueItem]:
    """The orders of a queue in working order: a department's by deadline (none last), the others urgent first,
    then first come first served."""
    query = select(WorkOrder).where(WorkOrder.state.in_(QUEUE_STATES[queue]))
    if queue == "department":
        query = query.where(WorkOrder.department_code == department_code)
    else:
        query = query.where(WorkOrder.parent_id.is_(None))   # a co-handler's child order is the unit's, not ours
    orders = list(session.scalars(query.order_by(WorkOrder.created_at).limit(MAX_SCANNED)))
    decisions = {d.order_id: d for d in session.scalars(
        select(RoutingDecision).where(RoutingDecision.order_id.in_([o.id for o in orders]))
        .order_by(RoutingDecision.id))} if orders else {}
    items = [QueueItem(order, decisions.get(order.id)) for order in orders
             if _belongs(queue, order, decisions.get(order.id))]
    if queue == "department":
        items.sort(key=lambda i: (i.order.deadline_at is None, i.order.deadline_at or i.order.created_at))
    else:
        items.sort(key=lambda i: i.order.urgency != "紧急")
    return items
