"""Placement by free capacity: what workloads placed on a target commit,
sandbox overhead included, and the reason counted when nothing fits."""

from __future__ import annotations

from typing import Any

from tests.fakes import FakeDriver

from portway.controller.capacity import candidates, committed, total_of
from portway.controller.records import (
    CLUSTER_NAMESPACE,
    KIND_TARGET,
    KIND_WORKLOAD,
    TargetView,
    TierHandler,
    workload_spec_envelope,
)
from portway.controller.targets import TargetPool
from portway.scheduler.fit import Capacity, Request, shortfall
from portway.scheduler.placement import Placed, Unplaceable, choose_target
from portway.spec.model import Workload, WorkloadSpec
from portway.store import Store

MIB = 1024 * 1024
SANDBOX = {"handler": "runsc", "overheadMemory": 32 * MIB, "overheadCpu": 0.01}
STANDARD = {"handler": "runc", "overheadMemory": 0, "overheadCpu": 0.0}


def workload(name: str, **spec: Any) -> Workload:
    return Workload.model_validate(
        {
            "apiVersion": "portway.dev/v1",
            "kind": "Workload",
            "metadata": {"name": name},
            "spec": {"image": "portway/busybox:latest", **spec},
        }
    )


def add_target(store: Store, name: str, memory_mib: int, cpus: int = 2) -> None:
    record = store.create(
        KIND_TARGET, CLUSTER_NAMESPACE, name, {"driver": "fake", "address": "fake://", "labels": {}}
    )
    store.update_status(
        record,
        {
            "health": "healthy",
            "attributes": {"memory": str(memory_mib * MIB), "cpus": str(cpus)},
            "tiers": {"standard": STANDARD, "sandboxed": SANDBOX},
            "checkedAt": 0.0,
        },
    )


def place(store: Store, wl: Workload, target: str) -> None:
    record = store.create(
        KIND_WORKLOAD,
        wl.metadata.namespace,
        wl.metadata.name,
        workload_spec_envelope(wl, 1, wl.spec.template_hash()),
    )
    store.update_status(record, {"target": target})


def views(store: Store) -> dict[str, TargetView]:
    return {r.name: TargetView.from_record(r) for r in store.list(KIND_TARGET, CLUSTER_NAMESPACE)}


def pool(store: Store) -> TargetPool:
    return TargetPool(store, opener=lambda name, _driver, _address: FakeDriver(name))


def test_shortfall_counts_the_tier_overhead_per_replica() -> None:
    spec = WorkloadSpec.model_validate(
        {"image": "portway/busybox:latest", "isolation": "sandboxed", "replicas": 3}
    )
    runsc = TierHandler("runsc", 32 * MIB, 0.01)
    assert shortfall(spec, runsc, Capacity(memory=96 * MIB)) is None
    assert shortfall(spec, runsc, Capacity(memory=95 * MIB)) == "insufficient memory"
    assert shortfall(spec, None, Capacity(memory=1)) is None  # no limit, no overhead
    assert shortfall(spec, runsc, Capacity(memory=None, cpu=0.02)) == "insufficient cpu"


def test_committed_sums_limits_and_overheads_of_what_a_target_runs(store: Store) -> None:
    add_target(store, "a", 512)
    place(store, workload("web", replicas=2, resources={"memory": "64Mi", "cpu": 0.5}), "a")
    place(store, workload("box", replicas=2, isolation="sandboxed"), "a")
    place(store, workload("free"), "a")  # no limits, standard: commits nothing
    used = committed(store.list(KIND_WORKLOAD), views(store))
    assert used["a"] == Request(memory=2 * 64 * MIB + 2 * 32 * MIB, cpu=1.0 + 0.02)
    assert total_of(views(store)["a"]) == Capacity(memory=512 * MIB, cpu=2.0)


def test_placement_skips_a_full_target_and_says_why_when_all_are(store: Store) -> None:
    add_target(store, "a", 256)
    add_target(store, "b", 1024)
    place(store, workload("big", resources={"memory": "200Mi"}), "a")
    wants = workload("next", replicas=2, resources={"memory": "64Mi"})  # 128Mi; a has 56Mi left
    found = candidates(store, pool(store), views(store), wants)
    assert {c.name: c.shortfall for c in found} == {"a": "insufficient memory", "b": None}
    chosen = choose_target(found, selector={}, names=[], isolation="standard", current=None)
    assert chosen == Placed("b")
    huge = workload("huge", resources={"memory": "2Gi"})
    none = choose_target(
        candidates(store, pool(store), views(store), huge),
        selector={},
        names=[],
        isolation="standard",
        current=None,
    )
    assert isinstance(none, Unplaceable)
    assert none.message() == "0/2 targets available: 2 insufficient memory"


def test_sandbox_overhead_is_what_makes_a_target_full(store: Store) -> None:
    add_target(store, "small", 100)
    standard = workload("plain", replicas=4)
    boxed = workload("boxed", replicas=4, isolation="sandboxed")  # 4 x 32Mi > 100Mi
    assert candidates(store, pool(store), views(store), standard)[0].shortfall is None
    assert candidates(store, pool(store), views(store), boxed)[0].shortfall == (
        "insufficient memory"
    )


def test_a_workload_does_not_count_against_itself(store: Store) -> None:
    add_target(store, "a", 128)
    wl = workload("web", resources={"memory": "100Mi"})
    place(store, wl, "a")
    [candidate] = candidates(store, pool(store), views(store), wl)
    assert candidate.shortfall is None
