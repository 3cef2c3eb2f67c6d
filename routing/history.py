"""Reading labelled files: a city's past orders (CSV/.xlsx/JSONL) and evaluation sets."""
from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from knowledge_base.loaders import DataFileError, read_rows


class InputFileError(ValueError):
    """A problem with a user-supplied file; the message names the file and the line."""


@dataclass
class LabelledRecord:
    line: int
    text: str
    category: str | None = None      # "大类/子类/细类" or the city's own label
    department: str | None = None    # code or name
    district: str | None = None
    street: str | None = None
    extra: dict = field(default_factory=dict)


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line, record, problem) for each non-blank line: a bad line yields its problem instead of stopping."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # Notepad and Excel start UTF-8 files with one
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield number, None, f"line {number}: not UTF-8 text"
                continue
            except json.JSONDecodeError as exc:
                yield number, None, f"line {number}: malformed JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(record, dict):
                yield number, None, f"line {number}: each line must be a JSON object, got {type(record).__name__}"
                continue
            yield number, record, None


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; the first bad line raises, naming file and line."""
    out = []
    for number, record, problem in iter_jsonl(path):
        if problem:
            raise InputFileError(f"{path}:{problem.removeprefix('line ')}")
        out.append((number, record))
    return out


def _label(value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dict):  # {"code": …, "name": …}
        return str(value.get("code") or value.get("name") or "") or None
    if isinstance(value, (list, tuple)):
        return "/".join(str(v) for v in value if str(v).strip()) or None
    return str(value).strip() or None


def read_labelled(path: Path, *, text_column: str = "text", category_column: str | None = "category",
                  department_column: str | None = "department", require_label: bool = True) -> list[LabelledRecord]:
    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json", ".ndjson"}:
        raw = read_jsonl(path)
        columns = set().union(*(r.keys() for _, r in raw)) if raw else set()
    elif suffix in {".csv", ".xlsx"}:
        try:
            rows = read_rows(path)
        except DataFileError as exc:
            raise InputFileError("; ".join(exc.errors)) from None
        raw = [(r.row, r.data) for r in rows]
        columns = set(raw[0][1]) if raw else set()
    else:
        raise InputFileError(f"{path}: unsupported file type {suffix!r} (use .csv, .xlsx or .jsonl)")
    if not raw:
        raise InputFileError(f"{path}: no records")
    if text_column not in columns:
        raise InputFileError(f"{path}: missing text column {text_column!r} (columns: {', '.join(sorted(columns))})")
    has_category = category_column in columns if category_column else False
    has_department = department_column in columns if department_column else False
    if require_label and not (has_category or has_department):
        wanted = " or ".join(repr(c) for c in (category_column, department_column) if c)
        raise InputFileError(f"{path}: needs a label column {wanted} (columns: {', '.join(sorted(columns))})")
    records = []
    for line, data in raw:
        records.append(LabelledRecord(
            line=line,
            text=data.get(text_column) if isinstance(data.get(text_column), str) else ("" if data.get(text_column) is None else str(data.get(text_column))),
            category=_label(data.get(category_column)) if has_category else None,
            department=_label(data.get(department_column)) if has_department else None,
            district=_label(data.get("district")),
            street=_label(data.get("street")),
            extra=data,
        ))
    return records
