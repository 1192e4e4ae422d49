"""The GET-one-workload fast path (api.fastpath) against the FastAPI route it
stands in for: same status, headers and bytes for every kind of answer; and
its read cache (api.readcache) never serves a body older than the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.api_support import Api, workload_doc

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from portway.api import ServerConfig, create_app, readcache
from portway.api.fastpath import WorkloadFastPath
from portway.api.routes import workloads as workload_routes
from portway.controller.records import KIND_WORKLOAD
from portway.service.app import App, Settings
from portway.store import Store

WORKLOADS = "/v1/namespaces/{}/workloads/{}"
LONG = "a" * 64

#: (id, who or None for no header, raw Authorization header or None, path)
CASES = [
    ("found-admin", "admin", None, WORKLOADS.format("team-a", "web")),
    ("found-viewer", "viewer-a", None, WORKLOADS.format("team-a", "web")),
    ("found-deployer-b", "deployer-b", None, WORKLOADS.format("team-b", "db")),
    ("not-found", "admin", None, WORKLOADS.format("team-a", "nope")),
    ("not-found-namespace", "admin", None, WORKLOADS.format("team-z", "web")),
    ("forbidden-other-namespace", "deployer-b", None, WORKLOADS.format("team-a", "web")),
    ("forbidden-no-binding", "nobody", None, WORKLOADS.format("team-a", "web")),
    ("forbidden-before-not-found", "nobody", None, WORKLOADS.format("team-a", "nope")),
    ("no-token", None, None, WORKLOADS.format("team-a", "web")),
    ("wrong-token", None, "Bearer pw_nope_nope", WORKLOADS.format("team-a", "web")),
    ("not-bearer", None, "Basic dXNlcjpwYXNz", WORKLOADS.format("team-a", "web")),
    ("empty-bearer", None, "Bearer ", WORKLOADS.format("team-a", "web")),
    ("uppercase-name", "admin", None, WORKLOADS.format("team-a", "Web")),
    ("dots-name", "admin", None, WORKLOADS.format("team-a", "a..b")),
    ("dash-end-namespace", "admin", None, WORKLOADS.format("team-", "web")),
    ("too-long-name", "admin", None, WORKLOADS.format("team-a", LONG)),
    ("encoded-slash", "admin", None, "/v1/namespaces/team-a/workloads/a%2Fb"),
    ("trailing-slash", "admin", None, WORKLOADS.format("team-a", "web") + "/"),
    ("query-ignored", "admin", None, WORKLOADS.format("team-a", "web") + "?x=1"),
    ("invalid-and-no-token", None, None, WORKLOADS.format("team-a", "Web")),
]


def _without_fast_path(service: App) -> TestClient:
    """The same application with the fast path taken out: FastAPI's route."""
    app = create_app(service, ServerConfig(max_body_bytes=64 * 1024))
    app.user_middleware = [m for m in app.user_middleware if m.cls is not WorkloadFastPath]
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def both(api: Api) -> Iterator[tuple[Api, TestClient]]:
    """The api fixture (fast path on) with team-a/web and team-b/db, and a
    client of the route alone over the same service."""
    for name, namespace in (("web", "team-a"), ("db", "team-b")):
        reply = api.post("/v1/apply", json={"documents": [workload_doc(name, namespace)]})
        assert reply.status_code == 200, reply.text
    with _without_fast_path(api.app) as route:
        yield api, route


