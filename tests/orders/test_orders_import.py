"""`hotline orders import`: a city's past orders into the order store — all or nothing per file, idempotent on the
order number, masked, not routed. On SQLite (and PostgreSQL when HOTLINE_TEST_DATABASE_URL is set), over the tiny
city's knowledge base. The rows are made up, shaped like a real 12345 export.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from hotline.core.config import get_settings
from hotline.core.db import session_factory, transaction
from knowledge_base.loaders import DataFileError
from orders.importer import export_training_rows, import_orders
from orders.models import OrderEvent, WorkOrder

UTC = dt.UTC
PHONE = "13812345678"
HEADER = ["工单编号", "工单标题", "工单内容", "来电时间", "承办单位", "问题分类", "问题点位", "办结时间", "状态", "满意度",
          "渠道", "来电号码"]
STALLS = ("市民来电反映：岳麓区望月湖街道桃子湖路18号望月湖小区东门口，近一个月以来每天傍晚6点至凌晨1点，有十余个流动摊贩"
          "推着三轮车占道经营，卖烧烤、臭豆腐、炒粉等，油烟大、垃圾多，人行道被完全占用，行人只能走机动车道，"
          "老人小孩出行很不安全！！来电人多次向小区物业和社区反映，均未解决。\n来电人：张先生，联系电话：" + PHONE +
          "，要求相关部门尽快依法查处，恢复道路通行秩序，并请处理后回复。")
NIGHT_WORK = ("来电人反映：岳麓区桔子洲街道某在建工地（靠近橘子洲头一侧），连续一周每天晚上11点后仍在打桩、浇筑混凝土，"
              "搅拌车进出轰鸣不断，附近居民无法入睡；来电人询问该工地是否办理了夜间施工许可，希望尽快核查处理。")
WATER = ("雨花区高桥街道高桥大市场旁边的小区，从今天早上7点开始停水，没有看到任何停水通知，家里老人做饭洗漱都成问题，"
         "请问什么时候恢复供水？")
PROPERTY = "来电人反映小区物业公司服务差，电梯经常故障停运，物业费却年年上涨，业主多次投诉无果，要求有关部门督促整改。"
GOOD_ROWS = [
    ["CS2024030500012", "望月湖小区门口流动摊贩占道经营", STALLS, "2024-03-05 08:15:22", "岳麓区城市管理和综合执法局",
     "城市管理>市容秩序>占道经营", "岳麓区望月湖街道桃子湖路18号", "2024-03-07 17:30:00", "已办结", "满意", "12345热线",
     PHONE],
    ["CS2024030600231", "工地夜间施工噪音扰民", NIGHT_WORK, "2024/3/6 23:40", "430104-ZHUJIAN",
     "生态环境＞噪声污染＞建筑施工噪声", "岳麓区桔子洲街道", "", "办理中", "", "微信公众号", ""],
    ["CS2024030700045", "小区物业服务差", PROPERTY, "2024年3月7日 09时05分", "岳麓区住房保障服务中心",
     "城乡建设>物业管理>物业服务", "岳麓区某小区", "2024-03-12 10:00:00", "已归档", "基本满意", "网站",
     "0731-88886666"],
    ["CS2024030800007", "", WATER, "2024-03-08T07:30:00+08:00", "", "公用事业/供水/停水", "雨花区高桥街道高桥大市场",
     "", "", "", "", ""],
]


def write_csv(path: Path, rows: list[list], header: list[str] = HEADER, encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def sessions(engine):  # noqa: F811
    with engine.begin() as conn:
        for table in (OrderEvent, WorkOrder):
            conn.execute(delete(table))
    return session_factory(engine)


def _import(sessions, path: Path, kb, **kwargs):
    with transaction(sessions) as session:
        return import_orders(session, path=path, kb=kb, now=dt.datetime(2026, 12, 7, tzinfo=UTC), **kwargs)


def _orders(sessions) -> dict[str, WorkOrder]:
    with sessions() as session:
        return {o.order_no: o for o in session.scalars(select(WorkOrder))}


def _count(sessions, table=WorkOrder) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(table))


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def test_an_export_imports_masked_mapped_and_not_routed(sessions, tiny_kb, tmp_path):
    result = _import(sessions, write_csv(tmp_path / "export.csv", GOOD_ROWS), tiny_kb)
    assert (result.rows, result.imported, result.skipped_present) == (4, 4, 0)
    assert (result.department_matched, result.department_unmatched, result.department_missing) == (2, 1, 1)
    assert (result.category_matched, result.category_unmatched) == (3, 1)
    orders = _orders(sessions)

    stalls = orders["CS2024030500012"]
    assert stalls.text == "望月湖小区门口流动摊贩占道经营。" + STALLS         # title + 。 + content, as received
    assert PHONE not in stalls.text_masked and "138****5678" in stalls.text_masked and "张**" in stalls.text_masked
    assert stalls.caller_phone is None and stalls.caller_phone_last4 == "5678"
    assert (stalls.channel, stalls.state) == ("hotline", "closed")
    assert (stalls.category_code, stalls.category_path) == ("010101", "城市管理/市容秩序/占道经营")
    assert stalls.department_code == "430104-CHENGGUAN" and stalls.district_adcode == "430104"
    assert stalls.address == "岳麓区望月湖街道桃子湖路18号" and stalls.satisfaction == "满意"
    assert _utc(stalls.created_at) == dt.datetime(2024, 3, 5, 0, 15, 22, tzinfo=UTC)        # Beijing time → UTC
    assert _utc(stalls.completed_at) == _utc(stalls.closed_at) == dt.datetime(2024, 3, 7, 9, 30, tzinfo=UTC)
    assert stalls.kb_item_id is None and stalls.time_limit_days is None                   # not routed

    night = orders["CS2024030600231"]
    assert (night.channel, night.state, night.completed_at, night.closed_at) == ("wechat", "handling", None, None)
    assert night.department_code == "430104-ZHUJIAN" and night.category_code == "030101"
    assert _utc(night.created_at) == dt.datetime(2024, 3, 6, 15, 40, tzinfo=UTC)
    assert night.caller_phone_last4 is None

    estate = orders["CS2024030700045"]
    assert (estate.state, estate.channel, estate.satisfaction) == ("archived", "web", "基本满意")
    assert estate.department_code is None and estate.category_code is None and estate.category_path is None
    assert estate.caller_phone_last4 == "6666"

    water = orders["CS2024030800007"]
    assert water.text == WATER and water.state == "closed" and water.closed_at is None      # no title, no completion
    assert water.category_code == "100101" and water.department_code is None

    with sessions() as session:
        events = {e.order_id: e for e in session.scalars(select(OrderEvent))}
    assert len(events) == 4 and all(e.action == "import" and e.seq == 1 for e in events.values())
    kept = events[estate.id]
    assert kept.data["department_name"] == "岳麓区住房保障服务中心" and kept.data["category"] == "城乡建设/物业管理/物业服务"
    assert kept.data["file"] == "export.csv" and kept.data["row"] == 4 and kept.to_state == "archived"
    assert "知识库中无此单位" in kept.comment
    assert events[stalls.id].department_code == "430104-CHENGGUAN" and "department_name" not in events[stalls.id].data


def test_the_place_is_read_from_the_address_and_text_else_the_handling_units(sessions, tiny_kb, tiny_gazetteer,
                                                                                tmp_path):
    """Imported orders feed indicators by area and duplicate search: the street comes from 问题点位 and the text."""
    from routing.geocode import GazetteerGeocoder

    result = _import(sessions, write_csv(tmp_path / "export.csv", GOOD_ROWS), tiny_kb,
                     geocoder=GazetteerGeocoder(tiny_gazetteer))
    orders = _orders(sessions)
    stalls, water, night = orders["CS2024030500012"], orders["CS2024030800007"], orders["CS2024030600231"]
    assert (stalls.district_adcode, stalls.street_id) == ("430104", "430104001")     # 望月湖街道, not the bureau's
    assert (water.district_adcode, water.street_id) == ("430111", "430111007")       # no unit at all: from the text
    assert (night.district_adcode, night.street_id) == ("430104", "430104003")
    estate = orders["CS2024030700045"]
    assert estate.district_adcode == "430104" and estate.street_id is None            # 岳麓区某小区: the district only
    assert (result.placed_from_text, result.placed_from_unit) == (4, 0)


def test_a_second_import_changes_nothing(sessions, tiny_kb, tmp_path):
    path = write_csv(tmp_path / "export.csv", GOOD_ROWS)
    _import(sessions, path, tiny_kb)
    before = {no: (o.text, o.state, o.updated_at, o.version) for no, o in _orders(sessions).items()}
    again = _import(sessions, path, tiny_kb)
    assert (again.rows, again.imported, again.skipped_present) == (4, 0, 4)
    assert {no: (o.text, o.state, o.updated_at, o.version) for no, o in _orders(sessions).items()} == before
    assert _count(sessions, OrderEvent) == 4
    # A later export that repeats old orders (even changed) adds only the new ones: stored orders are not overwritten.
    changed = [[GOOD_ROWS[0][0], "改过的标题", *GOOD_ROWS[0][2:]],
               ["CS2024031000001", "", "楼上邻居每天半夜跺脚拖椅子，吵得睡不着，沟通多次无果。", "2024-03-10 23:10", "",
                "", "", "", "", "", "", ""]]
    more = _import(sessions, write_csv(tmp_path / "march.csv", changed), tiny_kb)
    assert (more.imported, more.skipped_present) == (1, 1)
    assert _orders(sessions)[GOOD_ROWS[0][0]].text.startswith("望月湖小区门口")


def test_a_bad_row_names_file_row_and_field_and_nothing_is_stored(sessions, tiny_kb, tmp_path):
    blank = ["" for _ in HEADER]

    def row(no, **cells):
        values = dict(zip(HEADER, GOOD_ROWS[1]))
        values.update({"工单编号": no, **cells})
        return [values[h] for h in HEADER]

    rows = [GOOD_ROWS[0],                                            # row 2 (its content holds a line break)
            row("CS-BAD-3", 工单内容="   "),                          # row 3: no content
            row("CS-BAD-4", 来电时间="2024-02-30 10:00"),             # row 4: no such day
            row("CS-BAD-5", 问题分类="城市管理>>占道经营"),             # row 5: an empty level
            row("CS-BAD-6", 工单标题="标" * 201),                       # row 6: too long
            row(GOOD_ROWS[0][0]),                                     # row 7: the order number of row 2
            row("CS-BAD-8", 来电号码="138"),                           # row 8: not a phone number
            row("CS-BAD-9", 状态="挂起"),                              # row 9: no such state
            row("CS-BAD-10", 办结时间="2024-03-01 10:00"),              # row 10: finished before the call
            row("CS-BAD-11", 渠道="信鸽"),                              # row 11: unknown channel
            blank,                                                    # row 12: blank lines are skipped
            row("CS-BAD-13", 来电时间="")]                              # row 13: no time
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataFileError) as caught:
        _import(sessions, path, tiny_kb)
    errors = caught.value.errors
    expected = [(3, "工单内容", "missing"), (4, "来电时间", "not a valid date"), (5, "问题分类", "empty level"),
                (6, "工单标题", "at most 200"), (7, "工单编号", "already row 2"), (8, "来电号码", "not a phone number"),
                (9, "状态", "unknown state"), (10, "办结时间", "before"), (11, "渠道", "unknown channel"),
                (13, "来电时间", "missing")]
    for line, column, words in expected:
        assert any(e.startswith(f"{path}:{line}:{column}: ") and words in e for e in errors), (line, errors)
    assert len(errors) == len(expected)
    assert not any(PHONE in e or "138" in e.split(": ", 1)[1] for e in errors)       # numbers are never echoed
    assert _count(sessions) == 0 and _count(sessions, OrderEvent) == 0


def test_missing_and_doubled_columns_are_explained(sessions, tiny_kb, tmp_path):
    no_time = write_csv(tmp_path / "no_time.csv", [r[:3] for r in GOOD_ROWS], HEADER[:3])
    with pytest.raises(DataFileError, match=r"no_time.csv:1: missing column\(s\) 来电时间 \(created_at\)"):
        _import(sessions, no_time, tiny_kb)
    doubled = write_csv(tmp_path / "doubled.csv", [[*r, r[2]] for r in GOOD_ROWS], [*HEADER, "text"])
    with pytest.raises(DataFileError, match="columns 工单内容 and text both give text"):
        _import(sessions, doubled, tiny_kb)
    with pytest.raises(DataFileError, match="unsupported file type"):
        _import(sessions, tmp_path / "orders.txt", tiny_kb)
    assert _count(sessions) == 0


def test_a_dry_run_counts_and_stores_nothing(sessions, tiny_kb, tmp_path):
    result = _import(sessions, write_csv(tmp_path / "export.csv", GOOD_ROWS), tiny_kb, dry_run=True)
    assert (result.rows, result.new, result.imported, result.department_matched) == (4, 4, 0, 2)
    assert _count(sessions) == 0


def test_a_gbk_export_from_excel_on_windows_imports(sessions, tiny_kb, tmp_path):
    result = _import(sessions, write_csv(tmp_path / "gbk.csv", GOOD_ROWS, encoding="gbk"), tiny_kb)
    assert result.imported == 4 and _orders(sessions)["CS2024030500012"].category_code == "010101"


def test_xlsx_with_spreadsheet_dates_and_numeric_order_numbers(sessions, tiny_kb, tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    first = list(GOOD_ROWS[0])
    first[0], first[3], first[7] = 2024030500012, dt.datetime(2024, 3, 5, 8, 15, 22), dt.datetime(2024, 3, 7, 17, 30)
    sheet.append(first)
    sheet.append(GOOD_ROWS[1])
    path = tmp_path / "export.xlsx"
    book.save(path)
    result = _import(sessions, path, tiny_kb)
    assert result.imported == 2
    stored = _orders(sessions)["2024030500012"]                     # the number, without a spreadsheet's ".0"
    assert _utc(stored.created_at) == dt.datetime(2024, 3, 5, 0, 15, 22, tzinfo=UTC) and stored.state == "closed"

    sheet.append(["CS-X-4", "", "内容", 45352.5, "", "", "", "", "", "", "", ""])          # a date typed as a number
    sheet.append([20240305000120001, "", "内容", "2024-03-05 09:00", "", "", "", "", "", "", "", ""])  # digits lost
    book.save(path)
    with pytest.raises(DataFileError) as caught:
        _import(sessions, path, tiny_kb)
    assert any(e.startswith(f"{path}:4:来电时间: a number") for e in caught.value.errors)
    assert any(e.startswith(f"{path}:5:工单编号:") and "format the column as text" in e for e in caught.value.errors)
    assert _count(sessions) == 2


def test_jsonl_with_our_own_names_and_line_numbers(sessions, tiny_kb, tmp_path):
    records = [{"order_no": "WX-0001", "title": "楼上噪音", "text": "楼上邻居每天半夜拖椅子跺脚，咚咚咚吵得睡不着！",
                "created_at": "2024-05-01T23:30:00+08:00", "department": "望月湖街道办事处",
                "category": ["生态环境", "噪声污染", "邻里生活噪声"], "channel": "wechat", "state": "closed",
                "completed_at": "2024-05-03 10:00", "satisfaction": "不满意", "caller_phone": 13912345678},
               {"order_no": "WX-0002", "text": "家里突然停水了也没有提前通知。", "created_at": "2024-05-02 07:00"}]
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records[:1]) + "\n\n" +
                    json.dumps(records[1], ensure_ascii=False) + "\n", encoding="utf-8")
    result = _import(sessions, path, tiny_kb, channel="web")
    assert result.imported == 2
    orders = _orders(sessions)
    noise = orders["WX-0001"]
    assert noise.text == "楼上噪音。楼上邻居每天半夜拖椅子跺脚，咚咚咚吵得睡不着！" and noise.department_code == "430104001"
    assert (noise.street_id, noise.category_code, noise.caller_phone_last4) == ("430104001", "030103", "5678")
    assert (noise.channel, noise.state, noise.satisfaction) == ("wechat", "closed", "不满意")
    assert orders["WX-0002"].channel == "web"                      # --channel for rows without a channel

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(records[0], ensure_ascii=False) + "\n\n" +
                   json.dumps({**records[1], "order_no": "WX-0003", "created_at": "五月二日"}, ensure_ascii=False) +
                   "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataFileError) as caught:
        _import(sessions, bad, tiny_kb)
    assert caught.value.errors == [f"{bad}:4: malformed JSON (Expecting property name enclosed in double quotes at "
                                   "column 2)"]
    bad.write_text(bad.read_text(encoding="utf-8").rsplit("\n{not json", 1)[0] + "\n", encoding="utf-8")
    with pytest.raises(DataFileError) as caught:
        _import(sessions, bad, tiny_kb)
    assert len(caught.value.errors) == 1 and caught.value.errors[0].startswith(f"{bad}:3:created_at: not a date")
    assert _count(sessions) == 2


def test_training_rows_come_from_closed_orders_with_a_unit(sessions, tiny_kb, tmp_path):
    _import(sessions, write_csv(tmp_path / "export.csv", GOOD_ROWS), tiny_kb)
    with sessions() as session:
        rows = export_training_rows(session)
    assert [(r["department"], r["category"]) for r in rows] == [
        ("430104-CHENGGUAN", "城市管理/市容秩序/占道经营"),          # closed, a KB unit
        ("岳麓区住房保障服务中心", "城乡建设/物业管理/物业服务")]       # archived, the file's own unit and category
    assert all(PHONE not in r["text"] for r in rows) and rows[0]["text"].startswith("望月湖小区门口流动摊贩占道经营。")


def test_cli_imports_reports_and_refuses_a_bad_file(tmp_path, monkeypatch, tiny_data_root):
    monkeypatch.setenv("HOTLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("HOTLINE_DATA_ROOT", str(tiny_data_root))
    get_settings.cache_clear()
    from hotline.cli import app

    runner = CliRunner()
    path = write_csv(tmp_path / "export.csv", GOOD_ROWS)
    try:
        dry = runner.invoke(app, ["orders", "import", str(path), "--dry-run"], env={"COLUMNS": "200"})
        assert dry.exit_code == 0, dry.output
        assert "4 rows: 4 would import, 0 already present, skipped" in dry.output
        first = runner.invoke(app, ["orders", "import", str(path)], env={"COLUMNS": "200"})
        assert first.exit_code == 0, first.output
        assert "4 rows: 4 imported, 0 already present, skipped" in first.output
        assert "岳麓区住房保障服务中心 (1)" in first.output and PHONE not in first.output
        again = runner.invoke(app, ["orders", "import", str(path)], env={"COLUMNS": "200"})
        assert again.exit_code == 0 and "4 rows: 0 imported, 4 already present, skipped" in again.output

        bad = write_csv(tmp_path / "bad.csv", [["CS-NEW-1", *GOOD_ROWS[1][1:]],
                                               ["CS-NEW-2", "标题", "", *GOOD_ROWS[1][3:]]])
        refused = runner.invoke(app, ["orders", "import", str(bad)])
        assert refused.exit_code == 2
        flat = refused.output.replace("\n", "")
        assert f"{bad}:3:工单内容: missing" in flat and "nothing was imported" in flat
        wrong = runner.invoke(app, ["orders", "import", str(path), "--channel", "pigeon"])
        assert wrong.exit_code == 2 and "--channel must be one of" in wrong.output
    finally:
        get_settings.cache_clear()
    from hotline.core.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(WorkOrder)) == 4      # nothing of bad.csv
    engine.dispose()
