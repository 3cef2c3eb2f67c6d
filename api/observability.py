"""Operations: request ids, JSON access logs, Prometheus metrics, readiness."""
from __future__ import annotations

import json
import logging
import re
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

from nlp.pii import mask_pii

access_log = logging.getLogger("hotline.access")

# A client's X-Request-ID is kept only when it is short and plain (a UUID, a gateway's trace id); anything else
# (a 16 KB id, spaces, a phone number with + and CJK text) is replaced by a fresh one, so it cannot bloat or
# pollute the log.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_from(header: str | None) -> str:
    if header and _SAFE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class Metrics:
    """One registry per app, so tests (and several apps in one process) do not share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("hotline_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("hotline_http_request_seconds", "HTTP request latency", ["route"],
                                 registry=self.registry)
        self.decisions = Counter("hotline_routing_decisions_total", "Routing decisions by outcome", ["decision"],
                                 registry=self.registry)
        self.wechat_duplicates = Counter("hotline_wechat_duplicates_dropped_total",
                                         "WeChat retries dropped as duplicates", registry=self.registry)
        self.outbox_backlog = Gauge("hotline_outbox_backlog", "Outbound webhook messages not yet delivered",
                                    registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; phones and ID numbers masked whatever the message says."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                   "logger": record.name, "message": mask_pii(record.getMessage())}
        payload.update({k: v for k, v in getattr(record, "fields", {}).items()})
        if record.exc_info:
            payload["error"] = mask_pii(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False)


class RequestContextMiddleware(BaseHTTPMiddleware):
    """A request id on every request (X-Request-ID in and out), one access-log line, and the metrics."""

    def __init__(self, app, metrics: Metrics):
        super().__init__(app)
        self.metrics = metrics

    async def dispatch(self, request: Request, call_next) -> Response:
        request_id = request_id_from(request.headers.get("x-request-id"))
        request.state.request_id = request_id
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(request.scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(request.method, route, str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            # The path is logged as the route template: an order number or query never reaches the log.
            access_log.info("request", extra={"fields": {"request_id": request_id, "method": request.method,
                                                          "route": route, "status": status,
                                                          "ms": round(elapsed * 1000, 1)}})
        response.headers["X-Request-ID"] = request_id
        return response


def configure_json_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
