"""诉求类型 (投诉 / 举报 / 咨询 / 求助 / 建议 / 表扬) from the words of a message, as 12345 centres count requests.

Cue words and their order are data (`request_types` in nlp/data/lexicons.yaml). The title — the first sentence, where
real messages say what they are ("咨询长沙市医保异地报销政策。…") — is read before the whole text, so a complaint that
ends with "建议加强管理" stays a complaint when its title says so, and a question titled "咨询…" stays a question.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from nlp.lexicons import lexicons

_SENTENCE_END = re.compile(r"[。！？!?\n]")


@lru_cache
def _rules() -> tuple[tuple[dict, ...], str]:
    lex = lexicons()
    rules = tuple({"type": r["type"], "cues": tuple(r.get("cues") or ()), "starts": tuple(r.get("starts") or ()),
                   "unless": tuple(r.get("unless") or ()), "title_only": bool(r.get("title_only"))}
                  for r in lex["request_types"])
    return rules, lex["default_request_type"]


def request_types() -> tuple[str, ...]:
    """Every type, the default last (the order reports and the cockpit list them in)."""
    rules, default = _rules()
    return (*dict.fromkeys(r["type"] for r in rules), default)


def _match(part: str, *, title: bool) -> str | None:
    rules, _ = _rules()
    for rule in rules:
        if rule["title_only"] and not title:
            continue
        said = any(cue in part for cue in rule["cues"]) or (title and part.startswith(rule["starts"]))
        if said and not any(word in part for word in rule["unless"]):
            return rule["type"]
    return None


def request_type(text: str) -> str:
    """The type of one message: the title's if it names one, else the whole text's, else the default (投诉)."""
    prepared = unicodedata.normalize("NFKC", text or "").strip()
    title = _SENTENCE_END.split(prepared, maxsplit=1)[0][:80]
    return _match(title, title=True) or _match(prepared[:2000], title=False) or _rules()[1]
