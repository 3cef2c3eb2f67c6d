"""Text cleaning: input checks, width and script normalisation, work-order boilerplate removal."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from nlp.lexicons import lexicons

DEFAULT_MAX_CHARS = 20_000


class InputError(ValueError):
    """The text cannot be processed; the message says why in words a caller can act on."""


# Zero-width and direction marks that ASR and copy-paste leave behind.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u3000]+")
_NEWLINES = re.compile(r"\n{2,}")
_SURROGATES = re.compile("[\ud800-\udfff]")


@lru_cache
def _t2s():
    from opencc import OpenCC  # pure-Python OpenCC; ~0.2 ms for a paragraph

    return OpenCC("t2s")


@lru_cache
def _boilerplate() -> list[re.Pattern[str]]:
    return [re.compile(p) for p in lexicons()["boilerplate"]]


def check_text(text: object, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Refuse what is not a complaint text: not a string, empty, binary, or longer than `max_chars`."""
    if text is None:
        raise InputError("text is missing")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("text is binary data, not UTF-8 text") from None
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    # A lone surrogate (half an emoji: a client cut the text at N UTF-16 units) cannot be encoded as UTF-8, so no
    # tokenizer or store accepts it; it is an undecodable character like U+FFFD.
    text = _SURROGATES.sub("\ufffd", text)
    if "\x00" in text or text.count("\ufffd") > max(3, len(text) // 20):
        raise InputError("text looks like binary data (NUL bytes or undecodable characters)")
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t")
    if controls > max(3, len(text) // 10):
        raise InputError("text looks like binary data (too many control characters)")
    if not _INVISIBLE.sub("", "".join(ch for ch in text if unicodedata.category(ch) != "Cc")).strip():
        raise InputError("text is empty")
    if len(text) > max_chars:
        raise InputError(f"text is {len(text)} characters long; the limit is {max_chars}")
    return text


def _half_width(ch: str) -> str:
    code = ord(ch)
    # Full-width ASCII letters and digits only; Chinese punctuation keeps its meaning and stays.
    if 0xFF10 <= code <= 0xFF19 or 0xFF21 <= code <= 0xFF3A or 0xFF41 <= code <= 0xFF5A:
        return chr(code - 0xFEE0)
    return ch


def normalize(text: str) -> str:
    """Canonical form for matching: half-width letters/digits, simplified script, tidy spaces."""
    text = _INVISIBLE.sub("", text)
    text = "".join(_half_width(ch) for ch in text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    text = _t2s().convert(text)
    text = _SPACES.sub(" ", text)
    text = _NEWLINES.sub("\n", text)
    return text.strip()


def strip_boilerplate(text: str) -> str:
    """Remove hotline template text (order numbers, caller fields, stock closing sentences).

    Wrapped in such text, e5 retrieval accuracy fell from 0.90 to 0.40 (offline-stack.md).
    """
    stripped = text
    for pattern in _boilerplate():
        stripped = pattern.sub(" ", stripped)
    stripped = re.sub(r"\s+", " ", stripped)
    stripped = re.sub(r"^[\s，,。.；;：:]+|[\s，,；;：:]+$", "", stripped)
    stripped = re.sub(r"[\s，,；;：:]+([。！？!?]+)$", r"\1", stripped)
    stripped = re.sub(r"^[。！？!?]+$", "", stripped)
    # Never strip a complaint down to nothing: the template may be all the agent typed.
    return stripped if len(stripped) >= 2 else text.strip()


def clean_for_matching(text: str) -> str:
    return strip_boilerplate(normalize(text))
