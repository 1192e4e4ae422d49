"""Who may do what where: roles bound to users per namespace.

Pure: no I/O. The permission table below is the whole policy; ``allowed``
only looks things up in it, so reading the table is reading the rules.

A role bound in namespace ``N`` grants its permissions on ``N``'s namespaced
resources (workloads, replicas, ...) and, for the namespace-admin rows, on the
cluster-scoped objects *about* ``N`` (its Namespace policy, its role
bindings); the caller passes that namespace's name as ``namespace``. A binding
in ``*`` applies in every namespace, and ``admin`` in ``*`` is cluster admin:
everything, including targets, tokens and the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from portway.errors import ForbiddenError


class Role(StrEnum):
    VIEWER = "viewer"
    DEPLOYER = "deployer"
    ADMIN = "admin"


class Verb(StrEnum):
    GET = "get"
    LIST = "list"
    WATCH = "watch"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    EXEC = "exec"
    LOGS = "logs"


class Resource(StrEnum):
    # namespaced
    WORKLOADS = "workloads"
    REPLICAS = "replicas"
    EVENTS = "events"
    LOGS = "logs"
    SECRETS = "secrets"
    PLANS = "plans"
    # cluster-scoped
    TARGETS = "targets"
    NAMESPACES = "namespaces"
    POLICY = "policy"
    TOKENS = "tokens"
    ROLEBINDINGS = "rolebindings"
    AUDIT = "audit"
    CONFORMANCE = "conformance"


NAMESPACED_RESOURCES = frozenset(
    {
        Resource.WORKLOADS,
        Resource.REPLICAS,
        Resource.EVENTS,
        Resource.LOGS,
        Resource.SECRETS,
        Resource.PLANS,
    }
)
CLUSTER_RESOURCES = frozenset(Resource) - NAMESPACED_RESOURCES

ALL_NAMESPACES = "*"

#: Roles from least to most powerful; each includes every grant of those before it.
ROLE_ORDER = (Role.VIEWER, Role.DEPLOYER, Role.ADMIN)


def _verbs(spelled: str) -> frozenset[Verb]:
    return frozenset(Verb(word) for word in spelled.split())


# The permission table: what each role adds, in the namespace it is bound in,
# on top of the roles before it in ROLE_ORDER.
#   role             resource                 verbs
_GRANTS: tuple[tuple[Role, Resource, str], ...] = (
    (Role.VIEWER, Resource.WORKLOADS, "get list watch logs"),
    (Role.VIEWER, Resource.REPLICAS, "get list watch logs"),
    (Role.VIEWER, Resource.EVENTS, "get list watch"),
    (Role.VIEWER, Resource.LOGS, "get list watch logs"),
    (Role.VIEWER, Resource.PLANS, "create"),  # a plan changes nothing
    (Role.VIEWER, Resource.SECRETS, "get list"),  # names, keys, sizes; never values
    (Role.DEPLOYER, Resource.WORKLOADS, "create update delete exec"),
    (Role.DEPLOYER, Resource.REPLICAS, "exec"),
    (Role.DEPLOYER, Resource.SECRETS, "create update delete"),
    (Role.ADMIN, Resource.NAMESPACES, "update"),  # the policy of its own namespace
    (Role.ADMIN, Resource.POLICY, "update"),
    (Role.ADMIN, Resource.ROLEBINDINGS, "get list watch create delete"),
)

#: Cluster information every principal with at least one binding may read:
#: planning a workload needs the targets, namespace policies and the
#: conformance matrix the planner trusts.
CLUSTER_INFO_READ: Mapping[Resource, frozenset[Verb]] = {
    Resource.TARGETS: _verbs("get list watch"),
    Resource.NAMESPACES: _verbs("get list watch"),
    Resource.POLICY: _verbs("get list watch"),
    Resource.CONFORMANCE: _verbs("get list watch"),
}


def _build_permissions() -> dict[Role, dict[Resource, frozenset[Verb]]]:
    table: dict[Role, dict[Resource, frozenset[Verb]]] = {}
    inherited: dict[Resource, frozenset[Verb]] = {}
    for role in ROLE_ORDER:
        own = dict(inherited)
        for grant_role, resource, verbs in _GRANTS:
            if grant_role is role:
                own[resource] = own.get(resource, frozenset()) | _verbs(verbs)
        table[role] = own
        inherited = own
    return table


#: role -> resource -> verbs, inheritance resolved (what a binding grants in its namespace)
PERMISSIONS: Mapping[Role, Mapping[Resource, frozenset[Verb]]] = _build_permissions()


@dataclass(frozen=True)
class Binding:
    subject: str  # user name
    role: Role
    namespace: str  # a namespace name or ALL_NAMESPACES

    def describe(self) -> str:
        where = "every namespace (*)" if self.namespace == ALL_NAMESPACES else self.namespace
        return f"{self.role} in {where}"


@dataclass(frozen=True)
class Principal:
    user: str
    token_id: str
    token_name: str
    bindings: tuple[Binding, ...]

    @property
    def is_cluster_admin(self) -> bool:
        return any(b.role is Role.ADMIN and b.namespace == ALL_NAMESPACES for b in self.bindings)


def _grants(binding: Binding, verb: Verb, resource: Resource) -> bool:
    return verb in PERMISSIONS[binding.role].get(resource, frozenset())


def _applies(binding: Binding, namespace: str | None) -> bool:
    return binding.namespace == ALL_NAMESPACES or (
        namespace is not None and binding.namespace == namespace
    )


def allowed(principal: Principal, verb: Verb, resource: Resource, namespace: str | None) -> bool:
    """May ``principal`` do ``verb`` on ``resource`` in ``namespace``?

    ``namespace`` is the namespace the operation touches: for namespaced
    resources the object's namespace, ``None`` for "across all namespaces";
    for namespaces/policy/rolebindings the namespace they are about, ``None``
    for cluster-wide; ignored for the other cluster-scoped resources."""
    if principal.is_cluster_admin:
        return True
    if principal.bindings and verb in CLUSTER_INFO_READ.get(resource, frozenset()):
        return True
    return any(_applies(b, namespace) and _grants(b, verb, resource) for b in principal.bindings)


def roles_allowing(verb: Verb, resource: Resource) -> list[Role]:
    """The roles whose table rows grant ``verb`` on ``resource`` (least first)."""
    return [role for role in ROLE_ORDER if verb in PERMISSIONS[role].get(resource, frozenset())]


def _or_list(words: Iterable[str]) -> str:
    items = list(words)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _subject(principal: Principal) -> str:
    return f'token "{principal.token_name}" (user {principal.user})'


def _needs(verb: Verb, resource: Resource, namespace: str | None) -> tuple[str, str]:
    """(where, what would allow it) for the message of a denial."""
    roles = roles_allowing(verb, resource)
    if not roles:
        return "", 'needs cluster admin (role admin in namespace "*")'
    names = _or_list(str(r) for r in roles)
    if namespace is None:
        where = " in every namespace" if resource in NAMESPACED_RESOURCES else ""
        return where, f'needs role {names} in namespace "*"'
    return f' in namespace "{namespace}"', f"needs role {names} there"


def check(principal: Principal, verb: Verb, resource: Resource, namespace: str | None) -> None:
    """Raise ``ForbiddenError`` unless ``allowed``; the message names who,
    what, where, which roles would allow it and what the principal has."""
    if allowed(principal, verb, resource, namespace):
        return
    where, needs = _needs(verb, resource, namespace)
    has = ", ".join(b.describe() for b in principal.bindings) or "no role bindings"
    raise ForbiddenError(
        f"{_subject(principal)} may not {verb} {resource}{where}: {needs} (has: {has})"
    )


def readable_namespaces(principal: Principal, resource: Resource) -> set[str] | None:
    """The namespaces whose ``resource`` the principal may list; ``None`` means all
    (a binding in ``*`` that grants listing it, or cluster admin)."""
    if allowed(principal, Verb.LIST, resource, None):
        return None
    return {b.namespace for b in principal.bindings if _grants(b, Verb.LIST, resource)}
