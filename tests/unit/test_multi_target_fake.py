"""Per-replica placement through the Reconciler, with in-memory fake engines
and a real store: spread over labels, failover after the grace period,
fencing of stale copies, drain with a surge, and priority preemption.

The clock is fake; target health is written to the store the way the
controller's health checks write it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.fakes import FakeClock, FakeDriver

from portway.controller.probes import Prober
from portway.controller.reconciler import Reconciler, Settings
from portway.controller.records import (
    CLUSTER_NAMESPACE,
    KIND_REPLICA,
    KIND_TARGET,
    KIND_WORKLOAD,
    template_generation_of,
    template_hash_of,
    workload_spec_envelope,
)
from portway.controller.targets import TargetPool
from portway.drivers.base import ReplicaState
from portway.spec.model import Workload
from portway.store import Store

NS = "ns"
GRACE = 2.0
MIB = 1024 * 1024


@dataclass
class Cluster:
    store: Store
    clock: FakeClock
    engines: dict[str, FakeDriver]
    reconciler: Reconciler
    woken: list[str]

    def add_target(self, name: str, labels: dict[str, str], **spec: Any) -> None:
        self.store.create(
            KIND_TARGET,
            CLUSTER_NAMESPACE,
            name,
            {"driver": "fake", "address": f"fake://{name}", "labels": labels, **spec},
            {"health": "healthy", "healthSince": self.clock()},
        )

    def set_target(self, name: str, **spec: Any) -> None:
        record = self.store.require(KIND_TARGET, CLUSTER_NAMESPACE, name)
        self.store.update_spec(record, {**record.spec, **spec})

    def set_health(self, name: str, healthy: bool) -> None:
        record = self.store.require(KIND_TARGET, CLUSTER_NAMESPACE, name)
        health = "healthy" if healthy else "unavailable"
        self.store.update_status(
            record, {**record.status, "health": health, "healthSince": self.clock()}
        )
        self.engines[name].outage(not healthy)

    def apply(self, name: str, **spec: Any) -> None:
        workload = Workload.model_validate(
            {
                "apiVersion": "portway.dev/v1",
                "kind": "Workload",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"image": "portway/app:1", **spec},
            }
        )
        template_hash = workload.spec.template_hash()
        existing = self.store.get(KIND_WORKLOAD, NS, name)
        if existing is None:
            envelope = workload_spec_envelope(workload, 1, template_hash)
            self.store.create(KIND_WORKLOAD, NS, name, envelope)
            return
        generation = template_generation_of(existing) + (
            template_hash_of(existing) != template_hash
        )
        self.store.update_spec(
            existing, workload_spec_envelope(workload, generation, template_hash)
        )

    def delete(self, name: str) -> None:
        self.store.mark_deleting(self.store.require(KIND_WORKLOAD, NS, name))

    def settle(self, *names: str, passes: int = 12, advance: float = 0.5) -> None:
        """Reconcile every named workload (and whatever they woke) a few times."""
        for _ in range(passes):
            keys = [f"{NS}/{n}" for n in names] + self.woken
            self.woken.clear()
            for key in dict.fromkeys(keys):
                # a failed pass is retried, as the work queue does
                with contextlib.suppress(Exception):
                    self.reconciler.reconcile(key)
            self.clock.advance(advance)

    def running(self, workload: str) -> dict[int, list[str]]:
        """index -> targets holding a running copy of it."""
        found: dict[int, list[str]] = {}
        for target, engine in self.engines.items():
            for c in engine.containers():
                if c.labels.get("portway.dev/workload") != workload:
                    continue
                if c.labels.get("portway.dev/target") != target:
                    continue  # a shared engine: that copy belongs to the other target
                if c.state is ReplicaState.RUNNING:
                    found.setdefault(c.index, []).append(target)
        return found

    def status(self, name: str) -> dict[str, Any]:
        record = self.store.get(KIND_WORKLOAD, NS, name)
        return {} if record is None else dict(record.status)

    def events(self, name: str, reason: str) -> list[str]:
        return [
            e.message
            for e in self.store.events(KIND_WORKLOAD, NS, name, limit=10_000)
            if e.reason == reason
        ]

    def replica_targets(self, workload: str) -> dict[int, str]:
        return {
            int(r.status["index"]): str(r.status["target"])
            for r in self.store.list(KIND_REPLICA, NS)
            if r.status.get("workload") == workload
        }


@pytest.fixture
def cluster(store: Store) -> Iterator[Cluster]:
    clock = FakeClock()
    engines = {name: FakeDriver(name, clock=clock) for name in ("a", "b", "c")}
    pool = TargetPool(store, opener=lambda name, driver, address: engines[name])
    woken: list[str] = []
    reconciler = Reconciler(
        store,
        pool,
        Prober(clock),
        settings=Settings(stop_timeout=0, action_workers=2, failover_grace_seconds=GRACE),
        clock=clock,
        notify=woken.append,
    )
    found = Cluster(store, clock, engines, reconciler, woken)
    found.add_target("a", {"zone": "za", "region": "eu"})
    found.add_target("b", {"zone": "zb", "region": "eu"})
    try:
        yield found
    finally:
        reconciler.close()


SPREAD = {"placement": {"spread": [{"topologyKey": "zone", "maxSkew": 1}]}}


def test_replicas_spread_over_zones(cluster: Cluster) -> None:
    cluster.apply("web", replicas=4, **SPREAD)
    cluster.settle("web")
    running = cluster.running("web")
    assert sorted(running) == [0, 1, 2, 3]
    per_target = sorted(t for targets in running.values() for t in targets)
    assert per_target == ["a", "a", "b", "b"]
    assert cluster.status("web")["phase"] == "Ready"
    assert cluster.status("web")["target"] == "a,b"
    reasons = [r.status["placement_reason"] for r in cluster.store.list(KIND_REPLICA, NS)]
    assert all(reasons), reasons
    assert len(cluster.events("web", "Placed")) == 4


def test_without_spread_a_workload_stays_on_one_target(cluster: Cluster) -> None:
    cluster.apply("web", replicas=3)
    cluster.settle("web")
    assert len({t for ts in cluster.running("web").values() for t in ts}) == 1


def test_failover_waits_for_the_grace_period_then_moves_and_fences(cluster: Cluster) -> None:
    cluster.apply("web", replicas=2, **SPREAD)
    cluster.settle("web")
    on_b = [i for i, ts in cluster.running("web").items() if ts == ["b"]]
    assert len(on_b) == 1

    cluster.set_health("b", False)  # the engine died; its container keeps running
    cluster.settle("web", passes=2, advance=0.5)  # 1 s: within the grace period
    assert cluster.replica_targets("web")[on_b[0]] == "b"
    assert "target b unreachable" in cluster.status("web")["message"]

    cluster.settle("web", passes=4, advance=0.5)  # past the grace period
    assert cluster.replica_targets("web")[on_b[0]] == "a"
    # b's copy still runs (its engine is down, so nobody can stop it): two copies
    assert cluster.running("web")[on_b[0]] == ["a", "b"]
    failed_over = cluster.events("web", "FailedOver")
    assert failed_over and "unhealthy for" in failed_over[0]
    assert cluster.status("web")["staleTargets"] == {"b": "fenced"}

    # b returns with the old copy still running: it is removed, never adopted
    cluster.set_health("b", True)
    stale = [c for c in cluster.engines["b"].containers() if c.state is ReplicaState.RUNNING]
    assert len(stale) == 1
    cluster.settle("web", passes=3)
    assert cluster.engines["b"].containers() == []
    assert cluster.running("web") == {0: ["a"], 1: ["a"]}
    assert cluster.status("web")["staleTargets"] == {}
    assert any("Fenced" in m for m in cluster.events("web", "Removed"))


def test_failover_does_not_happen_without_room_elsewhere(cluster: Cluster) -> None:
    cluster.apply("web", replicas=1, placement={"targets": ["b"]})
    cluster.settle("web")
    cluster.set_health("b", False)
    cluster.settle("web", passes=8)
    assert cluster.replica_targets("web") == {0: "b"}
    assert "not placed" in cluster.status("web")["message"]


def test_drain_moves_replicas_with_a_surge(cluster: Cluster) -> None:
    cluster.apply("web", replicas=2, placement={"targetSelector": {"region": "eu"}})
    cluster.settle("web")
    source = cluster.replica_targets("web")[0]
    other = "b" if source == "a" else "a"
    cluster.set_target(source, draining=True)
    lowest = 2
    for _ in range(12):
        cluster.settle("web", passes=1)
        lowest = min(lowest, len(cluster.running("web")))
    assert lowest == 2  # never fewer running indices than desired
    assert cluster.replica_targets("web") == {0: other, 1: other}
    assert cluster.engines[source].containers() == []
    assert len(cluster.events("web", "Moved")) == 2


def test_two_targets_on_one_engine_do_not_see_each_others_replicas(store: Store) -> None:
    clock = FakeClock()
    shared = FakeDriver("a", clock=clock)
    other = FakeDriver("b", clock=clock)
    # one engine, two targets: each driver names its own target, both see
    # every container (as two docker targets on one socket do)
    other._containers, other._ids, other._lock = shared._containers, shared._ids, shared._lock
    engines = {"a": shared, "b": other}
    pool = TargetPool(store, opener=lambda name, driver, address: engines[name])
    reconciler = Reconciler(
        store, pool, Prober(clock), settings=Settings(stop_timeout=0), clock=clock
    )
    cluster = Cluster(store, clock, engines, reconciler, [])
    cluster.add_target("a", {"zone": "za"})
    cluster.add_target("b", {"zone": "zb"})
    try:
        cluster.apply("web", replicas=2, **SPREAD)
        cluster.settle("web")
        assert len(shared.containers()) == 2
        labels = sorted(c.labels["portway.dev/target"] for c in shared.containers())
        assert labels == ["a", "b"]
        assert cluster.status("web")["phase"] == "Ready"
    finally:
        reconciler.close()


def test_high_priority_preempts_low_and_low_returns_when_room_appears(cluster: Cluster) -> None:
    cluster.set_target("a", capacity={"memory": 256 * MIB, "cpu": 4.0})
    only_a = {"targets": ["a"]}
    cluster.apply(
        "low",
        replicas=3,
        resources={"memory": "64Mi"},
        placement={**only_a, "priority": 10},
    )
    cluster.settle("low")
    assert len(cluster.running("low")) == 3

    cluster.apply(
        "high",
        replicas=2,
        resources={"memory": "100Mi"},
        placement={**only_a, "priority": 100},
    )
    cluster.settle("high", "low")
    assert len(cluster.running("high")) == 2
    # each 100Mi replica of high evicts as few 64Mi replicas as it needs: all three go,
    # and 56Mi is left, too little for any of them to come back
    assert cluster.running("low") == {}
    assert cluster.events("low", "Preempted")
    assert cluster.events("high", "Preempting")
    assert "insufficient memory" in cluster.status("low")["message"]

    cluster.delete("high")
    cluster.settle("high", "low", passes=20)
    assert len(cluster.running("low")) == 3


def test_never_preempting_workload_waits(cluster: Cluster) -> None:
    cluster.set_target("a", capacity={"memory": 128 * MIB})
    only_a = {"targets": ["a"]}
    cluster.apply("low", replicas=2, resources={"memory": "64Mi"}, placement=only_a)
    cluster.settle("low")
    cluster.apply(
        "high",
        replicas=1,
        resources={"memory": "64Mi"},
        placement={**only_a, "priority": 100, "preemptionPolicy": "Never"},
    )
    cluster.settle("high", "low")
    assert len(cluster.running("low")) == 2
    assert cluster.running("high") == {}
    assert cluster.status("high")["phase"] == "Pending"
    assert "insufficient memory" in cluster.status("high")["message"]


def test_an_index_with_a_per_replica_volume_waits_for_its_target(cluster: Cluster) -> None:
    volumes = [{"name": "data", "type": "named", "mountPath": "/d", "perReplica": True}]
    cluster.apply("db", replicas=2, volumes=volumes, **SPREAD)
    cluster.settle("db")
    homes = cluster.status("db")["volumeHomes"]
    assert sorted(homes.values()) == ["a", "b"]
    on_b = int(next(i for i, t in homes.items() if t == "b"))

    cluster.set_health("b", False)
    cluster.settle("db", passes=8)  # well past the grace period: a would have room
    assert cluster.replica_targets("db")[on_b] == "b"  # not moved to start on an empty volume
    message = cluster.status("db")["message"]
    assert f"hold no volume db-data-{on_b} (it lives on b)" in message, message

    cluster.set_health("b", True)
    cluster.settle("db", passes=4)
    assert cluster.running("db")[on_b] == ["b"]
    assert cluster.status("db")["volumeHomes"] == homes
