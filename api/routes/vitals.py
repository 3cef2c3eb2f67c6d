"""HTTP access to the city vitals (城市体征, orders/vitals/): the latest readings with their levels, and one series."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from api.deps import IndicatorsReader as Reader
from api.deps import SessionsDep
from hotline.core.clock import CITY_TZ, as_utc, utcnow
from orders.vitals.models import DOMAINS as VITAL_DOMAINS
from orders.vitals.models import LEVEL_LABELS as VITAL_LEVEL_LABELS
from orders.vitals.readings import UnknownMetric, latest_readings, series

router = APIRouter(prefix="/api/v1/vitals", tags=["vitals"])


def _city_time(moment: dt.datetime) -> dt.datetime:
    return as_utc(moment, naive_is=CITY_TZ)   # a naive time in the query is the city's clock


@router.get("")
def latest_vitals(sessions: SessionsDep, principal: Reader,
                  area: Annotated[str | None, Query(max_length=64, description="e.g. 全市, 岳麓区")] = None,
                  domain: Annotated[str | None, Query(description="/".join(VITAL_DOMAINS))] = None,
                  metric: Annotated[str | None, Query(max_length=64, description="one sign's code, e.g. pm25")] = None
                  ) -> dict:
    """The latest value of every vital sign (by area) with its level: 告警, 预警, 正常 (or 未设阈值), and whether it is
    stale (no new point for more than two of its reporting intervals)."""
    if domain and domain not in VITAL_DOMAINS:
        raise HTTPException(422, f"domain must be one of {'/'.join(VITAL_DOMAINS)}")
    with sessions() as session:
        readings = latest_readings(session, metric=metric, area=area, domain=domain)
    levels = {VITAL_LEVEL_LABELS[level]: sum(r.level == level for r in readings) for level in VITAL_LEVEL_LABELS}
    return {"vitals": [r.to_json() for r in readings], "levels": levels, "stale": sum(r.stale for r in readings)}


@router.get("/{metric}")
def vital_series(sessions: SessionsDep, principal: Reader,
                 metric: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")],
                 start: Annotated[dt.datetime | None, Query(description="from (inclusive; no offset = Beijing time); "
                                                                        "default 30 days before end")] = None,
                 end: Annotated[dt.datetime | None, Query(description="until (exclusive); default now")] = None,
                 area: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    """The points of one vital sign in a period, by area, each with its level, and its thresholds."""
    until = _city_time(end) if end else utcnow()
    since = _city_time(start) if start else until - dt.timedelta(days=30)
    if until <= since:
        raise HTTPException(422, "end must be after start")
    if until - since > dt.timedelta(days=366):
        raise HTTPException(422, "a period may span at most 366 days")
    with sessions() as session:
        try:
            return series(session, metric=metric, start=since, end=until, area=area)
        except UnknownMetric as exc:
            raise HTTPException(404, str(exc)) from None
