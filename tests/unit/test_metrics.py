"""Metrics without an engine: the replica sampler over fake drivers with
stats, the exposition text as Prometheus parses it, the OOM-kill count the
reconciler keeps, queue depth, and the reconcile/scheduler histograms."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.fakes import FakeClock, FakeDriver

from portway.controller.metrics import ControllerMetrics, QueueDepth
from portway.controller.probes import Prober
from portway.controller.queue import WorkQueue
from portway.controller.reconciler import Reconciler, Settings
from portway.controller.records import (
    CLUSTER_NAMESPACE,
    KIND_TARGET,
    KIND_WORKLOAD,
    workload_spec_envelope,
)
from portway.controller.sampling import ReplicaSampler
from portway.controller.targets import TargetPool
from portway.drivers.base import Handle, Stats
from portway.errors import ReplicaGoneError
from portway.spec.model import Workload
from portway.store import Store

NS = "team"
MIB = 1024 * 1024


class StatsFake(FakeDriver):
    """The fake engine, with per-replica stats derived from the container id."""

    def stats(self, handle: Handle) -> Stats:
        container = self._get("stats", handle)
        n = int(container.id.removeprefix("c"))
        return Stats(
            cpu_seconds=1.5 * n,
            memory_bytes=n * MIB,
            memory_limit_bytes=64 * MIB,
            pids=n,
            network_rx_bytes=1000 * n,
            network_tx_bytes=None,  # e.g. a replica on the host's network
        )


class BatchFake(StatsFake):
    """A fake whose engine samples many replicas in one call (as Podman's)."""

    def __init__(self, target: str, **kw: Any) -> None:
        super().__init__(target, **kw)
        self.batches: list[int] = []

    def stats_many(self, handles: list[Handle]) -> dict[str, Stats]:
        self.batches.append(len(handles))
        found: dict[str, Stats] = {}
        for handle in handles:
            try:
                found[handle.id] = self.stats(handle)
            except ReplicaGoneError:
                continue
        return found


class Env:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = FakeClock()
        self.engines: dict[str, FakeDriver] = {
            "one": StatsFake("one", clock=self.clock),
            "two": BatchFake("two", clock=self.clock),
        }
        for name in self.engines:
            store.create(
                KIND_TARGET,
                CLUSTER_NAMESPACE,
                name,
                {"driver": "fake", "address": f"fake://{name}", "labels": {}},
                {"health": "healthy"},
            )
        self.pool = TargetPool(store, opener=lambda name, driver, address: self.engines[name])
        self.metrics = ControllerMetrics()
        self.reconciler = Reconciler(
            store,
            self.pool,
            Prober(self.clock),
            settings=Settings(stop_timeout=0, action_workers=2),
            clock=self.clock,
            on_scheduled=self.metrics.scheduled,
        )
        self.sampler = ReplicaSampler(store, self.pool)
        self.metrics.watch_replicas(lambda: self.sampler.latest)

    def apply(self, name: str, target: str, replicas: int, **spec: Any) -> None:
        workload = Workload.model_validate(
            {
                "apiVersion": "portway.dev/v1",
                "kind": "Workload",
                "metadata": {"name": name, "namespace": NS},
                "spec": {
                    "image": "portway/app:1",
                    "replicas": replicas,
                    "placement": {"targets": [target]},
                    **spec,
                },
            }
        )
        envelope = workload_spec_envelope(workload, 1, workload.spec.template_hash())
        self.store.create(KIND_WORKLOAD, NS, name, envelope)
        for _ in range(4):
            self.reconciler.reconcile(f"{NS}/{name}")

    def samples(self) -> list[Sample]:
        text = generate_latest(self.metrics.registry).decode()
        return [s for family in text_string_to_metric_families(text) for s in family.samples]


@pytest.fixture
def env(store: Store) -> Iterator[Env]:
    made = Env(store)
    yield made
    made.reconciler.close()
    made.sampler.close()


def _of(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_every_running_replica_has_the_same_series_in_the_same_units(env: Env) -> None:
    env.apply("web", "one", 2)
    env.apply("api", "two", 1)
    env.sampler.sample()
    samples = env.samples()
    for workload, target, count in (("web", "one", 2), ("api", "two", 1)):
        memory = _of(samples, "portway_replica_memory_bytes", workload=workload)
        assert len(memory) == count
        for sample in memory:
            assert sample.labels["target"] == target
            assert sample.labels["engine"] == "fake"
            assert sample.labels["namespace"] == NS
            assert sample.value % MIB == 0 and sample.value > 0
    [web0] = _of(samples, "portway_replica_cpu_seconds_total", workload="web", replica="0")
    [rx] = _of(samples, "portway_replica_network_receive_bytes_total", workload="web", replica="0")
    [limit] = _of(samples, "portway_replica_memory_limit_bytes", workload="web", replica="0")
    assert web0.value > 0 and rx.value == 1000 * web0.value / 1.5 and limit.value == 64 * MIB
    # a counter the engine does not have is left out, not reported as 0
    assert _of(samples, "portway_replica_network_transmit_bytes_total") == []
    counts = {
        (s.labels["state"], s.labels["target"]): s.value for s in _of(samples, "portway_replicas")
    }
    assert counts == {("running", "one"): 2, ("running", "two"): 1}
    # the batching engine was asked once for its replicas, the other once per replica
    two = env.engines["two"]
    assert isinstance(two, BatchFake) and two.batches == [1]
    assert [op for op, _ in env.engines["one"].calls].count("stats") == 2


def test_an_oom_kill_is_counted_once_and_restarts_are_exposed(env: Env) -> None:
    env.apply("hog", "one", 1, restart={"policy": "on-failure", "initialBackoffSeconds": 1})
    engine = env.engines["one"]
    [container] = engine.containers()
    engine.oom(container)
    env.reconciler.reconcile(f"{NS}/hog")
    env.reconciler.reconcile(f"{NS}/hog")  # the same exit seen again: not counted again
    env.clock.advance(1.0)
    env.reconciler.reconcile(f"{NS}/hog")  # restarted
    env.sampler.sample()
    samples = env.samples()
    [oom] = _of(samples, "portway_replica_oom_kills_total", workload="hog")
    [restarts] = _of(samples, "portway_replica_restarts_total", workload="hog")
    assert (oom.value, restarts.value) == (1, 1)
    engine.crash(container, exit_code=3)  # an ordinary crash is no OOM kill
    env.reconciler.reconcile(f"{NS}/hog")
    env.sampler.sample()
    [oom] = _of(env.samples(), "portway_replica_oom_kills_total", workload="hog")
    assert oom.value == 1


def test_a_replica_gone_between_record_and_sample_is_left_out(env: Env) -> None:
    env.apply("web", "one", 2)
    engine = env.engines["one"]
    engine.destroy(engine._handle(engine.containers()[0]))
    snapshot = env.sampler.sample()
    assert snapshot.failures == 1
    assert len(_of(env.samples(), "portway_replica_memory_bytes", workload="web")) == 1
    [failed] = _of(env.samples(), "portway_replica_stats_failures")
    assert failed.value == 1


def test_an_unhealthy_target_is_not_asked(env: Env) -> None:
    env.apply("web", "one", 1)
    record = env.store.require(KIND_TARGET, CLUSTER_NAMESPACE, "one")
    env.store.update_status(record, {**record.status, "health": "unhealthy"})
    env.engines["one"].calls.clear()
    env.sampler.sample()
    assert not [op for op, _ in env.engines["one"].calls if op == "stats"]
    assert _of(env.samples(), "portway_replicas", state="running", target="one")


def test_reconcile_and_scheduler_histograms_and_queue_depth() -> None:
    metrics = ControllerMetrics()
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    metrics.watch_queue(lambda: QueueDepth(*queue.depth()))
    queue.add("a/x")
    queue.add("a/y")
    queue.add_after("a/z", 30)
    metrics.reconciled(0.02, "ok")
    metrics.reconciled(3.0, "retry")
    metrics.scheduled(0.0007)
    text = generate_latest(metrics.registry).decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert _of(samples, "portway_reconcile_queue_depth")[0].value == 2
    assert _of(samples, "portway_reconcile_queue_scheduled")[0].value == 1
    [ok] = _of(samples, "portway_reconcile_duration_seconds_count", result="ok")
    [fast] = _of(samples, "portway_reconcile_duration_seconds_bucket", result="ok", le="0.025")
    [slow] = _of(samples, "portway_reconcile_duration_seconds_bucket", result="retry", le="2.5")
    assert (ok.value, fast.value, slow.value) == (1, 1, 0)
    [scheduled] = _of(samples, "portway_scheduler_latency_seconds_bucket", le="0.001")
    assert scheduled.value == 1
    # no sample yet: no replica series, and nothing fails
    assert not _of(samples, "portway_replicas")


def test_the_scheduler_histogram_counts_placement_decisions(env: Env) -> None:
    env.apply("web", "one", 2)
    samples = env.samples()
    [count] = _of(samples, "portway_scheduler_latency_seconds_count")
    assert count.value >= 1
