"""Bad input over HTTP: each refused with the right status and a clear
message, never a 500, and nothing half-applied."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.unit.api_support import Api, workload_doc

A = "/v1/namespaces/team-a"
JSON = {"content-type": "application/json"}


def _error(answer: object) -> dict[str, object]:
    body = answer.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "issues"}
    return dict(body["error"])


@pytest.mark.parametrize("body", [b"{bad", b"[1, 2", b"\xff\xfe", b'{"documents": [}'])
def test_malformed_json_is_400(api: Api, body: bytes) -> None:
    answer = api.post("/v1/apply", content=body, headers=JSON)
    assert answer.status_code == 400
    error = _error(answer)
    assert error["code"] == "MalformedJSON"
    assert "not valid JSON" in str(error["message"])


def test_a_body_over_the_limit_is_413_by_content_length(api: Api) -> None:
    answer = api.post("/v1/apply", content=b" " * (64 * 1024 + 1), headers=JSON)
    assert answer.status_code == 413
    assert "the limit is 65536 bytes" in str(_error(answer)["message"])


def test_a_streamed_body_over_the_limit_is_413_too(api: Api) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for _ in range(20):
            yield b" " * 8192

    answer = api.post("/v1/apply", content=chunks(), headers=JSON)
    assert answer.status_code == 413
    assert _error(answer)["code"] == "PayloadTooLarge"


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        (f"{A}/workloads/%2E%2E", {422}),
        (f"{A}/workloads/a%2Fb", {404, 422}),
        (f"{A}/workloads/Web", {422}),
        (f"{A}/workloads/{'a' * 64}", {422}),
        (f"{A}/workloads/-web", {422}),
        ("/v1/namespaces/%2E%2E/workloads/web", {422}),
        ("/v1/namespaces/..%2F..%2Fetc/workloads", {404, 422}),
        ("/v1/namespaces/_cluster/workloads", {422}),
        ("/v1/workloads?namespace=UPPER", {422}),
        ("/v1/targets/%2E%2E", {422}),
        ("/v1/tokens/..", {404, 422}),
    ],
)
def test_traversal_and_invalid_names_are_refused_never_500(
    api: Api, path: str, statuses: set[int]
) -> None:
    answer = api.get(path)
    assert answer.status_code in statuses, answer.text
    error = _error(answer)
    if answer.status_code == 422:
        assert "DNS-1123" in str(error["message"]) or "pattern" in str(error["message"])


def test_unknown_namespace_and_workload_are_404(api: Api) -> None:
    assert api.get("/v1/namespaces/nowhere").status_code == 404
    answer = api.get("/v1/namespaces/nowhere/workloads/web")
    assert answer.status_code == 404
    assert "nowhere/web not found" in str(_error(answer)["message"])
    assert api.get("/v1/namespaces/nowhere/workloads").json() == {"items": []}


def test_policy_forbidden_spec_is_422_with_every_reason_and_nothing_written(api: Api) -> None:
    smuggler = workload_doc(
        "smuggler",
        security={"privileged": True},
        volumes=[
            {"name": "sock", "type": "bind", "source": "/var/run/docker.sock", "mountPath": "/s"}
        ],
    )
    fine = workload_doc("fine")
    answer = api.post("/v1/apply", json={"documents": [fine, smuggler], "file": "team.yaml"})
    assert answer.status_code == 422
    error = _error(answer)
    assert error["code"] == "PolicyViolation"
    issues = error["issues"]
    assert isinstance(issues, list)
    paths = {i["path"] for i in issues}
    assert "spec.security.privileged" in paths
    assert any(p.startswith("spec.volumes[0]") for p in paths)
    assert all(i["file"] == "team.yaml" and i["document"] == 2 for i in issues)
    assert api.get("/v1/workloads").json() == {"items": []}  # not even the fine one


def test_an_invalid_spec_is_422_with_every_issue(api: Api) -> None:
    bad = workload_doc("bad", replicas=-1, imag="x")
    answer = api.post("/v1/apply", json={"documents": [bad]})
    assert answer.status_code == 422
    error = _error(answer)
    assert error["code"] == "InvalidSpec"
    issues = error["issues"]
    assert isinstance(issues, list) and len(issues) >= 2
    assert any(i["hint"] and "image" in i["hint"] for i in issues)


def test_dry_run_checks_everything_and_writes_nothing(api: Api) -> None:
    body = {"documents": [workload_doc("web")], "dryRun": True}
    answer = api.post("/v1/apply", json=body)
    assert answer.status_code == 200
    assert answer.json()["workloads"][0]["outcome"] == "created"
    assert answer.json()["dryRun"] is True
    assert api.get(f"{A}/workloads/web").status_code == 404
    api.post("/v1/apply", json={"documents": [workload_doc("web")]})
    again = api.post("/v1/apply", json=body).json()
    assert again["workloads"][0]["outcome"] == "unchanged"


@pytest.mark.parametrize(
    "body",
    [{}, {"documents": []}, {"documents": "x"}, {"documents": [1]}, {"documents": [{}]}],
    ids=["missing", "empty", "string", "number", "empty-doc"],
)
def test_apply_bodies_of_the_wrong_shape_are_422(api: Api, body: object) -> None:
    answer = api.post("/v1/apply", json=body)
    assert answer.status_code == 422, answer.text
    assert _error(answer)["message"]


def test_exec_without_replicas_is_404_and_unknown_fields_422(api: Api) -> None:
    api.post("/v1/apply", json={"documents": [workload_doc("web")]})
    answer = api.post(f"{A}/workloads/web/exec", json={"command": ["true"]})
    assert answer.status_code == 404
    assert "has no replica 0 running" in str(_error(answer)["message"])
    wrong = api.post(f"{A}/workloads/web/exec", json={"command": ["true"], "shell": True})
    assert wrong.status_code == 422
