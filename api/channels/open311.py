"""Open311 GeoReport v2 (JSON) over the work-order service: thin views; the mapping lives in orders/open311.py.

Every answer under /open311 — including validation errors and unknown paths — uses the Open311 error format, a JSON
array of {"code", "description"} with the matching HTTP status (400 bad input, 403 bad api_key, 404 missing, 429
too many lookups). The rest of the app keeps FastAPI's own error format: the conversion is done by this router's
route class, not by an app-wide exception handler.
"""
from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth.keys import verify_api_key
from api.deps import (
    ClientDep,
    LoadedRouterDep,
    MetricsDep,
    PublicLimiterDep,
    SessionsDep,
    SettingsDep,
)
from api.routing_pool import route_with_vector, text_embedder
from api.schemas import Latitude, Longitude
from hotline.core.config import Settings
from hotline.core.db import transaction
from knowledge_base.kb import KnowledgeBase
from nlp.normalize import InputError
from orders.models import utcnow
from orders.open311 import (
    DESCRIPTION_MAX_CHARS,
    MAX_IDS,
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    Open311InputError,
    check_intake,
    create_request,
    find_request,
    find_requests,
    request_window,
    requests_json,
    service_catalogue,
    service_definition_json,
    service_json,
    split_list,
)
from orders.service import Actor
from routing.geocode import GeoPoint

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
PUBLISHED = {"open311": "only requests filed through Open311 are published",
             "all": "every order is published (coordinates only for requests filed through Open311)",
             "none": "no request is published"}
WRITE_SCOPE = "orders:write"


