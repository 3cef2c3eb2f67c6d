"""`hotline report`: generates into the archive (and --out), prints where the files are, and names the option
when --period, --date or --format is wrong."""
from __future__ import annotations

import re

import pytest
from support import write_tiny_city
from typer.testing import CliRunner

from hotline.cli import app
from hotline.core.config import get_settings

runner = CliRunner()


@pytest.fixture
def report_env(monkeypatch, tmp_path):
    write_tiny_city(tmp_path / "data" / "changsha")
    monkeypatch.setenv("HOTLINE_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("HOTLINE_CITY", "changsha")
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOTLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'orders.sqlite3'}")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_report_is_generated_and_its_files_printed(report_env):
    result = runner.invoke(app, ["report", "--period", "week", "--date", "2026-12-01", "--format", "pdf,xlsx",
                                 "--out", str(report_env / "out")])
    assert result.exit_code == 0, result.output
    flat = re.sub(r"\s+", "", result.output)
    assert "周报2026年第49周" in flat
    assert (report_env / "state" / "reports" / "week-2026-11-30.pdf").is_file()
    copied = sorted(p.name for p in (report_env / "out").iterdir())
    assert copied == ["长沙市12345热线周报_2026-11-30至2026-12-06.pdf", "长沙市12345热线周报_2026-11-30至2026-12-06.xlsx"]
    assert "长沙市12345热线周报_2026-11-30至2026-12-06.pdf" in flat   # where the file is


@pytest.mark.parametrize(("arguments", "option"), [(["--period", "year"], "--period"),
                                                   (["--date", "2026-13-01"], "--date"),
                                                   (["--period", "day", "--date", "0001-01-01"], "--date"),
                                                   (["--format", "pdf,doc"], "--format")])
def test_bad_options_are_named(report_env, arguments, option):
    result = runner.invoke(app, ["report", *arguments])
    assert result.exit_code == 2 and option in result.output
