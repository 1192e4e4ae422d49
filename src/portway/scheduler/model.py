"""The scheduler's data: snapshots of targets and placed replicas, and what
one workload asks for. Plain frozen dataclasses, no I/O, no store records:
the controller builds these from the store (``portway.controller.scheduling``),
benchmarks build them from random numbers.

Conventions the controller relies on:

- Labels are plain strings. The controller adds ``portway.dev/target`` (the
  target's name) to every target's labels, so "one domain per target" is
  just another topology key; and ``portway.dev/namespace`` and
  ``portway.dev/workload`` to every workload's labels, so an affinity term
  naming a workload is a label selector like any other.
- A target's ``tiers`` maps each isolation tier it offers to what one
  replica costs beyond its own limits in that tier (a gVisor sandbox's
  Sentry and gofer). A tier missing from the map is not offered.
- Capacity parts that are None are unknown and never the reason to refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from portway.scheduler.fit import NOTHING, Capacity, Request

#: the topology key whose domain is the target itself
TARGET_KEY = "portway.dev/target"
NAMESPACE_KEY = "portway.dev/namespace"
WORKLOAD_KEY = "portway.dev/workload"

DEFAULT_PRIORITY = 50


class Effect(StrEnum):
    NO_SCHEDULE = "NoSchedule"  # hard: nothing without a toleration is placed there
    PREFER_NO_SCHEDULE = "PreferNoSchedule"  # soft: scored down


class Strategy(StrEnum):
    SPREAD = "spread"  # least-allocated: prefer the emptiest target
    BINPACK = "binpack"  # most-allocated: fill targets before using another


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: Effect = Effect.NO_SCHEDULE

    def __str__(self) -> str:
        return (
            f"{self.key}={self.value}:{self.effect.value}"
            if self.value
            else (f"{self.key}:{self.effect.value}")
        )


@dataclass(frozen=True)
class Toleration:
    """Kubernetes semantics: operator Exists matches any value (and, with an
    empty key, any taint); an empty effect matches every effect."""

    key: str = ""
    operator: str = "Equal"  # Equal | Exists
    value: str = ""
    effect: Effect | None = None


@dataclass(frozen=True)
class Overhead:
    """What one replica costs on a target in some tier beyond its own limits."""

    memory: int = 0  # bytes
    cpu: float = 0.0  # cores


@dataclass(frozen=True)
class TargetState:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    healthy: bool = True
    cordoned: bool = False
    tiers: Mapping[str, Overhead] = field(default_factory=lambda: {"standard": Overhead()})
    capacity: Capacity = field(default_factory=Capacity)  # total, not free
    taints: tuple[Taint, ...] = ()


@dataclass(frozen=True)
class PlacedReplica:
    """A replica already placed (running or about to be)."""

    workload: str  # "namespace/name"
    index: int
    target: str
    labels: Mapping[str, str] = field(default_factory=dict)  # the workload's labels
    priority: int = DEFAULT_PRIORITY
    request: Request = NOTHING  # what it commits on its target, overhead included


@dataclass(frozen=True)
class SpreadRule:
    """Replicas of the workload over the domains of ``topology_key``: the
    count in any domain minus the count in the emptiest eligible domain may
    not exceed ``max_skew`` (hard), or is only scored (soft). Domains are the
    values of the key on targets that pass the workload's static filters;
    targets without the key are not in any domain and, for a hard rule, not
    eligible (Kubernetes does the same)."""

    topology_key: str
    max_skew: int = 1
    hard: bool = True


@dataclass(frozen=True)
class AffinityTerm:
    """Replicas whose workload labels match ``selector`` (all pairs), counted
    per domain of ``topology_key``. ``weight`` (1-100) only for preferred terms."""

    selector: Mapping[str, str]
    topology_key: str = TARGET_KEY
    weight: int = 100


@dataclass(frozen=True)
class Ask:
    """Place replicas ``indices`` of one workload."""

    workload: str  # "namespace/name"
    indices: tuple[int, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    request: Request = NOTHING  # per replica, without tier overhead
    tier: str = "standard"
    selector: Mapping[str, str] = field(default_factory=dict)  # target labels required
    names: tuple[str, ...] = ()  # if not empty, only these targets
    #: targets refused for reasons decided outside (the planner's drift gate,
    #: a missing image): target -> short reason, counted like any filter's
    excluded: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    spread: tuple[SpreadRule, ...] = ()
    affinity: tuple[AffinityTerm, ...] = ()  # required: some match in the domain
    preferred_affinity: tuple[AffinityTerm, ...] = ()
    anti_affinity: tuple[AffinityTerm, ...] = ()  # required: no match in the domain
    preferred_anti_affinity: tuple[AffinityTerm, ...] = ()
    priority: int = DEFAULT_PRIORITY
    preempt: bool = True  # preemptionPolicy PreemptLowerPriority (False: Never)
    strategy: Strategy = Strategy.SPREAD


@dataclass(frozen=True)
class Assignment:
    index: int
    target: str
    reason: str  # why this target, for `get replicas -o wide`
    #: lower-priority replicas evicted to make room (empty when none)
    victims: tuple[PlacedReplica, ...] = ()


@dataclass(frozen=True)
class Unplaceable:
    """Why nothing fits, counted per reason over all targets, like
    Kubernetes' "0/5 targets available: 2 lack isolation tier sandboxed,
    3 insufficient memory"."""

    reasons: Mapping[str, int]
    total: int

    def message(self) -> str:
        parts = ", ".join(
            f"{n} {why}" for why, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        return f"0/{self.total} targets available" + (f": {parts}" if parts else "")


@dataclass(frozen=True)
class Decision:
    placed: tuple[Assignment, ...]
    #: indices left unplaced, with why (the same for all of them)
    unplaced: tuple[int, ...] = ()
    failure: Unplaceable | None = None
