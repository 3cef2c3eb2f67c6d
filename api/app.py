"""FastAPI application: the stateless routing API (the work-order service builds on it)."""
import logging
import re
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import (
    assistant_actions,
    chat,
    indicators_views,
    input_guard,
    kb_views,
    open311,
    orders_views,
    wechat,
    work_views,
)
from api.body_limit import BodyLimitMiddleware
from api.keys import ensure_api_key
from api.observability import Metrics, RequestContextMiddleware
from api.orders_views import Principal, require_scope
from api.ratelimit import RateLimiter
from api.routing_pool import route_complaint
from api.security_headers import SecurityHeadersMiddleware
from api.staff import LoginThrottle, secret_key
from api.trusted_host import TrustedHostMiddleware, allowed_hosts
from hotline.core.config import Settings, get_settings
from hotline.core.db import make_engine, session_factory, transaction
from hotline.core.migrate import upgrade
from hotline.core.secrets import ASSISTANT_KEY_NAME, installation_key
from nlp.batching import with_batching
from nlp.normalize import InputError
from nlp.pii import install_log_masking
from orders import outbox
from orders.outbox import HttpWebhookSender
from routing.feedback import correction_json
from routing.geocode import GeoPoint
from routing.service import build_router, choose_encoders

log = logging.getLogger("hotline.api")


