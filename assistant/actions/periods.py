"""Chinese period words → a date range, in the city's time zone (Asia/Shanghai).

`parse_period("本月岳麓区噪音投诉多少件", today=date(2026, 11, 21))` → Period(2026-11-01, 2026-12-01, "本月（2026年11月）").
Ranges are [start, end): the indicators API wants the first day inclusive and the last day exclusive.

Calendar words name the whole calendar unit (本月 = the whole month, 本周 = Monday to Sunday): days still to come
hold no orders, and the API's 环比 ("the previous period of the same length") then compares a month with about the
month before. Rolling windows (近7天, 近三十天, 近3个月) end with today. A month without a year ("3月", "十月") is the
latest such month that has begun: in November "十二月" is last December.

Pure functions: "today" is always passed in (the actions take it from an injectable clock), so tests freeze time.
"""
from __future__ import annotations

import calendar
import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from hotline.core.clock import CITY_TZ


@dataclass(frozen=True)
class Period:
    start: dt.date          # first day, inclusive
    end: dt.date            # day after the last, exclusive
    label: str              # how the answer names it: "上个月（2026年10月）"

    def as_params(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def today_in_city(now: dt.datetime | None = None) -> dt.date:
    """The calendar day in Asia/Shanghai at `now` (aware; naive means UTC), or right now."""
    moment = now or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(CITY_TZ).date()


# -- Chinese numerals ---------------------------------------------------------------------------------------------
# Only what period words use (1–99, years written digit by digit); a library such as cn2an would be a whole new
# dependency for these few lines.
_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
NUMBER = r"[0-9〇零一二两三四五六七八九十]+"


def chinese_number(word: str) -> int | None:
    """"3" / "三" / "十" / "十二" / "二十" / "三十一" → int; digit-by-digit "二〇二六" → 2026; None if not a number."""
    if not word:
        return None
    if word.isdigit():
        return int(word)
    if "十" not in word:
        if all(ch in _DIGITS for ch in word):
            return int("".join(str(_DIGITS[ch]) for ch in word))
        return None
    tens, _, units = word.partition("十")
    if (tens and tens not in _DIGITS) or (units and units not in _DIGITS) or "十" in units:
        return None
    return (_DIGITS[tens] if tens else 1) * 10 + (_DIGITS[units] if units else 0)


# -- calendar helpers ---------------------------------------------------------------------------------------------
def _month_start(year: int, month: int) -> dt.date:
    return dt.date(year, month, 1)


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def describe_range(start: dt.date, end: dt.date) -> str:
    """Words for [start, end): "2026年11月21日", "2026年11月", "2026年", "2026年11月15日至11月21日"."""
    last = end - dt.timedelta(days=1)
    if last == start:
        return f"{start.year}年{start.month}月{start.day}日"
    if start.day == 1 and end == _next_month(start):
        return f"{start.year}年{start.month}月"
    if (start.month, start.day) == (1, 1) and end == dt.date(start.year + 1, 1, 1):
        return f"{start.year}年"
    tail = f"{last.month}月{last.day}日" if last.year == start.year else f"{last.year}年{last.month}月{last.day}日"
    return f"{start.year}年{start.month}月{start.day}日至{tail}"


def _named(word: str, start: dt.date, end: dt.date) -> Period:
    return Period(start, end, f"{word}（{describe_range(start, end)}）")


def _plain(start: dt.date, end: dt.date) -> Period:
    return Period(start, end, describe_range(start, end))


def _year_of(word: str | None, today: dt.date) -> int | None:
    """"2026" / "二〇二六" / "26" → 2026; 今年/去年/前年/明年 relative to today."""
    if word is None:
        return None
    relative = {"今": 0, "本": 0, "去": -1, "前": -2, "明": 1}
    if word in relative:
        return today.year + relative[word]
    number = chinese_number(word)
    if number is None:
        return None
    return 2000 + number if number < 100 else number


def _latest_month(month: int, today: dt.date) -> int:
    """The year of the latest `month` that has begun (in November, 十二月 is last year's)."""
    return today.year if month <= today.month else today.year - 1


# -- the phrasings --------------------------------------------------------------------------------------------------
_YEAR = r"(?:(?<![0-9])(\d{4}|\d{2}|[〇零一二三四五六七八九]{4}|[〇零一二三四五六七八九]{2})年|([今本去前明])年)"
_Builder = Callable[[re.Match, dt.date], Period | None]
_RULES: list[tuple[re.Pattern[str], _Builder]] = []


def _rule(pattern: str):
    def register(builder: _Builder) -> _Builder:
        _RULES.append((re.compile(pattern), builder))
        return builder
    return register


def _in_year(m: re.Match, today: dt.date, first: int = 1) -> int | None:
    year = _year_of(m.group(first) or m.group(first + 1), today)
    return year if year is None or 1990 <= year <= 2100 else None


@_rule(rf"{_YEAR}?({NUMBER})月(?:份)?({NUMBER})[日号]?\s*(?:到|至|~|～|-|—|－)\s*(?:({NUMBER})月(?:份)?)?({NUMBER})[日号]")
def _day_range(m: re.Match, today: dt.date) -> Period | None:
    month, day = chinese_number(m.group(3)), chinese_number(m.group(4))
    month2 = chinese_number(m.group(5)) if m.group(5) else month
    day2 = chinese_number(m.group(6))
    if None in (month, day, month2, day2):
        return None
    year = _in_year(m, today) or _latest_month(month, today)
    start, last = _date(year, month, day), _date(year + (month2 < month), month2, day2)
    if start is None or last is None or last < start:
        return None
    return _plain(start, last + dt.timedelta(days=1))


@_rule(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\s*(?:到|至|~|～|—|－)\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
def _iso_range(m: re.Match, today: dt.date) -> Period | None:
    start = _date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    last = _date(int(m.group(4)), int(m.group(5)), int(m.group(6)))
    if start is None or last is None or last < start:
        return None
    return _plain(start, last + dt.timedelta(days=1))


@_rule(rf"{_YEAR}?({NUMBER})月(?:份)?({NUMBER})[日号]")
def _one_day(m: re.Match, today: dt.date) -> Period | None:
    month, day = chinese_number(m.group(3)), chinese_number(m.group(4))
    if month is None or day is None:
        return None
    year = _in_year(m, today) or _latest_month(month, today)
    start = _date(year, month, day)
    return _plain(start, start + dt.timedelta(days=1)) if start else None


@_rule(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
def _iso_day(m: re.Match, today: dt.date) -> Period | None:
    start = _date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return _plain(start, start + dt.timedelta(days=1)) if start else None


@_rule(r"(?:最近|近|过去|这|前)\s*(\d+|[一二两三四五六七八九十]+)\s*(天|日|周|个?星期|个?礼拜|个月|月)(?:以来|内|里)?")
def _rolling(m: re.Match, today: dt.date) -> Period | None:
    count, unit = chinese_number(m.group(1)), m.group(2)
    if not count:
        return None
    end = today + dt.timedelta(days=1)
    if unit in ("天", "日"):
        start = end - dt.timedelta(days=count)
    elif unit.endswith(("周", "星期", "礼拜")):
        start = end - dt.timedelta(days=7 * count)
    else:
        start = _add_months(today, -count) + dt.timedelta(days=1)
    word = m.group(0).rstrip("以来内里")
    return _named(word, start, end)


@_rule(r"(?:最近|近|过去)\s*(?:一段时间|一阵子?)")
def _recent(m: re.Match, today: dt.date) -> Period:
    return _named("近30天", today - dt.timedelta(days=29), today + dt.timedelta(days=1))


@_rule(rf"{_YEAR}?(?:第)?([一二三四1234])季度")
def _quarter(m: re.Match, today: dt.date) -> Period | None:
    quarter = chinese_number(m.group(3))
    if not quarter or quarter > 4:
        return None
    year = _in_year(m, today) or today.year
    start = dt.date(year, 3 * quarter - 2, 1)
    return Period(start, _add_months(start, 3), f"{year}年第{'一二三四'[quarter - 1]}季度")


@_rule(r"(本|这个?|当前|上个?|上一个?)季度")
def _relative_quarter(m: re.Match, today: dt.date) -> Period:
    start = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    if m.group(1).startswith("上"):
        start = _add_months(start, -3)
    return _named(m.group(0), start, _add_months(start, 3))


@_rule(rf"{_YEAR}?([上下])半年")
def _half_year(m: re.Match, today: dt.date) -> Period | None:
    year = _in_year(m, today) or today.year
    start = dt.date(year, 1 if m.group(3) == "上" else 7, 1)
    return Period(start, _add_months(start, 6), f"{year}年{m.group(3)}半年")


@_rule(rf"{_YEAR}({NUMBER})月(?:份)?")
def _year_month(m: re.Match, today: dt.date) -> Period | None:
    year, month = _in_year(m, today), chinese_number(m.group(3))
    if year is None or month is None or not 1 <= month <= 12:
        return None
    start = _month_start(year, month)
    word = f"{m.group(2)}年{month}月" if m.group(2) else None
    return _named(word, start, _next_month(start)) if word else _plain(start, _next_month(start))


@_rule(r"(\d{4})[-/.](\d{1,2})(?![\d])")
def _iso_month(m: re.Match, today: dt.date) -> Period | None:
    year, month = int(m.group(1)), int(m.group(2))
    if not (1990 <= year <= 2100 and 1 <= month <= 12):
        return None
    start = _month_start(year, month)
    return _plain(start, _next_month(start))


@_rule(rf"(?<![0-9〇零一二两三四五六七八九十年])({NUMBER})月(?:份)?(?![0-9〇零一二两三四五六七八九十日号])")
def _bare_month(m: re.Match, today: dt.date) -> Period | None:
    month = chinese_number(m.group(1))
    if month is None or not 1 <= month <= 12:
        return None
    start = _month_start(_latest_month(month, today), month)
    return _plain(start, _next_month(start))


@_rule(r"(今天|今日|当天|昨天|昨日|前天)")
def _day_word(m: re.Match, today: dt.date) -> Period:
    back = {"今天": 0, "今日": 0, "当天": 0, "昨天": 1, "昨日": 1, "前天": 2}[m.group(1)]
    start = today - dt.timedelta(days=back)
    return _named(m.group(1), start, start + dt.timedelta(days=1))


@_rule(r"(本周|这周|这一周|这一?个?星期|本星期|这一?个?礼拜|本礼拜|上周|上一周|上一?个?星期|上一?个?礼拜)")
def _week_word(m: re.Match, today: dt.date) -> Period:
    monday = today - dt.timedelta(days=today.weekday())
    if m.group(1).startswith("上"):
        monday -= dt.timedelta(days=7)
    return _named(m.group(1), monday, monday + dt.timedelta(days=7))


@_rule(r"(本月|这个月|这月|当月|本月份|上月|上个月|上一个?月|上月份)")
def _month_word(m: re.Match, today: dt.date) -> Period:
    start = _month_start(today.year, today.month)
    if m.group(1).startswith("上"):
        start = _add_months(start, -1)
    return _named(m.group(1), start, _next_month(start))


@_rule(rf"{_YEAR}(?:全年|一整年|以来|至今)?(?!{NUMBER}月)")   # "2026年13月" is no period, not the year 2026
def _year(m: re.Match, today: dt.date) -> Period | None:
    year = _in_year(m, today)
    if year is None:
        return None
    start = dt.date(year, 1, 1)
    return _named(m.group(0), start, dt.date(year + 1, 1, 1)) if m.group(2) else _plain(start, dt.date(year + 1, 1, 1))


@_rule(r"(本年度?|今年度|上一年|上年度)")
def _year_word(m: re.Match, today: dt.date) -> Period:
    year = today.year - (m.group(1).startswith("上"))
    return _named(m.group(1), dt.date(year, 1, 1), dt.date(year + 1, 1, 1))


_ENGLISH = {"today": "今天", "yesterday": "昨天", "this week": "本周", "last week": "上周", "this month": "本月",
            "last month": "上个月", "this year": "今年", "last year": "去年"}


@_rule(r"(?i)(?<![a-z])(today|yesterday|(?:this|last)\s*(?:week|month|year))(?![a-z])")
def _english(m: re.Match, today: dt.date) -> Period | None:
    # Mixed Chinese/English questions ("this month岳麓区投诉多少") say the same as the Chinese words.
    return parse_period(_ENGLISH[re.sub(r"(this|last)\s*", r"\1 ", m.group(1).lower())], today=today)


def _prepare(text: str) -> str:
    # Full-width digits and letters from Chinese input methods, and spaces people put between words.
    # English period words keep their spaces; elsewhere spaces only split what belongs together.
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"(?<![A-Za-z]) | (?![A-Za-z])", "", text)


def find_period(text: str, *, today: dt.date) -> tuple[Period, int, int] | None:
    """The leftmost period in `text` (the longest where two start together), with its span in the prepared text."""
    prepared = _prepare(text)
    found: list[tuple[int, int, Period]] = []
    for pattern, builder in _RULES:
        for m in pattern.finditer(prepared):
            period = builder(m, today)
            if period is not None:
                found.append((m.start(), -(m.end() - m.start()), period))
                break
    if not found:
        return None
    start, negative_length, period = min(found, key=lambda item: (item[0], item[1]))
    return period, start, start - negative_length


def parse_period(text: str | None, *, today: dt.date) -> Period | None:
    """The period that `text` names, or None. `today` is the city's calendar day (see today_in_city)."""
    if not text:
        return None
    hit = find_period(text, today=today)
    return hit[0] if hit else None


def this_month(today: dt.date) -> Period:
    """The default when a question names no period."""
    start = _month_start(today.year, today.month)
    return _named("本月", start, _next_month(start))
