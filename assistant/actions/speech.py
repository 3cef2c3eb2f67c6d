"""Small wording helpers shared by the actions: dates, times and numbers the way a Chinese reader expects them."""
from __future__ import annotations

import datetime as dt

from hotline.core.clock import CITY_TZ


def parse_moment(value: str | None) -> dt.datetime | None:
    """An ISO timestamp from the API (naive = UTC) in the city's time zone, or None."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(CITY_TZ)


def chinese_date(moment: dt.datetime | dt.date, *, today: dt.date | None = None) -> str:
    """"11月28日" in the current year, "2027年1月5日" otherwise."""
    day = moment.date() if isinstance(moment, dt.datetime) else moment
    if today is not None and day.year == today.year:
        return f"{day.month}月{day.day}日"
    return f"{day.year}年{day.month}月{day.day}日"


def chinese_time(moment: dt.datetime, *, today: dt.date) -> str:
    """"今天 14:05", "昨天 09:30", "11月18日 16:20"."""
    day = moment.date()
    prefix = {0: "今天", 1: "昨天"}.get((today - day).days) or chinese_date(day, today=today)
    return f"{prefix} {moment:%H:%M}"


def number(value: float | int | None, unit: str) -> str:
    """A figure with its unit: 比例 → "92.5%", 件 → "12件", 小时 → "30.5小时"."""
    if value is None:
        return "暂无数据"
    if unit in ("比例", "%"):
        return f"{value * 100:.1f}%"
    if unit == "件":
        return f"{int(round(value))}件"
    return f"{value:.1f}{unit}"


def chart_value(value: float | int | None, unit: str) -> float | None:
    """The number drawn on a chart, in the unit its axis shows (a 比例 as percent)."""
    if value is None:
        return None
    return round(value * 100, 1) if unit in ("比例", "%") else round(float(value), 2)


def chart_unit(unit: str) -> str:
    return "%" if unit in ("比例", "%") else unit
