"""The vitals tables: points of imported series, and the warning lines (预警线) per metric and area."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hotline.core.db import Base, UTCDateTime
from orders.models import utcnow

CITY_WIDE = "全市"


DOMAINS = ("治理", "安全", "经济", "环境", "交通", "民生")


LEVEL_LABELS = {"alarm": "告警", "warn": "预警", "normal": "正常", "none": "未设阈值"}


class VitalPoint(Base):
    __tablename__ = "vital_points"
    __table_args__ = (UniqueConstraint("metric", "area", "at", name="uq_vital_point"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    metric: Mapped[str] = mapped_column(String(64), index=True)    # code: aqi, pm25, xiangjiang_level …
    name: Mapped[str] = mapped_column(String(64))                  # 空气质量指数AQI
    unit: Mapped[str] = mapped_column(String(16), default="")
    domain: Mapped[str] = mapped_column(String(8), default="")     # 治理/安全/经济/环境/交通/民生
    area: Mapped[str] = mapped_column(String(64), default=CITY_WIDE)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(String(256))        # the file it came from
    imported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VitalThreshold(Base):
    __tablename__ = "vital_thresholds"
    __table_args__ = (UniqueConstraint("metric", "area", "direction", name="uq_vital_threshold"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    metric: Mapped[str] = mapped_column(String(64), index=True)
    area: Mapped[str] = mapped_column(String(64), default="")      # "" = every area of the metric
    direction: Mapped[str] = mapped_column(String(8))              # above: high is bad; below: low is bad
    warn: Mapped[float | None] = mapped_column(Float)
    alarm: Mapped[float | None] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

