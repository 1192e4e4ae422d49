"""Reconcile one workload: observe, decide (``plan``), act, record.

Everything the engine says is re-read on every pass (level-triggered); what
the controller must remember across passes and restarts (restart counts,
backoff) lives in the store's Replica records, never only in memory.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from portway import tracing
from portway.capabilities.vocabulary import Feature
from portway.controller import scheduling, volume_placement
from portway.controller.namespaces import default_pod_security, policy_for
from portway.controller.plan import (
    Action,
    Create,
    Desired,
    Drain,
    Observed,
    Phase,
    Plan,
    Remove,
    ReplicaMemory,
    Report,
    Start,
    Stop,
    plan_workload,
)
from portway.controller.probes import Prober, recorded_run, run_of
from portway.controller.records import (
    KIND_REPLICA,
    KIND_WORKLOAD,
    ReplicaView,
    TargetView,
    cluster_id,
    endpoints_of,
    excluded_targets_of,
    replica_name,
    template_generation_of,
    template_hash_of,
    workload_of,
)
from portway.controller.scheduling import STALE_FENCED, Placements, Slot
from portway.controller.secrets import SecretResolver
from portway.controller.targets import TargetPool
from portway.controller.volumes import delete_volumes
from portway.drivers.base import (
    LABEL_CLUSTER,
    LABEL_NAMESPACE,
    LABEL_TARGET,
    LABEL_WORKLOAD,
    Driver,
    ReplicaRequest,
    ReplicaState,
    ReplicaStatus,
)
from portway.errors import (
    ConflictError,
    PermanentDriverError,
    PortwayError,
    ReplicaGoneError,
    TemporaryDriverError,
)
from portway.policy import evaluate_spec
from portway.scheduler.model import Decision, PlacedReplica
from portway.scheduler.state import ClusterState
from portway.spec.model import Workload, WorkloadSpec
from portway.spec.namespace import PodSecurityLevel
from portway.spec.services import is_service, service_aliases, service_env, service_ports
from portway.store import Record, Store

log = logging.getLogger(__name__)

#: the restart counter in a status message ("restarting (restarts: 3)")
_RESTART_COUNT = re.compile(r" \(restarts: \d+\)")

#: look again this soon when a target is down; its recovery also wakes us
UNHEALTHY_RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class Settings:
    stop_timeout: float = 10.0
    """Seconds an engine waits after SIGTERM before SIGKILL on a graceful stop."""
    action_workers: int = 16
    """Parallel engine calls per reconcile; creating 50 replicas one by one is slow."""
    default_pod_security: PodSecurityLevel = field(default_factory=default_pod_security)
    """Pod Security level of namespaces without a policy object (env
    PORTWAY_DEFAULT_POD_SECURITY), for the policy re-check before each create."""
    failover_grace_seconds: float = 2.0
    """A target unhealthy this long has its replicas placed elsewhere. Short,
    because copies left behind are fenced (removed when the target returns)
    rather than trusted; raise it where moving replicas is costly."""
    secret_key_file: Path | None = None
    """The key that opens stored secrets (None: PORTWAY_SECRET_KEY_FILE, else
    $PORTWAY_HOME/secret.key), read when a replica first needs a secret."""


class Reconciler:
    def __init__(
        self,
        store: Store,
        targets: TargetPool,
        prober: Prober,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        notify: Callable[[str], None] | None = None,
        on_scheduled: Callable[[float], None] | None = None,
    ) -> None:
        self._store = store
        #: told how long each placement decision took (seconds, lock wait included)
        self._on_scheduled = on_scheduled
        #: wakes another workload (a preemption victim) at once
        self._notify = notify or (lambda key: None)
        #: placement reads every workload's placements and writes one's: one at
        #: a time, or two workers could fill the same room twice
        self._scheduling = threading.Lock()
        self._targets = targets
        self._prober = prober
        self._settings = settings or Settings()
        self._secrets = SecretResolver(store, self._settings.secret_key_file)
        self._clock = clock
        self.cluster = cluster_id(store)
        self._pool = ThreadPoolExecutor(
            max_workers=self._settings.action_workers, thread_name_prefix="portway-action"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # --- one pass ---------------------------------------------------------

    def reconcile(self, key: str) -> float | None:
        """One pass over workload ``namespace/name``; returns when to look again."""
        with tracing.span("portway.reconcile", {"portway.workload": key}, caused_by=key):
            return self._reconcile(key)

    def _reconcile(self, key: str) -> float | None:
        namespace, _, name = key.partition("/")
        record = self._store.get(KIND_WORKLOAD, namespace, name)
        if record is None:
            tracing.forget(key)
            return None
        workload = workload_of(record)
        replicas = {
            r.name: r for r in self._store.list(KIND_REPLICA, namespace) if _belongs(r, name)
        }
        views = {v.name: v for v in self._targets.views()}
        placements = Placements.from_status(record.status, workload.spec.replicas)
        if record.deleting and not placements.targets():
            # never placed, so nothing was ever created for it
            self._finish_delete(record, list(replicas.values()))
            return None
        wake_place: float | None = None
        if not record.deleting:
            record, placements, wake_place = self._place(record, workload, views)
            if not placements.targets() and workload.spec.replicas:
                return UNHEALTHY_RETRY_SECONDS * 2
            # replicas: 0 with nothing placed goes on: it is Ready, with nothing
            # to list, and its status must say so (apply waits for it)

        drivers: dict[str, Driver] = {}
        statuses: list[ReplicaStatus] = []
        unreachable: set[str] = set()
        why: dict[str, TemporaryDriverError] = {}  # a listing failed: the engine's word
        for target in sorted(placements.targets()):
            view = views.get(target)
            if view is None or not view.healthy:
                unreachable.add(target)
                continue
            driver = self._targets.driver(view)
            try:
                statuses += driver.list_owned(
                    {
                        LABEL_CLUSTER: self.cluster,
                        LABEL_NAMESPACE: namespace,
                        LABEL_WORKLOAD: name,
                        LABEL_TARGET: target,
                    }
                )
            except TemporaryDriverError as exc:
                log.info("%s: cannot list target %s: %s", key, target, exc)
                unreachable.add(target)
                why[target] = exc
                continue
            drivers[target] = driver
        if unreachable and not drivers and not record.deleting:
            message = "; ".join(
                str(why[t]) if t in why else f"waiting for target {t}" for t in sorted(unreachable)
            )
            if record.status.get("schedulingMessage"):
                message += f"; {record.status['schedulingMessage']}"
            self._set_status(record, message=message)
            hint = min((e.delay for e in why.values()), default=UNHEALTHY_RETRY_SECONDS)
            return _sooner(hint, wake_place)
        desired = Desired(
            namespace=namespace,
            name=name,
            spec=workload.spec,
            generation=template_generation_of(record),
            template_hash=template_hash_of(record),
            target="",  # an index without a slot is pending: nothing is created
            deleting=record.deleting,
            slots={i: (slot.target, slot.epoch) for i, slot in placements.slots.items()},
            unreachable=frozenset(unreachable),
            fenced=frozenset(t for t, kind in placements.stale.items() if kind == STALE_FENCED),
            drain_seconds=max((r.drain_seconds for r in workload.spec.ingress), default=0.0),
            draining=_draining_of(record),
        )
        recorded = [ReplicaView.from_status(r.status) for r in replicas.values()]
        # runs an earlier pass (maybe of a controller since restarted) found ready
        ready_runs = frozenset(
            recorded_run(view_.container_id, view_.started_at)
            for view_ in recorded
            if view_.ready and view_.state == ReplicaState.RUNNING.value and view_.container_id
        )
        observed, probe_dues = self._observe(drivers, desired, statuses, ready_runs)
        memory = {view_.index: view_.replica_memory() for view_ in recorded}
        with tracing.span("portway.plan", {"portway.workload": key}):
            plan = plan_workload(desired, observed, memory, self._clock())
            tracing.annotate(_plan_attributes(plan))
        creates = any(isinstance(a, Create) for steps in plan.steps.values() for a in steps)
        refusal = self._policy_refusal(namespace, workload.spec) if creates else None
        failures = self._execute(plan, desired, drivers, refusal)
        if plan.finished_deleting:
            if unreachable:
                self._event(
                    desired,
                    "Deleted",
                    f"target(s) {', '.join(sorted(unreachable))} unreachable: copies left "
                    "there are garbage-collected when they return",
                    warning=True,
                )
            self._delete_volumes(desired, drivers)
            self._finish_delete(record, list(replicas.values()))
            tracing.forget(key)
            return None
        self._save_replicas(desired, observed, plan, replicas, failures, memory, placements)
        # A stale target that was listed and holds nothing out of place is clean.
        out_of_place = {o.handle.target for o in observed if not desired.in_place(o)}
        clean = {t for t in placements.stale if t in drivers and t not in out_of_place}
        self._save_workload_status(record, desired, plan, failures, clean, observed)
        wake = _sooner(plan.requeue_after, wake_place)
        if any(not isinstance(a, Report) for a in plan.actions) and not failures:
            # we changed the world: look at the result now rather than after a
            # poll interval (each action changes state, so this cannot spin)
            wake = 0.0
        elif not failures:
            tracing.forget(key)  # converged: later passes are not this apply's
        if unreachable:
            wake = _sooner(wake, UNHEALTHY_RETRY_SECONDS)
        probe_due = min(probe_dues, default=None)
        if probe_due is not None:
            wake = _sooner(wake, max(probe_due - self._clock(), 0.05))
        if failures:
            raise ReconcileError(failures)
        return wake

    # --- placement --------------------------------------------------------

    def _place(
        self, record: Record, workload: Workload, views: Mapping[str, TargetView]
    ) -> tuple[Record, Placements, float | None]:
        """Give every index a target: new indices, and those whose target is
        gone, draining, no longer allowed, or unhealthy past the grace period.
        Returns the (re-read) record, its placements and when a grace period ends."""
        settled = self._settled(record, workload, views)
        if settled is not None:
            return settled
        asked = time.perf_counter()
        with self._scheduling:
            # Re-read under the lock: another workload may have preempted ours.
            latest = self._store.get(KIND_WORKLOAD, record.namespace, record.name)
            if latest is None:
                return record, Placements(), None
            record = latest
            replicas = workload.spec.replicas
            placements = Placements.from_status(record.status, replicas)
            before = placements.to_status()
            excluded = excluded_targets_of(record)
            for index in [i for i in placements.slots if i >= replicas]:
                placements.release(index, scheduling.STALE_SURGE)  # scaled down
            moves, wake = scheduling.moves(
                workload,
                placements,
                views,
                excluded,
                now=self._clock(),
                grace=self._settings.failover_grace_seconds,
            )
            moving = {m.index: m for m in moves}
            wanted = sorted({i for i in range(replicas) if i not in placements.slots} | set(moving))
            changes: dict[str, Any] = {}
            if wanted:
                kept = {i: s for i, s in placements.slots.items() if i not in moving}
                state = ClusterState(
                    scheduling.state_targets(views.values()),
                    scheduling.placed_replicas(self._store.list(KIND_WORKLOAD), views, record.key)
                    + scheduling.replicas_of(record.key, workload, kept, views),
                )
                homes = self._volume_homes(record, workload, wanted, views)
                with tracing.span(
                    "portway.schedule",
                    {"portway.workload": record.key, "portway.indices": [str(i) for i in wanted]},
                ):
                    decision = volume_placement.schedule(
                        state, workload, wanted, excluded, homes, sorted(views)
                    )
                    tracing.annotate(_decision_attributes(decision))
                volume_placement.remember(homes, workload, decision.placed)
                if self._on_scheduled is not None:
                    self._on_scheduled(time.perf_counter() - asked)
                if homes != volume_placement.homes_of(record.status):
                    changes[volume_placement.STATUS_KEY] = volume_placement.to_status(homes)
                for assignment in decision.placed:
                    move = moving.get(assignment.index)
                    old = placements.slots.get(assignment.index)
                    if old is not None and move is not None:
                        placements.release(assignment.index, move.kind)
                    placements.counter += 1
                    placements.slots[assignment.index] = Slot(
                        assignment.target, placements.counter, assignment.reason
                    )
                    self._placed_event(
                        record, assignment.index, assignment.target, assignment.reason, move, old
                    )
                    for victim in assignment.victims:
                        self._evict(victim, record.key, assignment.index, assignment.target)
                if decision.failure is not None:
                    message = decision.failure.message()
                    text = message
                    if placements.slots:  # some run: say which do not
                        pending = ", ".join(str(i) for i in decision.unplaced)
                        text = f"replica(s) {pending} not placed: {message}"
                    if record.status.get("schedulingMessage") != text:
                        self._store.record_event(
                            KIND_WORKLOAD,
                            record.namespace,
                            record.name,
                            "FailedScheduling",
                            text,
                            warning=True,
                        )
                    changes["schedulingMessage"] = text
                    changes["message"] = text
                    if not placements.slots:
                        changes["phase"] = "Pending"
                    wake = _sooner(wake, UNHEALTHY_RETRY_SECONDS * 2)
                else:
                    changes["schedulingMessage"] = ""
            elif record.status.get("schedulingMessage"):
                changes["schedulingMessage"] = ""
            after = placements.to_status()
            if after != before or changes:
                record = self._write_status(record, {**after, **changes})
                placements = Placements.from_status(record.status, replicas)
            return record, placements, wake

    def _volume_homes(
        self,
        record: Record,
        workload: Workload,
        wanted: Sequence[int],
        views: Mapping[str, TargetView],
    ) -> dict[int, str]:
        """Where the per-replica volumes of ``wanted`` live (none: {})."""
        remembered = volume_placement.homes_of(record.status)
        if not any(volume_placement.pinned_objects(workload, i) for i in wanted):
            return remembered
        drivers = {}
        for view in views.values():
            if view.healthy:
                with contextlib.suppress(PortwayError):
                    drivers[view.name] = self._targets.driver(view)
        return volume_placement.refresh_homes(workload, self.cluster, wanted, remembered, drivers)

    def _settled(
        self, record: Record, workload: Workload, views: Mapping[str, TargetView]
    ) -> tuple[Record, Placements, float | None] | None:
        """Most passes find every index placed where it may stay: answer those
        without the scheduling lock (which every worker shares) or a re-read.
        None: something needs placing, or a status field needs clearing."""
        replicas = workload.spec.replicas
        placements = Placements.from_status(record.status, replicas)
        if record.status.get("schedulingMessage") or "placements" not in record.status:
            return None
        if any(i >= replicas for i in placements.slots) or len(placements.slots) < replicas:
            return None
        moves, wake = scheduling.moves(
            workload,
            placements,
            views,
            excluded_targets_of(record),
            now=self._clock(),
            grace=self._settings.failover_grace_seconds,
        )
        return None if moves else (record, placements, wake)

    def _placed_event(
        self,
        record: Record,
        index: int,
        target: str,
        reason: str,
        move: scheduling.Move | None,
        old: Slot | None,
    ) -> None:
        if move is not None and old is not None:
            kind = "FailedOver" if move.kind == STALE_FENCED else "Moved"
            text = f"replica {index} moved from {old.target} to {target} ({move.why}): {reason}"
        else:
            kind, text = "Placed", f"replica {index} placed on {target}: {reason}"
        self._store.record_event(
            KIND_WORKLOAD,
            record.namespace,
            record.name,
            kind,
            text,
            warning=kind == "FailedOver",
            replica=index,
            target=target,
        )

    def _evict(self, victim: PlacedReplica, by: str, index: int, target: str) -> None:
        """Take a lower-priority replica's slot away (its copy is removed on
        sight, as after failover) and wake its workload to place it again."""
        namespace, _, name = victim.workload.partition("/")
        for _ in range(10):
            record = self._store.get(KIND_WORKLOAD, namespace, name)
            if record is None:
                return
            placements = Placements.from_status(record.status, workload_of(record).spec.replicas)
            if placements.slots.get(victim.index, Slot("")).target != victim.target:
                return
            placements.release(victim.index, STALE_FENCED)
            placements.stale[victim.target] = STALE_FENCED
            try:
                self._store.update_status(record, {**record.status, **placements.to_status()})
                break
            except ConflictError:
                continue
        else:
            log.warning("could not preempt %s-%d: its record keeps changing", name, victim.index)
            return
        self._store.record_event(
            KIND_WORKLOAD,
            namespace,
            name,
            "Preempted",
            f"replica {victim.index} evicted from {victim.target} to make room for "
            f"{by} replica {index} (priority {victim.priority} is lower)",
            warning=True,
            replica=victim.index,
            target=victim.target,
        )
        by_ns, _, by_name = by.partition("/")
        self._store.record_event(
            KIND_WORKLOAD,
            by_ns,
            by_name,
            "Preempting",
            f"replica {index} on {target} evicts {victim.workload} replica {victim.index} "
            f"(priority {victim.priority})",
            replica=index,
            target=target,
        )
        self._notify(victim.workload)

    def _write_status(self, record: Record, changes: Mapping[str, Any]) -> Record:
        """Write placement changes made under the scheduling lock from a fresh
        read, so they never overwrite an eviction; returns the new record."""
        for _ in range(10):
            try:
                return self._store.update_status(record, {**record.status, **changes})
            except ConflictError:
                latest = self._store.get(record.kind, record.namespace, record.name)
                if latest is None:
                    return record
                if latest.status.get("placements") != record.status.get("placements"):
                    # someone else moved our slots meanwhile: decide again next pass
                    return latest
                record = latest
        return record

    # --- observation ------------------------------------------------------

    def _observe(
        self,
        drivers: Mapping[str, Driver],
        desired: Desired,
        statuses: Sequence[ReplicaStatus],
        ready_runs: frozenset[str] = frozenset(),
    ) -> tuple[list[Observed], list[float]]:
        """Fill in what a list call omits (exit details) and run due probes.
        Returns the observations and when probes are next due. ``ready_runs``:
        container runs (``probes.run_of``) the replica records say were ready."""
        dues: list[float] = []

        def one(status: ReplicaStatus) -> Observed | None:
            driver = drivers[status.handle.target]
            if status.state is ReplicaState.EXITED and status.generation == desired.generation:
                try:
                    status = driver.inspect(status.handle)
                except ReplicaGoneError:
                    return None
            if status.generation != desired.generation or desired.deleting:
                # old revisions count as ready while running: they served before
                return Observed(status, ready=status.state is ReplicaState.RUNNING)
            verdict = self._prober.evaluate(
                status, desired.spec.probes, driver, recorded_ready=run_of(status) in ready_runs
            )
            if verdict.next_due is not None:
                dues.append(verdict.next_due)
            return Observed(
                status,
                ready=verdict.ready,
                live=verdict.live,
                probe_message=verdict.message,
                was_ready=verdict.was_ready,
            )

        probes = desired.spec.probes
        has_probes = probes.readiness is not None or probes.liveness is not None

        def needs_io(status: ReplicaStatus) -> bool:
            if status.generation != desired.generation or desired.deleting:
                return False
            return status.state is ReplicaState.EXITED or (
                has_probes and status.state is ReplicaState.RUNNING
            )

        # Most passes over a settled workload need no engine call per replica;
        # handing each to the pool would only burn CPU (idle cost matters).
        slow = [s for s in statuses if needs_io(s)]
        results = list(self._pool.map(one, slow)) if len(slow) > 1 else [one(s) for s in slow]
        results += [one(s) for s in statuses if not needs_io(s)]
        return [r for r in results if r is not None], dues

    # --- actions ----------------------------------------------------------

    def _policy_refusal(self, namespace: str, spec: WorkloadSpec) -> str | None:
        """Defence in depth: ``apply`` judged the spec, but the namespace's
        policy may have changed since. Running replicas are left alone (as
        Kubernetes does); a new one is never started against the policy."""
        policy = policy_for(self._store, namespace, self._settings.default_pod_security)
        decision = evaluate_spec(spec, policy, given=True)  # the stored tier is resolved
        if decision.allowed:
            return None
        return "refused by policy: " + "; ".join(str(v) for v in decision.violations)

    def _execute(
        self,
        plan: Plan,
        desired: Desired,
        drivers: Mapping[str, Driver],
        refusal: str | None = None,
    ) -> dict[int, str]:
        """Run each index's steps in order, indices in parallel. Returns failures.
        ``refusal`` (policy forbids the spec) fails every create instead."""

        def run_steps(index: int, steps: list[Action]) -> tuple[int, str | None]:
            for action in steps:
                try:
                    if refusal is not None and isinstance(action, Create):
                        raise PolicyRefusedError(refusal)
                    self._apply(action, desired, drivers)
                except PortwayError as exc:
                    # a refusal is a decision, not an engine failure: its own reason
                    why = "PolicyRefused" if isinstance(exc, PolicyRefusedError) else "Failed"
                    self._event(
                        desired,
                        why,
                        f"replica {index}: {exc}",
                        warning=True,
                        index=index,
                        target=_target_of(action),
                    )
                    return index, str(exc)
            return index, None

        # bind: each index's driver calls are children of this pass's span
        futures = [self._pool.submit(tracing.bind(run_steps), i, s) for i, s in plan.steps.items()]
        failures: dict[int, str] = {}
        for future in futures:
            index, error = future.result()
            if error is not None:
                failures[index] = error
        return failures

    def _apply(self, action: Action, desired: Desired, drivers: Mapping[str, Driver]) -> None:
        target = _target_of(action)
        if isinstance(action, Report):
            self._event(
                desired,
                action.reason,
                action.message,
                warning=action.warning,
                index=action.index,
                target=target,
            )
            return
        if isinstance(action, Drain):
            self._event(
                desired,
                "Draining",
                f"replica {action.index} ({action.reason}) leaves the load balancer's rotation; "
                f"removed from {action.handle.target} in {action.seconds:g}s: {action.handle.name}",
                index=action.index,
                target=target,
            )
            return
        driver = drivers[target]
        if isinstance(action, Create):
            # values exist in plaintext only for this create (never in events)
            delivery = self._secrets.deliver(desired.namespace, desired.spec)
            spec = self._with_service_env(desired, driver)
            if delivery.env:  # the spec opted in: see docs/secrets.md
                spec = spec.model_copy(update={"env": {**spec.env, **delivery.env}})
            request = ReplicaRequest(
                namespace=desired.namespace,
                workload=desired.name,
                index=action.index,
                generation=action.generation,
                template_hash=desired.template_hash,
                spec=spec,
                cluster=self.cluster,
                epoch=action.epoch,
                aliases=service_aliases(desired.name, desired.namespace, desired.spec),
                secret_files=delivery.files,
            )
            handle = driver.create(request)
            self._event(
                desired,
                "Scheduled",
                f"replica {action.index} (generation {action.generation}) created on "
                f"{target} as {handle.name}" + (" (update)" if action.reason == "Update" else ""),
                index=action.index,
                target=target,
            )
            if action.start:
                driver.start(handle)
                self._event(
                    desired,
                    "Started",
                    f"replica {action.index} started ({handle.name})",
                    index=action.index,
                    target=target,
                )
        elif isinstance(action, Start):
            self._prober.forget(action.handle.id)
            driver.start(action.handle)
            if action.restart:
                self._event(
                    desired,
                    "Restarted",
                    f"replica {action.index} restarted ({action.handle.name})",
                    index=action.index,
                    target=target,
                )
            else:
                self._event(
                    desired,
                    "Started",
                    f"replica {action.index} started ({action.handle.name})",
                    index=action.index,
                    target=target,
                )
        elif isinstance(action, Stop):
            driver.stop(action.handle, self._settings.stop_timeout)
            self._event(
                desired,
                "Stopped",
                f"replica {action.index} stopped ({action.reason}): {action.handle.name}",
                warning=action.reason == "LivenessProbeFailed",
                index=action.index,
                target=target,
            )
        elif isinstance(action, Remove):
            if action.reason in ("ScaledDown", "Superseded", "Rescheduled", "WorkloadDeleted"):
                driver.stop(action.handle, self._settings.stop_timeout)
            driver.destroy(action.handle)
            self._event(
                desired,
                "Removed",
                f"replica {action.index} removed ({action.reason}) from {target}: "
                f"{action.handle.name}",
                index=action.index,
                target=target,
            )

    def _with_service_env(self, desired: Desired, driver: Driver) -> WorkloadSpec:
        """The spec with the namespace's services in ``NAME_SERVICE_HOST/PORT``
        variables, as the kubelet sets them, where the target resolves those
        names (services.dns); the workload's own env wins over them."""
        try:
            features = driver.capabilities().features_for(desired.spec.isolation.value)
        except PortwayError:
            return desired.spec
        if Feature.SERVICES_DNS not in features:
            return desired.spec
        found: dict[str, tuple[tuple[str | None, int], ...]] = {}
        for record in self._store.list(KIND_WORKLOAD, desired.namespace):
            if record.deleting:
                continue
            try:
                other = workload_of(record)
            except (PortwayError, ValueError):
                continue
            if is_service(other.spec):
                found[other.metadata.name] = service_ports(other.spec)
        env = {**service_env(found, desired.namespace), **desired.spec.env}
        return desired.spec.model_copy(update={"env": env})

    def _event(
        self,
        desired: Desired,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        index: int | None = None,
        target: str = "",
    ) -> None:
        self._store.record_event(
            KIND_WORKLOAD,
            desired.namespace,
            desired.name,
            reason,
            message,
            warning=warning,
            replica=index,
            target=target,
        )

    # --- recording --------------------------------------------------------

    def _save_replicas(
        self,
        desired: Desired,
        observed: Sequence[Observed],
        plan: Plan,
        records: dict[str, Record],
        failures: dict[int, str],
        previous: dict[int, ReplicaMemory],
        placements: Placements,
    ) -> None:
        current: dict[int, Observed] = {}
        for o in sorted(observed, key=lambda o: o.status.state is not ReplicaState.RUNNING):
            if desired.is_current(o):
                current.setdefault(o.index, o)  # the running one is kept; show it
        wanted = {replica_name(desired.name, i) for i in range(desired.replicas)}
        for name, record in records.items():
            if name not in wanted:
                self._write(record, None)
        for index in range(desired.replicas):
            name = replica_name(desired.name, index)
            if index in failures:
                # the plan's bookkeeping assumed its actions succeeded; they did not
                memory = previous.get(index) or ReplicaMemory()
            else:
                memory = plan.memory.get(index) or ReplicaMemory()
            item = current.get(index)
            slot = placements.slots.get(index, Slot(""))
            view = ReplicaView(
                workload=desired.name,
                index=index,
                target=slot.target,
                placement_reason=slot.reason,
                epoch=slot.epoch,
                generation=desired.generation,
                restart_count=memory.restart_count,
                last_exit_code=memory.last_exit_code,
                last_reason=memory.last_reason,
                message=failures.get(index, ""),
                memory=_memory_dict(memory),
            )
            if item is not None:
                status = item.status
                view = replace(
                    view,
                    container_id=status.handle.id,
                    container_name=status.handle.name,
                    state=status.state.value,
                    ready=item.ready and item.running,
                    started_at=status.started_at.isoformat() if status.started_at else None,
                    created_at=status.created_at.isoformat() if status.created_at else None,
                    image=status.image,
                    endpoints=endpoints_of(status),
                    message=failures.get(index, "") or status.error,
                )
            existing = records.get(name)
            if item is not None and desired.is_current(item):
                self._readiness_event(desired, item, existing)
            new_status = view.to_status()
            if existing is None:
                # a racing pass may have written it; the next pass reconciles
                with contextlib.suppress(PortwayError):
                    self._store.create(KIND_REPLICA, desired.namespace, name, {}, new_status)
            elif dict(existing.status) != new_status:
                self._write(existing, new_status)

    def _readiness_event(self, desired: Desired, item: Observed, before: Record | None) -> None:
        """Say when a running replica becomes ready or stops being so.

        Judged against the replica record of the previous pass (in the
        store), so a restarted controller does not report what it reported."""
        ready = item.ready and item.running
        same_run = before is not None and before.status.get("container_id") == item.handle.id
        was = bool(before and before.status.get("ready")) and same_run
        if ready and not was:
            self._event(
                desired,
                "Ready",
                f"replica {item.index} is ready",
                index=item.index,
                target=item.handle.target,
            )
        elif was and not ready and item.running:
            why = item.probe_message or "its readiness probe fails"
            self._event(
                desired,
                "NotReady",
                f"replica {item.index} is not ready: {why}",
                warning=True,
                index=item.index,
                target=item.handle.target,
            )

    def _write(self, record: Record, status: dict[str, Any] | None) -> None:
        try:
            if status is None:
                self._store.delete(record)
            else:
                self._store.update_status(record, status)
        except ConflictError:
            pass  # another pass wrote a newer observation; ours is stale anyway

    def _save_workload_status(
        self,
        record: Record,
        desired: Desired,
        plan: Plan,
        failures: dict[int, str],
        clean: set[str],
        observed: Sequence[Observed] = (),
    ) -> None:
        summary = plan.summary
        assert summary is not None
        reasons = list(summary.reasons) + list(summary.waiting)
        if record.status.get("schedulingMessage"):
            reasons.insert(0, str(record.status["schedulingMessage"]))
        message = "; ".join(reasons)
        if failures:
            message = "; ".join(f"replica {i}: {e}" for i, e in sorted(failures.items()))

        def forget_clean(status: dict[str, Any]) -> None:
            stale = dict(status.get("staleTargets") or {})
            for target in clean:
                stale.pop(target, None)
            status["staleTargets"] = stale

        phase = summary.phase.value
        if not desired.slots and desired.replicas:
            phase = "Pending"  # nothing placed: nothing fits anywhere
            message = str(record.status.get("schedulingMessage") or message)
        self._phase_event(desired, str(record.status.get("phase") or ""), phase, message)
        self._set_status(
            record,
            merge=forget_clean if clean else None,
            phase=phase,
            observedGeneration=record.generation,
            templateGeneration=desired.generation,
            replicas={
                "desired": summary.desired,
                "updated": summary.updated,
                "running": summary.running,
                "ready": summary.ready,
                "available": summary.available,
            },
            message=message,
            draining=dict(sorted(plan.draining.items())),
            endpoints=endpoints_status(desired, observed, plan.draining),
        )

    def _phase_event(self, desired: Desired, before: str, after: str, message: str) -> None:
        """Say when a workload becomes Degraded, and when it is Ready again."""
        if after == before:
            return
        if after == Phase.DEGRADED.value:
            # restart counters would make every crash of a loop a new event
            stable = _RESTART_COUNT.sub("", message)
            self._event(desired, "Degraded", f"workload degraded: {stable}", warning=True)
        elif after == Phase.READY.value and before == Phase.DEGRADED.value:
            self._event(desired, "Recovered", "workload ready again: every replica is ready")

    def _set_status(
        self,
        record: Record,
        merge: Callable[[dict[str, Any]], None] | None = None,
        **changes: Any,
    ) -> None:
        """Merge ``changes`` into the workload's status; retried on conflict
        because ``apply`` may have changed the spec meanwhile. Placements are
        never written here (only under the scheduling lock, from a fresh
        read); ``merge`` edits what must be merged into the latest status."""
        for _ in range(5):
            status = dict(record.status)
            status.update(changes)
            if merge is not None:
                merge(status)
            if status == dict(record.status):
                return
            try:
                self._store.update_status(record, status)
                return
            except ConflictError:
                latest = self._store.get(record.kind, record.namespace, record.name)
                if latest is None:
                    return
                record = latest

    def _delete_volumes(self, desired: Desired, drivers: Mapping[str, Driver]) -> None:
        removed, problems = delete_volumes(
            self.cluster, desired.namespace, desired.name, desired.spec, drivers
        )
        if removed:
            self._event(desired, "VolumesDeleted", "retention delete: " + ", ".join(removed))
        if problems:
            self._event(
                desired,
                "VolumesLeft",
                "retention delete failed (portway volume ls shows what is left): "
                + "; ".join(problems),
                warning=True,
            )

    def _finish_delete(self, record: Record, replicas: Sequence[Record] | Any) -> None:
        for replica in replicas:
            self._write(replica, None)
        for _ in range(5):
            try:
                self._store.delete(record)
                break
            except ConflictError:
                # a status write of ours, or a re-apply: only the latter cancels
                latest = self._store.get(record.kind, record.namespace, record.name)
                if latest is None or not latest.deleting:
                    return
                record = latest
        else:
            return
        self._store.record_event(
            KIND_WORKLOAD, record.namespace, record.name, "Deleted", "workload deleted"
        )
        log.info("workload %s deleted", record.key)


