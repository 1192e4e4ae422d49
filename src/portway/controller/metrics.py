"""The controller's Prometheus metrics, in one registry (docs/metrics.md).

Histograms (reconcile passes, scheduling decisions) are observed where the
work happens; everything else is read when a scrape comes, from state the
controller keeps anyway: the latest replica sample (``sampling``) and the
work queue's length. Metric names and units are the same whatever the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from portway.controller.sampling import ReplicaSample, Snapshot, running_samples

#: a pass lists a workload's containers and may create or stop some: tens of
#: milliseconds idle, seconds when it waits on an engine
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: one placement decision is pure computation plus a store read, under a lock
SCHEDULER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: labels of every per-replica series
REPLICA_LABELS = ("namespace", "workload", "replica", "target", "engine")


@dataclass(frozen=True)
class QueueDepth:
    ready: int  # keys waiting for a worker now
    scheduled: int  # keys waiting for a later time (resyncs, backoffs)


class ControllerMetrics:
    """What the controller exposes; ``registry`` is what ``/metrics`` renders."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._reconcile = Histogram(
            "portway_reconcile_duration_seconds",
            "Duration of one reconcile pass over one workload, by outcome.",
            ["result"],
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self._scheduling = Histogram(
            "portway_scheduler_latency_seconds",
            "Time from asking for placements (lock wait included) to a decision.",
            buckets=SCHEDULER_BUCKETS,
            registry=self.registry,
        )
        self._queue: Callable[[], QueueDepth] | None = None
        self._snapshot: Callable[[], Snapshot | None] | None = None
        self.registry.register(_LiveCollector(self))

    def reconciled(self, seconds: float, result: str) -> None:
        """A pass ended: ``result`` is ok, retry (an error to back off from) or fenced."""
        self._reconcile.labels(result).observe(seconds)

    def scheduled(self, seconds: float) -> None:
        self._scheduling.observe(seconds)

    def watch_queue(self, depth: Callable[[], QueueDepth]) -> None:
        self._queue = depth

    def watch_replicas(self, latest: Callable[[], Snapshot | None]) -> None:
        self._snapshot = latest

    def snapshot(self) -> Snapshot | None:
        return None if self._snapshot is None else self._snapshot()

    def queue_depth(self) -> QueueDepth | None:
        return None if self._queue is None else self._queue()


class _LiveCollector(Collector):
    """Families made at scrape time from the latest sample and the queue."""

    def __init__(self, metrics: ControllerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        depth = self._metrics.queue_depth()
        if depth is not None:
            ready = GaugeMetricFamily(
                "portway_reconcile_queue_depth", "Workloads waiting for a reconcile worker now."
            )
            ready.add_metric([], depth.ready)
            yield ready
            later = GaugeMetricFamily(
                "portway_reconcile_queue_scheduled",
                "Workloads waiting for a later pass (periodic resync, retry backoff).",
            )
            later.add_metric([], depth.scheduled)
            yield later
        snapshot = self._metrics.snapshot()
        if snapshot is not None:
            yield from replica_families(snapshot)


def replica_families(snapshot: Snapshot) -> Iterator[Metric]:
    """Every replica series of one sampling pass."""
    cpu = CounterMetricFamily(
        "portway_replica_cpu_seconds", "CPU time used by the replica.", labels=REPLICA_LABELS
    )
    memory = GaugeMetricFamily(
        "portway_replica_memory_bytes",
        "Working-set memory of the replica (usage less inactive page cache).",
        labels=REPLICA_LABELS,
    )
    limit = GaugeMetricFamily(
        "portway_replica_memory_limit_bytes",
        "Memory limit of the replica (absent: none).",
        labels=REPLICA_LABELS,
    )
    pids = GaugeMetricFamily(
        "portway_replica_processes", "Processes in the replica.", labels=REPLICA_LABELS
    )
    received = CounterMetricFamily(
        "portway_replica_network_receive_bytes",
        "Bytes received on the replica's own interfaces (absent: host network or none).",
        labels=REPLICA_LABELS,
    )
    sent = CounterMetricFamily(
        "portway_replica_network_transmit_bytes",
        "Bytes sent on the replica's own interfaces (absent: host network or none).",
        labels=REPLICA_LABELS,
    )
    for sample in running_samples(snapshot):
        stats = sample.stats
        assert stats is not None  # running_samples yields sampled replicas only
        labels = _labels(sample)
        cpu.add_metric(labels, stats.cpu_seconds)
        memory.add_metric(labels, stats.memory_bytes)
        if stats.memory_limit_bytes is not None:
            limit.add_metric(labels, stats.memory_limit_bytes)
        if stats.pids is not None:
            pids.add_metric(labels, stats.pids)
        if stats.network_rx_bytes is not None:
            received.add_metric(labels, stats.network_rx_bytes)
        if stats.network_tx_bytes is not None:
            sent.add_metric(labels, stats.network_tx_bytes)
    yield from (cpu, memory, limit, pids, received, sent)
    yield from _record_families(snapshot)


def _record_families(snapshot: Snapshot) -> Iterator[Metric]:
    """Series from the Replica records: restarts, OOM kills, counts by state."""
    restarts = CounterMetricFamily(
        "portway_replica_restarts",
        "Restarts of the replica index by the controller.",
        labels=REPLICA_LABELS,
    )
    ooms = CounterMetricFamily(
        "portway_replica_oom_kills",
        "Exits of the replica index that the engine reported as out-of-memory kills.",
        labels=REPLICA_LABELS,
    )
    by_state: dict[tuple[str, str], int] = {}
    ready: dict[str, int] = {}
    for sample in snapshot.replicas:
        labels = _labels(sample)
        restarts.add_metric(labels, sample.restarts)
        ooms.add_metric(labels, sample.oom_kills)
        key = (sample.state, sample.target)
        by_state[key] = by_state.get(key, 0) + 1
        if sample.ready:
            ready[sample.target] = ready.get(sample.target, 0) + 1
    replicas = GaugeMetricFamily(
        "portway_replicas",
        "Replicas by state and target (target empty: not placed).",
        labels=("state", "target"),
    )
    for (state, target), count in sorted(by_state.items()):
        replicas.add_metric([state, target], count)
    ready_family = GaugeMetricFamily(
        "portway_replicas_ready", "Replicas running and ready, by target.", labels=("target",)
    )
    for target, count in sorted(ready.items()):
        ready_family.add_metric([target], count)
    taken = GaugeMetricFamily(
        "portway_replica_stats_timestamp_seconds", "When the last stats pass ended (epoch)."
    )
    taken.add_metric([], snapshot.taken_at)
    took = GaugeMetricFamily(
        "portway_replica_stats_duration_seconds", "How long the last stats pass took."
    )
    took.add_metric([], snapshot.duration_seconds)
    failed = GaugeMetricFamily(
        "portway_replica_stats_failures", "Stats calls that failed in the last pass."
    )
    failed.add_metric([], snapshot.failures)
    yield from (restarts, ooms, replicas, ready_family, taken, took, failed)


def _labels(sample: ReplicaSample) -> list[str]:
    return [sample.namespace, sample.workload, str(sample.index), sample.target, sample.engine]
