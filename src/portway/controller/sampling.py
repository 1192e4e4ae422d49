"""Resource samples of every running replica, taken on a period.

Prometheus scrapes read the latest pass from memory; no scrape ever calls an
engine, so many scrapers (or a fast scrape interval) cost the engines
nothing more. One pass reads the Replica records (what the controller last
observed: state, target, container, restarts, OOM kills), then asks each
healthy target for the stats of its running replicas: in one call when the
driver can (``BatchStatsSource``, e.g. Podman's stats of many containers),
otherwise one call per replica from a small bounded pool, so a pass over
hundreds of replicas neither takes a thread each nor runs them one by one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from portway.controller.records import KIND_REPLICA, ReplicaView, TargetView
from portway.controller.targets import TargetPool
from portway.drivers.base import BatchStatsSource, Driver, Handle, Stats, StatsSource
from portway.errors import PortwayError
from portway.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplerSettings:
    period_seconds: float = 15.0
    """Seconds between passes: Prometheus' default scrape interval, so each
    scrape sees a fresh sample and none is taken that nobody reads."""
    workers: int = 32
    """Stats calls in flight at once per pass, for drivers that answer one
    replica per call. Docker answers a one-shot stats call at its collector's
    next one-second tick (measured: 0.03 s for the first, ~1 s after), so a
    pass over N replicas takes about N / workers seconds while each call
    costs almost no CPU: 32 keep 200 replicas well inside a 15 s period."""


@dataclass(frozen=True)
class ReplicaSample:
    """One replica as the last pass saw it."""

    namespace: str
    workload: str
    index: int
    target: str  # "" while not placed
    engine: str  # the target's driver ("" while not placed)
    state: str  # ReplicaView.state: pending, created, running, exited, ...
    ready: bool
    restarts: int
    oom_kills: int
    stats: Stats | None  # None: not running, or its engine did not answer


@dataclass(frozen=True)
class Snapshot:
    replicas: tuple[ReplicaSample, ...]
    taken_at: float  # epoch seconds, when the pass ended
    duration_seconds: float  # how long the pass took
    failures: int  # stats calls that failed in this pass


class ReplicaSampler:
    def __init__(
        self,
        store: Store,
        targets: TargetPool,
        settings: SamplerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._targets = targets
        self.settings = settings or SamplerSettings()
        self._clock = clock
        self._pool = ThreadPoolExecutor(
            max_workers=self.settings.workers, thread_name_prefix="portway-stats"
        )
        self._latest: Snapshot | None = None

    @property
    def latest(self) -> Snapshot | None:
        """The last finished pass (None before the first)."""
        return self._latest

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def run(self, stop: threading.Event) -> None:
        """A pass at once, then one every period until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.sample()
            except PortwayError as exc:
                log.warning("replica stats: %s", exc)
            except Exception:
                log.exception("replica stats pass crashed; trying again next period")
            stop.wait(self.settings.period_seconds)

    def sample(self, namespace: str | None = None, workload: str | None = None) -> Snapshot:
        """One pass over the replica records (of ``namespace`` and ``workload``
        when given); returns (and keeps) the result."""
        started = time.monotonic()
        views = {v.name: v for v in self._targets.views()}
        listed = self._store.list(KIND_REPLICA, namespace)
        every = ((r.namespace, ReplicaView.from_status(r.status)) for r in listed)
        records = [(ns, v) for ns, v in every if workload is None or v.workload == workload]
        running: dict[str, list[Handle]] = defaultdict(list)
        for _, view in records:
            target = views.get(view.target)
            if view.state == "running" and view.container_id and target is not None:
                running[target.name].append(_handle(view, target))
        stats: dict[str, Stats] = {}
        failures = 0
        for name, handles in running.items():
            target = views[name]
            if not target.healthy:
                continue
            found, failed = self._stats_of(target, handles)
            stats.update(found)
            failures += failed
        samples = tuple(_sample(ns, view, views, stats) for ns, view in records)
        snapshot = Snapshot(samples, self._clock(), time.monotonic() - started, failures)
        self._latest = snapshot
        return snapshot

    def _stats_of(self, target: TargetView, handles: list[Handle]) -> tuple[dict[str, Stats], int]:
        """Stats by container id of ``handles`` on one target, and how many failed."""
        try:
            driver: Driver = self._targets.driver(target)
        except PortwayError as exc:
            log.info("replica stats of target %s: %s", target.name, exc)
            return {}, len(handles)
        if isinstance(driver, BatchStatsSource):
            try:
                found = driver.stats_many(handles)
            except PortwayError as exc:
                log.info("replica stats of target %s: %s", target.name, exc)
                return {}, len(handles)
            return found, len(handles) - len(found)
        if not isinstance(driver, StatsSource):
            return {}, 0  # the driver offers no stats: nothing failed
        source: StatsSource = driver
        results = self._pool.map(lambda h: _one(source, h), handles)
        found = {h.id: s for h, s in zip(handles, results, strict=True) if s is not None}
        return found, len(handles) - len(found)


def _one(source: StatsSource, handle: Handle) -> Stats | None:
    try:
        return source.stats(handle)
    except PortwayError as exc:
        # usually a replica that ended since its record was written
        log.debug("stats of %s: %s", handle.name, exc)
        return None


def _handle(view: ReplicaView, target: TargetView) -> Handle:
    return Handle(target.driver, target.name, view.container_id, view.container_name)


def _sample(
    namespace: str, view: ReplicaView, targets: dict[str, TargetView], stats: dict[str, Stats]
) -> ReplicaSample:
    target = targets.get(view.target)
    return ReplicaSample(
        namespace=namespace,
        workload=view.workload,
        index=view.index,
        target=view.target,
        engine=target.driver if target is not None else "",
        state=view.state,
        ready=view.ready,
        restarts=view.restart_count,
        oom_kills=view.replica_memory().oom_kills,
        stats=stats.get(view.container_id) if view.state == "running" else None,
    )


def running_samples(snapshot: Snapshot | None) -> Iterable[ReplicaSample]:
    """The replicas of ``snapshot`` that have a resource sample."""
    if snapshot is None:
        return ()
    return (s for s in snapshot.replicas if s.stats is not None)
