"""The application's composition and nothing else: the state routes depend on (api/deps.py reads it), the
middleware in its order, the routers of api/routes/ and api/channels/, and the background worker."""
import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.exc import DataError
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.auth.keys import ensure_api_key
from api.auth.staff import LoginThrottle, secret_key
from api.body_limit import BodyLimitMiddleware
from api.channels import chat, open311
from api.channels.wechat import views as wechat_views
from api.channels.wechat.filing import file_due
from api.channels.wechat.sender import HttpWeChatSender, UnconfiguredSender
from api.input_guard import install as install_input_guard
from api.observability import Metrics, RequestContextMiddleware
from api.ratelimit import RateLimiter
from api.routes import (
    access,
    assistant_webhook,
    auth,
    callbacks,
    indicators,
    kb,
    ops,
    orders,
    reports,
    routing,
    vitals,
    work,
)
from api.screens import admin, cockpit, desk, order_page, pages, queues
from api.screens import reports as report_screens
from api.screens.session import LoginRequired
from api.security_headers import SecurityHeadersMiddleware
from api.trusted_host import TrustedHostMiddleware, allowed_hosts
from hotline.core.config import Settings, get_settings
from hotline.core.db import make_engine, session_factory, transaction
from hotline.core.migrate import upgrade
from hotline.core.secrets import ASSISTANT_KEY_NAME, installation_key
from nlp.batching import with_batching
from nlp.pii import install_log_masking
from orders import outbox
from orders.attachments import MAX_REQUEST_BYTES
from orders.indicators import Names
from orders.outbox import HttpWebhookSender
from orders.reports import due_reports
from routing.service import build_router, choose_encoders

log = logging.getLogger("hotline.api")


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


def _generate_due_reports(app: FastAPI) -> None:
    """The scheduled reports (HOTLINE_REPORT_SCHEDULE) of the periods just ended, once each; after a failure (the
    font missing, a full disk) the next try waits ten minutes rather than filling the log every round."""
    settings = app.state.settings
    current = app.state.router
    if not settings.report_schedule or current is None or time.monotonic() < getattr(app.state, "reports_retry_at", 0):
        return
    try:
        with reports.GENERATING, transaction(app.state.sessions) as session:
            made = due_reports(session=session, schedule=settings.report_schedule, hour=settings.report_hour,
                               state_dir=settings.state_dir, city_name=settings.city_name,
                               names=Names.from_kb(current.kb, current.gazetteer), segmenter=current.segmenter)
            for report in made:
                log.info("scheduled report made: %s %s", report.period, report.start)
    except Exception:
        app.state.reports_retry_at = time.monotonic() + 600
        log.exception("scheduled report failed; retrying in ten minutes")


async def _deliver_webhooks_forever(app: FastAPI) -> None:
    """The outbox worker: deliver due department webhooks, keep the backlog gauge current, and file the WeChat
    messages whose filing failed once they are due again."""
    settings = app.state.settings

    def once() -> int:
        with app.state.sessions() as session:   # a read first: no write lock taken when nothing is due
            due = outbox.due_count(session)
        if due:
            outbox.deliver_due(app.state.sessions, sender=app.state.webhook_sender,
                               max_attempts=settings.webhook_max_attempts,
                               backoff_base_s=settings.webhook_backoff_base_s, timeout_s=settings.webhook_timeout_s)
        file_due(app)
        _generate_due_reports(app)
        with app.state.sessions() as session:
            return outbox.backlog(session)

    while True:
        try:
            app.state.metrics.outbox_backlog.set(await run_in_threadpool(once))
        except Exception:  # a database hiccup must not kill the worker; the next round retries
            log.exception("webhook delivery round failed")
        await asyncio.sleep(settings.outbox_poll_s)


