"""City vitals (城市体征): imported time series with warning thresholds (预警线), checked for their latest level.

A point is (metric code, name, unit, area, timestamp, value); 全市 is the area of city-wide series. A threshold is
(metric, area, direction above/below, warn, alarm); an empty area is the default for every area of that metric and a
named area overrides it. Levels: 正常 / 预警 (warn line reached) / 告警 (alarm line reached), worst of the directions.

Files are CSV (UTF-8) or Excel with a header; which kind is told by the columns (thresholds have `direction`).
Each file is imported whole or not at all; a point already stored (same metric, area, timestamp) is updated, never
duplicated. Timestamps without an offset are Beijing time, stored in UTC.

models.py the tables · files.py reading and importing files · readings.py levels, latest readings and series.
"""
