"""``GET /metrics`` (Prometheus text format) and the API's request histogram.

The request histogram is a plain ASGI layer outside everything else, so it
times the fast path and FastAPI's routes alike. Its ``route`` label is the
route's template (``/v1/namespaces/{namespace}/workloads/{name}``), never the
raw path, so the number of series stays bounded whatever clients send; a
request no route matched is counted under ``<unmatched>``. Its per-request
cost is two clock reads, one wrapped ``send`` and one bisect into its
buckets (tests/unit/test_api_metrics.py measures it).

Authentication: ``/metrics`` is open by default, as Prometheus scrape
targets usually are; the series name namespaces and workloads but carry no
spec, secret or token. ``portway server --metrics-auth`` makes it require a
valid token (any role), for a server reachable beyond its own host.
"""

from __future__ import annotations

import contextlib
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
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
#: what api.fastpath answers itself (its own pattern), and the route's template
_FAST_PATH = re.compile(r"/v1/namespaces/[^/]+/workloads/[^/]+")
_FAST_TEMPLATE = "/v1/namespaces/{namespace}/workloads/{name}"
_LABELS = ("method", "route", "status")


class RequestHistogram(Collector):
    """``portway_api_request_duration_seconds``, kept by hand rather than with
    prometheus-client's ``Histogram``: its ``observe`` takes a lock and costs
    ~5 us, this one a bisect and two additions (~0.3 us). Observed only on
    the event loop's thread (the timing layer is ASGI middleware), so the
    counts need no lock; a scrape copies them in one go."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._bounds = REQUEST_BUCKETS
        #: (method, route, status) -> [count per bucket (+Inf last), sum of seconds]
        self._series: dict[tuple[str, str, int], tuple[list[int], list[float]]] = {}
        registry.register(self)

    def observe(self, key: tuple[str, str, int], seconds: float) -> None:
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = ([0] * (len(self._bounds) + 1), [0.0])
        found[0][bisect_left(self._bounds, seconds)] += 1
        found[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "portway_api_request_duration_seconds",
            "Duration of API requests, by method, route template and status.",
            labels=_LABELS,
        )
        for (method, route, status), (counts, total) in sorted(self._series.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, float("inf")), counts, strict=True):
                cumulative += count
                # as prometheus-client writes bounds: "0.005", "1.0", "+Inf"
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric([method, route, str(status)], buckets, total[0])
        yield family


def route_template(scope: Scope) -> str:
    """The template of the route that answered: FastAPI's routing leaves the
    route in the scope; the fast path (api.fastpath) answers before routing,
    so its one shape is recognised here by the same pattern."""
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    if _FAST_PATH.fullmatch(scope["path"]):
        return _FAST_TEMPLATE
    return UNMATCHED


class RequestMetrics:
    """Times each HTTP request and counts it by method, route and status."""

    def __init__(self, app: ASGIApp, histogram: RequestHistogram) -> None:
        self.app = app
        self._histogram = histogram

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
            self._histogram.observe(key, time.perf_counter() - started)


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
    api.add_middleware(RequestMetrics, histogram=RequestHistogram(registry))
    # the server process' own CPU and memory (process_cpu_seconds_total, ...),
    # read from /proc at scrape time; a registry shared by two apps has it once
    with contextlib.suppress(ValueError):
        ProcessCollector(registry=registry)
