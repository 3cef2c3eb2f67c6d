"""The knowledge base: departments, the matter taxonomy and the responsibility list of one city."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from knowledge_base.loaders import DataFileError, files_in, parse_rows, read_rows
from knowledge_base.models import Department, ResponsibilityEntry, TaxonomyNode

DEPARTMENT_COLUMNS = {"code", "name", "kind", "level"}
TAXONOMY_COLUMNS = {"code", "level1", "level2", "level3"}
ENTRY_COLUMNS = {"id", "name", "type", "category", "legal_basis", "duty_mode", "lead", "level", "time_limit_days", "examples"}


@dataclass
class KnowledgeBase:
    city_dir: Path
    departments: dict[str, Department]
    taxonomy: dict[str, TaxonomyNode]
    entries: dict[str, ResponsibilityEntry]
    changelog: list[dict] = field(default_factory=list)
    content_hash: str = ""
    district_names: dict[str, str] = field(default_factory=dict)  # adcode -> name
    # taxonomy code -> [{"catalogue", "external_code", "external_name"}]: other catalogues (GB/T 39666, city-ops …)
    mappings: dict[str, list[dict]] = field(default_factory=dict)

    # -- department resolution (条块结合、以块为主) -------------------------------------------
    def __post_init__(self) -> None:
        self._by_kind: dict[tuple[str, str, str], Department] = {}
        for dept in self.departments.values():
            place = dept.street_id if dept.level == "street" else dept.district_adcode
            self._by_kind[(dept.kind, dept.level, place)] = dept
        self.kinds = {d.kind for d in self.departments.values()}

    def unit(self, kind: str, level: str, *, district: str | None = None, street: str | None = None) -> Department | None:
        """The unit of `kind` at `level` for a place; None when that place has no such unit."""
        if level == "street":
            return self._by_kind.get((kind, "street", street or ""))
        if level == "district":
            return self._by_kind.get((kind, "district", district or ""))
        return self._by_kind.get((kind, "city", ""))

    def category_path(self, code: str) -> list[str]:
        node = self.taxonomy.get(code)
        return node.path if node else []

    def active_entries(self, on: dt.date | None = None) -> list[ResponsibilityEntry]:
        return [e for e in self.entries.values() if e.in_force(on)]

    @property
    def version(self) -> str:
        return str(self.changelog[-1].get("version", "")) if self.changelog else ""


def _file_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_knowledge_base(city_dir: Path) -> KnowledgeBase:
    """Load and cross-check a city's lists; raise DataFileError naming every bad file/row/field."""
    errors: list[str] = []
    if not city_dir.is_dir():
        raise DataFileError([f"{city_dir}: knowledge-base folder not found"])

    def rows_of(path: Path, required: set[str]):
        try:
            return read_rows(path, required=required)
        except DataFileError as exc:
            errors.extend(exc.errors)
            return []

    dept_file = next((p for p in files_in(city_dir) if p.stem == "departments"), city_dir / "departments.csv")
    departments: dict[str, Department] = {}
    for row, dept in parse_rows(rows_of(dept_file, DEPARTMENT_COLUMNS), Department, errors):
        if dept.code in departments:
            errors.append(f"{row.where('code')}: duplicate department code {dept.code}")
        departments[dept.code] = dept

    taxonomy: dict[str, TaxonomyNode] = {}
    taxonomy_files = files_in(city_dir / "taxonomy")
    for path in taxonomy_files:
        for row, node in parse_rows(rows_of(path, TAXONOMY_COLUMNS), TaxonomyNode, errors):
            if node.code in taxonomy:
                errors.append(f"{row.where('code')}: duplicate taxonomy code {node.code}")
            taxonomy[node.code] = node

    kinds = {d.kind for d in departments.values()}
    district_names = {d.district_adcode: d.district_name for d in departments.values() if d.district_adcode}
    entries: dict[str, ResponsibilityEntry] = {}
    entry_files = files_in(city_dir / "responsibilities")
    for path in entry_files:
        for row, entry in parse_rows(rows_of(path, ENTRY_COLUMNS), ResponsibilityEntry, errors):
            if entry.id in entries:
                errors.append(f"{row.where('id')}: duplicate entry id {entry.id}")
            if entry.category not in taxonomy:
                errors.append(f"{row.where('category')}: unknown taxonomy code {entry.category}")
            for role, kind in [("lead", entry.lead), *(("co_handlers", k) for k in entry.co_handlers)]:
                if kind not in kinds:
                    errors.append(f"{row.where(role)}: unknown department kind {kind!r}")
            if entry.scope != "全市" and entry.scope not in district_names.values():
                errors.append(f"{row.where('scope')}: scope must be 全市 or a district name, got {entry.scope!r}")
            if entry.effective_from and entry.effective_to and entry.effective_to < entry.effective_from:
                errors.append(f"{row.where('effective_to')}: ends before it starts")
            entries[entry.id] = entry

    mappings: dict[str, list[dict]] = {}
    for code, node in taxonomy.items():
        if node.ext_gbt39666:
            mappings.setdefault(code, []).append(
                {"catalogue": "GB/T 39666-2020", "external_code": "", "external_name": node.ext_gbt39666})
    mapping_file = city_dir / "taxonomy_mappings.csv"
    if mapping_file.exists():
        for row in rows_of(mapping_file, {"taxonomy_code", "catalogue", "external_name"}):
            code = str(row.data["taxonomy_code"]).zfill(6)
            if code not in taxonomy:
                errors.append(f"{row.where('taxonomy_code')}: unknown taxonomy code {code}")
                continue
            mappings.setdefault(code, []).append({"catalogue": row.data["catalogue"],
                                                  "external_code": str(row.data.get("external_code", "")),
                                                  "external_name": row.data["external_name"]})

    if not entries and not errors:
        errors.append(f"{city_dir / 'responsibilities'}: no responsibility entries found")
    if errors:
        raise DataFileError(errors)

    changelog_path = city_dir / "changelog.yaml"
    changelog = yaml.safe_load(changelog_path.read_text(encoding="utf-8")) if changelog_path.exists() else []
    # The gazetteer and the calibration set shape the calibrated confidence, so they are part of the hash too.
    geo_files = sorted(p for p in (city_dir / "geo").glob("*") if p.is_file())
    calibration = [p for p in (city_dir / "calibration.jsonl",) if p.exists()]
    content_hash = _file_digest([dept_file, *taxonomy_files, *entry_files, *geo_files, *calibration])
    return KnowledgeBase(city_dir, departments, taxonomy, entries, changelog or [], content_hash, district_names, mappings)
