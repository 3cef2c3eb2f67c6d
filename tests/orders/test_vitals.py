"""City vitals: import (whole files or nothing, no duplicates), levels against thresholds, the CLI and the API,
on SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from api.auth.keys import create_api_key
from hotline.core.config import REPO_ROOT, get_settings
from hotline.core.db import session_factory, transaction
from knowledge_base.loaders import DataFileError
from orders.vitals import files as vital_files
from orders.vitals import readings as vital_readings
from orders.vitals.models import VitalPoint, VitalThreshold

SAMPLE = REPO_ROOT / "knowledge_base" / "data" / "changsha" / "vitals"
UTC = dt.UTC
HEADER = ["metric", "name", "unit", "domain", "area", "timestamp", "value"]


def write(path: Path, rows: list[list], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def pm25(area: str, day: int, value, hour: int = 0) -> list:
    return ["pm25", "PM2.5日均浓度", "μg/m³", "环境", area, f"2026-11-{day:02d}T{hour:02d}:00:00+08:00", value]


@pytest.fixture
def sessions(engine):  # noqa: F811
    with engine.begin() as conn:
        for table in (VitalPoint, VitalThreshold):
            conn.execute(delete(table))
    return session_factory(engine)


def _import(sessions, path: Path) -> vital_files.ImportResult:
    with transaction(sessions) as session:
        return vital_files.import_file(session, path=path)


def _count(sessions, table=VitalPoint) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(table))


THRESHOLDS = [["pm25", "", "above", "75", "115", "GB 3095 二级"],
              ["pm25", "岳麓区", "above", "60", "", "岳麓区从严"],
              ["water_pressure", "", "below", "0.2", "0.16", ""],
              ["water_pressure", "", "above", "0.6", "0.7", ""]]
THRESHOLD_HEADER = ["metric", "area", "direction", "warn", "alarm", "note"]


def test_import_levels_and_reimport_without_duplicates(sessions, tmp_path):
    points = write(tmp_path / "air.csv", [pm25("雨花区", 19, 70), pm25("雨花区", 20, 80), pm25("岳麓区", 20, 62),
                                          pm25("芙蓉区", 20, 120), pm25("开福区", 20, " 30 "),
                                          ["water_pressure", "供水管网日最低压力", "MPa", "民生", "雨花区",
                                           "2026-11-20 08:00", "0.15"],
                                          ["water_pressure", "供水管网日最低压力", "MPa", "民生", "开福区",
                                           "2026/11/20 08:00", "0.65"],
                                          ["aqi", "空气质量指数AQI", "", "环境", "", "2026-11-20T00:00:00+08:00", "88"]])
    first = _import(sessions, points)
    assert (first.kind, first.rows, first.inserted, first.updated, first.unchanged) == ("points", 8, 8, 0, 0)
    limits = _import(sessions, write(tmp_path / "thresholds.csv", THRESHOLDS, THRESHOLD_HEADER))
    assert (limits.kind, limits.inserted) == ("thresholds", 4)
    again = _import(sessions, points)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 8) and _count(sessions) == 8
    with sessions() as session:
        readings = {(r.metric, r.area): r for r in vital_readings.latest_readings(session)}
    # By hand: 芙蓉 120 ≥ 115 告警; 雨花 80 ≥ 75 预警 (its earlier 70 is only the previous value); 岳麓 62 ≥ its own
    # 60 预警 though under the city line; 开福 30 正常; pressure 0.15 ≤ 0.16 告警, 0.65 ≥ 0.6 预警; AQI has no lines.
    assert {key: r.level for key, r in readings.items()} == {
        ("pm25", "芙蓉区"): "alarm", ("pm25", "雨花区"): "warn", ("pm25", "岳麓区"): "warn", ("pm25", "开福区"): "normal",
        ("water_pressure", "雨花区"): "alarm", ("water_pressure", "开福区"): "warn", ("aqi", "全市"): "none"}
    assert readings[("pm25", "雨花区")].previous_value == 70 and readings[("pm25", "开福区")].value == 30
    assert readings[("aqi", "全市")].area == "全市"                                     # empty area = city-wide
    # No offset = Beijing time: 08:00 in 长沙 is 00:00 UTC.
    assert readings[("water_pressure", "雨花区")].at == dt.datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    assert readings[("water_pressure", "开福区")].at == dt.datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    assert readings[("pm25", "岳麓区")].thresholds[0]["warn"] == 60                       # the area's own line wins
    with sessions() as session:
        ordered = vital_readings.latest_readings(session)
    assert [r.level for r in ordered] == ["alarm", "alarm", "warn", "warn", "warn", "normal", "none"]


def test_a_corrected_value_updates_the_point(sessions, tmp_path):
    _import(sessions, write(tmp_path / "a.csv", [pm25("雨花区", 20, 80)]))
    fixed = _import(sessions, write(tmp_path / "b.csv", [pm25("雨花区", 20, 74), pm25("雨花区", 21, 50)]))
    assert (fixed.inserted, fixed.updated, fixed.unchanged) == (1, 1, 0) and _count(sessions) == 2
    with sessions() as session:
        values = session.scalars(select(VitalPoint.value).order_by(VitalPoint.at)).all()
    assert values == [74, 50]


@pytest.mark.parametrize("row, where", [
    (pm25("雨花区", 20, "八十"), ":3:value"),
    (pm25("雨花区", 20, "nan"), ":3:value"),
    (pm25("雨花区", 20, ""), ":3:value"),
    (["pm25", "PM2.5", "μg/m³", "环境", "雨花区", "昨天", "5"], ":3:timestamp"),
    (["PM 2.5!", "PM2.5", "μg/m³", "环境", "雨花区", "2026-11-20", "5"], ":3:metric"),
    (["pm25", "", "μg/m³", "环境", "雨花区", "2026-11-20", "5"], ":3:name"),
    (["pm25", "PM2.5日均浓度", "μg/m³", "天气", "雨花区", "2026-11-20", "5"], ":3:domain"),
    (["pm25", "PM2.5日均浓度", "mg/m³", "环境", "芙蓉区", "2026-11-20", "5"], ":3:unit"),
    (pm25("岳麓区", 19, 40), ":3:timestamp"),                                 # the same point as row 2
])
def test_a_bad_line_names_its_line_and_field_and_nothing_is_imported(sessions, tmp_path, row, where):
    good = [pm25("岳麓区", 19, 41)]
    path = write(tmp_path / "bad.csv", good + [row] + [pm25("雨花区", day, 60) for day in range(1, 15)])
    with pytest.raises(DataFileError) as error:
        _import(sessions, path)
    assert f"{path}{where}" in str(error.value)
    assert _count(sessions) == 0


def test_a_unit_that_differs_from_the_stored_one_is_refused(sessions, tmp_path):
    _import(sessions, write(tmp_path / "a.csv", [pm25("雨花区", 20, 80)]))
    with pytest.raises(DataFileError, match="stored with unit"):
        _import(sessions, write(tmp_path / "b.csv", [["pm25", "PM2.5", "mg/m³", "环境", "岳麓区", "2026-11-21", "0.05"]]))
    assert _count(sessions) == 1


@pytest.mark.parametrize("row, words", [
    (["pm25", "", "above", "115", "75", ""], "alarm must not be below warn"),
    (["water_pressure", "", "below", "0.16", "0.2", ""], "alarm must not be above warn"),
    (["pm25", "", "sideways", "75", "115", ""], ":2:direction"),
    (["pm25", "", "above", "", "", ""], "give warn, alarm or both"),
    (["pm25", "", "above", "很高", "115", ""], ":2:warn"),
])
def test_bad_thresholds_are_refused(sessions, tmp_path, row, words):
    with pytest.raises(DataFileError, match=words):
        _import(sessions, write(tmp_path / "thresholds.csv", [row], THRESHOLD_HEADER))
    assert _count(sessions, VitalThreshold) == 0


def test_unknown_files_and_columns_are_explained(sessions, tmp_path):
    with pytest.raises(DataFileError, match="missing column"):
        _import(sessions, write(tmp_path / "x.csv", [["pm25", "5"]], ["metric", "value"]))
    with pytest.raises(DataFileError, match="no data rows"):
        _import(sessions, write(tmp_path / "empty.csv", []))
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(",".join(HEADER).encode() + "\npm25,细颗粒物,μg/m³,环境,雨花区,2026-11-20,5\n".encode("gb18030"))
    with pytest.raises(DataFileError, match="not UTF-8"):
        _import(sessions, gbk)


def test_excel_files_import_too(sessions, tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(["hotline_calls", "12345日话务量", "件", "治理", "", dt.datetime(2026, 11, 20), 15100])
    book.save(tmp_path / "calls.xlsx")
    assert _import(sessions, tmp_path / "calls.xlsx").inserted == 1
    with sessions() as session:
        reading = vital_readings.latest_readings(session, metric="hotline_calls")[0]
    assert (reading.value, reading.area, reading.at) == (15100, "全市", dt.datetime(2026, 11, 19, 16, tzinfo=UTC))


def test_the_shipped_changsha_sample_imports_and_tells_its_story(sessions):
    results = []
    for path in vital_files.files_of([SAMPLE]):
        results.append(_import(sessions, path))
    assert [p.name for p in vital_files.files_of([SAMPLE])][-1] == "thresholds.csv"
    points = sum(r.rows for r in results if r.kind == "points")
    assert points == _count(sessions) and points >= 5 * 30                    # ~30 days of several metrics
    with sessions() as session:
        readings = {(r.metric, r.area): r for r in vital_readings.latest_readings(session)}
        start = dt.datetime(2026, 10, 21, 16, tzinfo=UTC)                    # 10-22 00:00 Beijing time
        month = vital_readings.series(session, metric="hotline_calls", start=start, end=start + dt.timedelta(days=30))
    assert readings[("water_pressure", "雨花区")].level == "alarm"            # the 11-20 main burst
    assert readings[("hotline_calls", "全市")].level == "warn"                # and the calls it brought
    assert readings[("xiangjiang_level", "湘江长沙站")].level == "normal"
    assert len(month["series"]["全市"]) == 30 and month["unit"] == "件"


def test_series_is_a_half_open_period_by_area(sessions, tmp_path):
    _import(sessions, write(tmp_path / "air.csv", [pm25("雨花区", day, 60 + day) for day in (18, 19, 20)] +
                            [pm25("岳麓区", 19, 90)]))
    _import(sessions, write(tmp_path / "thresholds.csv", THRESHOLDS[:1], THRESHOLD_HEADER))
    start, end = dt.datetime(2026, 11, 18, 16, tzinfo=UTC), dt.datetime(2026, 11, 19, 16, tzinfo=UTC)  # 11-19 only
    with sessions() as session:
        both = vital_readings.series(session, metric="pm25", start=start, end=end)
        one = vital_readings.series(session, metric="pm25", start=start - dt.timedelta(days=1), end=end, area="雨花区")
        with pytest.raises(vital_readings.UnknownMetric):
            vital_readings.series(session, metric="pm10", start=start, end=end)
    assert {area: [(p["value"], p["level"]) for p in points] for area, points in both["series"].items()} == {
        "岳麓区": [(90, "warn")], "雨花区": [(79, "warn")]}
    assert [p["at"] for p in one["series"]["雨花区"]] == ["2026-11-18T00:00:00+08:00", "2026-11-19T00:00:00+08:00"]


@pytest.mark.parametrize("value, lines, level", [
    (0.3, [("below", 0.2, 0.16), ("above", 0.6, 0.7)], "normal"),
    (0.2, [("below", 0.2, 0.16), ("above", 0.6, 0.7)], "warn"),              # at the line counts
    (0.1, [("below", 0.2, 0.16), ("above", 0.6, 0.7)], "alarm"),
    (0.7, [("below", 0.2, 0.16), ("above", 0.6, 0.7)], "alarm"),
    (99, [("above", None, 90)], "alarm"), (80, [("above", None, 90)], "normal"), (80, [], "none"),
])
def test_levels_by_hand(value, lines, level):
    thresholds = [VitalThreshold(metric="m", area="", direction=d, warn=w, alarm=a) for d, w, a in lines]
    assert vital_readings.level_of(value, thresholds) == level


# -- the command line (embedded SQLite) ------------------------------------------------------------------------
def test_cli_imports_a_folder_and_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    get_settings.cache_clear()
    from hotline.cli import app

    runner = CliRunner()
    try:
        imported = runner.invoke(app, ["vitals", "import", str(SAMPLE)])
        assert imported.exit_code == 0, imported.output
        assert "thresholds.csv: 8 thresholds rows — 8 new" in imported.output
        again = runner.invoke(app, ["vitals", "import", str(SAMPLE / "water.csv")])
        assert "0 new, 0 updated, 210 unchanged" in again.output
        checked = runner.invoke(app, ["vitals", "check"], env={"COLUMNS": "200"})
        assert checked.exit_code == 0
        line = next(row for row in checked.output.splitlines() if "供水管网日最低压力" in row and "雨花区" in row)
        assert "告警" in line and "0.14" in line
        assert "告警 1 项，预警 4 项" in checked.output
        bad = write(tmp_path / "bad.csv", [pm25("雨花区", 21, 50), pm25("雨花区", 22, "--")])
        refused = runner.invoke(app, ["vitals", "import", str(bad)])
        assert refused.exit_code == 2 and f"{bad}:3:value" in refused.output.replace("\n", "")
        only = runner.invoke(app, ["vitals", "check", "--metric", "pm25", "--area", "雨花区"], env={"COLUMNS": "200"})
        assert "11-20" in only.output and "11-21" not in only.output           # nothing of bad.csv was stored
    finally:
        get_settings.cache_clear()


# -- the API ---------------------------------------------------------------------------------------------------
def test_api_latest_and_series(app_and_keys):  # noqa: F811
    app, keys, factory = app_and_keys
    with transaction(factory) as session:
        key = create_api_key(session, name="cockpit", scopes=["indicators:read"])[1]
        for path in vital_files.files_of([SAMPLE]):
            vital_files.import_file(session, path=path)
    headers = {"X-API-Key": key}
    with TestClient(app) as client:
        latest = client.get("/api/v1/vitals", headers=headers)
        assert latest.status_code == 200, latest.text
        body = latest.json()
        assert body["vitals"][0].items() >= {"metric": "water_pressure", "area": "雨花区", "level": "alarm",
                                             "level_label": "告警", "value": 0.14, "unit": "MPa"}.items()
        assert body["levels"]["告警"] == 1 and body["levels"]["预警"] == 4
        environment = client.get("/api/v1/vitals", params={"domain": "环境"}, headers=headers).json()["vitals"]
        assert {v["metric"] for v in environment} == {"aqi", "pm25"}
        one_sign = client.get("/api/v1/vitals", params={"metric": "pm25"}, headers=headers).json()["vitals"]
        assert one_sign and {v["metric"] for v in one_sign} == {"pm25"}
        water = client.get("/api/v1/vitals/xiangjiang_level", headers=headers,
                           params={"start": "2026-11-20", "end": "2026-11-21"}).json()
        assert [p["at"] for p in water["series"]["湘江长沙站"]] == [
            "2026-11-20T02:00:00+08:00", "2026-11-20T08:00:00+08:00", "2026-11-20T14:00:00+08:00",
            "2026-11-20T20:00:00+08:00"]
        assert {t["direction"] for t in water["thresholds"]} == {"above", "below"}
        assert client.get("/api/v1/vitals/pm10", headers=headers).status_code == 404
        backwards = client.get("/api/v1/vitals/aqi", headers=headers, params={"start": "2026-11-20", "end": "2026-11-01"})
        assert backwards.status_code == 422 and "after" in backwards.json()["detail"]
        assert client.get("/api/v1/vitals/aqi", headers=headers, params={"start": "昨天"}).status_code == 422
        assert client.get("/api/v1/vitals", params={"domain": "天气"}, headers=headers).status_code == 422
        assert client.get("/api/v1/vitals/aqi%20OR%201=1", headers=headers).status_code == 422
        assert client.get("/api/v1/vitals").status_code == 401
        assert client.get("/api/v1/vitals", headers={"X-API-Key": keys["reader"]}).status_code == 403


def test_the_embedded_demo_loads_the_sample_once(tmp_path):
    from hotline.core.config import Settings
    from hotline.core.db import make_engine, session_factory
    from hotline.core.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    settings = Settings(database_url=url)   # the bundled 长沙 data
    assert vital_files.import_sample_if_empty(sessions, settings) > 0
    assert vital_files.import_sample_if_empty(sessions, settings) == 0
    with sessions() as session:
        assert {r.metric for r in vital_readings.latest_readings(session)} >= {"aqi", "pm25"}


def test_a_series_not_updated_for_two_reporting_intervals_is_stale(sessions):
    """The sample vitals stop on 11-20: a daily figure weeks old must say so (review 2026-12-06, feature 24)."""
    for path in vital_files.files_of([SAMPLE]):
        _import(sessions, path)
    with sessions() as session:
        latest = vital_readings.latest_readings(session)
        newest = max(r.at for r in latest)
        fresh = vital_readings.latest_readings(session, now=newest + dt.timedelta(hours=1))
        later = vital_readings.latest_readings(session, now=newest + dt.timedelta(days=30))
    assert all(r.every_hours for r in fresh)
    assert not any(r.stale for r in fresh if r.at == newest)
    assert all(r.stale for r in later) and all(r.to_json()["stale"] for r in later)


def test_vitals_at_their_warning_line_are_alerts_while_fresh(sessions):
    from orders import indicators as ind

    for path in vital_files.files_of([SAMPLE]):
        _import(sessions, path)
    with sessions() as session:
        readings = vital_readings.latest_readings(session)
        newest = max(r.at for r in readings)
        at_line = [r for r in vital_readings.latest_readings(session, now=newest + dt.timedelta(hours=1))
                   if r.level in ("warn", "alarm") and not r.stale]
        scope = ind.Scope(newest - dt.timedelta(days=30), newest + dt.timedelta(days=1))
        fresh = ind.alerts(session, scope, now=newest + dt.timedelta(hours=1)).breakdown["alerts"]
        stale = ind.alerts(session, scope, now=newest + dt.timedelta(days=30)).breakdown["alerts"]
    vital_alerts = [a for a in fresh if a["kind"] == "城市体征"]
    assert at_line and len(vital_alerts) == len(at_line)
    assert {a["severity"] for a in vital_alerts} <= {"高", "中"} and all("线" in a["reason"] for a in vital_alerts)
    assert not [a for a in stale if a["kind"] == "城市体征"]   # a stale figure is not news
