"""Changing the responsibility list (权责清单) while the service runs: add, modify, retire an entry.

A change is tried on a copy of the city folder first and must pass the same checks as `hotline kb validate`; only
then is it written to the YAML file (comments and layout kept, via ruamel.yaml; atomic replace) and recorded in
changelog.yaml with a new list version. The caller then rebuilds the router in the background and swaps it in,
so the old index keeps answering until the new one is ready (no downtime).
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import threading
from io import StringIO
from pathlib import Path

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from knowledge_base.kb import KnowledgeBase, load_knowledge_base
from knowledge_base.loaders import DataFileError, files_in
from knowledge_base.models import ResponsibilityEntry

EDITABLE_FIELDS = ("name", "type", "category", "legal_basis", "duty_mode", "lead", "level", "co_handlers", "scope",
                   "time_limit_days", "boundary", "keywords", "examples", "disputed", "effective_from", "effective_to")
FIELD_ORDER = ("id", *EDITABLE_FIELDS, "version")

# One change at a time per process: a change reads, validates and writes the files as a whole.
_change_lock = threading.Lock()


class ChangeRejected(ValueError):
    """The change would break the list; `errors` name the field and the problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


class EntryNotFound(LookupError):
    pass


def _yaml() -> YAML:
    yaml = YAML()   # round-trip: comments, key order and quoting survive an edit
    yaml.width = 4096
    yaml.allow_unicode = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _plain(value):
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _entry_map(entry: ResponsibilityEntry) -> CommentedMap:
    data = entry.model_dump()
    out = CommentedMap()
    for key in FIELD_ORDER:
        value = data.get(key)
        if isinstance(value, list):
            seq = CommentedSeq(value)
            if key in ("co_handlers", "keywords"):
                seq.fa.set_flow_style()
            value = seq
        out[key] = _plain(value) if value is not None else None
    return out


def _find_entry_file(city_dir: Path, entry_id: str) -> tuple[Path, int] | None:
    yaml = _yaml()
    for path in files_in(city_dir / "responsibilities"):
        if path.suffix.lower() not in (".yaml", ".yml"):
            continue
        items = yaml.load(path.read_text(encoding="utf-8")) or []
        for index, item in enumerate(items):
            if str(item.get("id")) == entry_id:
                return path, index
    return None


def _file_for_new_entry(city_dir: Path, category: str, kb: KnowledgeBase) -> Path:
    prefix = category[:2]
    for path in files_in(city_dir / "responsibilities"):
        if path.name.startswith(prefix) and path.suffix.lower() in (".yaml", ".yml"):
            return path
    level1 = kb.taxonomy[category].path[0] if category in kb.taxonomy else "新增"
    return city_dir / "responsibilities" / f"{prefix}_{level1}.yaml"


def next_entry_id(kb: KnowledgeBase, category: str) -> str:
    """KB-<大类>-<n+1>, following the list's own numbering."""
    prefix = f"KB-{category[:2]}-"
    numbers = [int(e.id[len(prefix):]) for e in kb.entries.values()
               if e.id.startswith(prefix) and e.id[len(prefix):].isdigit()]
    return f"{prefix}{max(numbers, default=0) + 1:03d}"


def _write_atomic(path: Path, items) -> None:
    buffer = StringIO()
    _yaml().dump(items, buffer)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def _next_version(changelog: list[dict], today: dt.date) -> str:
    """Versions read year.month.n; n restarts each month."""
    stem = f"{today.year}.{today.month}."
    same_month = [str(c.get("version", "")) for c in changelog if str(c.get("version", "")).startswith(stem)]
    numbers = [int(v[len(stem):]) for v in same_month if v[len(stem):].isdigit()]
    return f"{stem}{max(numbers, default=0) + 1}"


def _append_changelog(city_dir: Path, record: dict) -> None:
    path = city_dir / "changelog.yaml"
    yaml = _yaml()
    items = yaml.load(path.read_text(encoding="utf-8")) if path.exists() else None
    items = items if items is not None else CommentedSeq()
    items.append(record)
    _write_atomic(path, items)


def _validated(change_dir: Path) -> KnowledgeBase:
    try:
        return load_knowledge_base(change_dir)
    except DataFileError as exc:
        raise ChangeRejected(exc.errors) from None


