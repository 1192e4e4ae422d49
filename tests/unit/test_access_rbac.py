"""The whole RBAC matrix, against a table written out here independently of
``portway.access.rbac`` (no inheritance, no shared constants), plus property
tests of the rules' shape."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.access.rbac import (
    ALL_NAMESPACES,
    Binding,
    Principal,
    Resource,
    Role,
    Verb,
    allowed,
    check,
    readable_namespaces,
)
from portway.errors import ForbiddenError

OWN, OTHER = "team-a", "team-b"
INFO = "get list watch"  # what any principal with a binding may read of cluster info

# What a role bound in namespace N may do, with N as the operation's namespace.
# Spelled out in full for each role (every resource named; "" = nothing).
EXPECTED: dict[str, dict[str, str]] = {
    "viewer": {
        "workloads": "get list watch logs",
        "replicas": "get list watch logs",
        "events": "get list watch",
        "logs": "get list watch logs",
        "secrets": "get list",
        "plans": "create",
        "targets": INFO,
        "namespaces": INFO,
        "policy": INFO,
        "tokens": "",
        "rolebindings": "",
        "audit": "",
        "conformance": INFO,
    },
    "deployer": {
        "workloads": "get list watch logs create update delete exec",
        "replicas": "get list watch logs exec",
        "events": "get list watch",
        "logs": "get list watch logs",
        "secrets": "get list create update delete",
        "plans": "create",
        "targets": INFO,
        "namespaces": INFO,
        "policy": INFO,
        "tokens": "",
        "rolebindings": "",
        "audit": "",
        "conformance": INFO,
    },
    "admin": {
        "workloads": "get list watch logs create update delete exec",
        "replicas": "get list watch logs exec",
        "events": "get list watch",
        "logs": "get list watch logs",
        "secrets": "get list create update delete",
        "plans": "create",
        "targets": INFO,
        "namespaces": INFO + " update",
        "policy": INFO + " update",
        "tokens": "",
        "rolebindings": "get list watch create delete",
        "audit": "",
        "conformance": INFO,
    },
}

# What a role bound in some OTHER namespace (or a cluster-wide question to a
# namespace-bound role) allows: reading cluster information, nothing else.
EXPECTED_ELSEWHERE: dict[str, str] = {
    "targets": INFO,
    "namespaces": INFO,
    "policy": INFO,
    "conformance": INFO,
}

SCOPES = {"own": OWN, "other": OTHER, "cluster": None}
MATRIX = list(itertools.product(Role, ["namespace", "all"], Verb, Resource, SCOPES))


def expected(role: Role, bound: str, verb: Verb, resource: Resource, scope: str) -> bool:
    if bound == "all" and role is Role.ADMIN:
        return True  # cluster admin
    if bound == "all" or scope == "own":
        grants = EXPECTED[role.value][resource.value]
    else:
        grants = EXPECTED_ELSEWHERE.get(resource.value, "")
    return verb.value in grants.split()


def principal(*bindings: tuple[Role, str], user: str = "alice") -> Principal:
    return Principal(
        user=user,
        token_id="0123abcd",
        token_name="ci-bot",
        bindings=tuple(Binding(user, role, ns) for role, ns in bindings),
    )


def test_matrix_covers_every_role_verb_resource_and_scope() -> None:
    assert len(MATRIX) == 3 * 2 * 8 * 13 * 3
    assert set(EXPECTED) == {r.value for r in Role}
    for table in EXPECTED.values():
        assert set(table) == {r.value for r in Resource}


@pytest.mark.parametrize(
    ("role", "bound", "verb", "resource", "scope"),
    MATRIX,
    ids=[f"{r}@{b}-{v}-{res}-{s}" for r, b, v, res, s in MATRIX],
)
def test_rbac_matrix(role: Role, bound: str, verb: Verb, resource: Resource, scope: str) -> None:
    who = principal((role, OWN if bound == "namespace" else ALL_NAMESPACES))
    want = expected(role, bound, verb, resource, scope)
    assert allowed(who, verb, resource, SCOPES[scope]) is want
    if want:
        check(who, verb, resource, SCOPES[scope])
    else:
        with pytest.raises(ForbiddenError):
            check(who, verb, resource, SCOPES[scope])


@pytest.mark.parametrize(("verb", "resource"), list(itertools.product(Verb, Resource)))
def test_no_binding_allows_nothing(verb: Verb, resource: Resource) -> None:
    nobody = principal()
    for namespace in (OWN, None):
        assert not allowed(nobody, verb, resource, namespace)


def test_forbidden_message_names_subject_permission_namespace_and_bindings() -> None:
    who = principal((Role.VIEWER, OTHER), (Role.DEPLOYER, OWN))
    with pytest.raises(ForbiddenError) as denied:
        check(who, Verb.DELETE, Resource.WORKLOADS, OTHER)
    assert str(denied.value) == (
        'token "ci-bot" (user alice) may not delete workloads in namespace "team-b": '
        "needs role deployer or admin there (has: viewer in team-b, deployer in team-a)"
    )
    assert denied.value.exit_code == 5


def test_forbidden_message_for_cluster_admin_only_resources() -> None:
    with pytest.raises(ForbiddenError) as denied:
        check(principal((Role.ADMIN, OWN)), Verb.CREATE, Resource.TOKENS, None)
    assert str(denied.value) == (
        'token "ci-bot" (user alice) may not create tokens: needs cluster admin '
        '(role admin in namespace "*") (has: admin in team-a)'
    )
    with pytest.raises(ForbiddenError, match=r"\(has: no role bindings\)"):
        check(principal(), Verb.GET, Resource.TARGETS, None)


def test_forbidden_message_across_namespaces() -> None:
    with pytest.raises(ForbiddenError) as denied:
        check(principal((Role.VIEWER, OWN)), Verb.LIST, Resource.WORKLOADS, None)
    assert "may not list workloads in every namespace" in str(denied.value)
    assert 'needs role viewer, deployer or admin in namespace "*"' in str(denied.value)


def test_readable_namespaces() -> None:
    who = principal((Role.VIEWER, OWN), (Role.DEPLOYER, OTHER))
    assert readable_namespaces(who, Resource.WORKLOADS) == {OWN, OTHER}
    assert readable_namespaces(who, Resource.TARGETS) is None  # cluster info
    assert readable_namespaces(who, Resource.TOKENS) == set()
    assert readable_namespaces(principal((Role.VIEWER, ALL_NAMESPACES)), Resource.EVENTS) is None
    assert readable_namespaces(principal(), Resource.WORKLOADS) == set()
    assert readable_namespaces(principal(), Resource.TARGETS) == set()


def test_cluster_admin_is_admin_in_star_only() -> None:
    assert principal((Role.ADMIN, ALL_NAMESPACES)).is_cluster_admin
    assert not principal((Role.ADMIN, OWN)).is_cluster_admin
    assert not principal((Role.DEPLOYER, ALL_NAMESPACES)).is_cluster_admin


# --- properties ------------------------------------------------------------

NAMESPACES = st.sampled_from([OWN, OTHER, "team-c", ALL_NAMESPACES])
BINDINGS = st.lists(st.tuples(st.sampled_from(list(Role)), NAMESPACES), max_size=5)
ASKED = st.sampled_from([OWN, OTHER, "team-c", "zz-9", None])
NAME = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


@given(BINDINGS, BINDINGS, st.sampled_from(list(Verb)), st.sampled_from(list(Resource)), ASKED)
def test_more_bindings_never_allow_less(
    some: list[tuple[Role, str]],
    more: list[tuple[Role, str]],
    verb: Verb,
    resource: Resource,
    namespace: str | None,
) -> None:
    if allowed(principal(*some), verb, resource, namespace):
        assert allowed(principal(*some, *more), verb, resource, namespace)


@given(
    st.sampled_from(list(Role)), st.sampled_from(list(Verb)), st.sampled_from(list(Resource)), NAME
)
def test_star_binding_implies_every_namespace(
    role: Role, verb: Verb, resource: Resource, namespace: str
) -> None:
    everywhere = principal((role, ALL_NAMESPACES))
    if allowed(principal((role, namespace)), verb, resource, namespace):
        assert allowed(everywhere, verb, resource, namespace)
    # and a star binding answers the same in every namespace
    assert allowed(everywhere, verb, resource, namespace) == allowed(
        everywhere, verb, resource, OWN
    )


@given(BINDINGS, st.sampled_from(list(Resource)), ASKED)
def test_readable_namespaces_agrees_with_allowed(
    bindings: list[tuple[Role, str]], resource: Resource, namespace: str | None
) -> None:
    who = principal(*bindings)
    readable = readable_namespaces(who, resource)
    if namespace is None:
        assert (readable is None) == allowed(who, Verb.LIST, resource, None)
    else:
        inside = readable is None or namespace in readable
        assert inside == allowed(who, Verb.LIST, resource, namespace)


@given(BINDINGS, st.sampled_from(list(Verb)), st.sampled_from(list(Resource)), ASKED)
def test_check_raises_exactly_when_not_allowed(
    bindings: list[tuple[Role, str]], verb: Verb, resource: Resource, namespace: str | None
) -> None:
    who = principal(*bindings)
    if allowed(who, verb, resource, namespace):
        check(who, verb, resource, namespace)
    else:
        with pytest.raises(ForbiddenError) as denied:
            check(who, verb, resource, namespace)
        message = str(denied.value)
        assert f"may not {verb} {resource}" in message
        assert 'token "ci-bot" (user alice)' in message
