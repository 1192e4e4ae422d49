"""Authentication (a dependency on every route but ``/healthz``) and
authorization (each route names its verb, resource and namespace).

What a request was about and who sent it is left in an ``AuditNote`` on the
ASGI scope, where the audit middleware finds it after the response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from portway.access import rbac
from portway.access.rbac import Principal, Resource, Verb
from portway.api.context import context_of
from portway.service import access as access_service

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


def authenticated(
    request: Request,
    _scheme: Annotated[object, Depends(bearer_scheme)] = None,
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 otherwise.

    A plain ``def``: a token not in the service's short cache costs a store
    read, which must not block the event loop."""
    principal = access_service.authenticate(
        context_of(request).app, request.headers.get("authorization")
    )
    note_of(request).principal = principal
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


def access(request: Request, principal: Annotated[Principal, Depends(authenticated)]) -> Access:
    return Access(request, principal)


AccessDep = Annotated[Access, Depends(access)]