def _apply(city_dir: Path, *, action: str, entry_id: str, build, author: str, note: str,
           today: dt.date) -> tuple[ResponsibilityEntry, str]:
    """Try the edit on a copy, then on the real folder; returns (the entry as stored, the new list version)."""
    with _change_lock:
        kb = _validated(city_dir)
        with tempfile.TemporaryDirectory(prefix="kb-change-") as scratch:
            trial = Path(scratch) / city_dir.name
            shutil.copytree(city_dir, trial)
            entry, path, items, index = build(kb, trial)
            if index is None:
                items.append(_entry_map(entry))
            else:
                items[index] = _merge_keep_comments(items[index], _entry_map(entry))
            _write_atomic(path, items)
            checked = _validated(trial)
            if entry.id not in checked.entries:
                raise ChangeRejected([f"{entry.id}: the entry did not load back"])
        # The trial passed: the same edit on the real folder.
        real_path = city_dir / path.relative_to(trial)
        real_items = _yaml().load(real_path.read_text(encoding="utf-8")) if real_path.exists() else CommentedSeq()
        real_items = real_items if real_items is not None else CommentedSeq()
        if index is None:
            real_items.append(_entry_map(entry))
        else:
            real_items[index] = _merge_keep_comments(real_items[index], _entry_map(entry))
        _write_atomic(real_path, real_items)
        version = _next_version(kb.changelog, today)
        _append_changelog(city_dir, {"version": version, "date": today.isoformat(), "author": author,
                                     "summary": note or f"{action} {entry.id}",
                                     "changes": [{"action": action, "id": entry.id, "note": note or entry.name}]})
        return entry, version


def _merge_keep_comments(old: CommentedMap, new: CommentedMap) -> CommentedMap:
    for key, value in new.items():
        old[key] = value
    return old


def _make_entry(data: dict) -> ResponsibilityEntry:
    try:
        return ResponsibilityEntry(**data)
    except ValidationError as exc:
        raise ChangeRejected([f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]) from None


def add_entry(city_dir: Path, *, fields: dict, author: str, note: str = "",
              today: dt.date | None = None) -> tuple[ResponsibilityEntry, str]:
    today = today or dt.date.today()

    def build(kb: KnowledgeBase, trial: Path):
        entry_id = fields.get("id") or next_entry_id(kb, str(fields.get("category", "")))
        if entry_id in kb.entries:
            raise ChangeRejected([f"id: entry {entry_id} already exists (modify it instead)"])
        entry = _make_entry({**fields, "id": entry_id, "version": 1,
                             "effective_from": fields.get("effective_from") or today})
        path = _file_for_new_entry(trial, entry.category, kb)
        items = (_yaml().load(path.read_text(encoding="utf-8")) if path.exists() else None) or CommentedSeq()
        return entry, path, items, None

    return _apply(city_dir, action="add", entry_id=fields.get("id", ""), build=build, author=author, note=note,
                  today=today)


def _existing(kb: KnowledgeBase, trial: Path, entry_id: str):
    if entry_id not in kb.entries:
        raise EntryNotFound(f"no entry {entry_id}")
    found = _find_entry_file(trial, entry_id)
    if found is None:
        raise ChangeRejected([f"{entry_id}: lives in a spreadsheet, not a YAML list; edit that file and reload"])
    path, index = found
    return kb.entries[entry_id], path, _yaml().load(path.read_text(encoding="utf-8")), index


def modify_entry(city_dir: Path, *, entry_id: str, changes: dict, author: str, note: str = "",
                 today: dt.date | None = None) -> tuple[ResponsibilityEntry, str]:
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise ChangeRejected([f"{name}: not an editable field" for name in unknown])
    if not changes:
        raise ChangeRejected(["nothing to change"])

    def build(kb: KnowledgeBase, trial: Path):
        current, path, items, index = _existing(kb, trial, entry_id)
        entry = _make_entry({**current.model_dump(), **changes, "version": current.version + 1})
        return entry, path, items, index

    return _apply(city_dir, action="modify", entry_id=entry_id, build=build, author=author,
                  note=note or f"修改 {', '.join(sorted(changes))}", today=today or dt.date.today())


def retire_entry(city_dir: Path, *, entry_id: str, author: str, reason: str,
                 today: dt.date | None = None) -> tuple[ResponsibilityEntry, str]:
    """Out of force from today (kept in the list for history; no longer matched)."""
    today = today or dt.date.today()
    if not reason.strip():
        raise ChangeRejected(["reason: say why the entry is retired"])

    def build(kb: KnowledgeBase, trial: Path):
        current, path, items, index = _existing(kb, trial, entry_id)
        if not current.in_force(today):
            raise ChangeRejected([f"{entry_id}: already out of force"])
        entry = _make_entry({**current.model_dump(), "effective_to": today - dt.timedelta(days=1),
                             "version": current.version + 1})
        return entry, path, items, index

    return _apply(city_dir, action="retire", entry_id=entry_id, build=build, author=author, note=reason, today=today)
