"""Typed records of the responsibility list, departments and taxonomy (validated on load)."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Level = Literal["city", "district", "street"]

DUTY_TYPES = {
    "行政许可", "行政处罚", "行政强制", "行政检查", "行政征收", "行政给付", "行政确认", "行政奖励",
    "行政裁决", "公共服务", "其他",
}


def _text_items(value: list | tuple) -> list[str]:
    """A list's items are words or sentences: a nested list or mapping is refused, not turned into its repr."""
    bad = [type(v).__name__ for v in value if isinstance(v, (list, tuple, dict, set))]
    if bad:
        raise ValueError(f"list items must be text, got a {bad[0]}")
    return [str(v).strip() for v in value if v is not None and str(v).strip()]


def _split_multi(value: object) -> list[str]:
    """Lists arrive as YAML lists or as `|`/`、`/`,` separated cells from CSV and Excel."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return _text_items(value)
    text = str(value)
    for sep in ("\n", "、", "，", ",", ";", "；"):
        text = text.replace(sep, "|")
    return [part.strip() for part in text.split("|") if part.strip()]


def _split_examples(value: object) -> list[str]:
    """Examples are whole sentences: in a CSV/Excel cell they are separated by newlines or `|` only."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return _text_items(value)
    return [part.strip() for part in str(value).replace("\n", "|").split("|") if part.strip()]


def _code_text(value: object) -> object:
    """Excel stores 430104001 as a number; codes are text."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) if isinstance(value, int) else ("" if value is None else value)


def _six_digit_code(value: object) -> object:
    """Taxonomy codes keep their leading zero: Excel turns 010203 into the number 10203."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:06d}" if isinstance(value, int) else value


class Department(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str = Field(min_length=1)
    name: str = Field(min_length=2)
    kind: str = Field(min_length=1)
    level: Level
    district_adcode: str = ""
    district_name: str = ""
    street_id: str = ""
    aliases: list[str] = []
    parent_code: str = ""

    _split_aliases = field_validator("aliases", mode="before")(_split_multi)
    _codes = field_validator("code", "district_adcode", "street_id", "parent_code", mode="before")(_code_text)


class TaxonomyNode(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str = Field(pattern=r"^\d{6}$")
    level1: str = Field(min_length=1)
    level2: str = Field(min_length=1)
    level3: str = Field(min_length=1)
    description: str = ""
    ext_gbt39666: str = ""

    @property
    def path(self) -> list[str]:
        return [self.level1, self.level2, self.level3]

    _code_as_text = field_validator("code", mode="before")(_six_digit_code)


class ResponsibilityEntry(BaseModel):
    """One 权责清单 entry: who owns a matter, on what legal basis, how fast, and what it is not."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=2)
    type: str
    category: str = Field(pattern=r"^\d{6}$")
    legal_basis: str = Field(min_length=2)
    duty_mode: str = Field(min_length=2)
    lead: str = Field(min_length=1)
    level: Level
    co_handlers: list[str] = []
    scope: str = "全市"
    time_limit_days: int = Field(ge=1, le=365)
    boundary: str = ""
    keywords: list[str] = []
    examples: list[str] = Field(min_length=3)
    disputed: bool = False
    effective_from: dt.date | None = None
    effective_to: dt.date | None = None
    version: int = Field(default=1, ge=1)

    _split_lists = field_validator("co_handlers", "keywords", mode="before")(_split_multi)
    _split_example_cells = field_validator("examples", mode="before")(_split_examples)
    _id_text = field_validator("id", mode="before")(_code_text)

    _category_as_text = field_validator("category", mode="before")(_six_digit_code)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in DUTY_TYPES:
            raise ValueError(f"权责类型 {value!r} is not one of {sorted(DUTY_TYPES)}")
        return value

    @field_validator("effective_from", "effective_to", mode="before")
    @classmethod
    def _blank_date(cls, value: object) -> object:
        return None if value in ("", None) else value

    def in_force(self, on: dt.date | None = None) -> bool:
        on = on or dt.date.today()
        if self.effective_from and on < self.effective_from:
            return False
        return not (self.effective_to and on > self.effective_to)
