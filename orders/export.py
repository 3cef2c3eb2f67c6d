"""The orders of a period as spreadsheet rows (CSV for reports): masked, and safe to open in Excel or WPS."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from nlp.pii import mask_phone, mask_pii
from orders.lifecycle import STATE_LABELS, State
from orders.models import WorkOrder

EXPORT_COLUMNS = ["order_no", "created_at", "channel", "state", "state_label", "category", "district_adcode",
                  "street_id", "address", "department_code", "urgency", "deadline_at", "completed_at", "satisfaction",
                  "caller_phone", "text"]

# A cell starting with one of these runs as a formula in Excel or WPS (=HYPERLINK leaks data, +cmd| is DDE; tab and
# CR are skipped before one). The text and address are the citizen's, so every cell starting so is prefixed with '
# and shows as text (the OWASP rule; review 2026-12-06, M5).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def export_rows(session: Session, *, start: dt.datetime, end: dt.datetime, department_code: str | None = None,
                district_adcode: str | None = None) -> Iterator[list[str]]:
    """One row of cells per order created in [start, end), in EXPORT_COLUMNS order, oldest first."""
    query = select(WorkOrder).where(WorkOrder.created_at >= start, WorkOrder.created_at < end)
    if department_code:
        query = query.where(WorkOrder.department_code == department_code)
    if district_adcode:
        query = query.where(WorkOrder.district_adcode == district_adcode)
    for order in session.scalars(query.order_by(WorkOrder.id)):
        yield [csv_cell(value) for value in (
            order.order_no, order.created_at.isoformat(), order.channel, order.state,
            STATE_LABELS[State(order.state)], order.category_path, order.district_adcode, order.street_id,
            order.address, order.department_code, order.urgency,
            order.deadline_at.isoformat() if order.deadline_at else "",
            order.completed_at.isoformat() if order.completed_at else "", order.satisfaction or "",
            # Masked again: rows stored before the masking learnt a form (names, rooms, cards…) are masked now too.
            mask_phone(order.caller_phone) if order.caller_phone else "", mask_pii(order.text_masked or ""))]
