"""Masking stored texts again after the masker learned more (review 2026-12-06, M4: names people introduce, room
numbers, plates, bank cards, e-mail…).

`text_masked` is what analytics, search, the staff lists, department webhooks and the cockpit read; it is made once
at intake. Orders stored before a masking change keep the old masking until `hotline orders remask` runs this over
them. The unmasked `text` is the source, so running it twice changes nothing the second time.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nlp.pii import mask_pii
from orders.models import WorkOrder


@dataclass
class RemaskStep:
    last_id: int
    seen: int
    changed: int


def orders_to_remask(session: Session) -> int:
    return session.scalar(select(func.count(WorkOrder.id))) or 0


def remask_after(session: Session, *, after_id: int, limit: int = 500) -> RemaskStep:
    """Mask again up to `limit` orders with an id above `after_id`, in id order; the step says where it stopped."""
    rows = session.execute(select(WorkOrder.id, WorkOrder.text, WorkOrder.text_masked)
                           .where(WorkOrder.id > after_id).order_by(WorkOrder.id).limit(limit)).all()
    changed = 0
    for order_id, text, stored in rows:
        masked = mask_pii(text or "")
        if masked != stored:
            session.execute(WorkOrder.__table__.update().where(WorkOrder.id == order_id).values(text_masked=masked))
            changed += 1
    return RemaskStep(rows[-1].id if rows else after_id, len(rows), changed)
