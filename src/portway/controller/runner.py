"""The controller process: keeps every workload at its desired state.

- One active controller per store, by lease (a second one waits or, for
  ``apply``, defers to the running one). A lease left by a process that died
  on this host is taken over at once rather than after its expiry.
- Fencing: the reconciler writes through ``store.fenced``, so each of its
  writes commits only while this controller still holds the lease with the
  fencing token it acquired; a stale leader's first write fails with
  ``FencedError`` and the controller stops. It also stops reconciling once
  its own clock says the lease may have expired unrenewed.
- Workers take workload keys from a ``WorkQueue`` and reconcile them.
- Engine events only wake keys early; a periodic resync re-examines every
  workload anyway, because events can be missed (level-triggered).
- Targets are fingerprinted periodically; a target coming back wakes all
  workloads.
- Garbage collection removes owned containers whose workload no longer
  exists in the store, after a grace period, so that a store restored from an
  older backup (or one shared by a second installation) does not wipe work
  that may still be claimed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from portway.controller import services
from portway.controller.metrics import ControllerMetrics, QueueDepth
from portway.controller.probes import Prober
from portway.controller.reconciler import ReconcileError, Reconciler
from portway.controller.reconciler import Settings as ReconcileSettings
from portway.controller.records import KIND_WORKLOAD, TargetView
from portway.controller.sampling import ReplicaSampler, SamplerSettings
from portway.controller.targets import TargetPool
from portway.drivers.base import (
    LABEL_CLUSTER,
    LABEL_NAMESPACE,
    LABEL_TARGET,
    LABEL_WORKLOAD,
    EventSource,
    Health,
)
from portway.errors import InputError, PortwayError, TemporaryDriverError
from portway.ingress import IngressManager
from portway.ingress.model import IngressState
from portway.store import Fence, FencedError, Store

log = logging.getLogger(__name__)

LEASE_NAME = "controller"
#: how often the ingress looks for changes (it skips when nothing was committed)
INGRESS_TICK_SECONDS = 0.25


@dataclass(frozen=True)
class ControllerSettings:
    workers: int = 4
    """Workloads reconciled at once (each also runs engine calls in parallel)."""
    resync_seconds: float = 30.0
    """Every workload is re-examined at least this often, events or not. Engine
    events and spec changes wake workloads at once; this only catches what
    they miss, and it is most of the controller's idle cost."""
    health_seconds: float = 1.0
    """How often each target is checked (a ping; a full fingerprint each
    minute). An engine's event stream ending also triggers a check at once."""
    failover_grace_seconds: float = 2.0
    """A target unhealthy this long has its replicas placed elsewhere."""
    gc_seconds: float = 60.0
    """How often owned-but-unwanted containers are looked for."""
    gc_grace_seconds: float = 30.0
    """An orphan must be at least this old before it is removed."""
    events_ttl_seconds: float = 3600.0
    """Events last seen longer ago than this are pruned: an hour, as Kubernetes
    keeps them (repeats refresh an event, so an ongoing problem stays)."""
    events_max: int = 10_000
    """At most this many events are kept (the newest), whatever their age, so
    that a burst cannot grow the store without bound."""
    events_prune_seconds: float = 60.0
    """How often old events are pruned."""
    lease_ttl: float = 15.0
    """A controller that stops renewing loses the lease after this long
    (seconds; it renews every third of it). The failover time of a crashed
    server on another host is about this long; 5 suits a test."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ControllerSettings:
        """Defaults, overridden by ``PORTWAY_CONTROLLER_<FIELD>`` variables
        (e.g. ``PORTWAY_CONTROLLER_GC_GRACE_SECONDS=5``)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            name = f"PORTWAY_CONTROLLER_{item.name.upper()}"
            if name not in environ:
                continue
            kind = int if item.type in ("int", int) else float
            try:
                value = kind(environ[name])
            except ValueError:
                expected = "a whole number" if kind is int else "a number"
                raise InputError(f"{name}={environ[name]!r}: expected {expected}") from None
            if value <= 0:
                raise InputError(f"{name}={environ[name]!r}: must be more than 0")
            values[item.name] = value
        return cls(**values)