def test_the_route_client_really_uses_the_route(
    both: tuple[Api, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, route = both
    called: list[str] = []
    real = workload_routes.svc.get_workload
    monkeypatch.setattr(
        workload_routes.svc, "get_workload", lambda *a: called.append("route") or real(*a)
    )
    path = WORKLOADS.format("team-a", "web")
    assert api.get(path).status_code == route.get(path, headers=api.headers()).status_code == 200
    assert called == ["route"]


@pytest.mark.parametrize(("who", "raw", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fast_path_answers_like_the_route(
    both: tuple[Api, TestClient], who: str | None, raw: str | None, path: str
) -> None:
    api, route = both
    headers = api.headers(who) if who else ({"Authorization": raw} if raw is not None else {})
    fast = api.client.get(path, headers=headers, follow_redirects=False)
    slow = route.get(path, headers=headers, follow_redirects=False)
    assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
    assert sorted(fast.headers.items()) == sorted(slow.headers.items())


def test_fast_path_serves_the_workload(both: tuple[Api, TestClient]) -> None:
    api, _ = both
    reply = api.get(WORKLOADS.format("team-a", "web"), who="viewer-a")
    assert reply.status_code == 200
    assert (reply.json()["namespace"], reply.json()["name"]) == ("team-a", "web")
    assert api.get(WORKLOADS.format("team-a", "web"), who="nobody").status_code == 403


def _settle() -> None:
    time.sleep(readcache.SETTLE_SECONDS + 0.02)


def test_a_write_by_another_store_is_seen_on_the_next_get(
    both: tuple[Api, TestClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = both
    path = WORKLOADS.format("team-a", "web")
    reads: list[str] = []
    require = api.app.store.require
    monkeypatch.setattr(
        api.app.store, "require", lambda *key: reads.append(key[2]) or require(*key)
    )
    _settle()
    first = api.get(path).json()
    assert api.get(path).json() == first
    assert reads == ["web"]  # the second answer came from the cache
    # another process: its own Store on the same file
    other = Store(api.app.store.url)
    try:
        record = other.require(KIND_WORKLOAD, "team-a", "web")
        other.update_status(record, {**record.status, "phase": "Changed-elsewhere"})
    finally:
        other.close()
    assert api.get(path).json()["status"]["phase"] == "Changed-elsewhere"
    assert reads == ["web", "web"]


_WRITER = """
import sys
from portway.controller.records import KIND_WORKLOAD
from portway.store import Store
store = Store(sys.argv[1])
record = store.require(KIND_WORKLOAD, "team-a", "web")
store.update_status(record, {**record.status, "phase": "From-another-process"})
store.close()
"""


def test_a_write_by_another_process_is_seen_on_the_next_get(
    both: tuple[Api, TestClient],
) -> None:
    api, _ = both
    path = WORKLOADS.format("team-a", "web")
    _settle()
    assert api.get(path).json() == api.get(path).json()  # cached now
    src = str(Path(__file__).resolve().parents[2] / "src")
    subprocess.run(
        [sys.executable, "-c", _WRITER, api.app.store.url],
        check=True,
        env={**os.environ, "PYTHONPATH": src},
        timeout=60,
    )
    assert api.get(path).json()["status"]["phase"] == "From-another-process"


def test_no_entry_outlives_the_hard_bound(
    both: tuple[Api, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if the change token missed a write (a filesystem with coarse
    timestamps), a body is served for at most MAX_AGE_SECONDS."""
    api, _ = both
    path = WORKLOADS.format("team-a", "web")
    monkeypatch.setattr(readcache, "MAX_AGE_SECONDS", 0.2)
    _settle()
    frozen = api.app.store.change_token()
    monkeypatch.setattr(api.app.store, "change_token", lambda: frozen)
    before = api.get(path).json()["status"]
    record = api.app.store.require(KIND_WORKLOAD, "team-a", "web")
    api.app.store.update_status(record, {**record.status, "phase": "Late"})
    assert api.get(path).json()["status"] == before  # the token was fooled
    time.sleep(0.25)
    assert api.get(path).json()["status"]["phase"] == "Late"


def test_a_store_without_change_token_is_read_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = App(Settings(home=tmp_path, docker_socket=str(tmp_path / "no.sock")))
    try:
        record = service.store.create(KIND_WORKLOAD, "team-a", "web", {"workload": {}}, {})
        monkeypatch.setattr(service.store, "change_token", lambda: None)
        bodies = readcache.WorkloadBodies(service.store, lambda r: str(r.status).encode())
        assert bodies.body("team-a", "web") == b"{}"
        service.store.update_status(record, {"phase": "x"})
        assert bodies.body("team-a", "web") == b"{'phase': 'x'}"
    finally:
        service.close()
