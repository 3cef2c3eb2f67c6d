"""Time to generate a monthly report (月报) in all three formats (issue 14: ≤ 30 s).

The real router (the configured embedders, HOTLINE_CACHE_DIR) for the names and the segmenter, a fresh SQLite
database seeded with `--orders` orders over the 30 days of November 2026 (orders.seed.seed_history, as `hotline
seed`), then `orders.reports.generate_report` for November — figures from the indicator functions, findings, the
charts, HTML, PDF and Excel, the archive row — `--repeats` times (each regenerates the same period, as a user would).
The time of each step is the time until the next one starts.

    HOTLINE_CACHE_DIR=/work/cache-me .venv/bin/python benchmarks/report_time.py --orders 5000
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from seeded import seeded_database

from hotline.core.db import transaction
from orders import reports
from orders.indicators import Names

RESULTS = Path(__file__).resolve().parent / "results" / "report_time.json"
MONTH = dt.date(2026, 11, 1)
SEED_UNTIL = dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)   # 1 December 00:00 in the city


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    seeded = seeded_database(orders=args.orders, prefix="report-time-", console=console, until=SEED_UNTIL)
    workdir, settings, router, sessions = seeded.folder, seeded.settings, seeded.router, seeded.sessions
    names = Names.from_kb(router.kb, router.gazetteer)
    period = reports.period_containing("month", MONTH)
    runs = []
    for run in range(args.repeats):
        marks: list[tuple[str, float]] = []
        start = time.perf_counter()
        with transaction(sessions) as session:
            report = reports.generate_report(session=session, period=period, state_dir=workdir, created_by="bench",
                                             names=names, segmenter=router.segmenter, city_name=settings.city_name,
                                             progress=lambda step, marks=marks: marks.append((step, time.perf_counter())))
            sizes = dict(report.sizes)
        end = time.perf_counter()
        steps = {name: round((marks[i + 1][1] if i + 1 < len(marks) else end) - at, 2)
                 for i, (name, at) in enumerate(marks)}
        runs.append({"total_s": round(end - start, 2), "steps_s": steps, "sizes": sizes})
        console.print(f"run {run + 1}: {end - start:.2f} s {steps}")
    with sessions() as session:
        content = reports.build_content(session=session, period=period, names=names, segmenter=router.segmenter)
    table = Table(title=f"月报 {period.title}: {content['figures']['order_count']['value']} orders in the month")
    for column in ("run", "total s", *runs[0]["steps_s"]):
        table.add_column(column)
    for i, r in enumerate(runs, 1):
        table.add_row(str(i), f"{r['total_s']:.2f}", *(f"{v:.2f}" for v in r["steps_s"].values()))
    console.print(table)
    totals = [r["total_s"] for r in runs]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"orders_seeded": args.orders, "orders_in_month": content["figures"]["order_count"]
                                   ["value"], "period": period.title, "runs": runs, "median_s": statistics.median(totals),
                                   "max_s": max(totals), "embeddings": router.embedder_note},
                                  ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    console.print(f"median {statistics.median(totals):.2f} s, max {max(totals):.2f} s; written {RESULTS}")


if __name__ == "__main__":
    main()
