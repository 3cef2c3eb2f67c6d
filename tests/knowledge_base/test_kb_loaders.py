"""Knowledge-base loading: the real 长沙 lists meet the minimums; every data error names file:row:field."""
from __future__ import annotations

import copy
import csv

import openpyxl
import pytest
from support import DEPARTMENT_HEADER, ENTRIES, REAL_CITY_DIR, TAXONOMY_HEADER, TAXONOMY_ROWS, write_csv, write_yaml

from knowledge_base.kb import load_knowledge_base
from knowledge_base.loaders import DataFileError, read_rows


def _line_of(path, needle: str) -> int:
    """1-based line number of the first line of `path` containing `needle`."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def _load_errors(city_dir) -> list[str]:
    with pytest.raises(DataFileError) as info:
        load_knowledge_base(city_dir)
    assert info.value.errors, "DataFileError without errors"
    for error in info.value.errors:
        assert error in str(info.value)  # the message lists every problem
    return info.value.errors


def _write_entries(city_dir, entries, name="01_tiny.yaml"):
    return write_yaml(city_dir / "responsibilities" / name, entries)


# ----------------------------------------------------------------------------------------- the real data


@pytest.fixture(scope="module")
def real_kb():
    return load_knowledge_base(REAL_CITY_DIR)


def test_real_changsha_knowledge_base_meets_the_minimums(real_kb):
    taxonomy = real_kb.taxonomy.values()
    level1 = {n.level1 for n in taxonomy}
    level2 = {(n.level1, n.level2) for n in taxonomy}
    counts = {"大类": len(level1), "子类": len(level2), "细类": len(real_kb.taxonomy), "entries": len(real_kb.entries)}
    minimums = {"大类": 15, "子类": 100, "细类": 300, "entries": 400}
    short = {k: f"{counts[k]} < {m}" for k, m in minimums.items() if counts[k] < m}
    assert not short, f"the 长沙 knowledge base is below the required minimums: {short}"
    few_examples = [e.id for e in real_kb.entries.values() if len(e.examples) < 3]
    assert not few_examples, f"entries with fewer than 3 examples: {few_examples}"


def test_real_changsha_has_every_street_office(real_kb):
    with (REAL_CITY_DIR / "geo" / "changsha_streets.csv").open(encoding="utf-8-sig", newline="") as handle:
        streets = {row["street_id"]: row["street_name"] for row in csv.DictReader(handle)}
    assert len(streets) == 168
    offices = {d.street_id: d for d in real_kb.departments.values() if d.kind == "street_office"}
    missing = sorted(f"{sid} {name}" for sid, name in streets.items() if sid not in offices)
    assert not missing, f"street offices missing from departments.csv: {missing[:20]}"
    for sid in streets:
        assert offices[sid].level == "street" and offices[sid].code == sid


def test_real_changsha_entries_reference_known_codes(real_kb):
    kinds = {d.kind for d in real_kb.departments.values()}
    for entry in real_kb.entries.values():
        assert entry.category in real_kb.taxonomy, entry.id
        assert entry.lead in kinds, entry.id
        assert real_kb.category_path(entry.category) == real_kb.taxonomy[entry.category].path
    assert len(real_kb.content_hash) == 16


def test_real_changsha_has_a_housing_office_for_the_new_home_market_in_every_district(real_kb):
    """Real replies name 房产局/住房保障局 for new-home sales and public rental housing (KB 2026.12.3)."""
    housing = [d for d in real_kb.departments.values() if d.kind == "fangchan"]
    assert {d.level for d in housing} == {"city", "district"}
    districts = {d.district_adcode for d in real_kb.departments.values() if d.kind == "zhujian" and d.level == "district"}
    assert {d.district_adcode for d in housing if d.level == "district"} == districts
    for entry_id in ("KB-02-025", "KB-02-030", "KB-02-034"):
        entry = real_kb.entries[entry_id]
        assert entry.lead == "fangchan" and "zhujian" in entry.co_handlers, entry_id
    # construction quality stays with the 住建局
    assert real_kb.entries["KB-02-026"].lead == "zhujian"


def test_real_changsha_holds_the_vehicle_office_and_transit_planning_matters_its_boundaries_send_to(real_kb):
    """KB 2026.12.4: boundaries sent driving tests, licences and vehicle registration to the traffic police's 车管所
    and no entry held them; metro network and station planning is the planning bureau's, the metro company helps."""
    for entry_id in ("KB-05-030", "KB-05-031"):
        assert real_kb.entries[entry_id].lead == "jiaojing" and real_kb.entries[entry_id].level == "city"
    assert "jiaotong" in real_kb.entries["KB-05-030"].co_handlers
    assert real_kb.entries["KB-04-016"].lead == "jiaotong"          # the driving school itself stays with 交通运输
    planning = real_kb.entries["KB-12-017"]
    assert planning.lead == "ziran" and {"metro", "jiaotong"} <= set(planning.co_handlers)
    assert real_kb.entries["KB-04-007"].lead == "metro"             # a running line's service stays with the operator