async def _database_refused_value(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value the validators let through (e.g. a NUL character on PostgreSQL): the caller's
    # input is at fault, and nothing was written (the transaction rolled back).
    return JSONResponse({"detail": "the request holds characters or values the database cannot store"},
                        status_code=400)


async def _to_login(request: Request, exc: Exception) -> RedirectResponse:
    # A staff page without a session: log in, then come back (LoginRequired carries the page's path).
    return RedirectResponse(exc.location, status_code=303)  # type: ignore[attr-defined]


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
            worker = asyncio.create_task(_deliver_webhooks_forever(app))
        if app.state.router is None and load_router:
            app.state.router = await run_in_threadpool(build_service_router, settings)
            log.info("router ready: %s", app.state.router.embedder_note)
        yield
        if worker is not None:
            worker.cancel()

    # /docs and /redoc are api/screens/pages.py's: the same pages with their scripts served by us, not a CDN.
    app = FastAPI(title="hotline", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Routing of 12345 hotline complaints to the owning department.")
    app.state.router = router
    app.state.assistant_api_key = None
    app.state.sessions = session_factory(engine)
    app.state.jwt_key = secret_key(settings.jwt_secret, settings.state_dir)
    app.state.public_limiter = RateLimiter(settings.public_rate_limit_per_minute, 60.0)
    app.state.relay_limiter = RateLimiter(settings.relay_lookups_per_key_per_minute, 60.0)   # per relaying key
    app.state.lookup_failures = RateLimiter(settings.lookup_failures_per_order_per_hour, 3600.0)   # per order no.
    app.state.login_throttle = LoginThrottle(settings.login_max_failures, settings.login_failure_window_s,
                                             settings.login_lockout_s)
    app.state.metrics = Metrics()
    install_input_guard(app)   # strict JSON bodies, safe 422s; inside the request context (logged, counted)
    # Before anything parses a body (L4): the general limit, smaller ones where the endpoint's own is smaller, and
    # the assistant webhook's (a long tracker, token-protected) however small the general one is.
    own_limits = {"/api/v1/chat": min(chat.MAX_BODY_BYTES, settings.max_body_bytes),
                  "/wechat/callback": min(wechat_views.MAX_BODY_BYTES, settings.max_body_bytes),
                  "/api/v1/assistant/webhook": assistant_webhook.MAX_BODY_BYTES}
    uploads = {r"/desk/orders/[^/]+/act": MAX_REQUEST_BYTES, r"/api/v1/orders/[^/]+/attachments": MAX_REQUEST_BYTES}
    app.add_middleware(BodyLimitMiddleware, default_limit=settings.max_body_bytes, limits=own_limits, patterns=uploads)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    # A forged Host is refused before any absolute URL is built from it (slash redirects, Open311 discovery; L8).
    app.add_middleware(TrustedHostMiddleware, allowed=allowed_hosts(settings))
    app.add_middleware(SecurityHeadersMiddleware)   # outside the request context: 4xx answers get them too
    if settings.trusted_proxies:
        # X-Forwarded-For is believed only from the configured proxies (L15); `hotline serve` turns uvicorn's own
        # handling (which trusts anyone on 127.0.0.1) off. Outermost, so logs and limits see the real client.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    app.state.settings = settings
    if wechat_sender is None and settings.wechat_app_id and settings.wechat_app_secret:
        wechat_sender = HttpWeChatSender(settings.wechat_app_id, settings.wechat_app_secret)
    app.state.wechat_sender = wechat_sender or UnconfiguredSender()
    app.state.webhook_sender = webhook_sender or HttpWebhookSender()
    app.add_exception_handler(DataError, _database_refused_value)
    app.add_exception_handler(LoginRequired, _to_login)

    for module in (ops, routing, auth, orders, callbacks, indicators, vitals, work, kb, open311, chat, assistant_webhook,
                   wechat_views, access, pages, desk, order_page, queues, admin, cockpit, reports,
                   report_screens):
        app.include_router(module.router)
    app.include_router(ops.metrics_router(public=settings.metrics_public))
    return app
