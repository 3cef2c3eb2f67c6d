"""What operators and monitoring call: liveness, readiness (database and router) and Prometheus metrics."""
from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text as sql

from api.deps import LoadedRouterDep, MetricsDep, SessionsDep, require_scope

router = APIRouter(tags=["ops"])

_PATH = re.compile(r"(?<![\w.])(?:~|[A-Za-z]:)?[/\\](?:[^\s/\\,;()'\"]*[/\\])*([^\s/\\,;()'\"]*)")


def without_paths(text: str) -> str:
    """An operator-facing note with every file-system path cut to its last part (/readyz is anonymous: it must
    not tell where the service keeps its models)."""
    return _PATH.sub(lambda match: match.group(1) or "…", text)


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(sessions: SessionsDep, current: LoadedRouterDep) -> Response:
    """Ready when the database answers and the router (index and model) is loaded."""
    checks: dict[str, str] = {}
    try:
        with sessions() as session:
            session.execute(sql("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready; the reason is reported, not raised
        checks["database"] = f"unavailable: {type(exc).__name__}"
    checks["router"] = "ok" if current is not None else "loading"
    if current is not None:
        checks["index_entries"] = str(len(current.matcher.model.entry_ids))
        checks["embeddings"] = without_paths(current.embedder_note)
    ready = checks["database"] == "ok" and checks["router"] == "ok"
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def metrics_router(*, public: bool) -> APIRouter:
    """/metrics: public by default (a scraper on the same network); HOTLINE_METRICS_PUBLIC=false asks for an API
    key with the `metrics:read` scope or an admin's token."""
    guarded = APIRouter(tags=["ops"], dependencies=[] if public else [Depends(require_scope("metrics:read"))])

    @guarded.get("/metrics")
    def metrics(registry: MetricsDep) -> Response:
        return Response(registry.render(), media_type="text/plain; version=0.0.4")

    return guarded
