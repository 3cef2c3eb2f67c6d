"""Time in one place: the city's clock, now in UTC, and reading stored moments back as UTC.

Moments are stored in UTC. PostgreSQL returns them aware; SQLite has no time zone and returns them naive, so every
table uses `hotline.core.db.UTCDateTime`, which hands them back aware. Citizens and reports read the city's clock
(Beijing time: China has one time zone and no daylight saving since 1991).
"""
from __future__ import annotations

import datetime as dt

CITY_TZ = dt.timezone(dt.timedelta(hours=8), "CST")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def city_midnight(day: dt.date) -> dt.datetime:
    """The start of a calendar day in the city (periods given as dates are the city's days, not UTC days)."""
    # In UTC: SQLite compares stored UTC timestamps as text and would ignore a +08:00 offset on the parameter.
    return dt.datetime(day.year, day.month, day.day, tzinfo=CITY_TZ).astimezone(dt.UTC)


def year_before(day: dt.date) -> dt.date:
    """The same calendar day a year earlier (29 Feb → 28 Feb): 同比."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)


def as_utc(moment: dt.datetime | None, *, naive_is: dt.tzinfo = dt.UTC) -> dt.datetime | None:
    """An aware UTC moment; a naive one is taken to be in `naive_is` (UTC, as stored; CITY_TZ for what people type)."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=naive_is)).astimezone(dt.UTC)
