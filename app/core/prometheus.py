"""Metrics this process counts itself (HTTP requests, open live streams) and who may read them.

State that lives in the database (jobs, queue, workers, throughput) is read at scrape time by
``app.ops.collector`` instead, so every web process reports the same numbers and nothing drifts.
Labels never carry usernames, job ids or file names: only route templates, methods, statuses
and worker names, so the number of series stays small.
"""

import hmac
import ipaddress
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import get_settings

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the output
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class HttpMetrics:
    """Requests by route template, method and status, and their latency, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "tunedeck_http_requests",
            "HTTP requests answered, by route template, method and status code",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "tunedeck_http_request_duration_seconds",
            "Time from request to the end of the response body (live streams count their whole life)",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


REGISTRY = CollectorRegistry()
HTTP = HttpMetrics(REGISTRY)
SSE_CONNECTIONS = Gauge(
    "tunedeck_sse_connections",
    "Live job streams (server-sent events) open in this web process",
    registry=REGISTRY,
)


def route_template(scope: Scope) -> str:
    """``/api/v1/fine_tuning/jobs/{job_id}`` rather than the path itself; ``unmatched`` for 404s
    outside any route, so a scanner cannot mint a series per URL it tries."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class CountRequests:
    """ASGI middleware that records each HTTP request in ``metrics`` once its response ends."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics = HTTP) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees when the app raises before answering

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route, method = route_template(scope), str(scope["method"])
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def scrape_refusal(request: Request) -> Response | None:
    """Why this request may not read /metrics, as a response; None when it may.

    With TUNEDECK_METRICS_TOKEN set, the request must send ``Authorization: Bearer <token>``.
    Without it, only loopback clients get an answer (Prometheus on the same host, a sidecar):
    the metrics reveal load and worker names, and the rest of the app needs a login."""
    token = get_settings().metrics_token
    if token:
        scheme, _, sent = Headers(scope=request.scope).get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode()):
            return None
        message = "send 'Authorization: Bearer <TUNEDECK_METRICS_TOKEN>'"
        return _refuse(401, "authentication_error", message, {"WWW-Authenticate": "Bearer"})
    if _loopback(request.client.host if request.client else None):
        return None
    message = "/metrics answers only loopback clients; set TUNEDECK_METRICS_TOKEN to scrape it remotely"
    return _refuse(403, "permission_error", message)


def _refuse(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": "metrics_token"}}
    return JSONResponse(body, status_code=status, headers=headers)


def exposition(registry: CollectorRegistry) -> Response:
    """``registry`` in Prometheus' text format."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
