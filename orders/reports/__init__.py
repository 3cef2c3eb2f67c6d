"""日报/周报/月报/季报 (issue 14): figures from the indicator functions only (content.py), a paragraph of plain
findings from those figures (findings.py), rendered as HTML, PDF (CJK font embedded, charts) and Excel, and kept in
an archive (archive.py: state_dir/reports and the `reports` table) that the CLI, the API, the cockpit and the
schedule share."""
from orders.reports.archive import (
    CONTENT_TYPES,
    FORMATS,
    SCHEDULE_USER,
    download_name,
    due_periods,
    due_reports,
    generate_report,
    list_reports,
    parse_formats,
    report_path,
    schedule_kinds,
)
from orders.reports.charts import MissingFontError
from orders.reports.content import (
    PERIOD_LABELS,
    Period,
    PeriodError,
    build_content,
    city_today,
    last_complete,
    period_containing,
)
from orders.reports.findings import findings

__all__ = [
    "CONTENT_TYPES", "FORMATS", "PERIOD_LABELS", "SCHEDULE_USER", "MissingFontError", "Period", "PeriodError",
    "build_content", "city_today", "download_name", "due_periods", "due_reports", "findings", "generate_report",
    "last_complete", "list_reports", "parse_formats", "period_containing", "report_path", "schedule_kinds",
]
