"""portway.client against a stand-in server (httpx.MockTransport): the
bearer token, error bodies mapped to the errors (and so the exit codes) of
local mode, and the two streaming formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from portway.client.errors import ServerError
from portway.client.http import PortwayClient
from portway.client.streams import iter_ndjson, iter_sse
from portway.errors import (
    ConflictError,
    ForbiddenError,
    InputError,
    NotFoundError,
    PolicyError,
    PortwayError,
    TargetUnavailableError,
    UnauthenticatedError,
)

TOKEN = "pw_0123abcd_c2VjcmV0"


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> PortwayClient:
    return PortwayClient("http://testserver", TOKEN, transport=httpx.MockTransport(handler))


def _error(status: int, code: str, message: str, issues: list[dict[str, Any]] | None = None):
    body = {"error": {"code": code, "message": message, "issues": issues or []}}
    return lambda request: httpx.Response(status, json=body)


def test_bearer_token_and_paths() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [{"name": "web"}]})

    with _client(handler) as client:
        assert client.list_workloads("team-a") == [{"name": "web"}]
        client.list_workloads(None)
        client.events(None, None, 5)
        client.replicas("default", "web")
    assert {r.headers["authorization"] for r in seen} == {f"Bearer {TOKEN}"}
    assert [r.url.path for r in seen] == [
        "/v1/namespaces/team-a/workloads",
        "/v1/workloads",
        "/v1/events",
        "/v1/namespaces/default/workloads/web/replicas",
    ]
    assert dict(seen[2].url.params) == {"limit": "5"}  # None filters are left out


def test_names_stay_one_path_segment() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"error": {"code": "NotFound", "message": "nope"}})

    with _client(handler) as client, pytest.raises(NotFoundError):
        client.get_workload("default", "../x")
    assert paths == ["/v1/namespaces/default/workloads/..%2Fx"]


@pytest.mark.parametrize(
    ("status", "code", "error", "exit_code"),
    [
        (401, "Unauthenticated", UnauthenticatedError, 4),
        (403, "Forbidden", ForbiddenError, 5),
        (404, "NotFound", NotFoundError, 3),
        (409, "Conflict", ConflictError, 1),
        (410, "Gone", ConflictError, 1),
        (400, "MalformedJSON", InputError, 2),
        (413, "TooLarge", InputError, 2),
        (500, "Internal", ServerError, 1),
    ],
)
def test_error_mapping(status: int, code: str, error: type[PortwayError], exit_code: int) -> None:
    with (
        _client(_error(status, code, "the server's words")) as client,
        pytest.raises(error) as info,
    ):
        client.whoami()
    assert info.value.exit_code == exit_code
    assert "the server's words" in str(info.value)


def test_forbidden_keeps_the_servers_message() -> None:
    message = (
        'token "ci-bot" (user alice) may not delete workloads in namespace "team-b": '
        "needs role deployer or admin there (has: viewer in team-b)"
    )
    with (
        _client(_error(403, "Forbidden", message)) as client,
        pytest.raises(ForbiddenError) as info,
    ):
        client.delete_workload("team-b", "web")
    assert str(info.value) == message


def test_422_issues_become_located_issues() -> None:
    issues = [
        {
            "message": "bind mounts are not allowed",
            "file": "w.yaml",
            "document": 2,
            "path": "spec.volumes[0].source",
            "hint": "use a named volume",
        },
        {"message": "privileged is forbidden", "file": "w.yaml", "path": "spec.securityContext"},
    ]
    with (
        _client(_error(422, "PolicyError", "2 problems", issues)) as client,
        pytest.raises(PolicyError) as info,
    ):
        client.apply([{}], "w.yaml")
    assert info.value.exit_code == 2
    text = str(info.value)
    assert "w.yaml, document 2, spec.volumes[0].source: bind mounts are not allowed" in text
    assert "(use a named volume)" in text
    assert "w.yaml, spec.securityContext: privileged is forbidden" in text


def test_503_names_the_target_once() -> None:
    with (
        _client(_error(503, "TargetUnavailable", "target 'docker': engine down")) as client,
        pytest.raises(TargetUnavailableError) as info,
    ):
        client.targets()
    assert str(info.value) == "target 'docker': engine down"


def test_error_without_our_body() -> None:
    with (
        _client(lambda r: httpx.Response(502, text="<html>bad gateway</html>")) as client,
        pytest.raises(ServerError, match="server error 502 on GET /v1/whoami: <html>"),
    ):
        client.whoami()


def test_logs_stream_ndjson() -> None:
    lines = [
        {
            "replica": 0,
            "target": "docker",
            "ts": "2026-12-06T02:00:00+00:00",
            "stream": "stdout",
            "line": "hello",
        },
        {"replica": 1, "target": "docker", "ts": None, "stream": "stderr", "line": "oops"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["follow"] == "true" and request.url.params["tail"] == "3"
        body = "".join(json.dumps(x) + "\n" for x in lines)
        return httpx.Response(200, content=body, headers={"content-type": "application/x-ndjson"})

    with _client(handler) as client:
        assert list(client.logs("default", "web", follow=True, tail=3)) == lines


def test_sse_reader() -> None:
    text = (
        ": heartbeat\n\n"
        'id: 7\nevent: ADDED\ndata: {"name": "web"}\n\n'
        'event: MODIFIED\ndata: {"a":\ndata: 1}\nid: 8\n\n'
        "data: tail-without-blank-line"
    )
    events = list(iter_sse(text.splitlines()))
    assert [(e.event, e.id) for e in events] == [
        ("ADDED", "7"),
        ("MODIFIED", "8"),
        ("message", "8"),
    ]
    assert events[0].json() == {"name": "web"} and events[1].json() == {"a": 1}


def test_ndjson_rejects_non_objects() -> None:
    with pytest.raises(ValueError, match="expected a JSON object"):
        list(iter_ndjson(["[1]"]))


def test_bad_ca_file_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(InputError, match=f"--ca-file {bad}: cannot load it as a CA"):
        PortwayClient("https://127.0.0.1:1", TOKEN, ca_file=bad)
