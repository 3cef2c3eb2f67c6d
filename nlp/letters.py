"""Reading a citizen's letter: title first, then greetings, a story and thanks around the matter.

Real messages to a 12345 centre or a leaders' message board are long (median ~220 characters, often 1,000+),
start with a title sentence ("反映XX小区违建问题。"), greet 书记/市长, tell a story and end with thanks. The matter is
in the title and the first sentences, so matching reads those: the greetings and thanks are stripped and the
body is cut to its head (the whole text is still stored with the order). The word lists are data
(`nlp/data/lexicons.yaml`: `courtesy`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from nlp.lexicons import lexicons

# A first sentence this short, followed by much more text, is a title (titles are 8–40 characters).
TITLE_MAX_CHARS = 48
TITLE_MIN_CHARS = 4
# The matter is stated within the first sentences; the tail is story, history and appeals. 160 characters after the
# title hold the matter of a median letter and bound the embedding's cost: on the real development half, 120, 160,
# 220, 300, 400 characters and the whole text gave kind accuracy within 0.01 of each other, and 160 instead of
# 300 brought the single-request p50 on real letters from 71.9 to 49.8 ms (BENCHMARKS.md).
BODY_HEAD_CHARS = 160
_SENTENCE_END = re.compile(r"[。！？!?]+|\n+")


@dataclass(frozen=True)
class Letter:
    title: str
    body: str

    def matter_text(self, body_chars: int = BODY_HEAD_CHARS) -> str:
        """What matching reads: the title, then the head of the body (cut at a sentence end where one is near)."""
        body = self.body
        if len(body) > body_chars:
            cut = body[:body_chars]
            ends = [m.end() for m in _SENTENCE_END.finditer(cut)]
            body = cut[: ends[-1]] if ends and ends[-1] >= body_chars // 2 else cut
        if self.title and body:
            return f"{self.title}。{body}"
        return self.title or body


@lru_cache
def _courtesy() -> tuple[list[re.Pattern[str]], list[re.Pattern[str]], re.Pattern[str]]:
    words = lexicons()["courtesy"]
    praise = re.compile("|".join(map(re.escape, words["praise"])))
    return [re.compile(p) for p in words["opening"]], [re.compile(p) for p in words["closing"]], praise


def strip_courtesy(text: str) -> str:
    """Greetings at the start and closing formulas at the end removed; a letter of praise keeps its thanks."""
    opening, closing, praise = _courtesy()
    for pattern in opening + ([] if praise.search(text) else closing):
        text = pattern.sub("", text)
    return re.sub(r"^[\s，,。！!：:、]+", "", text).strip()


def split_title(text: str) -> Letter:
    """(title, body): the first sentence when it is short and the rest is much longer; else no title."""
    text = text.strip()
    match = _SENTENCE_END.search(text)
    if match:
        head, rest = text[: match.start()].strip(), text[match.end():].strip()
        if TITLE_MIN_CHARS <= len(head) <= TITLE_MAX_CHARS and len(rest) >= 2 * len(head):
            return Letter(head, strip_courtesy(rest))
    return Letter("", strip_courtesy(text))


# A multi-issue letter's other matters: at most this many parts, each read like a head (title-less), and only parts
# long enough to state a matter. Every part costs one more embedding, so a letter without cue words costs nothing.
OTHER_MATTERS_MAX = 2
OTHER_MATTER_MIN_CHARS = 12
# A part states its matter in its first sentence or two; 80 characters (half a letter's head) keep the extra
# embedding cheap: on the real development half the route p99 went from 83.7 to 164.6–174.2 ms with 160.
OTHER_MATTER_CHARS = 80


@lru_cache
def _other_matter_cue() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in lexicons()["other_matter_cues"]))


def other_matter_texts(text: str, body_chars: int = OTHER_MATTER_CHARS) -> list[str]:
    """The parts of a (cleaned) letter that turn to another matter ("另外…", "二是…", "2、…"), each cut like a head.

    The first matter is the title and the body's head (`matter_text`), which may already hold the second part of a
    short letter: the router only reports a part whose matter differs from the first."""
    letter = split_title(text)
    body = letter.body
    cues = [(m.start(), m.end()) for m in _other_matter_cue().finditer(body)]
    parts: list[str] = []
    for i, (_, start) in enumerate(cues):
        end = cues[i + 1][0] if i + 1 < len(cues) else len(body)
        part = Letter("", body[start:end].strip(" ，,：:；;")).matter_text(body_chars)
        if len(part) >= OTHER_MATTER_MIN_CHARS:
            parts.append(part)
        if len(parts) == OTHER_MATTERS_MAX:
            break
    return parts


def matter_text(text: str, body_chars: int = BODY_HEAD_CHARS) -> str:
    """The part of a (cleaned) complaint that says what the matter is; never empty for a non-empty text."""
    return split_title(text).matter_text(body_chars) or text