def test_real_changsha_holds_teachers_and_public_institutions_recruitment(real_kb):
    """KB 2026.12.5: teachers' recruitment and titles are organised by the education bureau with 人社, other public
    institutions' recruitment by 人社; the two boundaries that disagreed about teachers' titles now agree."""
    teachers = real_kb.entries["KB-09-029"]
    assert (teachers.lead, teachers.level, teachers.co_handlers) == ("jiaoyu", "district", ["renshe"])
    recruitment = real_kb.entries["KB-07-035"]
    assert recruitment.lead == "renshe" and recruitment.level == "district"
    assert real_kb.category_path(teachers.category) == ["教育", "学校管理", "教师招聘与职称"]
    assert real_kb.category_path(recruitment.category) == ["劳动就业与社会保障", "事业单位人事", "事业单位公开招聘"]
    for other in ("KB-07-034", "KB-09-019"):
        assert "KB-09-029" in real_kb.entries[other].boundary
    assert real_kb.version == "2026.12.5"


def test_real_changsha_gives_a_town_its_own_plans(real_kb):
    """KB 2026.12.5: the 镇/乡 government draws up its own plan and village plans and runs market-town building
    (城乡规划法 art. 15, 22); the planning bureau co-handles, and keeps permits, the county seat and metro planning."""
    plans = real_kb.entries["KB-12-018"]
    assert (plans.lead, plans.level, plans.co_handlers) == ("street_office", "street", ["ziran"])
    assert real_kb.entries["KB-12-001"].lead == "ziran" and real_kb.entries["KB-12-017"].lead == "ziran"
    assert "KB-12-018" in real_kb.entries["KB-12-017"].boundary


def test_real_changsha_holds_road_traffic_accidents(real_kb):
    """KB 2026.12.5: accident findings, review, mediation and hit-and-run cases are the traffic police brigade's
    (道路交通安全法 art. 70-74); the list had no entry for them at all."""
    accidents = real_kb.entries["KB-05-032"]
    assert (accidents.lead, accidents.level) == ("jiaojing", "district")
    assert real_kb.category_path(accidents.category) == ["公安与社会治安", "机动车和驾驶人管理", "道路交通事故处理"]
    assert "KB-07-026" in accidents.boundary          # a commuting accident's work-injury claim stays with 人社


def test_every_entry_a_boundary_names_exists(real_kb):
    """A boundary that sends a matter to "KB-xx-yyy" must name an entry the list holds."""
    import re

    named = [(entry.id, ref) for entry in real_kb.entries.values()
             for ref in re.findall(r"KB-\d{2}-\d{3}", entry.boundary or "")]
    assert len(named) > 500   # the list's boundaries do name entries
    assert [(entry_id, ref) for entry_id, ref in named if ref not in real_kb.entries] == []


