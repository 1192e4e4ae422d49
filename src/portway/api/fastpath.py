"""``GET /v1/namespaces/{ns}/workloads/{name}`` without FastAPI's machinery.

The API's hot path (benchmark P7). Measured, FastAPI's dependency solving
and routing cost several times the work of this request, so this plain ASGI
layer answers it directly, with the SAME semantics as the FastAPI route
(which stays: for the OpenAPI document, and for every request this layer
does not answer): the same token authentication (``principal_for`` and its
caches), the same ``rbac.check``, the same error bodies, statuses and
headers (``portway_error_response``) and the same JSON bytes
(``workload_out``). Anything else falls through to FastAPI untouched: other
paths and methods, names that are not DNS-1123 labels (FastAPI's 422 body),
a mounted root path. ``tests/unit/test_api_fastpath.py`` holds the two to
the same bytes.

Reads go through ``WorkloadBodies`` (``api.readcache``): on SQLite a cache of
serialized bodies checked against the store's change token on every request;
on PostgreSQL a plain read in a worker thread.
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from portway import tracing
from portway.access import rbac
from portway.access.rbac import Resource, Verb
from portway.api.context import ApiContext
from portway.api.errors import portway_error_response
from portway.api.readcache import WorkloadBodies
from portway.api.routes.workloads import JSON, workload_bytes
from portway.api.security import principal_for, recent_principals
from portway.errors import PortwayError
from portway.spec.model import NAME_MAX, NAME_RE

_PATH = re.compile(r"/v1/namespaces/([^/]+)/workloads/([^/]+)")
#: the FastAPI route this layer answers for, as request spans name it
_ROUTE = "/v1/namespaces/{namespace}/workloads/{name}"


def _valid(name: str) -> bool:
    return len(name) <= NAME_MAX and NAME_RE.fullmatch(name) is not None


def _authorization(scope: Scope) -> str | None:
    """The first Authorization header, decoded as Starlette does."""
    for key, value in scope["headers"]:
        if key == b"authorization":
            text: str = value.decode("latin-1")
            return text
    return None


class WorkloadFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._bodies: WorkloadBodies | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            _PATH.fullmatch(scope["path"])
            if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path")
            else None
        )
        if match is None or not (_valid(match[1]) and _valid(match[2])):
            await self.app(scope, receive, send)
            return
        tracing.route("GET", _ROUTE)
        response = await self._answer(scope, match[1], match[2])
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, namespace: str, name: str) -> Response:
        state = scope["app"].state
        ctx: ApiContext = state.portway
        try:
            principal = await principal_for(
                recent_principals(state), ctx.app, _authorization(scope), ctx.inline_reads
            )
            rbac.check(principal, Verb.GET, Resource.WORKLOADS, namespace)
            bodies = self._bodies_of(ctx)
            if ctx.inline_reads:
                body = bodies.body(namespace, name)
            else:
                body = await run_in_threadpool(bodies.body, namespace, name)
        except PortwayError as exc:
            return portway_error_response(exc)
        return Response(body, media_type=JSON)

    def _bodies_of(self, ctx: ApiContext) -> WorkloadBodies:
        if self._bodies is None:
            self._bodies = WorkloadBodies(ctx.app.store, workload_bytes)
        return self._bodies