def new_holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Controller:
    def __init__(
        self,
        store: Store,
        *,
        settings: ControllerSettings | None = None,
        reconcile_settings: ReconcileSettings | None = None,
        targets: TargetPool | None = None,
        clock: Callable[[], float] = time.time,
        ingress_home: Path | None = None,
        metrics: ControllerMetrics | None = None,
        sampler_settings: SamplerSettings | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or ControllerSettings.from_env()
        self.targets = targets or TargetPool(store)
        self.holder = new_holder_id()
        #: fencing token of the lease while held (None: not the leader)
        self._lease_token: int | None = None
        #: monotonic time until which the lease is surely still ours
        self._lease_valid_until = 0.0
        #: whether this controller ever held the lease (then losing it fences it)
        self._led = False
        self._clock = clock
        self._prober = Prober(clock)
        self._reconcile_settings = replace(
            reconcile_settings or ReconcileSettings(),
            failover_grace_seconds=self.settings.failover_grace_seconds,
        )
        #: the reconciler's (and garbage collector's) writes are fenced by the lease
        self.fenced_store = store.fenced(self._fence)
        #: portway home; the managed HAProxy lives under home/ingress (None: no ingress)
        self._ingress_home = ingress_home
        self._ingress: IngressManager | None = None
        #: Prometheus metrics (None: none are kept, e.g. a one-off ``apply``)
        self.metrics = metrics
        self._sampler: ReplicaSampler | None = None
        if metrics is not None:
            self._sampler = ReplicaSampler(store, self.targets, sampler_settings)
            sampler = self._sampler
            # a controller that lost the lease stops sampling: show no stale replicas
            metrics.watch_replicas(lambda: sampler.latest if self.holds_lease() else None)
            metrics.watch_queue(lambda: QueueDepth(*self.queue.depth()))
        #: passes numbered in the order they start; per workload key, the number
        #: of its last pass that ended without error (see ``passed_since``)
        self._pass_lock = threading.Lock()
        self._passes_started = 0
        self._last_good_pass: dict[str, int] = {}
        self._new_term()

    def _new_term(self) -> None:
        """Fresh queue, reconciler and threads for a (next) term as leader:
        a controller that lost the lease stands by again with these."""
        from portway.controller.queue import WorkQueue

        self.queue = WorkQueue()
        self.reconciler = Reconciler(
            self.fenced_store,
            self.targets,
            self._prober,
            settings=self._reconcile_settings,
            clock=self._clock,
            notify=self.queue.add,
            on_scheduled=self.metrics.scheduled if self.metrics is not None else None,
        )
        #: set when an engine's event stream ends: check targets now, not at the next tick
        self._recheck = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watchers: dict[str, threading.Thread] = {}
        self._health: dict[str, Health] = {}
        self._seen_generations: dict[str, int] = {}
        self._last_token: tuple[int, ...] | None = None

    # --- lease ------------------------------------------------------------

    def _fence(self) -> Fence | None:
        token = self._lease_token
        if token is not None:
            return Fence(LEASE_NAME, self.holder, token)
        if self._led:
            raise FencedError(f"controller {self.holder} lost its lease; it must not write")
        return None  # never led: a one-off pass (``apply --no-wait``) writes unfenced

    def _took(self, token: int | None, started: float) -> bool:
        """Note the lease's token and how long it is surely ours (from a
        monotonic time taken before the store call, so never too long)."""
        self._lease_token = token
        if token is not None:
            self._led = True
            self._lease_valid_until = started + self.settings.lease_ttl
        return token is not None

    def holds_lease(self) -> bool:
        return self._lease_token is not None and time.monotonic() < self._lease_valid_until

    def acquire(self) -> bool:
        ttl = self.settings.lease_ttl
        started = time.monotonic()
        if self._took(self.store.acquire_lease(LEASE_NAME, self.holder, ttl), started):
            return True
        holder = self.store.lease_holder(LEASE_NAME)
        if holder is not None and _holder_is_dead(holder):
            log.info("taking over the lease of dead controller %s", holder)
            return self._took(self.store.steal_lease(LEASE_NAME, holder, self.holder, ttl), started)
        if holder is not None:
            return False
        return self._took(self.store.acquire_lease(LEASE_NAME, self.holder, ttl), started)

    def running_controller(self) -> str | None:
        holder = self.store.lease_holder(LEASE_NAME)
        if holder is None or holder == self.holder or _holder_is_dead(holder):
            return None
        return holder

    # --- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start the loop in background threads. Call ``acquire`` first."""
        self._check_targets(initial=True)
        self._enqueue_all()
        for i in range(self.settings.workers):
            self._spawn(f"portway-worker-{i}", self._work)
        self._spawn("portway-housekeeping", self._housekeeping)
        if self._ingress_home is not None:
            self._spawn("portway-ingress", self._ingress_loop)
        if self._sampler is not None:
            sampler, stop = self._sampler, self._stop
            self._spawn("portway-stats", lambda: sampler.run(stop))

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        for thread in self._threads:
            thread.join(timeout=30)
        self.reconciler.close()
        self._lease_token = None
        self.store.release_lease(LEASE_NAME, self.holder)

    def run_forever(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: wait for the lease (standby while another
        controller holds it), then reconcile while holding it; after losing
        it, stand by again."""
        while True:
            waiting_for: str | None = None
            while not self.acquire():
                holder = self.store.lease_holder(LEASE_NAME) or "unknown"
                if holder != waiting_for:
                    log.info("standing by: controller %s holds the lease", holder)
                    waiting_for = holder
                if stop.wait(1.0):
                    return
            log.info(
                "controller %s holds the lease (fencing token %s); reconciling",
                self.holder,
                self._lease_token,
            )
            self.start()
            try:
                while not stop.wait(1.0) and not self._stop.is_set():
                    pass
            finally:
                self.stop()
            if stop.is_set():
                return
            self._new_term()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def pass_mark(self) -> int:
        """A mark after which the next pass starts (for ``passed_since``)."""
        with self._pass_lock:
            return self._passes_started

    def passed_since(self, key: str, mark: int) -> bool:
        """Whether a pass over ``key`` that started after ``mark`` has ended
        without error: the workload's status then tells of what was seen since
        (the reconciler skips writing a status that did not change)."""
        with self._pass_lock:
            return self._last_good_pass.get(key, 0) > mark

    def _pass_number(self) -> int:
        with self._pass_lock:
            self._passes_started += 1
            return self._passes_started

    def _passed(self, key: str, number: int) -> None:
        with self._pass_lock:
            if number > self._last_good_pass.get(key, 0):
                self._last_good_pass[key] = number

    def _enqueue_all(self) -> None:
        for key in self.store.generations(KIND_WORKLOAD):
            self.queue.add(key)

    # --- workers ----------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=5.0)  # shutdown() wakes it at once
            if key is None:
                continue
            if not self.holds_lease():
                # unrenewed for a whole TTL: another controller may be in charge
                self._lose_lease("the lease may have expired unrenewed")
                self.queue.done(key)
                return
            started = time.time()
            timer = time.perf_counter()
            result = "retry"
            number = self._pass_number()
            try:
                wake = self.reconciler.reconcile(key)
            except FencedError as exc:
                self._observe(timer, "fenced")
                self._lose_lease(str(exc))
                self.queue.done(key)
                return
            except ReconcileError as exc:
                delay = self.queue.add_rate_limited(key)
                log.warning("reconcile %s: %s (retry in %.1fs)", key, exc, delay)
            except TemporaryDriverError as exc:
                self.queue.add_after(key, exc.delay)
                log.warning("reconcile %s: %s", key, exc)
            except PortwayError as exc:
                delay = self.queue.add_rate_limited(key)
                log.warning("reconcile %s failed: %s (retry in %.1fs)", key, exc, delay)
            except Exception:
                # A bug must not kill the loop: log it and retry with backoff.
                delay = self.queue.add_rate_limited(key)
                log.exception("reconcile %s crashed (retry in %.1fs)", key, delay)
            else:
                result = "ok"
                self._passed(key, number)
                self.queue.forget(key)
                if wake is not None:
                    self.queue.add_after(key, wake)
                else:
                    self.queue.add_after(key, self.settings.resync_seconds)
            self._observe(timer, result)
            # the interval of each pass, to show that two holders never overlap
            log.debug("pass %s by %s: %.6f-%.6f", key, self.holder, started, time.time())
            self.queue.done(key)

    def _observe(self, timer: float, result: str) -> None:
        if self.metrics is not None:
            self.metrics.reconciled(time.perf_counter() - timer, result)

    def _lose_lease(self, why: str) -> None:
        if not self._stop.is_set():
            log.error("controller %s stops: %s", self.holder, why)
        self._lease_token = None
        self._stop.set()
        self.queue.shutdown()

    # --- housekeeping -----------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        next_lease = now + self.settings.lease_ttl / 3
        next_health = now + self.settings.health_seconds
        next_resync = now + self.settings.resync_seconds
        next_gc = now + min(self.settings.gc_seconds, 2.0)
        next_prune = now + min(self.settings.events_prune_seconds, 5.0)
        while not self._stop.wait(0.25):
            now = time.monotonic()
            try:
                self._notice_spec_changes()
                if now >= next_lease:
                    next_lease = now + self.settings.lease_ttl / 3
                    token = self.store.acquire_lease(
                        LEASE_NAME, self.holder, self.settings.lease_ttl
                    )
                    if token is None or token != self._lease_token:
                        self._lose_lease("lost the controller lease")
                        return
                    self._took(token, now)
                if now >= next_health or self._recheck.is_set():
                    self._recheck.clear()
                    next_health = now + self.settings.health_seconds
                    self._check_targets()
                if now >= next_resync:
                    next_resync = now + self.settings.resync_seconds
                    self._enqueue_all()
                if now >= next_gc:
                    next_gc = now + self.settings.gc_seconds
                    self.collect_garbage()
                if now >= next_prune:
                    next_prune = now + self.settings.events_prune_seconds
                    self.prune_events()
            except PortwayError as exc:
                log.warning("housekeeping: %s", exc)
            except Exception:
                log.exception("housekeeping crashed; continuing")

    # --- ingress ----------------------------------------------------------

    def _ingress_loop(self) -> None:
        """Keep the load balancer at what the store says: routes from
        ``spec.ingress``, endpoints from what the reconciler observed. HAProxy
        outlives the controller (as containers do); a new one adopts it."""
        assert self._ingress_home is not None
        last_token: tuple[int, ...] | None = None
        applied: IngressState | None = None
        while not self._stop.wait(INGRESS_TICK_SECONDS):
            token = self.store.change_token()
            if token is not None and token == last_token:
                continue  # nothing was committed since the last look
            try:
                state = services.ingress_state(services.exposed(self.store.list(KIND_WORKLOAD)))
                if state == applied:
                    last_token = token
                    continue
                if self._ingress is None:
                    if not state.routes:
                        last_token, applied = token, state
                        continue  # nobody asked for an ingress: no HAProxy
                    self._ingress = IngressManager(self._ingress_home)
                self._ingress.apply(state)
                last_token, applied = token, state
            except PortwayError as exc:
                log.warning("ingress: %s (retrying)", exc)
            except Exception:
                log.exception("ingress update crashed; retrying")

    def _notice_spec_changes(self) -> None:
        """Wake workloads whose spec changed (apply/delete from any process)."""
        token = self.store.change_token()
        if token is not None and token == self._last_token:
            return  # nothing was committed since the last look
        self._last_token = token
        current = self.store.generations(KIND_WORKLOAD)
        for key, generation in current.items():
            if self._seen_generations.get(key) != generation:
                self.queue.add(key)
        self._seen_generations = current

    def _check_targets(self, *, initial: bool = False) -> None:
        for view in self.targets.views():
            fingerprint = self.targets.check(view)
            before = self._health.get(view.name)
            self._health[view.name] = fingerprint.health
            if fingerprint.health is Health.HEALTHY:
                self._ensure_watcher(view)
                if before is not None and before is not Health.HEALTHY and not initial:
                    self._enqueue_all()
            elif before is Health.HEALTHY and not initial:
                # its workloads count the failover grace period from now
                self._enqueue_all()

    def _ensure_watcher(self, view: TargetView) -> None:
        alive = self._watchers.get(view.name)
        if alive is not None and alive.is_alive():
            return
        driver = self.targets.driver(view)
        if not isinstance(driver, EventSource):
            return
        source: EventSource = driver

        def watch() -> None:
            try:
                for event in source.events(self._stop):
                    namespace = event.labels.get(LABEL_NAMESPACE)
                    workload = event.labels.get(LABEL_WORKLOAD)
                    if namespace and workload:
                        self.queue.add(f"{namespace}/{workload}")
            except PortwayError as exc:
                log.info("event stream of %s ended: %s", view.name, exc)
            if not self._stop.is_set():
                self._recheck.set()  # the engine may have died: find out now

        thread = threading.Thread(target=watch, name=f"portway-events-{view.name}", daemon=True)
        thread.start()
        self._watchers[view.name] = thread

    def prune_events(self) -> int:
        """Drop events past their retention (age and count); returns how many."""
        removed = self.store.prune_events(
            self.settings.events_max,
            older_than=self._clock() - self.settings.events_ttl_seconds,
        )
        if removed:
            log.info("pruned %d event(s) past retention", removed)
        return removed

    def collect_garbage(self, *, grace: float | None = None) -> int:
        """Remove owned containers whose workload is not in the store. Returns the count."""
        grace = self.settings.gc_grace_seconds if grace is None else grace
        wanted = {record.key for record in self.store.list(KIND_WORKLOAD)}
        removed = 0
        for view in self.targets.views():
            if self._health.get(view.name) is not Health.HEALTHY:
                continue
            driver = self.targets.driver(view)
            selector = {LABEL_CLUSTER: self.reconciler.cluster, LABEL_TARGET: view.name}
            for status in driver.list_owned(selector):
                if status.workload_key in wanted:
                    continue
                created = status.created_at.timestamp() if status.created_at else 0.0
                if self._clock() - created < grace:
                    continue
                driver.destroy(status.handle)
                removed += 1
                namespace = status.labels.get(LABEL_NAMESPACE, "")
                self.fenced_store.record_event(
                    KIND_WORKLOAD,
                    namespace,
                    status.labels.get(LABEL_WORKLOAD, ""),
                    "GarbageCollected",
                    f"removed {status.handle.name} on {view.name}: no workload wants it",
                )
        return removed