# ------------------------------------------------------------------------------------------ the tiny KB


def test_tiny_kb_loads_and_resolves_units(tiny_kb):
    assert len(tiny_kb.departments) == 19
    assert len(tiny_kb.taxonomy) == 6 and len(tiny_kb.entries) == 6
    assert tiny_kb.entries["KB-03-004"].disputed is True
    assert tiny_kb.entries["KB-03-003"].co_handlers == ["gongan"]
    assert tiny_kb.category_path("030103") == ["生态环境", "噪声污染", "邻里生活噪声"]
    assert tiny_kb.unit("chengguan", "district", district="430111").code == "430111-CHENGGUAN"
    assert tiny_kb.unit("street_office", "street", street="430104001").name == "望月湖街道办事处"
    assert tiny_kb.unit("water", "city").code == "CS-WATER"
    assert tiny_kb.unit("water", "district", district="430104") is None
    assert tiny_kb.district_names == {"430104": "岳麓区", "430111": "雨花区"}


def test_content_hash_is_stable_and_changes_with_a_file(tiny_city_copy):
    first = load_knowledge_base(tiny_city_copy).content_hash
    assert load_knowledge_base(tiny_city_copy).content_hash == first
    entries = copy.deepcopy(ENTRIES)
    entries[0]["examples"].append("夜市摊贩把桃子湖路占了一半")
    _write_entries(tiny_city_copy, entries)
    second = load_knowledge_base(tiny_city_copy).content_hash
    assert second != first
    path = tiny_city_copy / "departments.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("长沙水业集团", "长沙供水有限公司"), encoding="utf-8")
    assert load_knowledge_base(tiny_city_copy).content_hash not in {first, second}


# ---------------------------------------------------------------------------------------- YAML errors


def test_unknown_taxonomy_code_names_file_line_field(tiny_city_copy):
    entries = copy.deepcopy(ENTRIES)
    entries[2]["category"] = "999999"
    path = _write_entries(tiny_city_copy, entries)
    line = _line_of(path, "- id: KB-03-002")
    assert line > 1
    errors = _load_errors(tiny_city_copy)
    assert any(e.startswith(f"{path}:{line}:category:") and "999999" in e for e in errors), errors


def test_unknown_lead_kind_names_file_line_field(tiny_city_copy):
    entries = copy.deepcopy(ENTRIES)
    entries[3]["lead"] = "wuye"
    entries[3]["co_handlers"] = ["gongan", "jiedao"]
    path = _write_entries(tiny_city_copy, entries)
    line = _line_of(path, "- id: KB-03-003")
    errors = _load_errors(tiny_city_copy)
    assert f"{path}:{line}:lead: unknown department kind 'wuye'" in errors
    assert f"{path}:{line}:co_handlers: unknown department kind 'jiedao'" in errors


def test_duplicate_entry_id_across_files(tiny_city_copy):
    duplicate = copy.deepcopy(ENTRIES[0])
    duplicate["name"] = "占道经营查处（重复）"
    second = _write_entries(tiny_city_copy, [duplicate], name="02_more.yaml")
    errors = _load_errors(tiny_city_copy)
    assert errors == [f"{second}:1:id: duplicate entry id KB-01-001"]


def test_bad_duty_type_names_the_field(tiny_city_copy):
    entries = copy.deepcopy(ENTRIES)
    entries[4]["type"] = "行政乱罚"
    path = _write_entries(tiny_city_copy, entries)
    line = _line_of(path, "- id: KB-03-004")
    errors = _load_errors(tiny_city_copy)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:{line}:type:") and "权责类型" in errors[0] and "行政乱罚" in errors[0]


