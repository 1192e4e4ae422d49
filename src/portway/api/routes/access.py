"""Who am I; tokens, role bindings and the audit log (cluster admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from portway.access.rbac import Binding, Resource, Verb
from portway.api.context import context_of
from portway.api.models import (
    AuditEntryOut,
    AuditList,
    BindingOut,
    RoleBindingChange,
    RoleBindingList,
    RoleBindingOut,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
    WhoAmI,
)
from portway.api.names import NamespaceQuery
from portway.api.security import AccessDep, forget_principals
from portway.service import access as svc
from portway.service import auditlog
from portway.service.access import TokenInfo
from portway.spec.model import NAME_MAX, NAME_RE

router = APIRouter(tags=["access"])

TokenIdPath = Annotated[
    str, Path(pattern=r"^[0-9a-f]{8}$", description="The token's id (8 hex digits).")
]
UserQuery = Annotated[
    str | None, Query(max_length=NAME_MAX, pattern=NAME_RE.pattern, description="Only this user.")
]


def _binding(b: Binding) -> RoleBindingOut:
    return RoleBindingOut(user=b.subject, role=str(b.role), namespace=b.namespace)


def token_out(info: TokenInfo) -> TokenOut:
    return TokenOut(
        id=info.id,
        name=info.name,
        user=info.user,
        created_at=info.created_at,
        expires_at=info.expires_at,
        revoked=info.revoked,
        expired=info.expired(),
        bindings=[BindingOut(role=str(b.role), namespace=b.namespace) for b in info.bindings],
    )


@router.get("/v1/whoami", response_model=WhoAmI)
async def whoami(access: AccessDep) -> WhoAmI:
    """The caller's user, token and role bindings (no permission needed)."""
    p = access.principal
    return WhoAmI(
        user=p.user,
        token_name=p.token_name,
        token_id=p.token_id,
        bindings=[BindingOut(role=str(b.role), namespace=b.namespace) for b in p.bindings],
        cluster_admin=p.is_cluster_admin,
    )


@router.get("/v1/tokens", response_model=TokenList)
def list_tokens(access: AccessDep, request: Request, user: UserQuery = None) -> TokenList:
    access.check(Verb.LIST, Resource.TOKENS)
    return TokenList(items=[token_out(t) for t in svc.list_tokens(context_of(request).app, user)])


@router.post("/v1/tokens", response_model=TokenCreated, status_code=201)
def create_token(body: TokenCreate, access: AccessDep, request: Request) -> TokenCreated:
    """A new token (and the role bindings asked for); the token is in this
    answer only."""
    access.check(Verb.CREATE, Resource.TOKENS, None, body.name or body.user)
    token, info = svc.create_token(
        context_of(request).app,
        body.user,
        body.name,
        body.ttl_seconds,
        [(b.role, b.namespace) for b in body.bindings],
    )
    forget_principals(request)  # the user's bindings may have grown
    return TokenCreated(token=token, id=info.id, info=token_out(info))


@router.delete("/v1/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: TokenIdPath, access: AccessDep, request: Request) -> TokenOut:
    access.check(Verb.DELETE, Resource.TOKENS, None, token_id)
    revoked = svc.revoke_token(context_of(request).app, token_id)
    forget_principals(request)
    return token_out(revoked)


@router.get("/v1/rolebindings", response_model=RoleBindingList)
def list_rolebindings(
    access: AccessDep, request: Request, user: UserQuery = None, namespace: NamespaceQuery = None
) -> RoleBindingList:
    """Bindings in namespaces the caller administers (all for cluster admins)."""
    readable = access.readable_in(Resource.ROLEBINDINGS, namespace)
    found = svc.list_bindings(context_of(request).app, user=user, namespace=namespace)
    return RoleBindingList(
        items=[_binding(b) for b in found if readable is None or b.namespace in readable]
    )


def _bound_namespace(namespace: str) -> str | None:
    return None if namespace == "*" else namespace


@router.post("/v1/rolebindings", response_model=RoleBindingChange, status_code=201)
def create_rolebinding(
    body: RoleBindingOut, access: AccessDep, request: Request
) -> RoleBindingChange:
    access.check(Verb.CREATE, Resource.ROLEBINDINGS, _bound_namespace(body.namespace), body.user)
    binding, new = svc.bind(context_of(request).app, body.user, body.role, body.namespace)
    forget_principals(request)
    return RoleBindingChange(binding=_binding(binding), changed=new)


@router.delete("/v1/rolebindings", response_model=RoleBindingChange)
def delete_rolebinding(
    access: AccessDep,
    request: Request,
    user: Annotated[str, Query(max_length=63)],
    role: Annotated[str, Query(max_length=16)],
    namespace: Annotated[str, Query(max_length=63)],
) -> RoleBindingChange:
    access.check(Verb.DELETE, Resource.ROLEBINDINGS, _bound_namespace(namespace), user)
    binding = svc.unbind(context_of(request).app, user, role, namespace)
    forget_principals(request)
    return RoleBindingChange(binding=_binding(binding), changed=True)


@router.get("/v1/audit", response_model=AuditList)
def audit_log(
    access: AccessDep,
    request: Request,
    user: UserQuery = None,
    namespace: NamespaceQuery = None,
    since: Annotated[int, Query(ge=0, le=2**62, description="Entries after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=auditlog.LIMIT_MAX)] = 100,
) -> AuditList:
    access.check(Verb.LIST, Resource.AUDIT)
    found = auditlog.entries(
        context_of(request).app,
        auditlog.AuditFilter(user=user, namespace=namespace, since_id=since, limit=limit),
    )
    return AuditList(items=[AuditEntryOut.model_validate(auditlog.entry_json(e)) for e in found])
