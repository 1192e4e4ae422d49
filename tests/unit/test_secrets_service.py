"""The secrets service: create, list, delete, apply's reference checks, and
rolling the workloads that use a secret whose value changed (fake target)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes import FakeDriver
from tests.unit.app_support import offline_settings

from portway.capabilities import matrix as matrix_module
from portway.capabilities.matrix import DriverResults, FeatureResult, Matrix, Status
from portway.capabilities.vocabulary import Feature
from portway.controller.records import CLUSTER_NAMESPACE, KIND_TARGET
from portway.controller.secrets import SecretResolver
from portway.drivers import registry
from portway.drivers.base import DriverCapabilities
from portway.errors import AlreadyExistsError, InputError, NotFoundError
from portway.service import planning
from portway.service import secrets as secrets_svc
from portway.service import workloads as svc
from portway.service.app import App
from portway.spec.model import Workload

VALUE = b"plant-4f1c9e-value"


class AllFeaturesDriver(FakeDriver):
    name = "secretfake"

    def __init__(self, target: str, address: str) -> None:
        super().__init__(target)

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(frozenset(Feature))


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    registry.register("secretfake", f"{__name__}:AllFeaturesDriver")
    kept = Matrix(
        {
            "secretfake": DriverResults(
                "secretfake",
                "fake 1.0",
                "2026-12-06T00:00:00Z",
                {f: FeatureResult(Status.PASS, (f"case.{f}",)) for f in Feature},
            )
        }
    )
    monkeypatch.setattr(matrix_module, "load_packaged", lambda: kept)
    monkeypatch.setattr(planning, "load_packaged", lambda: kept)
    monkeypatch.setattr(svc, "load_packaged", lambda: kept)
    application = App(offline_settings(tmp_path))
    application.store.create(
        KIND_TARGET,
        CLUSTER_NAMESPACE,
        "fake",
        {"driver": "secretfake", "address": "secretfake://x", "labels": {}},
        {"health": "healthy", "checkedAt": 1e12},
    )
    yield application
    application.close()


def workload(key: str = "password", name: str = "web") -> Workload:
    return Workload.model_validate(
        {
            "apiVersion": "portway.dev/v1",
            "kind": "Workload",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": {
                "image": "portway/busybox:latest",
                "secrets": [{"secret": "db", "key": key, "mountPath": "/run/secrets/db"}],
            },
        }
    )


def apply(app: App, item: Workload) -> svc.Applied:
    lines = {"spec.secrets[0].secret": 9, "spec.secrets[0].key": 9}
    [applied] = svc.apply(app, [svc.Sourced(item, "web.yaml", 1, lines)])
    return applied


def test_apply_refuses_a_missing_secret_naming_file_and_field(app: App) -> None:
    with pytest.raises(InputError) as refused:
        apply(app, workload())
    [issue] = refused.value.issues
    assert (issue.file, issue.document, issue.path, issue.line) == (
        "web.yaml",
        1,
        "spec.secrets[0].secret",
        9,
    )
    assert "secret 'db' does not exist in namespace 'team-a'" in issue.message
    assert issue.hint is not None and "portway secret create db" in issue.hint
    assert app.store.list("Workload") == []


def test_apply_refuses_a_missing_key(app: App) -> None:
    secrets_svc.create(app, "team-a", "db", {"password": VALUE})
    with pytest.raises(InputError) as refused:
        apply(app, workload(key="user"))
    [issue] = refused.value.issues
    assert issue.path == "spec.secrets[0].key"
    assert "has no key 'user' (it has: password)" in issue.message


def test_create_list_and_the_store_holds_no_plaintext(app: App, tmp_path: Path) -> None:
    info = secrets_svc.create(app, "team-a", "db", {"password": VALUE, "user": b"app"})
    assert (info.keys, dict(info.sizes), info.version) == (
        ("password", "user"),
        {"password": len(VALUE), "user": 3},
        1,
    )
    with pytest.raises(AlreadyExistsError, match="--update"):
        secrets_svc.create(app, "team-a", "db", {"password": VALUE})
    [listed] = secrets_svc.list_secrets(app, "team-a")
    assert VALUE.decode() not in str(listed.to_json())
    assert secrets_svc.list_secrets(app, "team-b") == []
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert raw and VALUE not in raw


def test_a_changed_value_rolls_the_workloads_using_it(app: App) -> None:
    secrets_svc.create(app, "team-a", "db", {"password": VALUE})
    apply(app, workload())
    before = app.store.require("Workload", "team-a", "web")
    secrets_svc.create_or_update(app, "team-a", "db", {"password": VALUE})  # same value
    same = app.store.require("Workload", "team-a", "web")
    assert same.spec["templateHash"] == before.spec["templateHash"]
    info = secrets_svc.create_or_update(app, "team-a", "db", {"password": b"rotated"})
    after = app.store.require("Workload", "team-a", "web")
    assert info.version == 2
    assert after.spec["templateGeneration"] == before.spec["templateGeneration"] + 1
    assert after.spec["templateHash"] != before.spec["templateHash"]
    assert after.spec["templateHash"] != workload().spec.template_hash()
    # re-applying the same file keeps the rolled hash (no second roll)
    assert apply(app, workload()).outcome is svc.Outcome.UNCHANGED


def test_delete_is_refused_while_used_and_then_removes(app: App) -> None:
    secrets_svc.create(app, "team-a", "db", {"password": VALUE})
    apply(app, workload())
    with pytest.raises(InputError, match="used by workload"):
        secrets_svc.delete(app, "team-a", "db")
    svc.delete(app, "team-a", "web")
    secrets_svc.delete(app, "team-a", "db")
    assert secrets_svc.list_secrets(app, "team-a") == []
    with pytest.raises(NotFoundError):
        secrets_svc.delete(app, "team-a", "db")


def test_the_controller_resolves_files_and_opted_in_env(app: App) -> None:
    secrets_svc.create(app, "team-a", "db", {"password": VALUE})
    spec = workload().spec.model_copy(
        update={
            "security": workload().spec.security.model_copy(update={"user": "1000:2000"}),
            "secrets": [
                *workload().spec.secrets,
                workload()
                .spec.secrets[0]
                .model_copy(update={"mount_path": None, "env": "DB_PASSWORD"}),
            ],
        }
    )
    resolver = SecretResolver(app.store, app.settings.resolved_secret_key_file())
    delivery = resolver.deliver("team-a", spec)
    [file] = delivery.files
    assert (file.mount_path, file.data, file.mode, file.uid, file.gid) == (
        "/run/secrets/db",
        VALUE,
        0o400,
        1000,
        2000,
    )
    assert VALUE.decode() not in repr(file)
    assert delivery.env == {"DB_PASSWORD": VALUE.decode()}
    with pytest.raises(NotFoundError, match="team-b/db not found"):
        resolver.deliver("team-b", spec)