def test_too_few_examples_and_bad_level_are_reported_together(tiny_city_copy):
    entries = copy.deepcopy(ENTRIES)
    entries[0]["examples"] = ["摆摊占道", "流动摊贩"]
    entries[5]["level"] = "province"
    path = _write_entries(tiny_city_copy, entries)
    errors = _load_errors(tiny_city_copy)
    assert any(e.startswith(f"{path}:{_line_of(path, '- id: KB-01-001')}:examples:") for e in errors), errors
    assert any(e.startswith(f"{path}:{_line_of(path, '- id: KB-10-001')}:level:") for e in errors), errors


def test_invalid_yaml_names_the_line(tiny_city_copy):
    path = tiny_city_copy / "responsibilities" / "01_tiny.yaml"
    text = path.read_text(encoding="utf-8").splitlines()
    bad_line = _line_of(path, "- id: KB-03-001") + 1
    text[bad_line - 1] = "  name: 施工噪声: 夜间施工"      # a second ': ' on one line is not YAML
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    errors = _load_errors(tiny_city_copy)
    assert len(errors) == 1
    error = errors[0]
    assert error.startswith(f"{path}:") and "invalid YAML" in error
    reported = int(error[len(str(path)) + 1:].split(":", 1)[0])
    assert reported == bad_line


def test_yaml_top_level_must_be_a_list(tiny_city_copy):
    path = tiny_city_copy / "responsibilities" / "01_tiny.yaml"
    path.write_text("id: KB-01-001\nname: 占道经营查处\n", encoding="utf-8")
    assert _load_errors(tiny_city_copy) == [f"{path}:1: expected a list of entries at the top level"]


def test_unquoted_category_code_in_yaml(tiny_city_copy):
    path = tiny_city_copy / "responsibilities" / "01_tiny.yaml"
    text = path.read_text(encoding="utf-8")
    assert "category: '010101'" in text
    path.write_text(text.replace("category: '010101'", "category: 010101"), encoding="utf-8")
    assert load_knowledge_base(tiny_city_copy).entries["KB-01-001"].category == "010101"


# ----------------------------------------------------------------------------------------- CSV errors


def test_missing_column_in_departments_csv(tiny_city_copy):
    path = tiny_city_copy / "departments.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    header = [h for h in DEPARTMENT_HEADER if h != "kind"]
    write_csv(path, header, [{k: v for k, v in r.items() if k != "kind"} for r in rows])
    errors = _load_errors(tiny_city_copy)
    assert f"{path}:1: missing column(s) kind" in errors


def test_bad_department_row_names_row_and_field(tiny_city_copy):
    path = tiny_city_copy / "departments.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    # Row 4 of the sheet (header = row 1) gets an unknown level.
    assert lines[3].split(",")[3] == "district"
    cells = lines[3].split(",")
    cells[3] = "county"
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = _load_errors(tiny_city_copy)
    assert any(e.startswith(f"{path}:4:level:") for e in errors), errors


def test_duplicate_department_code(tiny_city_copy):
    path = tiny_city_copy / "departments.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.append(lines[1])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = _load_errors(tiny_city_copy)
    assert errors == [f"{path}:{len(lines)}:code: duplicate department code CS-CHENGGUAN"]


def test_not_utf8_csv_is_reported(tiny_city_copy):
    path = tiny_city_copy / "taxonomy" / "01_tiny.csv"
    write_csv(path, TAXONOMY_HEADER, TAXONOMY_ROWS, encoding="gbk")
    errors = _load_errors(tiny_city_copy)
    assert any(e.startswith(f"{path}: not UTF-8") for e in errors), errors


def test_utf8_bom_csv_is_accepted(tiny_city_copy):
    path = tiny_city_copy / "taxonomy" / "01_tiny.csv"
    write_csv(path, TAXONOMY_HEADER, TAXONOMY_ROWS, encoding="utf-8-sig")
    assert load_knowledge_base(tiny_city_copy).taxonomy["010101"].level3 == "占道经营"


