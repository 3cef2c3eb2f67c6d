"""hotline.core: one clock (the city's time zone, UTC now) and one stored-moment type that reads back aware UTC on
SQLite (which keeps no zone) as on PostgreSQL."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from hotline.core.clock import CITY_TZ, as_utc, utcnow
from hotline.core.db import transaction
from orders.models import WorkOrder

BEIJING_EVENING = dt.datetime(2026, 12, 6, 21, 30, tzinfo=CITY_TZ)   # 13:30 UTC


def test_the_city_clock_is_beijing_time_and_naive_moments_are_read_as_said():
    assert BEIJING_EVENING.utcoffset() == dt.timedelta(hours=8)
    assert as_utc(BEIJING_EVENING) == dt.datetime(2026, 12, 6, 13, 30, tzinfo=dt.UTC)
    assert as_utc(dt.datetime(2026, 12, 6, 13, 30)).tzinfo == dt.UTC                     # stored: naive is UTC
    assert as_utc(dt.datetime(2026, 12, 6, 21, 30), naive_is=CITY_TZ) == as_utc(BEIJING_EVENING)  # typed by people
    assert as_utc(None) is None and utcnow().tzinfo == dt.UTC


def test_a_stored_moment_reads_back_aware_utc_on_both_databases(factory):
    with transaction(factory) as session:
        order = WorkOrder(channel="web", state="received", text="岳麓区望月湖街道路灯不亮，晚上一片漆黑😡",
                          text_masked="岳麓区望月湖街道路灯不亮，晚上一片漆黑😡", tags=[],
                          created_at=BEIJING_EVENING, updated_at=BEIJING_EVENING)
        session.add(order)
    with factory() as session:
        stored = session.scalars(select(WorkOrder)).one()
        assert stored.created_at.tzinfo is not None and stored.created_at.utcoffset() == dt.timedelta(0)
        assert stored.created_at == BEIJING_EVENING                 # the same instant, never shifted by 8 hours
        # a comparison with a city-clock moment is made in UTC on SQLite too
        found = session.scalars(select(WorkOrder).where(WorkOrder.created_at >= BEIJING_EVENING)).all()
        assert [o.id for o in found] == [stored.id]
        later = session.scalars(select(WorkOrder).where(
            WorkOrder.created_at > dt.datetime(2026, 12, 6, 21, 0, tzinfo=CITY_TZ) + dt.timedelta(hours=1))).all()
        assert later == []
