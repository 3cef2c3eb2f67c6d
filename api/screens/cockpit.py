"""驾驶舱 (/cockpit): the officials' picture of the city's requests, drawn with Apache ECharts (served by the app).

The page is a shell: its script asks the indicator API (`/api/v1/indicators…`, `/api/v1/vitals`) for every number,
with the staff cookie (read-only requests accept it), so each figure on it is the API's figure for the same filters
— one definition each, from orders/indicators/catalogue.py. Filters (period, district, 大类, channel) are the page's
query string; a district on the map or a category bar drills down; "查看工单" lists the orders behind a view.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response

from api.deps import LoadedRouterDep, Principal, SessionsDep, SettingsDep, department_names
from api.screens.session import staff_screen
from api.screens.templating import render
from hotline.core.clock import CITY_TZ, city_midnight
from orders.indicators.catalogue import CHANNEL_LABELS
from orders.lifecycle import STATE_LABELS, State
from orders.search import search_orders

router = APIRouter(include_in_schema=False)
Official = Annotated[Principal, Depends(staff_screen("cockpit"))]
PERIODS = {"day": "今日", "week": "本周", "month": "本月", "quarter": "本季度", "year": "本年"}
REFRESH_S = 300   # a wall screen redraws itself every five minutes
COCKPIT_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                  "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def period_range(period: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """[first day, day after the last) of the period that contains `today`, on the city's calendar."""
    if period == "day":
        return today, today + dt.timedelta(days=1)
    if period == "week":
        start = today - dt.timedelta(days=today.weekday())
        return start, start + dt.timedelta(days=7)
    if period == "quarter":
        start = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    elif period == "year":
        start = dt.date(today.year, 1, 1)
    else:
        start = today.replace(day=1)
    months = {"quarter": 3, "year": 12}.get(period, 1)
    month = start.month - 1 + months
    return start, dt.date(start.year + month // 12, month % 12 + 1, 1)


@router.get("/cockpit")
def cockpit(request: Request, staff: Official, router_: LoadedRouterDep,
            period: Annotated[str, Query(max_length=8)] = "month",
            start: dt.date | None = None, end: dt.date | None = None,
            district: Annotated[str, Query(max_length=12)] = "",
            category: Annotated[str, Query(max_length=64)] = "",
            channel: Annotated[str, Query(max_length=16)] = "") -> Response:
    today = dt.datetime.now(CITY_TZ).date()
    if start and end and end > start and (end - start).days <= 366:
        period = "custom"
    else:
        start, end = period_range(period if period in PERIODS else "month", today)
        # The days gone so far: 本月 on the 7th compares 7 days with the 7 days before (环比) and with the same
        # dates a year ago (同比), not a month that has barely begun with a whole one.
        end = min(end, today + dt.timedelta(days=1))
    districts = ({code: name for code, name in router_.gazetteer.districts.items()} if router_ is not None else {})
    categories = (sorted({node.path[0] for node in router_.kb.taxonomy.values()}) if router_ is not None else [])
    # 大类 or 大类/子类 (a drill-down from the category chart goes 大类 → 子类 → 细类).
    drillable = ({"/".join(node.path[:level]) for node in router_.kb.taxonomy.values() for level in (1, 2)}
                 if router_ is not None else set())
    filters = {"district": district if district in districts else "",
               "category": category if category in drillable else "",
               "channel": channel if channel in CHANNEL_LABELS else ""}
    setup = {"start": start.isoformat(), "end": end.isoformat(), "filters": {k: v for k, v in filters.items() if v},
             "districts": districts, "channels": CHANNEL_LABELS, "refreshSeconds": REFRESH_S,
             "departments": department_names(router_)}
    page = render(request, "cockpit.html", staff=staff, active="cockpit", period=period, periods=PERIODS,
                  start=start, end=end, last_day=end - dt.timedelta(days=1), districts=districts,
                  categories=categories, channels=CHANNEL_LABELS,
                  filters=filters, setup=json.dumps(setup, ensure_ascii=False))
    # ECharts writes its tooltips as HTML with style attributes: styles (not scripts) may be inline on this page.
    page.headers["Content-Security-Policy"] = COCKPIT_POLICY
    return page


@router.get("/cockpit/districts.geojson")
def district_shapes(staff: Official, settings: SettingsDep) -> Response:
    """The city's district polygons (the gazetteer's own file: a city loads its own)."""
    found = next((settings.city_dir / "geo").glob("*_districts.geojson"), None)
    if found is None:
        raise HTTPException(404, "this city has no district polygons")
    return FileResponse(found, media_type="application/geo+json")


@router.get("/cockpit/orders")
def orders_behind(request: Request, staff: Official, sessions: SessionsDep, router_: LoadedRouterDep,
                  start: dt.date, end: dt.date, district: Annotated[str, Query(max_length=12)] = "",
                  channel: Annotated[str, Query(max_length=16)] = "",
                  category: Annotated[str, Query(max_length=64)] = "",
                  department: Annotated[str, Query(max_length=32)] = "",
                  street: Annotated[str, Query(max_length=32)] = "",
                  offset: Annotated[int, Query(ge=0, le=100_000)] = 0) -> Response:
    """The orders behind a cockpit view (same filters), newest first, 100 a page; each opens its own page."""
    if end <= start or (end - start).days > 366:
        raise HTTPException(422, "end must be after start, within 366 days")
    names = department_names(router_)
    with sessions() as session:
        found = search_orders(session, district_adcode=district or None, channel=channel or None,
                              department_code=department or None, category_prefix=category or None,
                              street_id=street or None,
                              start=city_midnight(start), end=city_midnight(end), limit=100, offset=offset)
        rows = [{"order_no": o.order_no, "created_at": o.created_at, "text": o.text_masked[:90],
                 "state": STATE_LABELS[State(o.state)], "department": names.get(o.department_code or "",
                                                                               o.department_code),
                 "category": o.category_path} for o in found]
    return render(request, "cockpit_orders.html", staff=staff, active="cockpit", rows=rows, start=start, end=end,
                  offset=offset, query=request.url.query)
