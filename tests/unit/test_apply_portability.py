"""apply's portability gate and plan's drift report, over two fake targets
whose drivers differ in what they declare (no engine needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes import FakeDriver
from tests.unit.app_support import offline_settings

from portway.capabilities import matrix as matrix_module
from portway.capabilities.matrix import DriverResults, FeatureResult, Matrix, Status
from portway.capabilities.planner import Verdict
from portway.capabilities.vocabulary import Feature
from portway.controller.records import CLUSTER_NAMESPACE, KIND_TARGET
from portway.drivers import registry
from portway.drivers.base import DriverCapabilities
from portway.errors import InputError
from portway.service import planning
from portway.service import workloads as svc
from portway.service.app import App
from portway.spec.model import Workload

NO_PIDS = frozenset(Feature) - {Feature.RESOURCES_PIDS}


class FullDriver(FakeDriver):
    name = "fullfake"

    def __init__(self, target: str, address: str) -> None:
        super().__init__(target)

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(frozenset(Feature))


class NoPidsDriver(FullDriver):
    name = "nopidsfake"

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(NO_PIDS)


def proven(driver: str, features: frozenset[Feature]) -> DriverResults:
    return DriverResults(
        driver,
        f"{driver} engine 1.0",
        "2026-11-23T00:00:00Z",
        {f: FeatureResult(Status.PASS, (f"case.{f}",)) for f in features},
    )


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    registry.register("fullfake", f"{__name__}:FullDriver")
    registry.register("nopidsfake", f"{__name__}:NoPidsDriver")
    kept = Matrix(
        {
            "fullfake": proven("fullfake", frozenset(Feature)),
            "nopidsfake": proven("nopidsfake", NO_PIDS),
        }
    )
    monkeypatch.setattr(matrix_module, "load_packaged", lambda: kept)
    monkeypatch.setattr(planning, "load_packaged", lambda: kept)
    monkeypatch.setattr(svc, "load_packaged", lambda: kept)
    application = App(offline_settings(tmp_path))
    for name, driver in (("full", "fullfake"), ("nopids", "nopidsfake")):
        application.store.create(
            KIND_TARGET,
            CLUSTER_NAMESPACE,
            name,
            {"driver": driver, "address": f"{driver}://x", "labels": {}},
            {"health": "healthy", "checkedAt": 1e12},
        )
    yield application
    application.close()


def workload(name: str, target: str, portability: str = "strict") -> Workload:
    return Workload.model_validate(
        {
            "apiVersion": "portway.dev/v1",
            "kind": "Workload",
            "metadata": {"name": name},
            "spec": {
                "image": "portway/busybox:latest",
                "resources": {"pids": 50, "memory": "32Mi"},
                "placement": {"targets": [target]},
                "portability": portability,
            },
        }
    )


def test_plan_shows_the_difference_between_targets(app: App) -> None:
    [result] = planning.plan_workloads(app, [(workload("w", "full"), "w.yaml", 1)])
    by_target = {t.target: t for t in result.targets}
    pids = {
        t: next(f for f in p.fields if f.path == "spec.resources.pids")
        for t, p in by_target.items()
    }
    assert pids["full"].verdict is Verdict.HONORED
    assert pids["nopids"].verdict is Verdict.DROPPED
    assert "cannot limit the number of processes" in pids["nopids"].reason
    memory = [f for p in by_target.values() for f in p.fields if f.path == "spec.resources.memory"]
    assert {f.verdict for f in memory} == {Verdict.HONORED}


def test_strict_apply_refuses_the_target_that_drops_a_field(app: App) -> None:
    item = svc.Sourced(workload("w", "nopids"), "w.yaml", 1)
    with pytest.raises(InputError) as refused:
        svc.apply(app, [item])
    [issue] = refused.value.issues
    assert issue.path == "spec.resources.pids"
    assert issue.file == "w.yaml" and issue.document == 1
    assert "dropped on target nopids (nopidsfake)" in issue.message
    assert issue.hint is not None and "lenient" in issue.hint
    assert app.store.list("Workload") == []  # nothing written


def test_strict_apply_accepts_the_target_that_honors_everything(app: App) -> None:
    [applied] = svc.apply(app, [svc.Sourced(workload("w", "full"), "w.yaml", 1)])
    assert applied.outcome is svc.Outcome.CREATED
    record = app.store.require("Workload", "default", "w")
    assert "degradations" not in record.spec


def test_lenient_apply_deploys_and_records_every_degradation(app: App) -> None:
    item = svc.Sourced(workload("w", "nopids", portability="lenient"), "w.yaml", 1)
    [applied] = svc.apply(app, [item])
    assert applied.outcome is svc.Outcome.CREATED
    record = app.store.require("Workload", "default", "w")
    assert record.spec["degradations"] == [
        {
            "path": "spec.resources.pids",
            "feature": "resources.pids",
            "verdict": "dropped",
            "reason": "the nopidsfake driver cannot limit the number of processes",
            "target": "nopids",
        }
    ]
    [event] = app.store.events("Workload", "default", "w")
    assert (event.reason, event.type, event.target) == ("DriftDegraded", "Warning", "nopids")
    assert event.message == "applied in lenient mode; on nopids: spec.resources.pids dropped"
    svc.apply(app, [item])  # unchanged: no new decision, no new event
    assert len(app.store.events("Workload", "default", "w")) == 1


def test_plan_for_an_unknown_target_names_the_known_ones(app: App) -> None:
    with pytest.raises(InputError, match="no target named nowhere; known targets: full, nopids"):
        planning.plan_workloads(app, [(workload("w", "full"), "w.yaml", 1)], ["nowhere"])
