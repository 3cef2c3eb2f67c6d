"""日报/周报/月报/季报 over HTTP: generate one into the archive, list the archive, download a file. The work is
orders/reports (figures from the indicator functions only); these views only check input and lay out answers."""
from __future__ import annotations

import datetime as dt
import threading
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.deps import IndicatorsReader as Reader
from api.deps import LoadedRouterDep, SessionsDep, SettingsDep
from hotline.core.config import Settings
from hotline.core.db import transaction
from orders import reports
from orders.indicators import NO_NAMES, Names
from orders.models import Report

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])
# One generation at a time in this process (the API, the cockpit's form and the scheduled worker): two of the same
# period would both insert its archive row, and queueing seconds-long jobs costs nothing noticeable. Another process
# doing the same period meets the unique constraint: a 409, retry.
GENERATING = threading.Lock()


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: Literal["day", "week", "month", "quarter"]
    date: dt.date | None = Field(None, description="a day in the period (city calendar); default: the last complete "
                                                    "period")
    formats: list[Literal["html", "pdf", "xlsx"]] = Field(default_factory=lambda: list(reports.FORMATS),
                                                          min_length=1, max_length=3)


def entry_json(report: Report, city_name: str = "") -> dict:
    """An archive entry as the API and the cockpit list it, with its files' download addresses."""
    last = report.end - dt.timedelta(days=1)
    period = reports.Period(report.period, report.start, report.end)
    return {"id": report.id, "period": report.period, "label": reports.PERIOD_LABELS[report.period],
            "title": period.title, "start": report.start.isoformat(), "last_day": last.isoformat(),
            "formats": list(report.formats), "sizes": dict(report.sizes), "created_at": report.created_at.isoformat(),
            "created_by": report.created_by,
            "files": {ext: {"url": f"/api/v1/reports/{report.id}.{ext}",
                            "name": reports.download_name(report, ext, city_name)} for ext in report.formats}}


def generate(sessions: sessionmaker[Session], settings: Settings, current, *, period: str, day: dt.date | None,
             formats: tuple[str, ...], created_by: str) -> dict:
    """Generate (or regenerate) a report; the font missing is a 503 naming it, not a 500."""
    try:
        chosen = (reports.period_containing(period, day) if day else
                  reports.last_complete(period, reports.city_today()))
    except reports.PeriodError as exc:
        raise HTTPException(422, str(exc)) from None
    names = Names.from_kb(current.kb, current.gazetteer) if current is not None else NO_NAMES
    try:
        with GENERATING, transaction(sessions) as session:
            report = reports.generate_report(session=session, period=chosen, formats=formats,
                                             state_dir=settings.state_dir, created_by=created_by, names=names,
                                             segmenter=getattr(current, "segmenter", None),
                                             city_name=settings.city_name)
            return entry_json(report, settings.city_name)
    except reports.MissingFontError as exc:
        raise HTTPException(503, str(exc)) from None
    except IntegrityError:
        raise HTTPException(409, "this period's report is being generated elsewhere: retry in a moment") from None


@router.post("")
def create_report(body: ReportRequest, sessions: SessionsDep, settings: SettingsDep, current: LoadedRouterDep,
                  principal: Reader) -> dict:
    """Generate the report of the period containing `date` (HTML, PDF, Excel) into the archive; generating the same
    period again replaces it. Answers the archive entry with its download addresses."""
    if body.date and body.date > reports.city_today() + dt.timedelta(days=366):
        raise HTTPException(422, "date is more than a year ahead")   # no figures there, only an empty archive entry
    return generate(sessions, settings, current, period=body.period, day=body.date,
                    formats=reports.parse_formats(body.formats), created_by=principal.name)


@router.get("")
def list_archive(sessions: SessionsDep, settings: SettingsDep, principal: Reader) -> dict:
    """The report archive, latest periods first."""
    with sessions() as session:
        return {"reports": [entry_json(r, settings.city_name) for r in reports.list_reports(session=session)]}


@router.get("/{report_id}.{ext}")
def download(sessions: SessionsDep, settings: SettingsDep, principal: Reader,
             report_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
             ext: Annotated[str, Path(pattern=r"^(html|pdf|xlsx)$")]) -> FileResponse:
    """One file of an archived report, named for officials (Content-Disposition with the Chinese name)."""
    with sessions() as session:
        report = session.get(Report, report_id)
        if report is None or ext not in report.formats:
            raise HTTPException(404, "no such report file")
        path = reports.report_path(settings.state_dir, report, ext)
        name = reports.download_name(report, ext, settings.city_name)
    if not path.is_file():
        raise HTTPException(404, "the report's file is missing from the archive: generate it again")
    ascii_name = f"report-{report.period}-{report.start.isoformat()}.{ext}"
    return FileResponse(path, media_type=reports.CONTENT_TYPES[ext], headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "no-store"})
