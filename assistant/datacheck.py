"""Read the assistant's NLU files (Rasa's YAML training-data format) without Rasa, and check their annotations.

Used by the tests (training data and held-out set are checked without the Rasa venv) and by
benchmarks/assistant_nlu.py (the held-out set's expected intents and entities).

The checks keep the annotations consistent with what the pipeline can produce:
- every entity span falls on jieba token edges (with the generated user dictionary), otherwise DIET cannot learn it;
- every span the regex extractor finds is annotated with the same entity (it extracts regardless of the
  annotation, so an unannotated match would count as a wrong entity in the evaluation).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ANNOTATION = re.compile(r"\[(?P<text>[^\]]+)\](?:\((?P<entity>[^)]+)\)|(?P<json>\{[^}]*\}))")


@dataclass(frozen=True)
class Entity:
    start: int
    end: int
    entity: str
    value: str          # the annotated value (the text itself unless a value is given)


@dataclass
class Example:
    intent: str         # faq/service_hours for retrieval intents
    text: str           # without the markup
    entities: list[Entity] = field(default_factory=list)
    source: str = ""

    @property
    def top_intent(self) -> str:
        return self.intent.split("/")[0]


def parse_annotated(line: str) -> tuple[str, list[Entity]]:
    """"[岳麓区](district)的[办结率](metric)" → ("岳麓区的办结率", [Entity(0, 3, "district", "岳麓区"), …])."""
    text, entities, last = [], [], 0
    length = 0
    for match in ANNOTATION.finditer(line):
        before = line[last:match.start()]
        text.append(before)
        length += len(before)
        surface = match.group("text")
        if match.group("json"):
            spec = json.loads(match.group("json"))
            name, value = spec["entity"], str(spec.get("value", surface))
        else:
            name, value = match.group("entity"), surface
        entities.append(Entity(length, length + len(surface), name, value))
        text.append(surface)
        length += len(surface)
        last = match.end()
    text.append(line[last:])
    return "".join(text), entities


def read_nlu_examples(path: Path) -> list[Example]:
    """Every intent example in one NLU file or in all .yml/.yaml files under a folder."""
    files = sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml")) if path.is_dir() else [path]
    examples: list[Example] = []
    for file in files:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for block in data.get("nlu") or []:
            if "intent" not in block:
                continue
            for number, raw in enumerate(_example_lines(block["examples"]), start=1):
                text, entities = parse_annotated(raw)
                examples.append(Example(block["intent"], text, entities, f"{file.name}:{block['intent']}:{number}"))
    return examples


def _example_lines(examples: str | list) -> list[str]:
    if isinstance(examples, list):
        return [str(e.get("text", e)) if isinstance(e, dict) else str(e) for e in examples]
    return [line.strip()[2:].strip() for line in examples.splitlines() if line.strip().startswith("- ")]


def read_regexes(*paths: Path) -> dict[str, list[re.Pattern]]:
    """entity → compiled patterns from the `regex:` blocks of NLU files (case-insensitive, as configured)."""
    patterns: dict[str, list[re.Pattern]] = {}
    for path in paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for block in data.get("nlu") or []:
            if "regex" in block:
                patterns.setdefault(block["regex"], []).extend(
                    re.compile(p, re.IGNORECASE) for p in _example_lines(block["examples"]))
    return patterns


def read_synonyms(path: Path) -> dict[str, str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {alias: block["synonym"] for block in data.get("nlu") or [] if "synonym" in block
            for alias in _example_lines(block["examples"])}


def regex_entities(text: str, patterns: dict[str, list[re.Pattern]]) -> list[Entity]:
    """What Rasa's RegexEntityExtractor would extract from `text` (every match of every pattern)."""
    found = []
    for entity, compiled in patterns.items():
        for pattern in compiled:
            found.extend(Entity(m.start(), m.end(), entity, m.group()) for m in pattern.finditer(text) if m.group())
    return found


def unannotated_regex_matches(example: Example, patterns: dict[str, list[re.Pattern]]) -> list[Entity]:
    annotated = {(e.start, e.end, e.entity) for e in example.entities}
    return [e for e in regex_entities(example.text, patterns) if (e.start, e.end, e.entity) not in annotated]


class JiebaTokens:
    """jieba with the generated user dictionary, in its own Tokenizer (the global one stays untouched)."""

    def __init__(self, dictionary_dir: Path) -> None:
        import jieba

        self._tokenizer = jieba.Tokenizer()
        for path in sorted(dictionary_dir.glob("*")):
            self._tokenizer.load_userdict(str(path))

    def edges(self, text: str) -> set[int]:
        # Rasa's JiebaTokenizer uses jieba.tokenize (default mode) and drops whitespace tokens.
        edges = {0, len(text)}
        for _word, start, end in self._tokenizer.tokenize(text):
            edges.update((start, end))
        return edges

    def misaligned(self, example: Example) -> list[Entity]:
        edges = self.edges(example.text)
        return [e for e in example.entities if e.start not in edges or e.end not in edges]
