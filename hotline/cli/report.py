"""`hotline report`: generate a 日报/周报/月报/季报 into the archive (and optionally copy it to a folder).
The work is `orders/reports/`; this module is only the command. Its imports sit inside the command, as in the rest of
the CLI, so `hotline --help` does not load the knowledge base, numpy or matplotlib."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Annotated

import typer

from hotline.cli.common import database_sessions, fail, out, progress_bar
from hotline.core.config import get_settings


def report_command(
    period: Annotated[str, typer.Option(help="day, week (Monday–Sunday), month or quarter")] = "week",
    date: Annotated[str | None, typer.Option(help="a day in the period, YYYY-MM-DD (city calendar); default: "
                                                   "the last complete period")] = None,
    format: Annotated[str, typer.Option("--format", help="comma-separated: html,pdf,xlsx")] = "html,pdf,xlsx",
    out_dir: Annotated[Path | None, typer.Option("--out", help="also copy the files here, named for officials")] = None,
) -> None:
    """Generate the report of the period containing --date (the figures of the indicator API), keep it in the
    archive (state_dir/reports, listed at /cockpit/reports) and print where the files are."""
    from hotline.core.db import transaction
    from knowledge_base.gazetteer import load_gazetteer
    from knowledge_base.kb import load_knowledge_base
    from orders import reports
    from orders.indicators import Names

    if period not in reports.PERIOD_LABELS:
        fail(f"--period must be one of {', '.join(reports.PERIOD_LABELS)}, not {period!r}")
    try:
        formats = reports.parse_formats(format)
    except reports.PeriodError as exc:
        fail(f"--format: {exc}")
    if date is None:
        chosen = reports.last_complete(period, reports.city_today())
    else:
        try:
            chosen = reports.period_containing(period, dt.date.fromisoformat(date))
        except reports.PeriodError as exc:
            fail(f"--date: {exc}")
        except ValueError:
            fail(f"--date must be a day as YYYY-MM-DD, not {date!r}")
    settings = get_settings()
    sessions = database_sessions()
    kb = load_knowledge_base(settings.city_dir)
    names = Names.from_kb(kb, load_gazetteer(settings.city_dir, city_name=settings.city_name))
    steps = ["figures", *(["charts"] if {"html", "pdf"} & set(formats) else []), *formats]
    try:
        with progress_bar() as bar:
            task = bar.add_task(f"{reports.PERIOD_LABELS[period]} {chosen.title}", total=len(steps))
            with transaction(sessions) as session:
                report = reports.generate_report(
                    session=session, period=chosen, formats=formats, state_dir=settings.state_dir,
                    created_by="cli", names=names, city_name=settings.city_name,
                    progress=lambda step: bar.update(task, completed=steps.index(step),
                                                     description=f"{reports.PERIOD_LABELS[period]} {chosen.title}：{step}"))
                bar.update(task, completed=len(steps))
                paths = {ext: reports.report_path(settings.state_dir, report, ext) for ext in report.formats}
                names_for_officials = {ext: reports.download_name(report, ext, settings.city_name) for ext in paths}
    except reports.MissingFontError as exc:
        fail(str(exc))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {ext: Path(shutil.copyfile(path, out_dir / names_for_officials[ext])) for ext, path in paths.items()}
    out.print(f"{reports.PERIOD_LABELS[period]} {chosen.title}（{chosen.start} 至 {chosen.last_day}）", markup=False,
              highlight=False)
    for ext, path in paths.items():
        out.print(f"  {ext}: {path} ({path.stat().st_size:,} bytes)", markup=False, highlight=False, soft_wrap=True)
