"""Questions about the city vitals (城市体征) inside `action_query_indicator`: "今天哪些区空气质量超标",
"湘江水位现在多少", "城市体征有没有异常", then "那岳麓区呢".

The service holds the latest reading of every sign by area with its level (告警 / 预警 / 正常) and whether it is
stale (GET /api/v1/vitals). A question names signs by everyday words (`vital_terms` in assistant/vocabulary.yaml,
sign code → words) or by the sign's own name as the service gives it; "体征" / "城市运行" alone means every sign.
"超标 / 异常 / 告警…" keeps only the readings at or past a warning line. The answer gives each reading's value as
the service gives it, with its area, level and time, and says so when a reading is stale: a figure from last week
must never read as today's.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from assistant.actions.speech import chinese_date, parse_moment

VOCABULARY_FILE = Path(__file__).resolve().parents[1] / "vocabulary.yaml"
EVERY_SIGN = ("城市体征", "运行体征", "体征", "城市运行", "运行指标", "城市生命体征")
ABNORMAL = re.compile(r"超标|异常|告警|报警|预警|超过|超警|不达标|超限|偏高|偏低|不正常|有问题|亮红灯|红灯")
WORST_FIRST = {"alarm": 0, "warn": 1, "normal": 2, "none": 3}
COCKPIT_VITALS = "/cockpit#vitals"


@dataclass
class VitalsQuestion:
    signs: list[str] = field(default_factory=list)   # sign codes; empty = every sign
    area: str | None = None                           # 岳麓区 … (None = every area)
    abnormal_only: bool = False

    def to_slot(self) -> dict:
        return {"vitals": True, "signs": self.signs, "area": self.area, "abnormal_only": self.abnormal_only}

    @classmethod
    def from_slot(cls, value: dict) -> VitalsQuestion:
        return cls(list(value.get("signs") or []), value.get("area"), bool(value.get("abnormal_only")))


@cache
def vital_terms() -> dict[str, tuple[str, ...]]:
    """Sign code → the words people use for it (from vocabulary.yaml)."""
    data = yaml.safe_load(VOCABULARY_FILE.read_text(encoding="utf-8")) or {}
    return {code: tuple(str(w) for w in words) for code, words in (data.get("vital_terms") or {}).items()}


def _prepared(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").replace(" ", "").lower()


def named_signs(text: str) -> list[str] | None:
    """The sign codes a message names; [] for "every sign"; None when it does not ask about vitals at all."""
    prepared = _prepared(text)
    signs = [code for code, words in vital_terms().items() if any(w.lower() in prepared for w in words)]
    if signs:
        return signs
    return [] if any(word in prepared for word in EVERY_SIGN) else None


def read_question(text: str, *, district: str | None, last: dict | None) -> VitalsQuestion | None:
    """A vitals question from this message, or a follow-up of the last one ("那岳麓区呢"); None if neither."""
    signs = named_signs(text)
    if signs is None:
        if last and last.get("vitals") and (district or ABNORMAL.search(text or "")):
            question = VitalsQuestion.from_slot(last)
            question.area = district or question.area
            question.abnormal_only = question.abnormal_only or bool(ABNORMAL.search(text or ""))
            return question
        return None
    return VitalsQuestion(signs, district, bool(ABNORMAL.search(text or "")))


def _value(reading: dict) -> str:
    value = reading.get("value")
    shown = f"{value:g}" if isinstance(value, (int, float)) else str(value)
    return f"{shown}{reading.get('unit') or ''}"


def answer(question: VitalsQuestion, readings: list[dict], *, today) -> str:
    """The answer from GET /api/v1/vitals's readings (already filtered by area when one was named)."""
    chosen = [r for r in readings if not question.signs or r.get("metric") in question.signs]
    where = question.area or ""
    if not chosen:
        return f"{where}没有这项城市体征的读数。" if question.signs else f"{where}暂无城市体征数据。"
    chosen.sort(key=lambda r: (WORST_FIRST.get(r.get("level"), 9), r.get("metric") or "", r.get("area") or ""))
    shown = [r for r in chosen if r.get("level") in ("alarm", "warn")] if question.abnormal_only else chosen
    parts = []
    for r in shown[:12]:
        moment = parse_moment(r.get("at"))
        when = chinese_date(moment, today=today) if moment else ""
        stale = "，已过期" if r.get("stale") else ""
        parts.append(f"{r.get('area')}{r.get('name')} {_value(r)}（{r.get('level_label')}，{when}{stale}）")
    names = "、".join(dict.fromkeys(r.get("name") or "" for r in chosen))
    if question.abnormal_only and not shown:
        text = f"{where}{names}都未超过预警线（共{len(chosen)}项最新读数）。"
    elif question.abnormal_only:
        text = (f"{where}超过预警线的有{len(shown)}项：" + "；".join(parts)
                + f"。其余{len(chosen) - len(shown)}项正常或未设阈值。")
    else:
        counts = {label: sum(r.get("level_label") == label for r in chosen) for label in ("告警", "预警")}
        summary = "，".join(f"{label}{n}项" for label, n in counts.items() if n) or "均正常"
        text = f"{where}{names}最新读数（{summary}）：" + "；".join(parts) + "。"
    if len(shown) > 12:
        text += f"另有{len(shown) - 12}项未列出。"
    if any(r.get("stale") for r in shown or chosen):
        text += "注意：标“已过期”的读数超过两个报送周期没有更新，不代表现在的情况。"
    return text
