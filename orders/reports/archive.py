"""Generating a report into the archive: the files under state_dir/reports/<period>-<start>.<ext> and one row of
`reports` per period (generating the same period again replaces both), and the schedule's reports when due."""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.core.clock import CITY_TZ, utcnow
from orders import indicators as ind
from orders.models import Report
from orders.reports.content import PERIOD_LABELS, Period, PeriodError, build_content, city_today, last_complete
from orders.reports.findings import findings as write_findings

FORMATS = ("html", "pdf", "xlsx")
CONTENT_TYPES = {"html": "text/html; charset=utf-8", "pdf": "application/pdf",
                 "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
SCHEDULE_USER = "schedule"


def parse_formats(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """"html,pdf" or ["pdf"] → the formats in the archive's order; an unknown one is a PeriodError naming it."""
    items = value.split(",") if isinstance(value, str) else list(value or FORMATS)
    wanted = {item.strip().lower() for item in items if item and item.strip()}
    unknown = sorted(wanted - set(FORMATS))
    if unknown or not wanted:
        raise PeriodError(f"formats must be some of {', '.join(FORMATS)}" + (f", not {', '.join(unknown)}"
                                                                              if unknown else ""))
    return tuple(f for f in FORMATS if f in wanted)


def reports_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "reports"


def report_path(state_dir: Path, report: Report, ext: str) -> Path:
    return reports_dir(state_dir) / f"{report.period}-{report.start.isoformat()}.{ext}"


def download_name(report: Report, ext: str, city_name: str = "") -> str:
    """The file name officials see: 长沙市12345热线周报_2026-11-30至2026-12-06.pdf."""
    last = report.end - dt.timedelta(days=1)
    span = report.start.isoformat() if report.period == "day" else f"{report.start.isoformat()}至{last.isoformat()}"
    return f"{city_name}12345热线{PERIOD_LABELS[report.period]}_{span}.{ext}"


def _write(path: Path, data: bytes) -> None:
    # Written beside and renamed: a download never reads half a file while the same period is regenerated.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def generate_report(*, session: Session, period: Period, formats: tuple[str, ...] = FORMATS, state_dir: Path,
                    created_by: str, names: ind.Names = ind.NO_NAMES, segmenter=None, city_name: str = "",
                    now: dt.datetime | None = None,
                    progress: Callable[[str], None] = lambda step: None) -> Report:
    """Compute the figures, render the formats, store the files and the archive row (the caller commits)."""
    from orders.reports.charts import cjk_font, share_chart, trend_chart  # matplotlib: imported when drawn (slow)

    now = now or utcnow()
    if "pdf" in formats:
        cjk_font()   # fail before the work when the font is missing: a PDF without it would show boxes
    progress("figures")
    content = build_content(session=session, period=period, names=names, segmenter=segmenter, now=now,
                            city_name=city_name)
    sentences = write_findings(content)
    rendered: dict[str, bytes] = {}
    charts: dict[str, bytes] = {}
    if {"html", "pdf"} & set(formats):
        progress("charts")
        if period.days > 1:
            charts["trend"] = trend_chart(content["trend"], "每日工单量")
        if content["categories"]:
            charts["categories"] = share_chart(content["categories"], "事项大类占比")
        if content["channels"]:
            charts["channels"] = share_chart(content["channels"], "来源渠道占比")
    for ext in formats:
        progress(ext)
        if ext == "html":
            from orders.reports.html import render_html
            rendered[ext] = render_html(content=content, findings=sentences, charts=charts)
        elif ext == "pdf":
            from orders.reports.pdf import render_pdf
            rendered[ext] = render_pdf(content=content, findings=sentences, charts=charts)
        else:
            from orders.reports.xlsx import render_xlsx
            rendered[ext] = render_xlsx(content=content, findings=sentences)
    report = session.scalar(select(Report).where(Report.period == period.kind, Report.start == period.start))
    if report is None:
        report = Report(period=period.kind, start=period.start)
        session.add(report)
    report.end, report.formats, report.created_by, report.created_at = period.end, list(formats), created_by, now
    report.sizes = {ext: len(data) for ext, data in rendered.items()}
    reports_dir(state_dir).mkdir(parents=True, exist_ok=True)
    for ext in FORMATS:
        path = report_path(state_dir, report, ext)
        if ext in rendered:
            _write(path, rendered[ext])
        elif path.exists():   # a format the new version does not have: the old file would be stale
            path.unlink()
    session.flush()
    return report


def list_reports(*, session: Session, limit: int = 200) -> list[Report]:
    """The archive, the latest periods first."""
    return list(session.scalars(select(Report).order_by(Report.start.desc(), Report.period, Report.id.desc())
                                .limit(limit)))


def schedule_kinds(schedule: str) -> tuple[str, ...]:
    """"day,week,month" → the period kinds; unknown words are a PeriodError (the setting is checked at start-up)."""
    kinds = [word.strip().lower() for word in schedule.split(",") if word.strip()]
    unknown = [k for k in kinds if k not in PERIOD_LABELS]
    if unknown:
        raise PeriodError(f"HOTLINE_REPORT_SCHEDULE: unknown period {', '.join(unknown)}; "
                          f"some of {', '.join(PERIOD_LABELS)}")
    return tuple(k for k in PERIOD_LABELS if k in kinds)


def due_periods(*, session: Session, schedule: str, hour: int, now: dt.datetime | None = None) -> list[Period]:
    """The periods just ended that the schedule wants and the archive does not have yet (none before `hour`)."""
    now = now or utcnow()
    if not schedule.strip() or now.astimezone(CITY_TZ).hour < hour:
        return []
    today = city_today(now)
    due = []
    for kind in schedule_kinds(schedule):
        period = last_complete(kind, today)
        if session.scalar(select(Report.id).where(Report.period == kind, Report.start == period.start)) is None:
            due.append(period)
    return due


def due_reports(*, session: Session, schedule: str, hour: int, state_dir: Path, names: ind.Names = ind.NO_NAMES,
                segmenter=None, city_name: str = "", now: dt.datetime | None = None) -> list[Report]:
    """Generate the scheduled reports that are due (yesterday's 日报, last week's 周报 …) once each: the archive
    table says what exists, so calling this every few seconds generates nothing more."""
    return [generate_report(session=session, period=period, state_dir=state_dir, created_by=SCHEDULE_USER,
                            names=names, segmenter=segmenter, city_name=city_name, now=now)
            for period in due_periods(session=session, schedule=schedule, hour=hour, now=now)]
