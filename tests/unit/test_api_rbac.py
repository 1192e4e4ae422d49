"""RBAC through the real HTTP API (FastAPI's TestClient, fake engines): every
endpoint called by every kind of principal, least privileged first, each
expected to be allowed or refused with 403 (and 401 without a token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from tests.unit.api_support import Api, workload_doc

from portway.service import access as access_service
from portway.service import secrets as secrets_service

#: least privileged first, so denied attempts run before allowed ones change anything
WHO = ("nobody", "viewer-a", "deployer-b", "admin-a", "deployer-a", "admin")
ALL = frozenset(WHO)
BOUND = ALL - {"nobody"}
READ_A = frozenset({"viewer-a", "admin-a", "deployer-a", "admin"})
WRITE_A = frozenset({"admin-a", "deployer-a", "admin"})
ADMIN_A = frozenset({"admin-a", "admin"})
CLUSTER = frozenset({"admin"})


def namespace_doc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "portway.dev/v1",
        "kind": "Namespace",
        "metadata": {"name": name},
        "spec": {"podSecurity": "baseline"},
    }


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    allowed: frozenset[str]
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None


#: in order: the last ones take away what earlier ones need
CASES = [
    Case("whoami", "GET", "/v1/whoami", ALL),
    Case("list-workloads-a", "GET", "/v1/namespaces/team-a/workloads", READ_A),
    Case("get-workload-a", "GET", "/v1/namespaces/team-a/workloads/web", READ_A),
    Case("get-workload-b", "GET", "/v1/namespaces/team-b/workloads/db", {"deployer-b", "admin"}),
    Case("replicas-a", "GET", "/v1/namespaces/team-a/workloads/web/replicas", READ_A),
    Case("events-a", "GET", "/v1/namespaces/team-a/events", READ_A),
    Case("logs-a", "GET", "/v1/namespaces/team-a/workloads/web/logs", READ_A),
    Case("plan-a", "POST", "/v1/plan", READ_A, {"documents": [workload_doc("web")]}),
    Case("apply-a", "POST", "/v1/apply", WRITE_A, {"documents": [workload_doc("web2")]}),
    Case(
        "apply-b",
        "POST",
        "/v1/apply",
        {"deployer-b", "admin"},
        {"documents": [workload_doc("db2", "team-b")]},
    ),
    Case(
        "exec-a",
        "POST",
        "/v1/namespaces/team-a/workloads/web/exec",
        WRITE_A,
        {"command": ["true"], "timeout": 5},
    ),
    Case(
        "namespace-policy-a", "POST", "/v1/apply", ADMIN_A, {"documents": [namespace_doc("team-a")]}
    ),
    Case(
        "namespace-policy-b", "POST", "/v1/apply", CLUSTER, {"documents": [namespace_doc("team-b")]}
    ),
    Case("list-secrets-all", "GET", "/v1/secrets", ALL),  # filtered, not refused
    Case("list-secrets-a", "GET", "/v1/namespaces/team-a/secrets", READ_A),
    Case("get-secret-a", "GET", "/v1/namespaces/team-a/secrets/db", READ_A),
    Case("get-secret-b", "GET", "/v1/namespaces/team-b/secrets/db", {"deployer-b", "admin"}),
    Case(
        "put-secret-a",
        "PUT",
        "/v1/namespaces/team-a/secrets/db",
        WRITE_A,
        {"data": {"password": "c2VjcmV0"}},
    ),
    Case(
        "put-secret-b",
        "PUT",
        "/v1/namespaces/team-b/secrets/api",
        {"deployer-b", "admin"},
        {"data": {"key": "c2VjcmV0"}},
    ),
    Case("list-targets", "GET", "/v1/targets", BOUND),
    Case("get-target", "GET", "/v1/targets/fake-1", BOUND),
    Case("list-namespaces", "GET", "/v1/namespaces", BOUND),
    Case("get-namespace", "GET", "/v1/namespaces/team-a", BOUND),
    Case("conformance", "GET", "/v1/conformance", BOUND),
    Case(
        "add-target",
        "POST",
        "/v1/targets",
        CLUSTER,
        {"name": "fake-2", "driver": "apifake", "address": "apifake://y"},
    ),
    Case("label-target", "PATCH", "/v1/targets/fake-1", CLUSTER, {"labels": ["zone=a"]}),
    Case("cordon-target", "POST", "/v1/targets/fake-1/cordon", CLUSTER),
    Case("uncordon-target", "POST", "/v1/targets/fake-1/uncordon", CLUSTER),
    Case("list-tokens", "GET", "/v1/tokens", CLUSTER),
    Case(
        "create-token",
        "POST",
        "/v1/tokens",
        CLUSTER,
        {"user": "carol", "bindings": [{"role": "viewer", "namespace": "team-a"}]},
    ),
    Case("list-rolebindings-a", "GET", "/v1/rolebindings", ADMIN_A, params={"namespace": "team-a"}),
    Case(
        "bind-a",
        "POST",
        "/v1/rolebindings",
        ADMIN_A,
        {"user": "carol", "role": "deployer", "namespace": "team-a"},
    ),
    Case(
        "bind-b",
        "POST",
        "/v1/rolebindings",
        CLUSTER,
        {"user": "carol", "role": "deployer", "namespace": "team-b"},
    ),
    Case(
        "bind-everywhere",
        "POST",
        "/v1/rolebindings",
        CLUSTER,
        {"user": "carol", "role": "viewer", "namespace": "*"},
    ),
    Case("audit-log", "GET", "/v1/audit", CLUSTER),
    Case(
        "unbind-a",
        "DELETE",
        "/v1/rolebindings",
        ADMIN_A,
        params={"user": "victor", "role": "viewer", "namespace": "team-a"},
    ),
    Case("delete-a", "DELETE", "/v1/namespaces/team-a/workloads/web", WRITE_A),
    Case("delete-secret-a", "DELETE", "/v1/namespaces/team-a/secrets/spare", WRITE_A),
    Case("drain-target", "POST", "/v1/targets/fake-1/drain", CLUSTER),
    Case("remove-target", "DELETE", "/v1/targets/fake-1", CLUSTER, params={"force": "true"}),
]


@pytest.fixture
def cluster(api: Api) -> Api:
    """Two workloads (team-a/web, team-b/db), secrets (team-a/db, team-a/spare,
    team-b/db) and a namespace admin of team-a."""
    api.tokens["admin-a"] = access_service.create_token(
        api.app, "nadia", "nadia", None, [("admin", "team-a")]
    )[0]
    for doc in (workload_doc("web"), workload_doc("db", "team-b")):
        applied = api.post("/v1/apply", json={"documents": [doc]})
        assert applied.status_code == 200, applied.text
    for namespace, name in (("team-a", "db"), ("team-a", "spare"), ("team-b", "db")):
        secrets_service.create(api.app, namespace, name, {"password": b"hunter2"})
    return api


def _send(api: Api, case: Case, who: str) -> Any:
    return api.request(case.method, case.path, who, json=case.body, params=case.params)


def test_every_endpoint_for_every_principal(cluster: Api) -> None:
    """One store for the whole matrix (a fresh app per case would cost ~0.4 s
    each): cases run in order, principals least privileged first."""
    problems: list[str] = []
    for case in CASES:
        anonymous = cluster.client.request(
            case.method, case.path, json=case.body, params=case.params
        )
        if anonymous.status_code != 401 or anonymous.headers.get("www-authenticate") != "Bearer":
            problems.append(f"{case.id} without a token: {anonymous.status_code}")
        for who in WHO:
            response = _send(cluster, case, who)
            status = response.status_code
            if who in case.allowed:
                if status in (401, 403) or status >= 500:
                    problems.append(
                        f"{case.id} as {who}: expected allowed, got {status} {response.text}"
                    )
            elif status != 403:
                problems.append(f"{case.id} as {who}: expected 403, got {status} {response.text}")
            else:
                error = response.json()["error"]
                if error["code"] != "Forbidden" or " may not " not in error["message"]:
                    problems.append(f"{case.id} as {who}: unexpected 403 body {error}")
    assert not problems, "\n".join(problems)


def test_matrix_covers_every_route(cluster: Api) -> None:
    """A new route must join CASES (or be listed here with why it is not there)."""
    from fastapi.routing import APIRoute

    covered = {(c.method, c.path) for c in CASES}
    not_in_matrix = {
        ("GET", "/v1/workloads"),  # filtered, not refused: test_lists_across_namespaces…
        ("GET", "/v1/replicas"),
        ("GET", "/v1/events"),
        ("GET", "/v1/watch/workloads"),
        ("GET", "/v1/watch/events"),
        ("DELETE", "/v1/tokens/{token_id}"),  # test_token_revoked_through_the_api…
    }
    app = cluster.client.app
    templates = set()
    for route in app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.path.startswith("/v1/"):
            templates |= {(m, route.path) for m in route.methods}

    def matches(template: tuple[str, str], concrete: tuple[str, str]) -> bool:
        (tm, tp), (cm, cp) = template, concrete
        tparts, cparts = tp.split("/"), cp.split("/")
        return (
            tm == cm
            and len(tparts) == len(cparts)
            and all(t == c or t.startswith("{") for t, c in zip(tparts, cparts, strict=True))
        )

    missing = [t for t in templates - not_in_matrix if not any(matches(t, c) for c in covered)]
    assert not missing, f"routes with no RBAC case: {sorted(missing)}"


def test_deployer_in_team_a_is_refused_in_team_b_and_nothing_is_written(
    cluster: Api,
) -> None:
    docs = [workload_doc("fresh"), workload_doc("intruder", "team-b")]
    refused = cluster.post("/v1/apply", "deployer-a", json={"documents": docs})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        'token "alice" (user alice) may not create workloads in namespace "team-b": '
        "needs role deployer or admin there (has: deployer in team-a)"
    )
    # all or nothing: the team-a document was not applied either
    assert cluster.get("/v1/namespaces/team-a/workloads/fresh").status_code == 404
    deleted = cluster.delete("/v1/namespaces/team-b/workloads/db", "deployer-a")
    assert deleted.status_code == 403
    assert 'may not delete workloads in namespace "team-b"' in deleted.json()["error"]["message"]


def test_viewer_cannot_apply_exec_or_delete(cluster: Api) -> None:
    attempts = [
        ("POST", "/v1/apply", {"documents": [workload_doc("web")]}, "update workloads"),
        ("POST", "/v1/namespaces/team-a/workloads/web/exec", {"command": ["id"]}, "exec workloads"),
        ("DELETE", "/v1/namespaces/team-a/workloads/web", None, "delete workloads"),
    ]
    for method, path, body, permission in attempts:
        response = cluster.request(method, path, "viewer-a", json=body)
        assert response.status_code == 403, response.text
        message = response.json()["error"]["message"]
        assert f'may not {permission} in namespace "team-a"' in message
        assert "(has: viewer in team-a)" in message


def test_lists_across_namespaces_show_only_readable_ones(cluster: Api) -> None:
    def names(who: str) -> set[str]:
        response = cluster.get("/v1/workloads", who)
        assert response.status_code == 200, response.text
        return {f"{w['namespace']}/{w['name']}" for w in response.json()["items"]}

    assert names("admin") == {"team-a/web", "team-b/db"}
    assert names("viewer-a") == {"team-a/web"}
    assert names("deployer-b") == {"team-b/db"}
    assert names("nobody") == set()


def test_denied_and_unauthenticated_attempts_are_in_the_audit_log(cluster: Api) -> None:
    cluster.delete("/v1/namespaces/team-b/workloads/db", "deployer-a")
    cluster.client.post("/v1/targets/fake-1/cordon")  # no token
    cluster.post("/v1/targets/fake-1/cordon", "admin")
    entries = cluster.get("/v1/audit", params={"limit": 10}).json()["items"]
    denied = [e for e in entries if e["outcome"] == "denied"]
    assert {(e["user"], e["verb"], e["resource"], e["namespace"], e["status"]) for e in denied} >= {
        ("alice", "delete", "workloads", "team-b", 403)
    }
    assert any(e["user"] == "" and e["status"] == 401 for e in denied)
    assert any(
        e["user"] == "root" and e["outcome"] == "succeeded" and e["name"] == "fake-1"
        for e in entries
    )
    by_alice = cluster.get("/v1/audit", params={"user": "alice"}).json()["items"]
    assert by_alice and all(e["user"] == "alice" for e in by_alice)


def test_token_revoked_through_the_api_stops_at_once(cluster: Api) -> None:
    made = cluster.post(
        "/v1/tokens",
        json={
            "user": "carol",
            "name": "laptop",
            "bindings": [{"role": "viewer", "namespace": "team-a"}],
        },
    )
    assert made.status_code == 201, made.text
    token, token_id = made.json()["token"], made.json()["id"]
    headers = {"Authorization": f"Bearer {token}"}
    assert cluster.client.get("/v1/namespaces/team-a/workloads", headers=headers).status_code == 200
    listed = cluster.get("/v1/tokens").json()["items"]
    assert token not in str(listed) and all("hash" not in t for t in listed)
    assert cluster.delete(f"/v1/tokens/{token_id}").status_code == 200
    after = cluster.client.get("/v1/namespaces/team-a/workloads", headers=headers)
    assert after.status_code == 401
    assert "revoked" in after.json()["error"]["message"]


def test_namespace_admin_manages_bindings_of_its_namespace_only(cluster: Api) -> None:
    listed = cluster.get("/v1/rolebindings", "admin-a")
    assert listed.status_code == 200
    assert {b["namespace"] for b in listed.json()["items"]} == {"team-a"}
    made = cluster.post(
        "/v1/rolebindings", "admin-a", json={"user": "dave", "role": "admin", "namespace": "team-a"}
    )
    assert made.status_code == 201, made.text
    escalate = cluster.post(
        "/v1/rolebindings", "admin-a", json={"user": "nadia", "role": "admin", "namespace": "*"}
    )
    assert escalate.status_code == 403
    assert "needs cluster admin" not in escalate.json()["error"]["message"]  # admin in * would do
    assert 'in namespace "*"' in escalate.json()["error"]["message"]
