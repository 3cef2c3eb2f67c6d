"""Read the city's lists from CSV, Excel (.xlsx) and YAML, reporting every error as `file:row:field: message`."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

TABLE_SUFFIXES = {".csv", ".xlsx", ".yaml", ".yml"}


class _CodeKeepingLoader(yaml.SafeLoader):
    """YAML 1.1 reads an unquoted 010203 as the octal number 4227; codes must stay text."""


def _int_or_code(loader: yaml.SafeLoader, node: yaml.ScalarNode):
    value = loader.construct_scalar(node)
    if len(value) > 1 and value.startswith("0") and value.isdigit():
        return value
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_CodeKeepingLoader.add_constructor("tag:yaml.org,2002:int", _int_or_code)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class SourceRow:
    """A raw record plus where it came from, so errors can point at it."""

    file: Path
    row: int  # CSV/Excel: the sheet row (header = 1); YAML: the line the item starts on
    data: dict[str, Any]

    def where(self, field: str | None = None) -> str:
        return f"{self.file}:{self.row}" + (f":{field}" if field else "")


class DataFileError(ValueError):
    """One or more problems in the city's data files; `errors` lists each as file:row:field: message."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = "\n".join(f"  - {e}" for e in errors[:50])
        more = f"\n  … and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(f"{len(errors)} problem(s) in the data files:\n{shown}{more}")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value
    return "" if value is None else value


def read_rows(path: Path, *, required: set[str] | None = None,
              encodings: tuple[str, ...] = ("utf-8-sig",)) -> list[SourceRow]:
    """Rows of a CSV (UTF-8, BOM allowed; `encodings` are tried in order), .xlsx (first sheet) or YAML list file."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataFileError([f"{path}: unsupported file type {suffix!r} (use .csv, .xlsx or .yaml)"])
    if not path.exists():
        raise DataFileError([f"{path}: file not found"])
    if suffix in {".yaml", ".yml"}:
        rows = _read_yaml(path)
    elif suffix == ".xlsx":
        rows = _read_xlsx(path)
    else:
        rows = _read_csv(path, encodings)
    if required and rows:
        columns = set().union(*(r.data.keys() for r in rows)) if suffix in {".yaml", ".yml"} else set(rows[0].data)
        missing = sorted(required - columns)
        if missing:
            raise DataFileError([f"{path}:1: missing column(s) {', '.join(missing)}"])
    return rows


def _read_csv(path: Path, encodings: tuple[str, ...] = ("utf-8-sig",)) -> list[SourceRow]:
    data = path.read_bytes()
    for encoding in encodings:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError as exc:
            if encoding == encodings[0]:
                first = exc
    else:
        names = " or ".join("UTF-8" if e.lower().startswith("utf-8") else e.upper() for e in encodings)
        raise DataFileError([f"{path}: not {names} text ({first.reason} at byte {first.start})"]) from None
    reader = csv.DictReader(io.StringIO(text))
    rows: list[SourceRow] = []
    for number, record in enumerate(reader, start=2):
        if None in record:
            raise DataFileError([f"{path}:{number}: more cells than header columns"])
        if not any((v or "").strip() for v in record.values()):
            continue
        rows.append(SourceRow(path, number, {k.strip(): _clean(v) for k, v in record.items() if k}))
    return rows


def _read_xlsx(path: Path) -> list[SourceRow]:
    import openpyxl  # imported lazily: only officials' spreadsheets need it

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several unrelated types for a damaged file
        raise DataFileError([f"{path}: not a readable .xlsx workbook ({exc})"]) from None
    sheet = book.worksheets[0]
    values = sheet.iter_rows(values_only=True)
    header = next(values, None)
    if not header:
        return []
    names = [str(h).strip() if h is not None else "" for h in header]
    rows: list[SourceRow] = []
    for number, cells in enumerate(values, start=2):
        if not any(c not in (None, "") for c in cells):
            continue
        data = {n: _clean(c) for n, c in zip(names, cells) if n}
        rows.append(SourceRow(path, number, data))
    book.close()
    return rows


def _read_yaml(path: Path) -> list[SourceRow]:
    text = path.read_text(encoding="utf-8-sig")
    try:
        root = yaml.compose(text, Loader=_CodeKeepingLoader)
        items = yaml.load(text, Loader=_CodeKeepingLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise DataFileError([f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})"]) from None
    if items is None:
        return []
    if not isinstance(items, list) or not isinstance(root, yaml.SequenceNode):
        raise DataFileError([f"{path}:1: expected a list of entries at the top level"])
    rows = []
    for node, item in zip(root.value, items):
        line = node.start_mark.line + 1
        if not isinstance(item, dict):
            raise DataFileError([f"{path}:{line}: expected a mapping (an entry), got {type(item).__name__}"])
        rows.append(SourceRow(path, line, {str(k): _clean(v) for k, v in item.items()}))
    return rows


def parse_rows(rows: list[SourceRow], model: type[M], errors: list[str]) -> list[tuple[SourceRow, M]]:
    """Validate each row into `model`; append file:row:field messages to `errors` for bad ones."""
    parsed: list[tuple[SourceRow, M]] = []
    for row in rows:
        try:
            parsed.append((row, model.model_validate(row.data)))
        except ValidationError as exc:
            for problem in exc.errors():
                field = ".".join(str(p) for p in problem["loc"]) or None
                errors.append(f"{row.where(field)}: {problem['msg']}")
    return parsed


def files_in(directory: Path) -> list[Path]:
    """Data files of a folder in a stable order (so the KB hash is reproducible)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in TABLE_SUFFIXES and not p.name.startswith("~$"))
