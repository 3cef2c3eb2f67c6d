"""日报/周报/月报 (orders/reports): the figures are the indicator functions' for the same scope, the findings state
only numbers in the figures, periods follow the city's calendar, and the Excel and PDF files hold the figures (the
PDF with its Chinese text extractable and the CJK font embedded). SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from openpyxl import load_workbook
from sqlalchemy import delete, func, select
from test_indicators import NOW, week  # noqa: F401  (the hand-computed week of orders, a fixture)

from hotline.core.clock import city_midnight
from hotline.core.db import transaction
from orders import indicators as ind
from orders import reports
from orders.models import Report
from orders.reports import formatting
from orders.reports.charts import CJK_FONT

# The week of test_indicators.py: Monday 16 November 2026 (UTC moments; the city's week starts 16 Nov 00:00 +08:00).
DAY_IN_WEEK = dt.date(2026, 11, 18)


@pytest.fixture
def archive(week, tmp_path):  # noqa: F811
    with transaction(week) as session:
        session.execute(delete(Report))
    return week, tmp_path


def test_periods_on_the_city_calendar():
    week_of = reports.period_containing("week", dt.date(2026, 12, 3))          # a Thursday
    assert (week_of.start, week_of.end) == (dt.date(2026, 11, 30), dt.date(2026, 12, 7))   # Monday to Sunday
    assert week_of.start.weekday() == 0 and week_of.days == 7
    assert reports.period_containing("week", dt.date(2026, 11, 30)).start == dt.date(2026, 11, 30)
    assert reports.period_containing("week", dt.date(2026, 12, 6)).start == dt.date(2026, 11, 30)
    assert reports.period_containing("month", dt.date(2026, 12, 31)).end == dt.date(2027, 1, 1)
    quarter = reports.period_containing("quarter", dt.date(2026, 11, 15))
    assert (quarter.start, quarter.end, quarter.title) == (dt.date(2026, 10, 1), dt.date(2027, 1, 1), "2026年第4季度")
    assert reports.period_containing("quarter", dt.date(2026, 3, 31)).start == dt.date(2026, 1, 1)
    assert reports.period_containing("day", dt.date(2026, 2, 28)).end == dt.date(2026, 3, 1)
    # The scope starts at the city's midnight (16:00 UTC the day before), not UTC's.
    assert week_of.scope().start == dt.datetime(2026, 11, 29, 16, tzinfo=dt.UTC)
    # 同比: the same dates a year earlier; 29 February → 28 February.
    leap = reports.period_containing("day", dt.date(2028, 2, 29))
    assert leap.year_earlier().start == city_midnight(dt.date(2027, 2, 28))
    # The schedule's periods: the last complete one.
    assert reports.last_complete("week", dt.date(2026, 12, 1)).start == dt.date(2026, 11, 23)
    assert reports.last_complete("month", dt.date(2027, 1, 1)).start == dt.date(2026, 12, 1)
    assert reports.last_complete("day", dt.date(2026, 12, 1)).start == dt.date(2026, 11, 30)
    with pytest.raises(reports.PeriodError, match="period"):
        reports.period_containing("year", dt.date(2026, 1, 1))
    with pytest.raises(reports.PeriodError, match="gif"):
        reports.parse_formats("pdf,gif")
    assert reports.parse_formats("xlsx, PDF") == ("pdf", "xlsx")


def test_content_is_the_indicator_functions(week):  # noqa: F811
    period = reports.period_containing("week", DAY_IN_WEEK)
    scope = period.scope()
    with week() as session:
        content = reports.build_content(session=session, period=period, now=NOW)
        figures = content["figures"]
        count = ind.with_previous(ind.order_count, session, scope)
        assert figures["order_count"]["value"] == count["current"].value == 7
        assert figures["order_count"]["previous"] == count["previous"].value
        assert figures["order_count"]["year_ago"] == ind.order_count(session, period.year_earlier()).value == 0
        assert figures["completion_rate"]["value"] == ind.completion_rate(session, scope).value
        assert figures["on_time_rate"]["value"] == ind.on_time_rates(session, scope)["按时办结率"].value
        assert figures["overdue_count"]["value"] == ind.overdue(session, scope, now=NOW)["超期件数"].value
        assert figures["satisfaction_rate"]["value"] == ind.satisfaction_rate(session, scope).value
        assert figures["average_handling_hours"]["value"] == ind.average_handling_hours(session, scope).value
        assert figures["repeat_requests"]["value"] == ind.repeat_requests(session, scope).value
        channels = ind.ranking(session, scope, "channel").breakdown
        assert {c["key"]: c["count"] for c in content["channels"]} == channels
        assert sum(c["count"] for c in content["categories"]) == 7
        assert {t["label"]: t["count"] for t in content["request_types"]} == {"投诉": 6, "咨询": 1}
        per_unit = ind.by_dimension(session, scope, measure="order_count", dimension="department", top=None).breakdown
        assert {u["code"]: u["order_count"] for u in content["units"]} == {
            code: row["value"] for code, row in per_unit.items() if code != "未知"}
        satisfaction = ind.by_dimension(session, scope, measure="satisfaction_rate", dimension="department",
                                        top=None, min_denominator=1).breakdown
        for unit in content["units"]:
            assert unit["satisfaction_rate"] == (satisfaction.get(unit["code"]) or {}).get("value")
        # 岳麓区城管: A (done on time) and E (open); B was returned by it (有责) and went to the street office.
        chengguan = next(u for u in content["units"] if u["code"] == "430104-CHENGGUAN")
        assert (chengguan["on_time_done"], chengguan["late_done"], chengguan["not_closed"]) == (1, 0, 1)
        assert (chengguan["returns"], chengguan["returns_at_fault"]) == (1, 1)
        assert figures["dissatisfaction_rate"]["value"] == ind.dissatisfaction_rate(session, scope).value
        assert sum(day["count"] for day in content["trend"]) == 7 and len(content["trend"]) == 7
    # 直办/转办: F was rejected without dispatch (直办); A B C D E H were dispatched (转办).
    assert content["direct"] | {"definition": ""} == {
        "total": 7, "direct": 1, "transferred": 6, "pending": 0, "direct_share": round(1 / 7, 4),
        "transferred_share": round(6 / 7, 4), "definition": ""}
    assert "直办" in content["direct"]["definition"] and "转办" in content["direct"]["definition"]


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d[\d,]*(?:\.\d+)?", text))


def _formatted_figures(content: dict) -> set[str]:
    """Every number the content holds, written as the report writes them, and the lengths of its lists."""
    found: set[str] = set()

    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            found.add(str(len(value)))
            for item in value:
                walk(item)
        elif isinstance(value, bool):
            return
        elif isinstance(value, int | float):
            for text in (formatting.number(value), formatting.percent(value), formatting.change(value, "rate"),
                         formatting.change(abs(value), "count"), formatting.change(abs(value), "rate")):
                found.update(_numbers(text))
        elif isinstance(value, str):
            found.update(_numbers(value))
    walk(content)
    return found


def test_findings_state_only_the_figures(week):  # noqa: F811
    period = reports.period_containing("week", DAY_IN_WEEK)
    with week() as session:
        content = reports.build_content(session=session, period=period, now=NOW)
    sentences = reports.findings(content)
    text = "".join(sentences)
    assert "共登记工单7件" in text and "直办1件" in text and "转办6件" in text
    assert _numbers(text) <= _formatted_figures(content), _numbers(text) - _formatted_figures(content)
    # An empty period says so and nothing else.
    empty = reports.period_containing("week", dt.date(2025, 6, 4))
    with week() as session:
        nothing = reports.build_content(session=session, period=empty, now=NOW)
    assert reports.findings(nothing) == [f"本周（{empty.title}）未登记工单。"]


def test_archive_files_and_replacement(archive):
    factory, state_dir = archive
    period = reports.period_containing("week", DAY_IN_WEEK)
    with transaction(factory) as session:
        first = reports.generate_report(session=session, period=period, state_dir=state_dir, created_by="official",
                                        now=NOW, city_name="长沙市")
        first_id = first.id
    files = {ext: (state_dir / "reports" / f"week-2026-11-16.{ext}") for ext in reports.FORMATS}
    assert all(path.is_file() for path in files.values())
    html = files["html"].read_text("utf-8")
    assert "长沙市12345政务服务便民热线周报" in html and "http://" not in html and "https://" not in html
    assert "13800000001" not in html   # callers' phones never reach a report
    # Excel: the summary, per-unit and categories sheets with the figures.
    book = load_workbook(io.BytesIO(files["xlsx"].read_bytes()))
    assert {"汇总", "承办单位", "事项类别"} <= set(book.sheetnames)
    summary = {row[0]: row[1:] for row in book["汇总"].iter_rows(values_only=True) if row and row[0]}
    assert summary["工单数"][0] == 7 and summary["办结率"][0] == 0.5
    assert summary["直办"][0] == 1 and summary["转办"][0] == 6
    units = list(book["承办单位"].iter_rows(values_only=True))
    assert units[0][:6] == ("承办单位", "单位代码", "派遣总数", "按时办结", "超时办结", "未办结")
    assert sum(row[2] for row in units[1:] if row and isinstance(row[2], int)) == 6   # F has no unit
    # PDF: the Chinese text is extractable and the CJK font is embedded.
    pdf = files["pdf"].read_bytes()
    assert b"/FontFile2" in pdf and b"WenQuanYiMicroHei" in pdf
    pypdfium2 = pytest.importorskip("pypdfium2")
    document = pypdfium2.PdfDocument(pdf)
    first_page = document[0].get_textpage().get_text_range()
    assert "12345政务服务便民热线周报" in first_page.replace("\r", "").replace("\n", "")
    assert "主要情况" in first_page
    # The same period again replaces the row and the files; fewer formats remove the stale file.
    with transaction(factory) as session:
        again = reports.generate_report(session=session, period=period, formats=("xlsx",), state_dir=state_dir,
                                        created_by="schedule", now=NOW)
        assert again.id == first_id and again.formats == ["xlsx"] and set(again.sizes) == {"xlsx"}
        assert session.scalar(select(func.count()).select_from(Report)) == 1
    assert files["xlsx"].is_file() and not files["pdf"].exists() and not files["html"].exists()


def test_schedule_generates_each_due_report_once(archive):
    factory, state_dir = archive
    morning = dt.datetime(2026, 11, 24, 0, 30, tzinfo=dt.UTC)          # 08:30 Tuesday in the city
    with factory() as session:
        assert reports.due_periods(session=session, schedule="", hour=7, now=morning) == []
        assert reports.due_periods(session=session, schedule="week", hour=9, now=morning) == []   # before the hour
    with transaction(factory) as session:
        made = reports.due_reports(session=session, schedule="day,week", hour=7, state_dir=state_dir, now=morning)
        assert [(r.period, r.start) for r in made] == [("day", dt.date(2026, 11, 23)), ("week", dt.date(2026, 11, 16))]
        assert all(r.created_by == "schedule" for r in made)
    with transaction(factory) as session:
        assert reports.due_reports(session=session, schedule="day,week", hour=7, state_dir=state_dir,
                                   now=morning) == []
    with pytest.raises(reports.PeriodError, match="HOTLINE_REPORT_SCHEDULE"):
        reports.schedule_kinds("daily")


def test_missing_font_is_named(archive, monkeypatch):
    factory, state_dir = archive
    monkeypatch.setattr("orders.reports.charts.CJK_FONT", CJK_FONT.with_name("absent.ttc"))
    with factory() as session, pytest.raises(reports.MissingFontError, match="fonts-wqy-microhei"):
        reports.generate_report(session=session, period=reports.period_containing("day", DAY_IN_WEEK),
                                formats=("pdf",), state_dir=state_dir, created_by="x", now=NOW)
