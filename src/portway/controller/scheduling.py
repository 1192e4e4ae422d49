"""Where each replica of a workload runs: the bridge between the store and
the pure scheduler.

A workload's placements live in its status, one slot per replica index:
``placements: {"0": {"target": "docker", "epoch": 3, "reason": "..."}}``.
The epoch comes from a per-workload counter and bumps whenever an index is
placed anew; containers carry it (``portway.dev/epoch``), so a copy left on
a target the index moved away from is recognised as stale and removed,
never adopted. ``staleTargets`` names the targets that may still hold such
copies (``fenced``: removed on sight; ``surge``: kept until the new copy
is ready).

This module builds the scheduler's snapshot (``ClusterState``) from the
store and decides, for one workload, which indices need a target: new
indices, indices on a removed, draining or no-longer-eligible target, and
indices on a target that has been unhealthy for longer than the failover
grace period.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from portway.controller.records import KIND_WORKLOAD, TargetView, workload_of
from portway.errors import PortwayError
from portway.scheduler.fit import Capacity, Request
from portway.scheduler.model import (
    NAMESPACE_KEY,
    TARGET_KEY,
    WORKLOAD_KEY,
    AffinityTerm,
    Ask,
    Effect,
    Overhead,
    PlacedReplica,
    SpreadRule,
    Strategy,
    Taint,
    TargetState,
    Toleration,
)
from portway.spec.model import (
    Affinity,
    PreemptionPolicy,
    WhenUnsatisfiable,
    Workload,
)
from portway.store import Record

#: stale-target kinds (see the module docstring): copies on a ``fenced``
#: target are removed on sight (failover, preemption); copies on a ``surge``
#: target serve until their replacement is ready (drain, placement change)
STALE_FENCED = "fenced"
STALE_SURGE = "surge"


@dataclass(frozen=True)
class Slot:
    """Where one replica index runs."""

    target: str
    epoch: int = 0
    reason: str = ""

    def to_status(self) -> dict[str, Any]:
        return {"target": self.target, "epoch": self.epoch, "reason": self.reason}


@dataclass
class Placements:
    """A workload's placement state, as kept in its status."""

    slots: dict[int, Slot] = field(default_factory=dict)
    counter: int = 0  # the last epoch handed out
    stale: dict[str, str] = field(default_factory=dict)  # target -> STALE_*

    @classmethod
    def from_status(cls, status: Mapping[str, Any], replicas: int) -> Placements:
        raw = status.get("placements")
        if isinstance(raw, dict):
            slots = {
                int(k): Slot(
                    str(v.get("target", "")), int(v.get("epoch", 0)), str(v.get("reason", ""))
                )
                for k, v in raw.items()
                if str(k).isdigit() and isinstance(v, dict) and v.get("target")
            }
        else:
            # A workload placed before per-replica placement: every replica on
            # its one target, with epoch 0 (what unlabelled containers carry).
            target = status.get("target")
            slots = (
                {
                    i: Slot(target, 0, "placed before per-replica scheduling")
                    for i in range(replicas)
                }
                if isinstance(target, str) and target and "," not in target
                else {}
            )
        stale = status.get("staleTargets")
        return cls(
            slots=slots,
            counter=int(status.get("placementEpoch", 0) or 0),
            stale={str(k): str(v) for k, v in stale.items()} if isinstance(stale, dict) else {},
        )

    def to_status(self) -> dict[str, Any]:
        targets = sorted({s.target for s in self.slots.values()})
        return {
            "placements": {str(i): s.to_status() for i, s in sorted(self.slots.items())},
            "placementEpoch": self.counter,
            "staleTargets": dict(sorted(self.stale.items())),
            # one line for `get workloads`: the target, or every target
            "target": ",".join(targets),
        }

    def targets(self) -> set[str]:
        """Every target that may hold a container of this workload."""
        return {s.target for s in self.slots.values()} | set(self.stale)

    def release(self, index: int, kind: str) -> Slot | None:
        """Forget where ``index`` runs; its target may still hold a copy."""
        slot = self.slots.pop(index, None)
        if slot is not None and self.stale.get(slot.target) != STALE_FENCED:
            self.stale[slot.target] = kind
        return slot


# --- snapshots -------------------------------------------------------------


