"""The GET-one-workload fast path on PostgreSQL: no change token, so no
cache; every GET reads through (in a worker thread) and a write by another
store is seen on the next GET."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from portway.api import create_app
from portway.controller.records import KIND_WORKLOAD
from portway.service import access as access_service
from portway.service.app import App, Settings
from portway.store import Store


@pytest.mark.postgres
def test_fast_path_reads_through_on_postgresql(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = App(
        Settings(
            home=tmp_path,
            store_url=pg_url,
            docker_socket=str(tmp_path / "no.sock"),
            local_wasm=False,
        )
    )
    other = Store(pg_url)
    try:
        assert service.store.change_token() is None
        service.store.create(KIND_WORKLOAD, "team-a", "web", {"workload": {}}, {"phase": "one"})
        token = access_service.create_token(service, "root", "root", None, [("admin", "*")])[0]
        reads: list[str] = []
        require = service.store.require
        monkeypatch.setattr(
            service.store, "require", lambda *key: reads.append(key[2]) or require(*key)
        )
        path = "/v1/namespaces/team-a/workloads/web"
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            assert client.get(path, headers=headers).json()["status"] == {"phase": "one"}
            record = other.require(KIND_WORKLOAD, "team-a", "web")
            other.update_status(record, {"phase": "two"})
            assert client.get(path, headers=headers).json()["status"] == {"phase": "two"}
            missing = client.get("/v1/namespaces/team-a/workloads/nope", headers=headers)
            assert missing.status_code == 404
        assert reads == ["web", "web", "nope"]  # read through, every time
    finally:
        other.close()
        service.close()
