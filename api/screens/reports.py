"""报告 (/cockpit/reports): the archive of 日报/周报/月报/季报 for officials, with download links, and a form that
generates one (the same work as POST /api/v1/reports and `hotline report`)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from api.deps import LoadedRouterDep, Principal, SessionsDep, SettingsDep
from api.routes.reports import entry_json, generate
from api.screens.session import CsrfChecked, staff_screen
from api.screens.templating import render
from orders import reports

router = APIRouter(include_in_schema=False)
Official = Annotated[Principal, Depends(staff_screen("cockpit"))]
FORMAT_LABELS = {"html": "网页", "pdf": "PDF", "xlsx": "Excel"}


def _page(request: Request, staff: Principal, sessions, settings, *, status_code: int = 200, error: str | None = None,
          made: int | None = None) -> Response:
    with sessions() as session:
        entries = [entry_json(r, settings.city_name) for r in reports.list_reports(session=session)]
    notice = next((f"已生成：{e['label']} {e['title']}" for e in entries if e["id"] == made), None)
    return render(request, "reports.html", staff=staff, active="cockpit", entries=entries, notice=notice, error=error,
                  periods=reports.PERIOD_LABELS, formats=FORMAT_LABELS, today=reports.city_today().isoformat(),
                  made=made, status_code=status_code)


@router.get("/cockpit/reports")
def report_archive(request: Request, staff: Official, sessions: SessionsDep, settings: SettingsDep,
                   made: int | None = None) -> Response:
    return _page(request, staff, sessions, settings, made=made)


@router.post("/cockpit/reports", dependencies=[CsrfChecked])
async def make_report(request: Request, staff: Official, sessions: SessionsDep, settings: SettingsDep,
                      current: LoadedRouterDep, period: Annotated[str, Form(max_length=8)] = "week",
                      date: Annotated[str, Form(max_length=10)] = "",
                      formats: Annotated[list[str] | None, Form()] = None) -> Response:
    def refused(message: str) -> Response:
        return _page(request, staff, sessions, settings, status_code=422, error=message)

    if period not in reports.PERIOD_LABELS:
        return refused("请选择报告类型：日报、周报、月报或季报")
    try:
        day = dt.date.fromisoformat(date) if date.strip() else None
    except ValueError:
        return refused("日期格式应为 年-月-日，如 2026-12-01")
    try:
        chosen = reports.parse_formats(formats or list(reports.FORMATS))
    except reports.PeriodError:
        return refused("请选择网页、PDF 或 Excel")
    # The figures and the PDF take seconds: off the event loop, as the API's sync view is.
    try:
        entry = await run_in_threadpool(generate, sessions, settings, current, period=period, day=day,
                                        formats=chosen, created_by=staff.name)
    except HTTPException as exc:   # a date off the calendar, the font missing: said on the page
        return _page(request, staff, sessions, settings, status_code=exc.status_code, error=str(exc.detail))
    return RedirectResponse(f"/cockpit/reports?made={entry['id']}", status_code=303)