def total_of(view: TargetView) -> Capacity:
    """The target's whole capacity from its fingerprint (None: not reported)."""

    def number(key: str) -> float | None:
        try:
            value = float(view.attributes.get(key, "") or 0)
        except ValueError:
            return None
        return value or None

    memory = number("memory")
    return Capacity(memory=None if memory is None else int(memory), cpu=number("cpus"))


def target_state(view: TargetView) -> TargetState:
    """A target as the scheduler sees it. Capacity given with ``target add
    --capacity`` overrides the fingerprint's; what is committed is the sum of
    the limits of every replica placed there plus its tier's overhead (a
    gVisor sandbox costs 32-40 MiB beyond the workload's own limit).
    Workloads without limits commit only that overhead: their use is
    unknown, and refusing them would make every target look full."""
    total = total_of(view)
    given = view.capacity
    capacity = replace(
        total,
        memory=int(given["memory"]) if "memory" in given else total.memory,
        cpu=float(given["cpu"]) if "cpu" in given else total.cpu,
    )
    return TargetState(
        name=view.name,
        labels={**view.labels, TARGET_KEY: view.name},
        healthy=view.healthy,
        cordoned=view.cordoned,
        tiers={
            tier: Overhead(memory=h.overhead_memory, cpu=h.overhead_cpu)
            for tier, h in view.tiers.items()
        }
        or {tier: Overhead() for tier in view.isolation_tiers},
        capacity=capacity,
        taints=tuple(_taint(t) for t in view.taints),
    )


def _taint(raw: Mapping[str, str]) -> Taint:
    try:
        effect = Effect(raw.get("effect", Effect.NO_SCHEDULE.value))
    except ValueError:
        effect = Effect.NO_SCHEDULE  # an unknown effect is treated as the strict one
    return Taint(key=raw.get("key", ""), value=raw.get("value", ""), effect=effect)


def workload_labels(workload: Workload) -> dict[str, str]:
    return {
        **workload.metadata.labels,
        NAMESPACE_KEY: workload.metadata.namespace,
        WORKLOAD_KEY: workload.metadata.name,
    }


def per_replica_request(workload: Workload) -> Request:
    resources = workload.spec.resources
    return Request(memory=resources.memory or 0, cpu=resources.cpu or 0.0)


def replicas_of(
    key: str,
    workload: Workload,
    slots: Mapping[int, Slot],
    views: Mapping[str, TargetView],
) -> list[PlacedReplica]:
    """The placed replicas of one workload, with what each commits on its
    target (the workload's limits plus its tier's overhead there)."""
    spec = workload.spec
    own = per_replica_request(workload)
    labels = workload_labels(workload)
    placed: list[PlacedReplica] = []
    for index, slot in slots.items():
        view = views.get(slot.target)
        if view is None:
            continue
        handler = view.tiers.get(spec.isolation.value)
        overhead = (
            Request(handler.overhead_memory, handler.overhead_cpu) if handler else Request(0, 0.0)
        )
        placed.append(
            PlacedReplica(
                workload=key,
                index=index,
                target=slot.target,
                labels=labels,
                priority=spec.placement.priority,
                request=own + overhead,
            )
        )
    return placed


def placed_replicas(
    records: Iterable[Record], views: Mapping[str, TargetView], skip: str | None = None
) -> list[PlacedReplica]:
    """Every placed replica of every workload but ``skip``."""
    placed: list[PlacedReplica] = []
    for record in records:
        if record.key == skip:
            continue
        try:
            workload = workload_of(record)
        except (PortwayError, ValueError):
            continue  # a record this version cannot read commits nothing
        slots = Placements.from_status(record.status, workload.spec.replicas).slots
        placed += replicas_of(record.key, workload, slots, views)
    return placed


def _terms(
    affinity: Affinity, namespace: str
) -> tuple[tuple[AffinityTerm, ...], tuple[AffinityTerm, ...]]:
    def term(t: Any) -> AffinityTerm:
        selector = {**t.match_labels, NAMESPACE_KEY: namespace}
        if t.workload:
            selector[WORKLOAD_KEY] = t.workload
        return AffinityTerm(selector=selector, topology_key=t.topology_key, weight=t.weight)

    return tuple(term(t) for t in affinity.required), tuple(term(t) for t in affinity.preferred)


