"""Placement by free capacity, from the store's records: what workloads
placed on a target commit, sandbox overhead included, and the reason
counted when nothing fits."""

from __future__ import annotations

from typing import Any

from portway.controller.records import (
    CLUSTER_NAMESPACE,
    KIND_TARGET,
    KIND_WORKLOAD,
    TargetView,
    TierHandler,
    workload_spec_envelope,
)
from portway.controller.scheduling import (
    ask_for,
    placed_replicas,
    state_targets,
    target_state,
)
from portway.scheduler.fit import Capacity, Request, shortfall
from portway.scheduler.model import Decision
from portway.scheduler.state import ClusterState
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


def cluster(store: Store, skip: str | None = None) -> ClusterState:
    """The scheduler's snapshot, as the controller builds it."""
    found = views(store)
    return ClusterState(
        state_targets(found.values()), placed_replicas(store.list(KIND_WORKLOAD), found, skip)
    )


def decide(store: Store, wl: Workload) -> Decision:
    return cluster(store, wl.key).schedule(ask_for(wl, range(wl.spec.replicas)))


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
    assert cluster(store).used("a") == Request(memory=2 * 64 * MIB + 2 * 32 * MIB, cpu=1.0 + 0.02)
    assert target_state(views(store)["a"]).capacity == Capacity(memory=512 * MIB, cpu=2.0)


def test_capacity_given_on_the_target_overrides_the_fingerprint(store: Store) -> None:
    add_target(store, "a", 512)
    record = store.require(KIND_TARGET, CLUSTER_NAMESPACE, "a")
    store.update_spec(record, {**record.spec, "capacity": {"memory": 128 * MIB}})
    assert target_state(views(store)["a"]).capacity == Capacity(memory=128 * MIB, cpu=2.0)


def test_placement_skips_a_full_target_and_says_why_when_all_are(store: Store) -> None:
    add_target(store, "a", 256)
    add_target(store, "b", 1024)
    place(store, workload("big", resources={"memory": "200Mi"}), "a")
    wants = workload("next", replicas=2, resources={"memory": "64Mi"})  # a has 56Mi left
    decision = decide(store, wants)
    assert [p.target for p in decision.placed] == ["b", "b"]
    huge = decide(store, workload("huge", resources={"memory": "2Gi"}))
    assert huge.placed == () and huge.failure is not None
    assert huge.failure.message() == "0/2 targets available: 2 insufficient memory"


def test_sandbox_overhead_is_what_makes_a_target_full(store: Store) -> None:
    add_target(store, "small", 100)
    standard = decide(store, workload("plain", replicas=4))
    assert len(standard.placed) == 4
    boxed = decide(store, workload("boxed", replicas=4, isolation="sandboxed"))  # 4 x 32Mi
    assert len(boxed.placed) == 3 and boxed.unplaced == (3,)
    assert boxed.failure is not None
    assert boxed.failure.message() == "0/1 targets available: 1 insufficient memory"


def test_a_workload_does_not_count_against_itself(store: Store) -> None:
    add_target(store, "a", 128)
    wl = workload("web", resources={"memory": "100Mi"})
    place(store, wl, "a")
    assert cluster(store).used("a").memory == 100 * MIB
    assert cluster(store, skip=wl.key).used("a").memory == 0
    assert [p.target for p in decide(store, wl).placed] == ["a"]
