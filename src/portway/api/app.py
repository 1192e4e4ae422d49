"""``create_app``: the FastAPI application over one service ``App``.

Layers, outermost first: the body-size limit (before anything reads a
body), the audit recorder (sees every mutating request's final status,
denied ones included), the fast path of GET one workload (api.fastpath),
then FastAPI's routing with its error handlers.
Every router carries the authentication dependency; ``/healthz`` and the
dashboard's static files (``/ui/``, api.ui) are the only routes without it,
and ``/openapi.json`` and ``/docs`` are served by routes that require a
token too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CollectorRegistry

from portway import __version__, tracing
from portway.api import errors, ui
from portway.api.audit import AuditMiddleware
from portway.api.config import ServerConfig
from portway.api.context import ApiContext, Waker
from portway.api.errors import ErrorBody
from portway.api.fastpath import WorkloadFastPath
from portway.api.limits import BodySizeLimit
from portway.api.metrics import install as install_metrics
from portway.api.models import Health
from portway.api.routes import (
    access,
    cluster,
    drift,
    events,
    operations,
    replicas,
    targets,
    watch,
)
from portway.api.routes import secrets as secret_routes
from portway.api.routes import workloads as workload_routes
from portway.api.security import authenticated
from portway.service.app import App

#: the error body every failing route may return, for the OpenAPI document
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Malformed JSON"),
        (401, "No valid token"),
        (403, "Not allowed"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Body too large"),
        (422, "Invalid input or refused by policy"),
        (503, "Store or target unavailable"),
    )
}

_NO_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def _telemetry() -> TelemetryConfig:
    """FastAPI's own request spans (``POST /v1/apply``, with ``http.route``
    and W3C trace context taken from the request) when portway traces;
    none otherwise (docs/tracing.md)."""
    provider = tracing.provider()
    if provider is None:
        return _NO_TELEMETRY
    return {**_NO_TELEMETRY, "tracing": True, "tracer_provider": provider}


_ROUTERS = (
    workload_routes.router,
    replicas.router,
    operations.router,
    drift.router,
    events.router,
    watch.router,
    targets.router,
    cluster.router,
    access.router,
    secret_routes.router,
)


def create_app(
    app: App,
    config: ServerConfig | None = None,
    *,
    controller: Waker | None = None,
    metrics: CollectorRegistry | None = None,
) -> FastAPI:
    """``metrics``: the registry ``/metrics`` renders (the controller's, when
    one runs in this process); None: one of the API's own."""
    config = config or ServerConfig()
    api = FastAPI(
        title="portway",
        version=__version__,
        description="Run one portable workload description on many container backends.",
        openapi_url=None,  # served below, behind authentication
        docs_url=None,
        redoc_url=None,
        # portway sets up no OpenTelemetry; FastAPI would otherwise ask the
        # global providers on every request whether it should trace it
        # (~10 us of a GET that costs ~60 us in all)
        telemetry=_telemetry(),
    )
    api.state.portway = ApiContext(app, config, controller)
    errors.install(api)

    @api.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """Liveness: the only route that needs no token (it reveals nothing)."""
        return Health(status="ok")

    # each router is included directly (not under one parent router): a
    # nested include costs every request another round of route matching
    for router in _ROUTERS:
        api.include_router(router, dependencies=[Depends(authenticated)], responses=_ERRORS)

    documents = APIRouter(dependencies=[Depends(authenticated)])

    @documents.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(api.openapi())

    @documents.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="portway API")

    api.include_router(documents)
    ui.install(api)  # static files, no token: the page asks for one
    # innermost: GET one workload is answered here (same semantics, a
    # fraction of the cost), inside the body limit like every route
    api.add_middleware(WorkloadFastPath)
    api.add_middleware(AuditMiddleware, service=app)
    api.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    if config.metrics:  # outermost: it times everything inside
        registry = metrics if metrics is not None else CollectorRegistry()
        install_metrics(api, registry, require_token=config.metrics_auth)
    return api
