"""Sensitive tags (扬言/信访/维稳/舆情), urgency, 110/119/122 diversion and a sentiment score."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from nlp.lexicons import lexicons

# Negations that cancel an urgent cue within a few characters before it ("没有着火", "不是漏气").
_NEGATIONS = ("没有", "没", "不是", "不", "冇", "未", "无")


@dataclass
class TextSignals:
    tags: list[str] = field(default_factory=list)       # sensitive tags, each raises an alert
    tag_evidence: dict[str, list[str]] = field(default_factory=dict)
    urgency: str = "非紧急"                              # 紧急 / 非紧急
    urgent_cues: list[str] = field(default_factory=list)
    diversion: str | None = None                       # "110" / "119" / "122" when it belongs there
    sentiment: float = 0.0                             # -1 (angry) .. +1 (grateful)


@lru_cache
def _lists():
    lex = lexicons()
    return lex["sensitive_tags"], lex["urgent"], lex["diversion"], lex["sentiment"]


def _negated(text: str, index: int) -> bool:
    window = text[max(0, index - 3):index]
    if "是不是" in window or "是否" in window or window.endswith("有没有"):
        return False  # a question ("是不是着火了") is not a denial
    return any(window.endswith(n) for n in _NEGATIONS)


def _hits(text: str, words: list[str]) -> list[str]:
    found = []
    for word in words:
        start = text.find(word)
        while start != -1:
            if not _negated(text, start):
                found.append(word)
                break
            start = text.find(word, start + 1)
    return found


def sentiment_score(text: str) -> float:
    _, _, _, lex = _lists()
    negative = sum(text.count(w) for w in lex["negative"])
    positive = sum(text.count(w) for w in lex["positive"])
    intensity = sum(text.count(w) for w in lex["intensifiers"]) + text.count("!") + text.count("！")
    raw = positive - negative - 0.5 * intensity
    # Squash to [-1, 1]; a long angry text saturates, a neutral request stays near 0.
    return round(max(-1.0, min(1.0, raw / (abs(raw) + 3.0))), 3)


def analyse(text: str) -> TextSignals:
    tags_lex, urgent_lex, diversion_lex, _ = _lists()
    signals = TextSignals()
    for tag, words in tags_lex.items():
        hits = _hits(text, words)
        if hits:
            signals.tags.append(tag)
            signals.tag_evidence[tag] = hits
    signals.urgent_cues = _hits(text, urgent_lex)
    if signals.urgent_cues or "扬言" in signals.tags:
        signals.urgency = "紧急"
    for line in ("119", "110", "122"):  # fire first: a gas leak is 119 even if a fight is mentioned
        if _hits(text, diversion_lex[line]):
            signals.diversion = line
            break
    signals.sentiment = sentiment_score(text)
    return signals
