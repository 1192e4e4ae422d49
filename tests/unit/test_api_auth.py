"""Authentication on every route, the RBAC matrix through the API, and the
audit trail of denied and unauthenticated attempts."""

from __future__ import annotations

import re
import time

import pytest
from tests.unit.api_support import Api, workload_doc

from portway.service import access as access_service

_PARAM = re.compile(r"\{([^}]+)\}")
_SAMPLE = {"namespace": "team-a", "name": "web", "token_id": "0123abcd"}


def _routes(api: Api) -> list[tuple[str, str]]:
    """Every (method, concrete path) of the app's own OpenAPI document, plus
    the document itself and its UI (served outside the document)."""
    found = [("GET", "/openapi.json"), ("GET", "/docs")]
    for path, operations in api.client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        concrete = _PARAM.sub(lambda m: _SAMPLE[m.group(1)], path)
        found += [(method.upper(), concrete) for method in operations]
    return found


def test_the_route_table_is_what_the_contract_lists(api: Api) -> None:
    paths = {p for _, p in _routes(api)}
    assert "/healthz" in paths and "/openapi.json" in paths
    assert "/v1/namespaces/team-a/workloads/web/logs" in paths
    assert "/v1/watch/workloads" in paths and "/v1/audit" in paths
    assert len(paths) > 25