def open311_error(status: int, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse([{"code": status, "description": description}], status_code=status, headers=headers)


def _validation_reason(exc: RequestValidationError) -> str:
    # Field and message only: the rejected input itself is never echoed (it may hold a phone number).
    reasons = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        reasons.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "; ".join(reasons) or "invalid request"


class Open311Route(APIRoute):
    """Turns HTTP and validation errors of the Open311 views into Open311 error arrays."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def open311_handler(request: Request) -> Response:
            # PostgreSQL text cannot hold NUL: refused here, once, instead of failing deep in a query.
            if "\x00" in request.url.path or any("\x00" in value for _, value in request.query_params.multi_items()):
                return open311_error(400, "NUL characters are not allowed in the path or query")
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return open311_error(400, _validation_reason(exc))
            except StarletteHTTPException as exc:
                return open311_error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

        return open311_handler


class Open311ErrorOut(BaseModel):
    code: int
    description: str


_ERRORS = {status: {"model": list[Open311ErrorOut], "description": text} for status, text in (
    (400, "bad input (the description says which field and why)"), (403, "missing, invalid or revoked api_key"),
    (404, "no such service, request or jurisdiction"), (429, "too many lookups from this address; see Retry-After"),
    (503, "the service list is still loading"))}
router = APIRouter(prefix="/open311/v2", tags=["open311"], route_class=Open311Route, responses=_ERRORS)


# -- response shapes (GeoReport v2, JSON) ---------------------------------------------------------------------------
class EndpointOut(BaseModel):
    specification: str
    url: str
    changeset: str
    type: Literal["production", "test"]
    formats: list[str]


class DiscoveryOut(BaseModel):
    changeset: str
    contact: str
    key_service: str
    endpoints: list[EndpointOut]


class ServiceOut(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str


class AttributeValueOut(BaseModel):
    key: str
    name: str


class AttributeOut(BaseModel):
    variable: bool
    code: str
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[AttributeValueOut]


class ServiceDefinitionOut(BaseModel):
    service_code: str
    attributes: list[AttributeOut]


class CreatedOut(BaseModel):
    service_request_id: str
    service_notice: str | None
    account_id: str | None


class RequestOut(BaseModel):
    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str | None
    service_name: str | None
    service_code: str | None
    description: str
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str | None
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


class RequestForm(BaseModel):
    """POST requests.json (application/x-www-form-urlencoded). attribute[subtype]=<细类 code> is read as well."""

    model_config = ConfigDict(extra="ignore")

    api_key: str = Field(max_length=256, description="an API key with the orders:write scope")
    jurisdiction_id: str | None = Field(default=None, max_length=128)
    service_code: str = Field(max_length=16, description="from services.json: a hint; the router decides")
    lat: Latitude | None = Field(default=None, description="WGS-84")
    long: Longitude | None = Field(default=None, description="WGS-84")
    address_string: str | None = Field(default=None, max_length=500)
    address_id: str | None = Field(default=None, max_length=128)
    description: str | None = Field(default=None, max_length=4 * DESCRIPTION_MAX_CHARS,
                                    description=f"required here; at most {DESCRIPTION_MAX_CHARS} characters")
    phone: str | None = Field(default=None, max_length=32, description="kept for the handler's call-back only")
    media_url: str | None = Field(default=None, max_length=4096)
    # Accepted for compatibility and dropped: personal data this service does not need.
    email: str | None = Field(default=None, max_length=256)
    first_name: str | None = Field(default=None, max_length=128)
    last_name: str | None = Field(default=None, max_length=128)
    device_id: str | None = Field(default=None, max_length=256)
    account_id: str | None = Field(default=None, max_length=256)


# -- dependencies ---------------------------------------------------------------------------------------------------
def _check_jurisdiction(settings: Settings, jurisdiction_id: str | None) -> None:
    expected = settings.open311_jurisdiction_id
    if jurisdiction_id not in (None, "", expected):
        raise HTTPException(404, f"unknown jurisdiction_id; this server serves {expected!r}")


def public_reader(settings: SettingsDep, limiter: PublicLimiterDep, client: ClientDep,
                  jurisdiction_id: Annotated[str | None, Query(max_length=128)] = None) -> None:
    """Public GETs: rate limited per client address, and for this jurisdiction only."""
    wait = limiter.check(client or "unknown")
    if wait is not None:
        raise HTTPException(429, "too many requests; try again shortly", headers={"Retry-After": str(int(wait) + 1)})
    _check_jurisdiction(settings, jurisdiction_id)


async def writer(request: Request, settings: SettingsDep, sessions: SessionsDep) -> Actor:
    """POST: the jurisdiction, then the api_key (form field, or query parameter), before any field is looked at."""
    form = await request.form()   # already parsed by FastAPI for the form model: served from the request's cache

    def value(name: str) -> str | None:
        found = form.get(name, request.query_params.get(name))
        return found if isinstance(found, str) else None

    _check_jurisdiction(settings, value("jurisdiction_id"))
    api_key = value("api_key")

    def lookup():
        with sessions() as session:
            return verify_api_key(session, api_key)

    # NUL: no key holds one, and PostgreSQL would refuse it in the lookup query.
    key = await run_in_threadpool(lookup) if api_key and "\x00" not in api_key else None
    if key is None or WRITE_SCOPE not in (key.scopes or []):
        raise HTTPException(403, f"api_key is missing, invalid, revoked or lacks the {WRITE_SCOPE!r} scope")
    if key.department_code:
        # A department-bound key is that department's own system (callbacks), not a channel citizens report through.
        raise HTTPException(403, "this api_key belongs to a department's system; Open311 intake needs a channel key")
    return Actor(key.name, "system")


def knowledge_base(router_: LoadedRouterDep) -> KnowledgeBase:
    if router_ is None:
        raise HTTPException(503, "the service list is still loading; try again shortly")
    return router_.kb


PublicReader = Depends(public_reader)
Kb = Annotated[KnowledgeBase, Depends(knowledge_base)]


def _bad_input(exc: Exception) -> HTTPException:
    return HTTPException(400, str(exc))


# -- views ----------------------------------------------------------------------------------------------------------
@router.get("/discovery.json", dependencies=[PublicReader])
def discovery(request: Request, settings: SettingsDep, kb: Kb) -> DiscoveryOut:
    """Service discovery: where this GeoReport v2 endpoint is and what it speaks."""
    latest = kb.changelog[-1] if kb.changelog else {}
    changeset = " ".join(str(latest[k]) for k in ("date", "version") if latest.get(k))
    # The configured public address when there is one; else the request's (its Host is an allowed one, L8).
    base = settings.public_base_url or str(request.base_url)
    endpoint = EndpointOut(specification=SPECIFICATION, url=base.rstrip("/") + router.prefix,
                           changeset=changeset, type="production", formats=["application/json"])
    return DiscoveryOut(changeset=changeset, contact=f"{settings.city_name}12345政务服务便民热线",
                        key_service=("API keys (scope orders:write) are issued by the hotline's operators. GET "
                                     f"requests.json: {PUBLISHED[settings.open311_publish]}, masked text, page_size "
                                     f"{PAGE_SIZE} by default (at most {MAX_PAGE_SIZE}), page=1,2,…"),
                        endpoints=[endpoint])


@router.get("/services.json", dependencies=[PublicReader])
def list_services(kb: Kb) -> list[ServiceOut]:
    """One service per level-2 category (子类) of the city's taxonomy."""
    return [ServiceOut(**service_json(service)) for service in service_catalogue(kb).values()]


@router.get("/services/{service_code}.json", dependencies=[PublicReader])
def service_definition(service_code: Annotated[str, Path(max_length=16)], kb: Kb) -> ServiceDefinitionOut:
    """The service's attributes: the level-3 category (细类) as an optional single-value list."""
    service = service_catalogue(kb).get(service_code)
    if service is None:
        raise HTTPException(404, f"no service {service_code!r} (see services.json)")
    return ServiceDefinitionOut(**service_definition_json(service))


@router.post("/requests.json", status_code=201)
async def post_request(request: Request, sessions: SessionsDep, settings: SettingsDep, router_: LoadedRouterDep, metrics: MetricsDep, form: Annotated[RequestForm, Form()],
                       actor: Annotated[Actor, Depends(writer)], kb: Kb) -> list[CreatedOut]:
    """File a service request as a work order (channel open311), routed at once; service_code is kept as a hint."""
    submitted = await request.form()
    attributes = {name[len("attribute["):-1]: value for name, value in submitted.multi_items()
                  if name.startswith("attribute[") and name.endswith("]") and isinstance(value, str)}
    try:
        intake = check_intake(kb, service_code=form.service_code, description=form.description, lat=form.lat,
                              lng=form.long, address_string=form.address_string, address_id=form.address_id,
                              media_url=form.media_url, attributes=attributes)
    except Open311InputError as exc:
        raise _bad_input(exc) from None
    point = None
    if intake.lat is not None:
        point = GeoPoint(intake.lat, intake.lng, "wgs84")
    try:
        routing, vector = await route_with_vector(request.app, router_, intake.text, point)
    except InputError as exc:
        raise _bad_input(exc) from None

    def store() -> str:
        with transaction(sessions) as session:
            order = create_request(session, kb=kb, intake=intake, actor=actor, caller_phone=form.phone,
                                   routing=routing, routing_model=router_.embedder_note,
                                   auto_dispatch=settings.auto_dispatch, text_vector=vector,
                                   vector_model=text_embedder(router_)[0])
            return order.order_no

    try:
        order_no = await run_in_threadpool(store)
    except (InputError, ValueError) as exc:
        raise _bad_input(exc) from None
    metrics.decisions.labels(routing["decision"]).inc()
    # An unlisted territorial office (no code) is still to be confirmed: the citizen is not told its placeholder name.
    department = (routing.get("department") or {}).get("name") if (routing.get("department") or {}).get("code") else None
    notice = (f"已登记，工单号 {order_no}。拟由{department}办理，办理时限 {routing.get('time_limit_days') or '按规定'} 个工作日。"
              if department else f"已登记，工单号 {order_no}，我们会尽快分派办理。")
    return [CreatedOut(service_request_id=order_no, service_notice=notice, account_id=None)]


@router.get("/requests.json", dependencies=[PublicReader])
def list_requests(sessions: SessionsDep, settings: SettingsDep, kb: Kb,
                  service_request_id: Annotated[str | None, Query(max_length=40 * MAX_IDS)] = None,
                  service_code: Annotated[str | None, Query(max_length=1000)] = None,
                  start_date: Annotated[str | None, Query(max_length=64, description="ISO 8601")] = None,
                  end_date: Annotated[str | None, Query(max_length=64, description="ISO 8601; ≤ 90 days on")] = None,
                  status: Annotated[str | None, Query(max_length=32, description="open, closed or open,closed")] = None,
                  page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"results per page (default "
                                                  f"{PAGE_SIZE}, at most {MAX_PAGE_SIZE})")] = PAGE_SIZE,
                  page: Annotated[int, Query(ge=1, le=10_000, description="1 = the newest")] = 1,
                  ) -> list[RequestOut]:
    """Published service requests of the last 90 days by default, newest first, in pages (page_size 50 by default,
    at most 200); top-level orders only. What is published is the city's choice (HOTLINE_OPEN311_PUBLISH):
    requests filed through Open311 (default), every order, or none."""
    publish = settings.open311_publish
    try:
        ids = split_list(service_request_id)
        start, end = (None, None) if ids else request_window(start=start_date, end=end_date, now=utcnow())
        with sessions() as session:
            orders = find_requests(session, kb=kb, order_nos=ids, service_codes=split_list(service_code),
                                   statuses=split_list(status), start=start, end=end, publish=publish,
                                   limit=page_size, offset=(page - 1) * page_size)
            return [RequestOut(**item) for item in requests_json(orders, kb=kb)]
    except Open311InputError as exc:
        raise _bad_input(exc) from None


@router.get("/requests/{service_request_id}.json", dependencies=[PublicReader])
def get_request(service_request_id: Annotated[str, Path(max_length=40)], sessions: SessionsDep, settings: SettingsDep, kb: Kb) -> list[RequestOut]:
    """One published service request (a one-item array, as GeoReport v2 has it); an unpublished one is a 404 like a
    missing one."""
    with sessions() as session:
        order = find_request(session, order_no=service_request_id, publish=settings.open311_publish)
        if order is None:
            raise HTTPException(404, f"no service request {service_request_id!r}")
        return [RequestOut(**item) for item in requests_json([order], kb=kb)]


@router.get("/tokens/{token}.json", dependencies=[PublicReader])
def get_token(token: Annotated[str, Path(max_length=128)]) -> list[Open311ErrorOut]:
    """Requests are created synchronously (POST answers with the service_request_id), so no token is ever issued."""
    raise HTTPException(404, "no such token: requests are created at once, so this server issues no tokens")


@router.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
def unknown_resource(rest: str) -> Response:
    raise HTTPException(404, "no such resource; this server speaks GeoReport v2 in JSON (paths end with .json)")
