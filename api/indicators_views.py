"""HTTP access to the indicators (one definition each, in orders/indicators.py)."""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from api.orders_views import Principal, _sessions, require_scope
from orders import indicators as ind

router = APIRouter(prefix="/api/v1/indicators", tags=["indicators"])

SINGLE = {"order_count": ind.order_count, "completion_rate": ind.completion_rate,
          "average_handling_hours": ind.average_handling_hours, "average_dispatch_minutes": ind.average_dispatch_minutes,
          "satisfaction_rate": ind.satisfaction_rate, "reopen_rate": ind.reopen_rate,
          "return_ranking": ind.return_ranking, "dispatch_accuracy": ind.dispatch_accuracy,
          "auto_dispatch_rate": ind.auto_dispatch_rate, "repeat_requests": ind.repeat_requests}
GROUPS = {"on_time_rates": ind.on_time_rates, "overdue": ind.overdue}


def _scope(start: dt.date, end: dt.date, district: str | None, street: str | None, category: str | None,
           department: str | None, channel: str | None) -> ind.Scope:
    if end <= start:
        raise HTTPException(422, "end must be after start")
    if (end - start).days > 366:
        raise HTTPException(422, "a period may span at most 366 days")
    as_utc = lambda day: dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)  # noqa: E731
    return ind.Scope(as_utc(start), as_utc(end), district, street, category, department, channel)


@router.get("")
def list_indicators() -> dict:
    return {"indicators": sorted([*SINGLE, *GROUPS, "ranking"]), "dimensions": sorted(ind.DIMENSIONS)}


@router.get("/{name}")
def indicator(name: str, request: Request, principal: Annotated[Principal, Depends(require_scope("indicators:read"))],
              start: Annotated[dt.date, Query(description="first day (inclusive)")],
              end: Annotated[dt.date, Query(description="last day (exclusive)")],
              district: str | None = None, street: str | None = None, category: str | None = None,
              department: str | None = None, channel: str | None = None, dimension: str | None = None,
              compare: Annotated[bool, Query(description="also the previous period of the same length")] = False
              ) -> dict:
    """One indicator for a period and filters: value, numerator, denominator, definition (口径), breakdown."""
    scope = _scope(start, end, district, street, category, department, channel)
    with _sessions(request)() as session:
        if name == "ranking":
            if dimension not in ind.DIMENSIONS:
                raise HTTPException(422, f"dimension must be one of {', '.join(ind.DIMENSIONS)}")
            return asdict(ind.ranking(session, scope, dimension))
        if name in GROUPS:
            return {key: asdict(value) for key, value in GROUPS[name](session, scope).items()}
        if name not in SINGLE:
            raise HTTPException(404, f"unknown indicator {name!r}")
        if compare:
            result = ind.with_previous(SINGLE[name], session, scope)
            return {"current": asdict(result["current"]), "previous": asdict(result["previous"]),
                    "change": result["change"]}
        return asdict(SINGLE[name](session, scope))
