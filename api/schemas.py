"""Request shapes more than one route reads: a point on the map has one rule everywhere (routing, orders, chat,
Open311's lat/long)."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, Field

# Finite and on the globe: NaN, ±inf and 1e400 are refused (review H1, M1), as routing.geocode.usable_coordinates.
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
# A row id in a URL: a 64-bit database integer (a longer one was a 500 when SQLite could not bind it).
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the row's id")]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class Location(BaseModel):
    lat: Latitude
    lng: Longitude
    datum: Annotated[Literal["wgs84", "gcj02", "bd09"], BeforeValidator(_lower)] = Field(
        default="wgs84", description="wgs84 (GPS), gcj02 (高德/腾讯/微信) or bd09 (百度); any letter case")
