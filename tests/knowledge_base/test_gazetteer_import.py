"""`hotline gazetteer import`: the city's standard address registry (标准地址库) into the gazetteer, all or nothing.

Runs on a writable copy of the tiny city (岳麓区 望月湖街道/桔子洲街道, 雨花区 高桥街道). The compound names are made up.
"""
from __future__ import annotations

import csv
import re

import openpyxl
import pytest
from support import GAOQIAO, WANGYUEHU, write_csv
from typer.testing import CliRunner

HEADER = ["name", "aliases", "street_code", "community", "type", "lng", "lat", "datum"]
GOOD_ROWS = [
    ["湖光雅苑", "湖光雅苑小区|湖光苑", WANGYUEHU + "000", "望月湖社区", "compound", "112.9450", "28.1915", "gcj02"],
    ["桂园新村", "", GAOQIAO + "000", "", "compound", "", "", ""],
    ["石塘村", "", GAOQIAO + "000", "", "village", "", "", ""],
    ["高桥文化站", "", GAOQIAO + "000", "", "landmark", "", "", ""],
]


def _registry(city_dir):
    return city_dir / "geo" / "address_registry.csv"


def _import(path, city_dir):
    from knowledge_base.address_registry import import_registry

    return import_registry(path, city_dir)


def test_a_good_file_is_imported_and_the_geocoder_knows_its_places(tiny_city_copy, tmp_path):
    from knowledge_base.gazetteer import load_gazetteer
    from routing.geocode import GazetteerGeocoder

    result = _import(write_csv(tmp_path / "registry.csv", HEADER, GOOD_ROWS), tiny_city_copy)
    assert (result.rows, result.inserted, result.updated, result.unchanged, result.written) == (4, 4, 0, 0, True)
    with _registry(tiny_city_copy).open(encoding="utf-8") as handle:
        stored = {r["name"]: r for r in csv.DictReader(handle)}
    assert stored["湖光雅苑"]["street_id"] == WANGYUEHU and stored["湖光雅苑"]["district_adcode"] == "430104"
    assert stored["湖光雅苑"]["datum"] == "gcj02" and stored["石塘村"]["type"] == "village"

    geocoder = GazetteerGeocoder(load_gazetteer(tiny_city_copy))
    message = ("湖光苑12栋楼下的化粪池又满了！！污水都漫到路上来了，臭得不得了，跟物业讲了三次都冇人管，"
               "小孩子放学都要从这里过，请你们快点派人来处理。")
    found = geocoder.geocode(message)
    assert found.district["name"] == "岳麓区" and found.street["name"] == "望月湖街道"
    assert found.community == "望月湖社区"                          # the registry's community for the compound
    assert found.standard_address == "湖南省长沙市岳麓区望月湖街道望月湖社区湖光雅苑12栋"
    village = geocoder.geocode("关于石塘村3组的投诉：村口的路灯坏了两个月，晚上一片漆黑，摔了好几个人。")
    assert village.street["name"] == "高桥街道" and village.community == "石塘村"
    assert village.standard_address == "湖南省长沙市雨花区高桥街道石塘村3组"


def test_a_bad_row_names_row_and_field_and_nothing_is_stored(tiny_city_copy, tmp_path):
    from knowledge_base.loaders import DataFileError

    rows = [*GOOD_ROWS,
            ["新港花园", "", "430104999000", "", "compound", "", "", ""],                    # row 6: unknown street
            ["滨江苑", "", GAOQIAO + "000", "", "skyscraper", "", "", ""],                    # row 7: unknown type
            ["江畔名邸", "", WANGYUEHU + "000", "高桥社区", "compound", "116.40", "39.90", "wgs84"],  # 8: 北京
            ["桂园新村", "", GAOQIAO + "000", "", "compound", "", "", ""],                    # row 9: row 3 again
            ["小区", "", GAOQIAO + "000", "", "compound", "", "", ""],                        # row 10: not a name
            ["云栖苑", "", GAOQIAO + "000", "", "compound", "113.0", "", ""]]                 # row 11: lat missing
    before = _registry(tiny_city_copy).exists()
    with pytest.raises(DataFileError) as caught:
        _import(write_csv(tmp_path / "registry.csv", HEADER, rows), tiny_city_copy)
    errors = caught.value.errors
    path = tmp_path / "registry.csv"
    assert any(e.startswith(f"{path}:6:street_code: unknown street code 430104999000") for e in errors)
    assert any(e.startswith(f"{path}:7:type:") for e in errors)
    assert any(e.startswith(f"{path}:8:lng:") and "outside 长沙市" in e for e in errors)
    assert any(e.startswith(f"{path}:9:name:") and "row 3" in e for e in errors)
    assert any(e.startswith(f"{path}:10:name:") for e in errors)
    assert any(e.startswith(f"{path}:11:") and "both lng and lat" in e for e in errors)
    assert len(errors) == 6
    assert before is False and not _registry(tiny_city_copy).exists()      # nothing written, not even good rows


