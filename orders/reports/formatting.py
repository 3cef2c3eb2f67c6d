"""How a report writes its numbers, shared by the findings and the renderers so a figure reads the same everywhere."""
from __future__ import annotations


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return text + (unit if unit not in ("比例", "件") else "")


def figure_value(figure: dict) -> str:
    """A key figure's value in its unit: 85.3% / 1,234 / 12.5小时."""
    if figure["kind"] == "rate":
        return percent(figure["value"])
    return number(figure["value"], figure["unit"] if figure["unit"] in ("小时", "分钟") else "")


def change(value: float | None, kind: str) -> str:
    """+3.2% for a count or an average; +1.5个百分点 for a rate; — when there is nothing to compare with."""
    if value is None:
        return "—"
    if kind == "rate":
        return f"{value * 100:+.1f}个百分点"
    return f"{value * 100:+.1f}%"
