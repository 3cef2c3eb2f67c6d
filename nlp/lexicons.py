"""Loads the editable word lists in nlp/data/lexicons.yaml once."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

LEXICON_PATH = Path(__file__).with_name("data") / "lexicons.yaml"


@lru_cache
def lexicons() -> dict:
    return yaml.safe_load(LEXICON_PATH.read_text(encoding="utf-8"))
