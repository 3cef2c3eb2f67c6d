"""Knowledge-base management over HTTP: read, add, modify, retire entries. A change is validated, written, logged in
changelog.yaml, and the router is rebuilt in the background and swapped in (the old one answers meanwhile)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import (
    LoadedRouterDep,
    Principal,
    RouterDep,
    SettingsDep,
    get_reloader,
    require_scope,
)
from knowledge_base import management

router = APIRouter(prefix="/api/v1/kb", tags=["knowledge base"])

Reader = Annotated[Principal, Depends(require_scope("orders:read"))]
Editor = Annotated[Principal, Depends(require_scope("kb:write"))]


def entry_json(entry) -> dict:
    return {**entry.model_dump(mode="json"), "in_force": entry.in_force()}


@router.get("/entries")
def list_entries(router_: RouterDep, principal: Reader,
                 q: Annotated[str | None, Query(max_length=50, description="words in the name or keywords")] = None,
                 category: Annotated[str | None, Query(max_length=6, pattern=r"^\d{2,6}$")] = None,
                 include_retired: bool = False,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    kb = router_.kb
    entries = [e for e in kb.entries.values() if include_retired or e.in_force()]
    if category:
        entries = [e for e in entries if e.category.startswith(category)]
    for word in (q or "").split():
        entries = [e for e in entries if word in e.name or any(word in k for k in e.keywords)]
    return {"kb_version": kb.version, "total": len(entries), "entries": [entry_json(e) for e in entries[:limit]]}


@router.get("/entries/{entry_id}")
def get_entry(entry_id: str, router_: RouterDep, principal: Reader) -> dict:
    entry = router_.kb.entries.get(entry_id)
    if entry is None:
        raise HTTPException(404, f"no entry {entry_id}")
    return entry_json(entry)


# Bounds well above the bundled entries' longest (name 24, legal basis 102, boundary 179, example 191 characters;
# review 2026-12-06, L14).
Short = Annotated[str, Field(max_length=64)]
Long = Annotated[str, Field(max_length=2000)]


class EntryIn(BaseModel):
    id: str | None = Field(default=None, pattern=r"^KB-\d{2}-\d{3,}$", description="omit to number it automatically")
    name: str = Field(max_length=100)
    type: Short
    category: str = Field(pattern=r"^\d{6}$")
    legal_basis: Long
    duty_mode: Long
    lead: Short
    level: Short
    co_handlers: list[Short] = Field(default=[], max_length=20)
    scope: str = Field(default="全市", max_length=200)
    time_limit_days: int
    boundary: Long = ""
    keywords: list[Short] = Field(default=[], max_length=200)
    examples: list[Long] = Field(max_length=500)
    disputed: bool = False
    effective_from: dt.date | None = None
    note: str = Field(default="", max_length=500, description="why (goes into the changelog)")


class EntryPatch(BaseModel):
    changes: dict = Field(description=f"fields to change: {', '.join(management.EDITABLE_FIELDS)}")
    note: str = Field(default="", max_length=500)


class RetireIn(BaseModel):
    reason: str = Field(min_length=2, max_length=500)


def _changed(request: Request, call) -> dict:
    try:
        entry, version = call()
    except management.EntryNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except management.ChangeRejected as exc:
        raise HTTPException(422, {"message": "the change would break the responsibility list", "errors": exc.errors}) from None
    rebuild = get_reloader(request).request(version)
    return {"entry": entry_json(entry), "kb_version": version, "index": rebuild,
            "note": "the router keeps answering with the previous list until the rebuilt index is swapped in"}


@router.post("/entries", status_code=202)
async def add_entry(body: EntryIn, request: Request, settings: SettingsDep, principal: Editor) -> dict:
    fields = body.model_dump(exclude={"note"}, exclude_none=True)
    city_dir = settings.city_dir
    return await run_in_threadpool(_changed, request, lambda: management.add_entry(
        city_dir, fields=fields, author=principal.name, note=body.note))


@router.patch("/entries/{entry_id}", status_code=202)
async def modify_entry(entry_id: str, body: EntryPatch, request: Request, settings: SettingsDep, principal: Editor) -> dict:
    city_dir = settings.city_dir
    return await run_in_threadpool(_changed, request, lambda: management.modify_entry(
        city_dir, entry_id=entry_id, changes=body.changes, author=principal.name, note=body.note))


@router.post("/entries/{entry_id}/retire", status_code=202)
async def retire_entry(entry_id: str, body: RetireIn, request: Request, settings: SettingsDep, principal: Editor) -> dict:
    city_dir = settings.city_dir
    return await run_in_threadpool(_changed, request, lambda: management.retire_entry(
        city_dir, entry_id=entry_id, author=principal.name, reason=body.reason))


@router.get("/status")
def index_status(request: Request, router_: LoadedRouterDep, principal: Reader) -> dict:
    """The list version being served and the state of the last rebuild."""
    current = router_
    reloader = getattr(request.app.state, "router_reloader", None)   # none until the first change
    return {"serving_kb_version": current.kb.version if current else None,
            "serving_entries": len(current.matcher.model.entry_ids) if current else 0,
            "rebuild": dict(reloader.status) if reloader else {"state": "idle"}}


@router.get("/changelog")
def changelog(settings: SettingsDep, principal: Reader,
              limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[dict]:
    """The newest changes first (as recorded on disk, including ones still being indexed)."""
    from ruamel.yaml import YAML

    path = settings.city_dir / "changelog.yaml"
    items = YAML(typ="safe").load(path.read_text(encoding="utf-8")) if path.exists() else []
    return list(reversed(items or []))[:limit]
