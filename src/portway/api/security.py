"""Authentication (a dependency on every route but ``/healthz``) and
authorization (each route names its verb, resource and namespace).

What a request was about and who sent it is left in an ``AuditNote`` on the
ASGI scope, where the audit middleware finds it after the response.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from portway.access import rbac
from portway.access.rbac import Principal, Resource, Verb
from portway.api.context import context_of
from portway.errors import PortwayError
from portway.service import access as access_service
from portway.service.app import App

AUDIT_NOTE = "portway.audit"

#: documents the scheme in the OpenAPI; checking is ours (auto_error off), so
#: every failure has the contract's error body and WWW-Authenticate header
bearer_scheme = HTTPBearer(auto_error=False, description="A portway token: pw_<id>_<secret>")


@dataclass
class AuditNote:
    """Filled in while a request is handled; read by the audit middleware."""

    principal: Principal | None = None
    verb: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""
    denied: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def note_of(request: Request) -> AuditNote:
    state = request.scope.setdefault("state", {})
    note = state.get(AUDIT_NOTE)
    if not isinstance(note, AuditNote):
        note = AuditNote()
        state[AUDIT_NOTE] = note
    return note


#: seconds a principal found for an Authorization header is reused without
#: asking the service (which caches for ``AUTH_CACHE_SECONDS`` itself): a
#: revoked token still stops within both added (0.75 s), under the 1 s promised
PRINCIPAL_REUSE_SECONDS = 0.25
_RECENT_MAX = 10_000


class _Recent:
    """Principals of recently seen headers, read on the event loop (a dict
    read needs no lock), so the common request needs no worker thread.

    An entry past half its life is refreshed by one background call while
    requests keep using it until it expires: without that, every request in
    flight when it expired would go to the thread pool at once, and under
    load that stampede, not the work, made the slowest responses. On a local
    store the refresh runs on the event loop (a cache hit in the service, or
    one small read every ``AUTH_CACHE_SECONDS``): measured at 200 clients,
    handing it to a worker thread tripled the p99 (the thread and the loop
    contend for the GIL), and a token seen for the first time, or a wrong
    one, still goes to a thread so that a flood of them cannot stall the loop."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[Principal, float]] = {}
        self.refreshing: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        #: first lookups in flight: concurrent requests with the same header
        #: wait for one answer instead of each taking a worker thread
        self.pending: dict[str, asyncio.Future[Principal]] = {}

    async def lookup(self, header: str, app: App) -> Principal:
        """The service's answer for a header not cached here (single flight)."""
        waiting = self.pending.get(header)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        self.pending[header] = future
        try:
            principal = await run_in_threadpool(access_service.authenticate, app, header)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning if nobody waited
            raise
        else:
            future.set_result(principal)
            self.put(header, principal)
            return principal
        finally:
            self.pending.pop(header, None)

    def get(self, header: str) -> tuple[Principal | None, bool]:
        """(principal or None, whether to refresh it now)."""
        found = self.entries.get(header)
        now = time.monotonic()
        if found is None or found[1] < now:
            return None, False
        stale = found[1] - now < PRINCIPAL_REUSE_SECONDS / 2 and header not in self.refreshing
        return found[0], stale

    def put(self, header: str, principal: Principal) -> None:
        if len(self.entries) >= _RECENT_MAX:
            self.entries = {}
        self.entries[header] = (principal, time.monotonic() + PRINCIPAL_REUSE_SECONDS)

    def refresh(self, header: str, app: App, inline: bool) -> None:
        self.refreshing.add(header)
        task = asyncio.get_running_loop().create_task(self._refresh(header, app, inline))
        self.tasks.add(task)  # a strong reference until it is done
        task.add_done_callback(self.tasks.discard)

    async def _refresh(self, header: str, app: App, inline: bool) -> None:
        try:
            if inline:
                principal = access_service.authenticate(app, header)
            else:
                principal = await run_in_threadpool(access_service.authenticate, app, header)
        except PortwayError:  # revoked, expired, store trouble: ask again next time
            self.entries.pop(header, None)
        else:
            self.put(header, principal)
        finally:
            self.refreshing.discard(header)


def recent_principals(state: Any) -> _Recent:
    """The ``_Recent`` of one application (``app.state``), made on first use."""
    recent = getattr(state, "portway_recent_principals", None)
    if not isinstance(recent, _Recent):
        recent = _Recent()
        state.portway_recent_principals = recent
    return recent


def _recent_of(request: Request) -> _Recent:
    return recent_principals(request.app.state)


def forget_principals(request: Request) -> None:
    """After a change to tokens or role bindings made through this server:
    the next request of every caller asks the service again (whose own cache
    the service clears), so the change applies at once here."""
    _recent_of(request).entries.clear()


async def authenticated(
    request: Request,
    _scheme: Annotated[object, Depends(bearer_scheme)] = None,
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 otherwise.

    A header seen in the last ``PRINCIPAL_REUSE_SECONDS`` is answered on the
    event loop; any other goes to the service in a worker thread (it may read
    the store, which must not block the loop)."""
    ctx = context_of(request)
    principal = await principal_for(
        _recent_of(request), ctx.app, request.headers.get("authorization"), ctx.inline_reads
    )
    note_of(request).principal = principal
    return principal


async def principal_for(recent: _Recent, app: App, header: str | None, inline: bool) -> Principal:
    """The principal of an ``Authorization`` header value (raises
    UnauthenticatedError); shared by ``authenticated`` and the GET fast path
    (``api.fastpath``) so that both authenticate exactly alike."""
    principal, stale = recent.get(header) if header else (None, False)
    if principal is None:
        if header:
            return await recent.lookup(header, app)
        return access_service.authenticate(app, header)  # raises: no token
    if stale and header:
        recent.refresh(header, app, inline)
    return principal


class Access:
    """The authenticated caller of one request, and its permission checks."""

    def __init__(self, request: Request, principal: Principal) -> None:
        self.principal = principal
        self._note = note_of(request)

    def check(
        self, verb: Verb, resource: Resource, namespace: str | None = None, name: str = ""
    ) -> None:
        """Raise ForbiddenError (403) unless allowed; remembers what was asked
        for the audit log either way."""
        note = self._note
        note.verb, note.resource = verb.value, resource.value
        note.namespace, note.name = namespace or "", name
        if not rbac.allowed(self.principal, verb, resource, namespace):
            note.denied = True
            rbac.check(self.principal, verb, resource, namespace)

    def readable(self, resource: Resource) -> set[str] | None:
        """Namespaces whose ``resource`` the caller may list (None: all)."""
        return rbac.readable_namespaces(self.principal, resource)

    def readable_in(self, resource: Resource, namespace: str | None) -> set[str] | None:
        """For a list with an optional namespace filter: check the one
        namespace asked for, or narrow an all-namespaces list to the readable
        ones (None: no narrowing)."""
        if namespace is not None:
            self.check(Verb.LIST, resource, namespace)
            return {namespace}
        self._note.verb, self._note.resource = Verb.LIST.value, resource.value
        return self.readable(resource)


async def access(
    request: Request, principal: Annotated[Principal, Depends(authenticated)]
) -> Access:
    """No I/O: runs on the event loop (a plain ``def`` would cost a thread hop)."""
    return Access(request, principal)


AccessDep = Annotated[Access, Depends(access)]
