"""`hotline vitals …`: import city vitals (城市体征) and read them against their thresholds.
The work is `orders/vitals/`; this module is only the commands."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hotline.cli.common import database_sessions, err, fail, out, progress_bar
from hotline.core.clock import CITY_TZ
from hotline.core.db import transaction
from knowledge_base.loaders import DataFileError
from orders.vitals.files import files_of, import_file, read_file
from orders.vitals.models import LEVEL_LABELS
from orders.vitals.readings import latest_readings, threshold_words

cli = typer.Typer(help="City vitals (城市体征): import time series and check them against thresholds.", no_args_is_help=True)


@cli.command("import")
def import_command(
    paths: Annotated[list[Path], typer.Argument(help="CSV/.xlsx files of points or thresholds, or folders of them")],
) -> None:
    """Import points and thresholds; each file is imported whole or not at all, re-imports update, never duplicate."""
    files = files_of(paths)
    if not files:
        fail("no data files found in " + ", ".join(map(str, paths)))
    sessions = database_sessions()
    failed = 0
    with progress_bar() as bar:
        for path in files:
            try:
                kind, items = read_file(path)
            except DataFileError as exc:
                failed += 1
                err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
                continue
            task = bar.add_task(f"{path.name} ({kind})", total=len(items))
            try:
                with transaction(sessions) as session:
                    result = import_file(session, path=path, progress=lambda n, task=task: bar.advance(task, n))
            except DataFileError as exc:
                failed += 1
                err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
                continue
            out.print(f"{path.name}: {result.rows} {kind} rows — {result.inserted} new, {result.updated} updated, "
                      f"{result.unchanged} unchanged", markup=False, highlight=False)
    if failed:
        fail(f"{failed} file(s) not imported (nothing from them was stored)")


@cli.command("check")
def check_command(
    metric: Annotated[str | None, typer.Option(help="only this metric code")] = None,
    area: Annotated[str | None, typer.Option(help="only this area, e.g. 岳麓区 or 全市")] = None,
) -> None:
    """The latest value of every metric and area with its level (告警 / 预警 / 正常)."""
    with database_sessions()() as session:
        readings = latest_readings(session, metric=metric, area=area)
    if not readings:
        out.print("nothing matches metric/area" if metric or area
                  else "no vital signs stored yet: hotline vitals import FILE")
        return
    colours = {"alarm": "bold red", "warn": "yellow", "normal": "green", "none": "dim"}
    table = Table(title="城市体征 最新值")
    for column in ("指标", "代码", "区域", "时间", "数值", "级别", "阈值"):
        table.add_column(column)
    for r in readings:
        lines = "；".join(threshold_words(t) for t in r.thresholds) or "—"
        trend = "" if r.previous_value is None else " ↑" if r.value > r.previous_value else " ↓" if r.value < \
            r.previous_value else " →"
        value = f"{r.value:g}{' ' + r.unit if r.unit else ''}{trend}"
        when = r.at.astimezone(CITY_TZ).strftime("%m-%d %H:%M") + (" [dim](已过期)[/]" if r.stale else "")
        table.add_row(r.name, r.metric, r.area, when, value,
                      f"[{colours[r.level]}]{LEVEL_LABELS[r.level]}[/]", lines)
    out.print(table)
    counts = {LEVEL_LABELS[level]: sum(r.level == level for r in readings) for level in ("alarm", "warn")}
    stale = sum(r.stale for r in readings)
    out.print(f"告警 {counts['告警']} 项，预警 {counts['预警']} 项，共 {len(readings)} 项"
              + (f"；{stale} 项已超过两个上报周期未更新（已过期）" if stale else ""))
