"""Finding orders for staff and systems: by state, unit, district, channel, period and words of the masked text."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from orders.models import WorkOrder


def search_orders(session: Session, *, state: str | None = None, department_code: str | None = None,
                  district_adcode: str | None = None, channel: str | None = None, start: dt.datetime | None = None,
                  end: dt.datetime | None = None, words: Sequence[str] = (), limit: int = 50,
                  offset: int = 0) -> list[WorkOrder]:
    """Orders matching every filter given, newest first; `end` is exclusive, words match the masked text (the
    only text staff lists show)."""
    query = select(WorkOrder)
    for column, value in ((WorkOrder.state, state), (WorkOrder.department_code, department_code),
                          (WorkOrder.district_adcode, district_adcode), (WorkOrder.channel, channel)):
        if value:
            query = query.where(column == value)
    if start:
        query = query.where(WorkOrder.created_at >= start)
    if end:
        query = query.where(WorkOrder.created_at < end)
    for word in words:
        query = query.where(WorkOrder.text_masked.contains(word, autoescape=True))
    return list(session.scalars(query.order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc())
                                .offset(offset).limit(limit)))
