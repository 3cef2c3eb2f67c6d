"""The stateless routing API the dispatch system calls, and the router's correction memory."""
from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import MetricsDep, RouteCaller, RouterDep
from api.routing_pool import route_complaint
from api.schemas import Location, RowId
from nlp.normalize import InputError
from routing.feedback import correction_json
from routing.geocode import GeoPoint

log = logging.getLogger("hotline.api")
router = APIRouter(prefix="/api/v1/route", tags=["routing"])


class RouteBody(BaseModel):
    id: str = ""
    text: str = Field(description="the complaint as the citizen or agent wrote it")
    location: Location | None = None


class CorrectionBody(BaseModel):
    text: str
    department_code: str = Field(description="the department that really owns this complaint")
    kb_item_id: str | None = None


@router.post("")
async def route(body: RouteBody, router_: RouterDep, request: Request, caller: RouteCaller,
                metrics: MetricsDep) -> dict:
    """Route one complaint (stateless): department, matter, jurisdiction, confidence, decision, candidates."""
    point = GeoPoint(body.location.lat, body.location.lng, body.location.datum) if body.location else None
    try:
        result = await route_complaint(request.app, router_, body.text, point, order_id=body.id)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    metrics.decisions.labels(result["decision"]).inc()
    return result


@router.post("/corrections", status_code=201)
async def correct(body: CorrectionBody, router_: RouterDep, caller: RouteCaller) -> dict:
    """Record the department that really owned a complaint; the same complaint told again follows it at once
    (a near-duplicate text about the same matter; never `auto` on the correction alone)."""
    try:
        row = await run_in_threadpool(router_.learn, body.text, body.department_code, entry_id=body.kb_item_id,
                                      created_by=caller.name)
    except (InputError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None
    return {"status": "recorded", "corrections": len(router_.feedback), "id": row["id"],
            "expires_at": row["expires_at"], "supersedes": row["supersedes"]}


@router.get("/corrections")
def list_corrections(router_: RouterDep, caller: RouteCaller) -> list[dict]:
    """Every stored correction, newest first: masked text, unit, what the router had said, who, when, expiry,
    status (active / expired / superseded)."""
    return [correction_json(r) for r in (router_.feedback.list() if router_.feedback is not None else [])]


@router.delete("/corrections/{correction_id}", status_code=204)
def delete_correction(correction_id: RowId, router_: RouterDep, caller: RouteCaller) -> Response:
    """Undo a correction: the running router stops using it at once."""
    if router_.feedback is None or not router_.feedback.remove(correction_id):
        raise HTTPException(404, f"no correction with id {correction_id}")
    log.info("correction %s removed by %s", correction_id, caller.name)
    return Response(status_code=204)
