"""``GET /metrics`` (Prometheus text format) and the API's request histogram.

The request histogram is a plain ASGI layer outside everything else, so it
times the fast path and FastAPI's routes alike. Its ``route`` label is the
route's template (``/v1/namespaces/{namespace}/workloads/{name}``), never the
raw path, so the number of series stays bounded whatever clients send; a
request no route matched is counted under ``<unmatched>``. Its per-request
cost is two clock reads, one wrapped ``send`` and one observation on a
cached child (measured ~2 us: tests/unit/test_api_metrics.py).

Authentication: ``/metrics`` is open by default, as Prometheus scrape
targets usually are; the series name namespaces and workloads but carry no
spec, secret or token. ``portway server --metrics-auth`` makes it require a
valid token (any role), for a server reachable beyond its own host.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portway.api.security import authenticated

#: an API request is ~0.1 ms on the fast path, seconds for ``?wait=true``
REQUEST_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
UNMATCHED = "<unmatched>"
#: the fast path answers this shape itself, before routing could name it
_FAST_PATH = re.compile(r"/v1/namespaces/[^/]+/workloads/[^/]+")
_FAST_TEMPLATE = "/v1/namespaces/{namespace}/workloads/{name}"


def request_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "portway_api_request_duration_seconds",
        "Duration of API requests, by method, route template and status.",
        ["method", "route", "status"],
        buckets=REQUEST_BUCKETS,
        registry=registry,
    )


def route_template(scope: Scope) -> str:
    """The template of the route that answered, from what routing left in the scope."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if _FAST_PATH.fullmatch(scope.get("path", "")):
        return _FAST_TEMPLATE
    return UNMATCHED


class RequestMetrics:
    """Times each HTTP request and counts it by method, route and status."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self._histogram = histogram
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            key = (scope["method"], route_template(scope), status)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._histogram.labels(key[0], key[1], str(key[2]))
            child.observe(time.perf_counter() - started)


def install(api: FastAPI, registry: CollectorRegistry, *, require_token: bool) -> None:
    """Add ``GET /metrics`` rendering ``registry``, and the request histogram."""
    dependencies = [Depends(authenticated)] if require_token else []
    router = APIRouter(dependencies=dependencies)
    render: Callable[[CollectorRegistry], bytes] = generate_latest

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        # a sync route: rendering hundreds of series must not stall the event loop
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    api.include_router(router)
    api.add_middleware(RequestMetrics, histogram=request_histogram(registry))
