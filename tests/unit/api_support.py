"""A FastAPI app over a temporary SQLite store with in-memory fake engines,
and tokens for each role, shared by the tests of the HTTP API."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeDriver

with warnings.catch_warnings():
    # Starlette 1.0 suggests its httpx fork for the test client; plain httpx
    # (which portway's client uses too) works the same for these tests
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tests.unit.app_support import offline_settings

from portway.api import ServerConfig, create_app
from portway.capabilities import matrix as matrix_module
from portway.capabilities.matrix import DriverResults, FeatureResult, Matrix, Status
from portway.capabilities.vocabulary import Feature
from portway.controller.records import CLUSTER_NAMESPACE, KIND_TARGET
from portway.drivers import registry
from portway.drivers.base import DriverCapabilities
from portway.service import access as access_service
from portway.service import planning
from portway.service import workloads as svc
from portway.service.app import App

DRIVER = "fake"


class ApiFakeDriver(FakeDriver):
    """A fake engine that claims every feature (the kept matrix proves them)."""

    def __init__(self, target: str, address: str) -> None:
        super().__init__(target)

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(frozenset(Feature))


def _matrix() -> Matrix:
    return Matrix(
        {
            DRIVER: DriverResults(
                DRIVER,
                "fake 1.0",
                "2026-12-06T00:00:00Z",
                {f: FeatureResult(Status.PASS, (f"case.{f}",)) for f in Feature},
            )
        }
    )


@dataclass
class Api:
    app: App
    client: TestClient
    tokens: dict[str, str]  # admin, deployer-a, viewer-a, deployer-b, nobody

    def headers(self, who: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def request(self, method: str, path: str, who: str = "admin", **kw: Any) -> Any:
        headers = {**self.headers(who), **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kw)

    def get(self, path: str, who: str = "admin", **kw: Any) -> Any:
        return self.request("GET", path, who, **kw)

    def post(self, path: str, who: str = "admin", **kw: Any) -> Any:
        return self.request("POST", path, who, **kw)

    def delete(self, path: str, who: str = "admin", **kw: Any) -> Any:
        return self.request("DELETE", path, who, **kw)


def workload_doc(name: str, namespace: str = "team-a", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "portway.dev/v1",
        "kind": "Workload",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": "portway/busybox:latest", "command": ["sleep", "3600"], **spec},
    }


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    registry.register(DRIVER, f"{__name__}:ApiFakeDriver")
    kept = _matrix()
    monkeypatch.setattr(matrix_module, "load_packaged", lambda: kept)
    monkeypatch.setattr(planning, "load_packaged", lambda: kept)
    monkeypatch.setattr(svc, "load_packaged", lambda: kept)
    service = App(offline_settings(tmp_path))
    service.store.create(
        KIND_TARGET,
        CLUSTER_NAMESPACE,
        "fake-1",
        {"driver": DRIVER, "address": f"{DRIVER}://x", "labels": {}},
        {"health": "healthy", "checkedAt": 1e12},
    )
    tokens = {
        "admin": access_service.create_token(service, "root", "root", None, [("admin", "*")])[0],
        "deployer-a": access_service.create_token(
            service, "alice", "alice", None, [("deployer", "team-a")]
        )[0],
        "viewer-a": access_service.create_token(
            service, "victor", "victor", None, [("viewer", "team-a")]
        )[0],
        "deployer-b": access_service.create_token(
            service, "bob", "bob", None, [("deployer", "team-b")]
        )[0],
        "nobody": access_service.create_token(service, "nemo", "nemo", None, [])[0],
    }
    config = ServerConfig(max_body_bytes=64 * 1024, heartbeat_seconds=0.5, watch_poll_seconds=0.05)
    with TestClient(create_app(service, config), raise_server_exceptions=False) as client:
        yield Api(service, client, tokens)
    service.close()


def engine(api: Api, target: str = "fake-1") -> ApiFakeDriver:
    """The fake engine behind ``target`` in the app's target pool."""
    view = api.app.targets.view(target)
    assert view is not None
    driver = api.app.targets.driver(view)
    assert isinstance(driver, ApiFakeDriver)
    return driver


def converge(api: Api, *keys: str, passes: int = 4) -> None:
    """Reconcile ``keys`` a few times, as the server's controller would."""
    from portway.controller.runner import Controller

    controller = Controller(api.app.store, targets=api.app.targets)
    try:
        for _ in range(passes):
            for key in keys:
                controller.reconciler.reconcile(key)
    finally:
        controller.reconciler.close()
