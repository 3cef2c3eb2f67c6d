"""Finding orders for staff and systems: by state, unit, district, channel, period and words of the masked text."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, joinedload

from orders.models import WorkOrder


def search_orders(session: Session, *, state: str | None = None, department_code: str | None = None,
                  district_adcode: str | None = None, channel: str | None = None, start: dt.datetime | None = None,
                  end: dt.datetime | None = None, words: Sequence[str] = (), category_prefix: str | None = None,
                  street_id: str | None = None, limit: int = 50, offset: int = 0) -> list[WorkOrder]:
    """Orders matching every filter given, newest first; `end` is exclusive, words match the masked text (the
    only text staff lists show)."""
    query = select(WorkOrder)
    for column, value in ((WorkOrder.state, state), (WorkOrder.department_code, department_code),
                          (WorkOrder.district_adcode, district_adcode), (WorkOrder.channel, channel),
                          (WorkOrder.street_id, street_id)):
        if value:
            query = query.where(column == value)
    if start:
        query = query.where(WorkOrder.created_at >= start)
    if end:
        query = query.where(WorkOrder.created_at < end)
    for word in words:
        query = query.where(WorkOrder.text_masked.contains(word, autoescape=True))
    if category_prefix:   # 大类 or 大类/子类: the path itself or below it
        query = query.where((WorkOrder.category_path == category_prefix)
                            | WorkOrder.category_path.startswith(category_prefix + "/", autoescape=True))
    return list(session.scalars(query.order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc())
                                .offset(offset).limit(limit)))


def orders_of_caller(session: Session, *, phone: str | None = None, openid: str | None = None,
                     limit: int = 10) -> tuple[int, list[WorkOrder]]:
    """(how many orders this caller filed, the latest `limit` of them): the agent's 来电历史 for a phone number or a
    WeChat/web user. Nothing for a caller with neither."""
    if not phone and not openid:
        return 0, []
    condition = WorkOrder.caller_phone == phone if phone else WorkOrder.caller_openid == openid
    own = or_(WorkOrder.role.is_(None), WorkOrder.role != "co")   # a co-handler's copy is not another call
    total = session.scalar(select(func.count()).select_from(WorkOrder).where(condition, own))
    latest = session.scalars(select(WorkOrder).where(condition, own)
                             .order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc()).limit(limit))
    return int(total or 0), list(latest)


def find_order(session: Session, *, order_no: str, with_steps: bool = False) -> WorkOrder | None:
    """The order with this number, or None. A NUL never matches (PostgreSQL would refuse it in the query).
    `with_steps`: its events and child orders come in the same query (one round trip, not three)."""
    if "\x00" in order_no:
        return None
    query = select(WorkOrder).where(WorkOrder.order_no == order_no)
    if with_steps:
        query = query.options(joinedload(WorkOrder.events), joinedload(WorkOrder.children))
    return session.scalars(query).unique().first()