def test_bad_taxonomy_code_and_duplicate(tiny_city_copy):
    path = tiny_city_copy / "taxonomy" / "01_tiny.csv"
    rows = [list(r) for r in TAXONOMY_ROWS] + [["03010", "生态环境", "噪声污染", "五位码", "", ""],
                                               list(TAXONOMY_ROWS[0])]
    write_csv(path, TAXONOMY_HEADER, rows)
    errors = _load_errors(tiny_city_copy)
    assert any(e.startswith(f"{path}:8:code:") for e in errors), errors
    assert f"{path}:9:code: duplicate taxonomy code 010101" in errors


def test_more_cells_than_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("code,level1\n010101,城市管理,多出来的\n", encoding="utf-8")
    with pytest.raises(DataFileError) as info:
        read_rows(path)
    assert info.value.errors == [f"{path}:2: more cells than header columns"]


def test_unsupported_table_type(tmp_path):
    path = tmp_path / "departments.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(DataFileError, match="unsupported file type '.xls'"):
        read_rows(path)


# ---------------------------------------------------------------------------------------- .xlsx files


def _write_xlsx(path, header, rows):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_taxonomy_from_xlsx_loads(tiny_city_copy):
    (tiny_city_copy / "taxonomy" / "01_tiny.csv").unlink()
    _write_xlsx(tiny_city_copy / "taxonomy" / "01_tiny.xlsx", TAXONOMY_HEADER, TAXONOMY_ROWS)
    kb = load_knowledge_base(tiny_city_copy)
    assert kb.taxonomy["100101"].path == ["公用事业", "供水", "停水"]


def test_xlsx_errors_name_sheet_row_and_field(tiny_city_copy):
    (tiny_city_copy / "taxonomy" / "01_tiny.csv").unlink()
    rows = [list(r) for r in TAXONOMY_ROWS]
    rows[2][0] = "03-01-02"     # sheet row 4
    rows[4][2] = None           # sheet row 6: empty 子类
    path = _write_xlsx(tiny_city_copy / "taxonomy" / "01_tiny.xlsx", TAXONOMY_HEADER, rows)
    errors = _load_errors(tiny_city_copy)
    assert any(e.startswith(f"{path}:4:code:") for e in errors), errors
    assert any(e.startswith(f"{path}:6:level2:") for e in errors), errors


def test_responsibilities_from_xlsx(tiny_city_copy):
    (tiny_city_copy / "responsibilities" / "01_tiny.yaml").unlink()
    header = ["id", "name", "type", "category", "legal_basis", "duty_mode", "lead", "level", "co_handlers", "scope",
              "time_limit_days", "keywords", "examples", "disputed"]
    rows = [[e["id"], e["name"], e["type"], int(e["category"]), e["legal_basis"], e["duty_mode"], e["lead"],
             e["level"], "|".join(e["co_handlers"]), e["scope"], e["time_limit_days"], "|".join(e["keywords"]),
             "|".join(e["examples"]), e["disputed"]] for e in ENTRIES]
    rows[1][2] = "行政乱罚"    # sheet row 3
    path = _write_xlsx(tiny_city_copy / "responsibilities" / "01_tiny.xlsx", header, rows)
    errors = _load_errors(tiny_city_copy)
    assert len(errors) == 1 and errors[0].startswith(f"{path}:3:type:"), errors
    rows[1][2] = "行政处罚"
    _write_xlsx(path, header, rows)
    kb = load_knowledge_base(tiny_city_copy)
    assert kb.entries["KB-01-001"].category == "010101"       # the integer 10101 from Excel
    assert kb.entries["KB-01-001"].co_handlers == ["street_office"]
    assert kb.entries["KB-03-004"].disputed is True