class PolicyRefusedError(PortwayError):
    """The namespace's current policy forbids creating the replica."""


class ReconcileError(PortwayError):
    """Some actions of a pass failed; the queue retries with backoff."""

    def __init__(self, failures: dict[int, str]) -> None:
        self.failures = failures
        self.permanent = False
        super().__init__("; ".join(f"replica {i}: {e}" for i, e in sorted(failures.items())))


def _draining_of(record: Record) -> dict[str, float]:
    raw = record.status.get("draining")
    if not isinstance(raw, dict):
        return {}
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}


def endpoints_status(
    desired: Desired, observed: Sequence[Observed], draining: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Every published port of every copy the controller sees, on every
    reachable target: what the load balancer balances over (Kubernetes'
    EndpointSlice). A copy is ready when it runs and its probes say so;
    old copies count while they run, and draining ones are marked."""
    names = {p.container_port: p.name for p in desired.spec.ports if p.protocol.value == "tcp"}
    found: list[dict[str, Any]] = []
    for item in sorted(observed, key=lambda o: (o.index, o.handle.target, o.handle.id)):
        for port in item.status.ports:
            if port.protocol != "tcp" or port.container_port not in names:
                continue
            found.append(
                {
                    "id": item.handle.id,
                    "replica": f"{desired.name}-{item.index}",
                    "target": item.handle.target,
                    "port": names[port.container_port],
                    "containerPort": port.container_port,
                    "address": port.host_ip,
                    "hostPort": port.host_port,
                    "ready": bool(item.running and item.ready),
                    "draining": item.handle.id in draining,
                    "current": desired.is_current(item),
                }
            )
    return found


def _target_of(action: Action) -> str:
    if isinstance(action, Create):
        return action.target
    if isinstance(action, Report):
        return action.target
    return action.handle.target


def _plan_attributes(plan: Plan) -> dict[str, str | int | list[str]]:
    kinds = sorted({type(a).__name__ for a in plan.actions})
    return {"portway.actions": len(plan.actions), "portway.action_kinds": kinds}


def _decision_attributes(decision: Decision) -> dict[str, list[str] | str]:
    attributes: dict[str, list[str] | str] = {
        "portway.placed": [f"{a.index}={a.target}" for a in decision.placed]
    }
    if decision.failure is not None:
        attributes["portway.unplaced_reason"] = decision.failure.message()
    return attributes


def _sooner(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _belongs(record: Record, workload: str) -> bool:
    prefix, _, index = record.name.rpartition("-")
    return prefix == workload and index.isdigit()


def _memory_dict(memory: ReplicaMemory) -> dict[str, Any]:
    return {
        "container_id": memory.container_id,
        "restart_count": memory.restart_count,
        "backoff_step": memory.backoff_step,
        "last_exit_code": memory.last_exit_code,
        "last_reason": memory.last_reason,
        "reported_exit": memory.reported_exit,
        "stopped_by_us": memory.stopped_by_us,
        "oom_kills": memory.oom_kills,
    }


__all__ = ["PermanentDriverError", "ReconcileError", "Reconciler", "Settings"]