def ask_for(
    workload: Workload, indices: Iterable[int], excluded: Mapping[str, str] | None = None
) -> Ask:
    """What the scheduler is asked for ``indices`` of ``workload``."""
    placement = workload.spec.placement
    namespace = workload.metadata.namespace
    required, preferred = _terms(placement.affinity, namespace)
    anti_required, anti_preferred = _terms(placement.anti_affinity, namespace)
    return Ask(
        workload=workload.key,
        indices=tuple(sorted(indices)),
        labels=workload_labels(workload),
        request=per_replica_request(workload),
        tier=workload.spec.isolation.value,
        selector=dict(placement.target_selector),
        names=tuple(placement.targets),
        excluded=dict(excluded or {}),
        tolerations=tuple(
            Toleration(
                key=t.key,
                operator=t.operator.value,
                value=t.value,
                effect=Effect(t.effect.value) if t.effect else None,
            )
            for t in placement.tolerations
        ),
        spread=tuple(
            SpreadRule(
                topology_key=s.topology_key,
                max_skew=s.max_skew,
                hard=s.when_unsatisfiable is WhenUnsatisfiable.DO_NOT_SCHEDULE,
            )
            for s in placement.spread
        ),
        affinity=required,
        preferred_affinity=preferred,
        anti_affinity=anti_required,
        preferred_anti_affinity=anti_preferred,
        priority=placement.priority,
        preempt=placement.preemption_policy is PreemptionPolicy.PREEMPT_LOWER_PRIORITY,
        strategy=Strategy(placement.strategy.value),
    )


# --- which indices move ------------------------------------------------------


@dataclass(frozen=True)
class Move:
    index: int
    why: str  # for the event: "target podman unhealthy for 2.1s"
    kind: str  # STALE_FENCED or STALE_SURGE


def still_eligible(workload: Workload, view: TargetView, excluded: Mapping[str, str]) -> str | None:
    """Why a running replica must leave ``view`` although it is healthy (None:
    it may stay). Like Kubernetes, taints and capacity are judged only when
    placing; a placement the spec no longer allows is moved."""
    placement = workload.spec.placement
    if placement.targets and view.name not in placement.targets:
        return f"target {view.name} is no longer in placement.targets"
    if any(view.labels.get(k) != v for k, v in placement.target_selector.items()):
        return f"target {view.name} no longer matches targetSelector"
    if workload.spec.isolation.value not in view.isolation_tiers:
        return f"target {view.name} no longer offers isolation tier {workload.spec.isolation.value}"
    if view.name in excluded:
        return f"target {view.name}: {excluded[view.name]}"
    return None


def moves(
    workload: Workload,
    placements: Placements,
    views: Mapping[str, TargetView],
    excluded: Mapping[str, str],
    *,
    now: float,
    grace: float,
) -> tuple[list[Move], float | None]:
    """Placed indices that must move, and when to look again for a target
    that is unhealthy but still within its grace period."""
    found: list[Move] = []
    wake: float | None = None
    for index, slot in sorted(placements.slots.items()):
        if index >= workload.spec.replicas:
            continue  # scaled down: released by the caller, not moved
        view = views.get(slot.target)
        if view is None:
            found.append(Move(index, f"target {slot.target} was removed", STALE_FENCED))
            continue
        if not view.healthy:
            down_for = now - view.health_since if view.health_since else grace
            if down_for >= grace:
                found.append(
                    Move(
                        index,
                        f"target {slot.target} unhealthy for {down_for:.1f}s",
                        STALE_FENCED,
                    )
                )
            else:
                left = grace - down_for
                wake = left if wake is None else min(wake, left)
            continue
        if view.draining:
            found.append(Move(index, f"target {slot.target} is draining", STALE_SURGE))
            continue
        why = still_eligible(workload, view, excluded)
        if why is not None:
            found.append(Move(index, why, STALE_SURGE))
    return found, wake


def state_targets(views: Iterable[TargetView]) -> list[TargetState]:
    return [target_state(v) for v in sorted(views, key=lambda v: v.name)]


__all__ = [
    "KIND_WORKLOAD",
    "STALE_FENCED",
    "STALE_SURGE",
    "Move",
    "Placements",
    "Slot",
    "ask_for",
    "moves",
    "placed_replicas",
    "replicas_of",
    "state_targets",
    "still_eligible",
    "target_state",
    "workload_labels",
]