def test_xlsx_examples_keep_their_commas(tiny_city_copy):
    (tiny_city_copy / "responsibilities" / "01_tiny.yaml").unlink()
    header = ["id", "name", "type", "category", "legal_basis", "duty_mode", "lead", "level", "time_limit_days",
              "examples"]
    examples = ["晚上好多摊贩占道摆摊，人行道都过不去", "小区门口流动摊贩，推着三轮车卖水果", "夜市摊位摆到马路中间，车都过不去"]
    rows = [["KB-01-001", "占道经营查处", "行政处罚", "010101", "《长沙市城市管理条例》", "巡查处置", "chengguan", "district",
             5, "|".join(examples)]]
    _write_xlsx(tiny_city_copy / "responsibilities" / "01_tiny.xlsx", header, rows)
    assert load_knowledge_base(tiny_city_copy).entries["KB-01-001"].examples == examples


def test_departments_xlsx_with_numeric_code_cells(tiny_city_copy):
    csv_path = tiny_city_copy / "departments.csv"
    with csv_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    csv_path.unlink()
    numeric = {"district_adcode", "street_id"}
    table = [[int(r[h]) if h in numeric and r[h] else (r[h] or None) for h in DEPARTMENT_HEADER] for r in rows]
    for row in table:
        if row[2] == "street_office":
            row[0] = int(row[0])
    _write_xlsx(tiny_city_copy / "departments.xlsx", DEPARTMENT_HEADER, table)
    kb = load_knowledge_base(tiny_city_copy)
    assert kb.unit("street_office", "street", street="430104001").code == "430104001"


# ---------------------------------------------------------------------------------- validity and scope


def test_scope_must_be_the_whole_city_or_a_known_district(tiny_city_copy):
    entries = copy.deepcopy(ENTRIES)
    entries[0]["scope"] = "岳麓区"
    entries[1]["scope"] = "浦东新区"
    path = _write_entries(tiny_city_copy, entries)
    errors = _load_errors(tiny_city_copy)
    assert errors == [f"{path}:{_line_of(path, '- id: KB-03-001')}:scope: scope must be 全市 or a district name, "
                      "got '浦东新区'"]


def test_effective_dates(tiny_city_copy):
    import datetime as dt

    from knowledge_base.index_store import entry_passages

    entries = copy.deepcopy(ENTRIES)
    entries[1]["effective_from"], entries[1]["effective_to"] = "2024-06-01", "2024-01-01"
    path = _write_entries(tiny_city_copy, entries)
    assert _load_errors(tiny_city_copy) == [f"{path}:{_line_of(path, '- id: KB-03-001')}:effective_to: ends before it starts"]
    entries[1]["effective_from"], entries[1]["effective_to"] = "2020-01-01", "2023-12-31"   # retired
    entries[2]["effective_from"] = (dt.date.today() + dt.timedelta(days=30)).isoformat()   # not yet in force
    _write_entries(tiny_city_copy, entries)
    kb = load_knowledge_base(tiny_city_copy)
    active = {e.id for e in kb.active_entries()}
    assert "KB-03-001" not in active and "KB-03-002" not in active and len(active) == 4
    assert kb.entries["KB-03-001"].in_force(dt.date(2022, 5, 1))
    assert {r.entry_id for r in entry_passages(kb)} == active


def test_excel_lock_files_are_ignored(tiny_city_copy):
    (tiny_city_copy / "taxonomy" / "~$01_tiny.xlsx").write_bytes(b"lock file, not a workbook")
    assert len(load_knowledge_base(tiny_city_copy).taxonomy) == 6


def test_damaged_xlsx_is_reported(tiny_city_copy):
    path = tiny_city_copy / "taxonomy" / "02_damaged.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    errors = _load_errors(tiny_city_copy)
    assert any(e.startswith(f"{path}: not a readable .xlsx workbook") for e in errors), errors


def test_missing_folder_and_empty_list(tmp_path, tiny_city_copy):
    with pytest.raises(DataFileError, match="knowledge-base folder not found"):
        load_knowledge_base(tmp_path / "nowhere")
    _write_entries(tiny_city_copy, [])
    assert _load_errors(tiny_city_copy) == [f"{tiny_city_copy / 'responsibilities'}: no responsibility entries found"]