class Location(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    datum: str = Field(default="wgs84", pattern="^(wgs84|gcj02|bd09|WGS84|GCJ02|BD09)$")


class RouteBody(BaseModel):
    id: str = ""
    text: str = Field(description="the complaint as the citizen or agent wrote it")
    location: Location | None = None


class CorrectionBody(BaseModel):
    text: str
    department_code: str = Field(description="the department that really owns this complaint")
    kb_item_id: str | None = None


ASSISTANT_SCOPES = ["lookup:on_behalf", "orders:read", "orders:write", "route"]


def _provision_assistant_key(app: FastAPI) -> None:
    """The assistant's actions call this service over HTTP with their own API key (kept in state_dir)."""
    settings = app.state.settings
    key = installation_key(settings.assistant_api_key, settings.state_dir, ASSISTANT_KEY_NAME)
    try:
        with transaction(app.state.sessions) as session:
            ensure_api_key(session, name=ASSISTANT_KEY_NAME, key=key, scopes=ASSISTANT_SCOPES)
    except Exception as exc:  # an unmigrated PostgreSQL: the service still starts; /readyz reports the database
        log.warning("assistant API key not provisioned: %s", type(exc).__name__)
        return
    app.state.assistant_api_key = key


async def _deliver_webhooks_forever(app: FastAPI) -> None:
    """The outbox worker: deliver due department webhooks, keep the backlog gauge current, and file the WeChat
    messages whose filing failed once they are due again."""
    import asyncio

    settings = app.state.settings

    def once() -> int:
        with app.state.sessions() as session:   # a read first: no write lock taken when nothing is due
            due = outbox.due_count(session)
        if due:
            outbox.deliver_due(app.state.sessions, sender=app.state.webhook_sender,
                               max_attempts=settings.webhook_max_attempts,
                               backoff_base_s=settings.webhook_backoff_base_s, timeout_s=settings.webhook_timeout_s)
        wechat.file_due(app)
        with app.state.sessions() as session:
            return outbox.backlog(session)

    while True:
        try:
            app.state.metrics.outbox_backlog.set(await run_in_threadpool(once))
        except Exception:  # a database hiccup must not kill the worker; the next round retries
            log.exception("webhook delivery round failed")
        await asyncio.sleep(settings.outbox_poll_s)


_PATH = re.compile(r"(?<![\w.])(?:~|[A-Za-z]:)?[/\\](?:[^\s/\\,;()'\"]*[/\\])*([^\s/\\,;()'\"]*)")


def without_paths(text: str) -> str:
    """An operator-facing note with every file-system path cut to its last part (/readyz is anonymous: it must
    not tell where the service keeps its models)."""
    return _PATH.sub(lambda match: match.group(1) or "…", text)


def build_service_router(settings: Settings):
    """The router the service runs: `build_router`'s, with the embedders' query calls micro-batched across
    concurrent requests (HOTLINE_EMBED_BATCH_WAIT_MS, HOTLINE_EMBED_MAX_BATCH; nlp/batching.py), and each model on
    HOTLINE_ROUTING_MODEL_THREADS threads. Batching wraps the model embedders only (same model ids: the same index
    is used); the CLI builds its routers unwrapped, with HOTLINE_TORCH_THREADS."""
    choice = choose_encoders(settings.model_copy(update={"torch_threads": settings.routing_model_threads}))
    choice.encoders.embedders = with_batching(choice.encoders.embedders,
                                              wait_s=settings.embed_batch_wait_ms / 1000.0,
                                              max_batch=settings.embed_max_batch)
    if settings.embed_max_batch > 1:
        log.info("embedding calls batched across requests: up to %d texts, %.1f ms wait",
                 settings.embed_max_batch, settings.embed_batch_wait_ms)
    return build_router(settings, choice=choice, progress=log.info)


def create_app(settings: Settings | None = None, router=None, engine=None, *, load_router: bool = True,
               wechat_sender=None, webhook_sender=None) -> FastAPI:
    settings = settings or get_settings()
    install_log_masking()
    engine = engine or make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.database_url.startswith("sqlite"):
            # The embedded default migrates itself; a PostgreSQL deployment runs `hotline db upgrade` on purpose.
            await run_in_threadpool(upgrade, settings.database_url)
        await run_in_threadpool(_provision_assistant_key, app)
        worker = None
        if settings.outbox_poll_s > 0:
            import asyncio

            worker = asyncio.create_task(_deliver_webhooks_forever(app))
        if app.state.router is None and load_router:
            app.state.router = await run_in_threadpool(build_service_router, settings)
            log.info("router ready: %s", app.state.router.embedder_note)
        yield
        if worker is not None:
            worker.cancel()

    app = FastAPI(title="hotline", version="0.1.0", lifespan=lifespan,
                  description="Routing of 12345 hotline complaints to the owning department.")
    app.state.router = router
    app.state.assistant_api_key = None
    app.state.sessions = session_factory(engine)
    app.state.jwt_key = secret_key(settings.jwt_secret, settings.state_dir)
    app.state.public_limiter = RateLimiter(settings.public_rate_limit_per_minute, 60.0)
    app.state.relay_limiter = RateLimiter(settings.relay_lookups_per_key_per_minute, 60.0)   # per relaying key
    app.state.login_throttle = LoginThrottle(settings.login_max_failures, settings.login_failure_window_s,
                                             settings.login_lockout_s)
    app.state.metrics = Metrics()
    input_guard.install(app)   # strict JSON bodies, safe 422s; inside the request context (logged, counted)
    # Before anything parses a body (L4): the general limit, smaller ones where the endpoint's own is smaller, and
    # the assistant webhook's (a long tracker, token-protected) however small the general one is.
    own_limits = {"/api/v1/chat": min(chat.MAX_BODY_BYTES, settings.max_body_bytes),
                  "/wechat/callback": min(wechat.MAX_BODY_BYTES, settings.max_body_bytes),
                  "/api/v1/assistant/webhook": assistant_actions.MAX_BODY_BYTES}
    app.add_middleware(BodyLimitMiddleware, default_limit=settings.max_body_bytes, limits=own_limits)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    # A forged Host is refused before any absolute URL is built from it (slash redirects, Open311 discovery; L8).
    app.add_middleware(TrustedHostMiddleware, allowed=allowed_hosts(settings))
    app.add_middleware(SecurityHeadersMiddleware)   # outside the request context: 4xx answers get them too
    if settings.trusted_proxies:
        # X-Forwarded-For is believed only from the configured proxies (L15); `hotline serve` turns uvicorn's own
        # handling (which trusts anyone on 127.0.0.1) off. Outermost, so logs and limits see the real client.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    app.include_router(orders_views.router)
    app.include_router(indicators_views.router)
    app.include_router(indicators_views.vitals_router)
    app.include_router(work_views.router)
    app.include_router(kb_views.router)
    app.include_router(open311.router)
    app.include_router(chat.router)
    app.include_router(assistant_actions.router)
    app.state.settings = settings
    if wechat_sender is None and settings.wechat_app_id and settings.wechat_app_secret:
        wechat_sender = wechat.HttpWeChatSender(settings.wechat_app_id, settings.wechat_app_secret)
    app.state.wechat_sender = wechat_sender or wechat.UnconfiguredSender()
    app.state.webhook_sender = webhook_sender or HttpWebhookSender()
    app.include_router(wechat.router)

    def get_router(request: Request):
        if request.app.state.router is None:
            raise HTTPException(503, "router is still loading")
        return request.app.state.router

    RouterDep = Annotated[Any, Depends(get_router)]

    from sqlalchemy.exc import DataError

    @app.exception_handler(DataError)
    async def bad_value(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the validators let through (e.g. a NUL character on PostgreSQL): the
        # caller's input is at fault, and nothing was written (the transaction rolled back).
        return JSONResponse({"detail": "the request holds characters or values the database cannot store"},
                            status_code=400)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(request: Request) -> Response:
        """Ready when the database answers and the router (index and model) is loaded."""
        from sqlalchemy import text as sql

        checks: dict[str, str] = {}
        try:
            with request.app.state.sessions() as session:
                session.execute(sql("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any driver error means not ready; the reason is reported, not raised
            checks["database"] = f"unavailable: {type(exc).__name__}"
        current = request.app.state.router
        checks["router"] = "ok" if current is not None else "loading"
        if current is not None:
            checks["index_entries"] = str(len(current.matcher.model.entry_ids))
            checks["embeddings"] = without_paths(current.embedder_note)
        ready = checks["database"] == "ok" and checks["router"] == "ok"
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    # Public by default (a scraper on the same network); HOTLINE_METRICS_PUBLIC=false asks for an API key with
    # the `metrics:read` scope or an admin's token.
    metrics_guard = [] if settings.metrics_public else [Depends(require_scope("metrics:read"))]

    @app.get("/metrics", dependencies=metrics_guard)
    def metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")

    RouteCaller = Annotated[Principal, Depends(require_scope("route"))]

    @app.post("/api/v1/route")
    async def route(body: RouteBody, router: RouterDep, request: Request, caller: RouteCaller) -> dict:
        """Route one complaint (stateless): department, matter, jurisdiction, confidence, decision, candidates."""
        point = GeoPoint(body.location.lat, body.location.lng, body.location.datum.lower()) if body.location else None
        try:
            result = await route_complaint(request.app, router, body.text, point, order_id=body.id)
        except InputError as exc:
            raise HTTPException(422, str(exc)) from None
        request.app.state.metrics.decisions.labels(result["decision"]).inc()
        return result

    @app.post("/api/v1/route/corrections", status_code=201)
    async def correct(body: CorrectionBody, router: RouterDep, caller: RouteCaller) -> dict:
        """Record the department that really owned a complaint; the same complaint told again follows it at once
        (a near-duplicate text about the same matter; never `auto` on the correction alone)."""
        try:
            row = await run_in_threadpool(router.learn, body.text, body.department_code, entry_id=body.kb_item_id,
                                          created_by=caller.name)
        except (InputError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from None
        return {"status": "recorded", "corrections": len(router.feedback), "id": row["id"],
                "expires_at": row["expires_at"], "supersedes": row["supersedes"]}

    @app.get("/api/v1/route/corrections")
    def list_corrections(router: RouterDep, caller: RouteCaller) -> list[dict]:
        """Every stored correction, newest first: masked text, unit, what the router had said, who, when, expiry,
        status (active / expired / superseded)."""
        return [correction_json(r) for r in (router.feedback.list() if router.feedback is not None else [])]

    @app.delete("/api/v1/route/corrections/{correction_id}", status_code=204)
    def delete_correction(correction_id: int, router: RouterDep, caller: RouteCaller) -> Response:
        """Undo a correction: the running router stops using it at once."""
        if router.feedback is None or not router.feedback.remove(correction_id):
            raise HTTPException(404, f"no correction with id {correction_id}")
        log.info("correction %s removed by %s", correction_id, caller.name)
        return Response(status_code=204)

    return app