@pytest.mark.parametrize(
    "header",
    [None, "Bearer pw_00000000_" + "x" * 43, "Basic YWRtaW46YWRtaW4=", "Bearer ", "pw_nonsense"],
    ids=["none", "unknown", "basic", "empty", "no-scheme"],
)
def test_every_route_but_healthz_refuses_without_a_valid_token(
    api: Api, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    checked = 0
    for method, path in _routes(api):
        response = api.client.request(method, path, headers=headers, json={})
        if path == "/healthz":
            assert response.status_code == 200
            continue
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "Unauthenticated"
        checked += 1
    assert checked > 25


def test_a_revoked_token_stops_working_within_a_second(api: Api) -> None:
    token, info = access_service.create_token(api.app, "carol", "ci", None, [("viewer", "team-a")])
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/v1/whoami", headers=headers).status_code == 200
    access_service.revoke_token(api.app, info.id)
    revoked = time.monotonic()
    while True:  # used all along, as a busy client would: caches stay warm
        answer = api.client.get("/v1/whoami", headers=headers)
        if answer.status_code == 401:
            break
        assert answer.status_code == 200
        assert time.monotonic() - revoked < 1.0, "a revoked token still worked after 1 s"
        time.sleep(0.02)
    assert "revoked" in answer.json()["error"]["message"]


def test_an_expired_token_is_refused(api: Api) -> None:
    token, _ = access_service.create_token(api.app, "dave", "short", 0.2, [("viewer", "team-a")])
    time.sleep(0.3)
    answer = api.client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert "expired" in answer.json()["error"]["message"]


# --- the RBAC matrix: who (role in team-a) x what x where --------------------------

A = "/v1/namespaces/team-a"
B = "/v1/namespaces/team-b"
WHO = ("admin", "deployer-a", "viewer-a", "deployer-b", "nobody")

#: (method, path, body, who may) — who may: the principals that pass the check
MATRIX: list[tuple[str, str, object, set[str]]] = [
    ("GET", f"{A}/workloads", None, {"admin", "deployer-a", "viewer-a"}),
    ("GET", f"{A}/workloads/web", None, {"admin", "deployer-a", "viewer-a"}),
    ("GET", f"{A}/workloads/web/replicas", None, {"admin", "deployer-a", "viewer-a"}),
    ("GET", f"{A}/events", None, {"admin", "deployer-a", "viewer-a"}),
    ("GET", f"{B}/workloads", None, {"admin", "deployer-b"}),
    ("POST", "/v1/apply", {"documents": [workload_doc("x", "team-a")]}, {"admin", "deployer-a"}),
    ("POST", "/v1/apply", {"documents": [workload_doc("x", "team-b")]}, {"admin", "deployer-b"}),
    (
        "POST",
        "/v1/plan",
        {"documents": [workload_doc("x", "team-a")]},
        {"admin", "deployer-a", "viewer-a"},
    ),
    ("DELETE", f"{A}/workloads/web", None, {"admin", "deployer-a"}),
    ("POST", f"{A}/workloads/web/exec", {"command": ["true"]}, {"admin", "deployer-a"}),
    ("GET", f"{A}/workloads/web/logs", None, {"admin", "deployer-a", "viewer-a"}),
    ("GET", "/v1/targets", None, {"admin", "deployer-a", "viewer-a", "deployer-b"}),
    ("GET", "/v1/namespaces", None, {"admin", "deployer-a", "viewer-a", "deployer-b"}),
    ("GET", "/v1/conformance", None, {"admin", "deployer-a", "viewer-a", "deployer-b"}),
    ("POST", "/v1/targets/fake-1/cordon", None, {"admin"}),
    ("PATCH", "/v1/targets/fake-1", {"labels": ["zone=a"]}, {"admin"}),
    ("GET", "/v1/tokens", None, {"admin"}),
    ("POST", "/v1/tokens", {"user": "eve", "bindings": []}, {"admin"}),
    ("GET", "/v1/audit", None, {"admin"}),
    ("GET", "/v1/whoami", None, set(WHO)),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    MATRIX,
    ids=[
        f"{m} {p}"
        + (
            f" {b['documents'][0]['metadata']['namespace']}"
            if isinstance(b, dict) and "documents" in b
            else ""
        )
        for m, p, b, _ in MATRIX
    ],
)
def test_rbac_matrix(api: Api, method: str, path: str, body: object, allowed: set[str]) -> None:
    api.post("/v1/apply", json={"documents": [workload_doc("web", "team-a")]})
    for who in WHO:
        answer = api.request(method, path, who, json=body)
        if who in allowed:
            assert answer.status_code != 403, (who, answer.text)
            assert answer.status_code < 500, (who, answer.text)
        else:
            assert answer.status_code == 403, (who, answer.status_code, answer.text)
            message = answer.json()["error"]["message"]
            assert "may not" in message and "needs" in message


def test_listing_across_namespaces_shows_only_readable_ones(api: Api) -> None:
    api.post("/v1/apply", json={"documents": [workload_doc("a1", "team-a")]})
    api.post("/v1/apply", json={"documents": [workload_doc("b1", "team-b")]})
    seen = {who: {i["name"] for i in api.get("/v1/workloads", who).json()["items"]} for who in WHO}
    assert seen["admin"] == {"a1", "b1"}
    assert seen["viewer-a"] == seen["deployer-a"] == {"a1"}
    assert seen["deployer-b"] == {"b1"}
    assert seen["nobody"] == set()


def test_apply_checks_every_document_before_writing_any(api: Api) -> None:
    both = {"documents": [workload_doc("ok", "team-a"), workload_doc("theirs", "team-b")]}
    answer = api.post("/v1/apply", "deployer-a", json=both)
    assert answer.status_code == 403
    assert 'namespace "team-b"' in answer.json()["error"]["message"]
    assert api.get(f"{A}/workloads/ok").status_code == 404


def test_mutating_requests_are_audited_with_their_outcome(api: Api) -> None:
    api.post("/v1/apply", "deployer-a", json={"documents": [workload_doc("w", "team-a")]})
    api.post("/v1/apply", "viewer-a", json={"documents": [workload_doc("w", "team-a")]})
    api.client.delete(f"{A}/workloads/w")  # no token
    api.delete(f"{A}/workloads/missing", "deployer-a")
    entries = api.get("/v1/audit").json()["items"]
    got = [(e["user"], e["verb"], e["namespace"], e["outcome"], e["status"]) for e in entries]
    assert got == [
        ("alice", "apply", "team-a", "succeeded", 200),
        ("victor", "update", "team-a", "denied", 403),
        ("", "delete", "", "denied", 401),
        ("alice", "delete", "team-a", "failed", 404),
    ]
    assert entries[1]["message"].startswith('token "victor"')
    assert entries[3]["name"] == "missing" and entries[3]["resource"] == "workloads"


def test_the_hot_path_asks_the_service_once_and_reads_the_store_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.post("/v1/apply", json={"documents": [workload_doc("web", "team-a")]})
    asked: list[str] = []
    reads: list[tuple[str, str, str]] = []
    authenticate, get = access_service.authenticate, api.app.store.get

    def counting_authenticate(app: object, header: str | None) -> object:
        asked.append(str(header))
        return authenticate(app, header)  # type: ignore[arg-type]

    def counting_get(kind: str, namespace: str, name: str) -> object:
        reads.append((kind, namespace, name))
        return get(kind, namespace, name)

    monkeypatch.setattr(access_service, "authenticate", counting_authenticate)
    monkeypatch.setattr(api.app.store, "get", counting_get)
    for _ in range(10):
        assert api.get(f"{A}/workloads/web", "viewer-a").status_code == 200
    assert len(asked) <= 2  # the first lookup, maybe one refresh: not one per request
    # at most one store read per request, all of the workload asked for: the
    # read cache (api/readcache.py) may serve some once the write has settled
    # (SETTLE_SECONDS after it), which on a slow machine happens within the ten
    workload_reads = [r for r in reads if r[0] == "Workload"]
    assert 1 <= len(workload_reads) <= 10
    assert set(workload_reads) == {("Workload", "team-a", "web")}
    assert len([r for r in reads if r[0] == "Token"]) <= 2