def test_a_bad_file_leaves_an_earlier_import_as_it_was(tiny_city_copy, tmp_path):
    from knowledge_base.loaders import DataFileError

    _import(write_csv(tmp_path / "first.csv", HEADER, GOOD_ROWS), tiny_city_copy)
    stored = _registry(tiny_city_copy).read_bytes()
    bad = write_csv(tmp_path / "second.csv", HEADER, [["云栖苑", "", "12345", "", "compound", "", "", ""]])
    with pytest.raises(DataFileError) as caught:
        _import(bad, tiny_city_copy)
    assert caught.value.errors[0].startswith(f"{bad}:2:street_code:")
    assert _registry(tiny_city_copy).read_bytes() == stored


def test_a_community_of_another_street_is_refused(tiny_city_copy, tmp_path):
    from knowledge_base.loaders import DataFileError

    # The tiny city's 望月湖社区 is in 望月湖街道, not in 高桥街道.
    path = write_csv(tmp_path / "registry.csv", HEADER, [["云栖苑", "", GAOQIAO + "000", "望月湖社区", "compound",
                                                          "", "", ""]])
    with pytest.raises(DataFileError) as caught:
        _import(path, tiny_city_copy)
    assert caught.value.errors == [f"{path}:2:community: 望月湖社区 is in 望月湖街道 ({WANGYUEHU}), not in 高桥街道"]


def test_re_import_changes_nothing_and_a_changed_row_is_updated(tiny_city_copy, tmp_path):
    path = write_csv(tmp_path / "registry.csv", HEADER, GOOD_ROWS)
    _import(path, tiny_city_copy)
    first = _registry(tiny_city_copy).read_bytes()
    again = _import(path, tiny_city_copy)
    assert (again.inserted, again.updated, again.unchanged, again.written) == (0, 0, 4, False)
    assert _registry(tiny_city_copy).read_bytes() == first

    changed = [row[:] for row in GOOD_ROWS[:2]]
    changed[1][1] = "桂园"                                              # a new alias for 桂园新村
    later = _import(write_csv(tmp_path / "later.csv", HEADER, changed), tiny_city_copy)
    assert (later.inserted, later.updated, later.unchanged, later.kept) == (0, 1, 1, 2)
    with _registry(tiny_city_copy).open(encoding="utf-8") as handle:
        stored = {r["name"]: r for r in csv.DictReader(handle)}
    assert len(stored) == 4 and stored["桂园新村"]["aliases"] == "桂园"


def test_an_xlsx_export_with_numeric_cells(tiny_city_copy, tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(["湖光雅苑", "湖光苑", int(WANGYUEHU + "000"), "望月湖社区", "compound", 112.945, 28.1915, "gcj02"])
    sheet.append(["石塘村", None, int(GAOQIAO + "000"), None, "Village", None, None, None])
    path = tmp_path / "registry.xlsx"
    book.save(path)
    result = _import(path, tiny_city_copy)
    assert (result.inserted, result.written) == (2, True)
    with _registry(tiny_city_copy).open(encoding="utf-8") as handle:
        stored = {r["name"]: r for r in csv.DictReader(handle)}
    assert stored["湖光雅苑"]["street_code"] == WANGYUEHU + "000" and stored["湖光雅苑"]["lng"] == "112.945000"
    assert stored["石塘村"]["type"] == "village"


def test_wgs84_points_are_stored_as_gcj02(tiny_city_copy, tmp_path):
    from routing.geocode import wgs84_to_gcj02

    lat, lng = 28.1915, 112.9450
    path = write_csv(tmp_path / "registry.csv", HEADER, [["湖光雅苑", "", WANGYUEHU + "000", "", "compound",
                                                          str(lng), str(lat), ""]])   # no datum: WGS-84
    _import(path, tiny_city_copy)
    with _registry(tiny_city_copy).open(encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    glat, glng = wgs84_to_gcj02(lat, lng)
    assert (float(row["lat"]), float(row["lng"])) == (pytest.approx(glat, abs=1e-6), pytest.approx(glng, abs=1e-6))


# --------------------------------------------------------------------------------------------------- the CLI


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_cli_imports_and_reports(tiny_city_copy, tmp_path, monkeypatch):
    from hotline.cli import app
    from hotline.core.config import get_settings

    monkeypatch.setenv("HOTLINE_DATA_ROOT", str(tiny_city_copy.parent))
    monkeypatch.setenv("HOTLINE_CITY", "changsha")
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        path = write_csv(tmp_path / "registry.csv", HEADER, GOOD_ROWS)
        done = runner.invoke(app, ["gazetteer", "import", str(path)])
        assert done.exit_code == 0, done.output
        assert "4new,0updated,0unchanged" in _flat(done.stdout)
        assert "hotlineindexbuild" in _flat(done.stdout)
        assert _registry(tiny_city_copy).exists()

        again = runner.invoke(app, ["gazetteer", "import", str(path)])
        assert again.exit_code == 0 and "0new,0updated,4unchanged" in _flat(again.stdout)

        bad = write_csv(tmp_path / "bad.csv", HEADER, [["云栖苑", "", "12345", "", "compound", "", "", ""]])
        refused = runner.invoke(app, ["gazetteer", "import", str(bad)])
        assert refused.exit_code == 2
        assert f"{bad}:2:street_code:" in refused.stderr and "nothing was imported" in refused.stderr
    finally:
        get_settings.cache_clear()
