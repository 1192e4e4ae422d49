"""The scheduler's scores: how much a feasible target suits one replica.

Each score is normalised to 0..100; the total is the weighted sum, and the
highest total wins (ties: the first target by name). The weights decide
which preference wins when they pull apart:

============== ====== ==========================================================
score          weight what it prefers
============== ====== ==========================================================
resources      1      ``spread``: the emptiest target after placing (free share
                      of memory and CPU, averaged); ``binpack``: the fullest.
                      A part whose capacity is unknown scores a neutral 50.
keep_together  2      targets already running a replica of the workload (100,
                      else 0); only when the ask has no spread rule and no
                      preferred anti-affinity. Outweighs any resource
                      difference (200 > 100).
spread         2      soft spread rules: 100 / (skew after placing), averaged
                      over the soft rules; a target without the key scores 0.
taints         4      no untolerated PreferNoSchedule taint (100, else 0).
                      Outweighs keep-together and resources together (400 > 300).
affinity       5      preferred (anti-)affinity: P = weights of the preferred
                      terms with a match in the target's domain, A = those of
                      the preferred anti-affinity terms with one; scaled onto
                      0..100 as 100 (P - A + ΣA) / (ΣP + ΣA). A full swing
                      outweighs a taint (500 > 400), and keep-together and
                      resources together (500 > 300).
============== ====== ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from portway.scheduler.model import Strategy

NEUTRAL = 50.0


@dataclass(frozen=True)
class Weights:
    resources: int = 1
    """Least- or most-allocated: the weakest preference, it only breaks ties
    between targets that the others rank alike."""
    keep_together: int = 2
    """A workload's replicas stay on one backend unless its spec spreads them
    (portway's targets are whole, different backends)."""
    spread: int = 2
    """Soft spread: as strong as keep-together (they never apply together)."""
    taints: int = 4
    """An operator's PreferNoSchedule wins over portway's own defaults."""
    affinity: int = 5
    """What the workload's author asked for explicitly wins over the defaults."""


WEIGHTS = Weights()


def _free_share(total: float | None, used_after: float) -> float:
    if total is None:
        return NEUTRAL
    if total <= 0:
        return 0.0
    return max(0.0, min(100.0, 100.0 * (total - used_after) / total))


def resource_score(
    strategy: Strategy,
    total_memory: int | None,
    total_cpu: float | None,
    memory_after: int,
    cpu_after: float,
) -> float:
    """``memory_after``/``cpu_after``: what the target commits once the replica is on it."""
    free = (_free_share(total_memory, memory_after) + _free_share(total_cpu, cpu_after)) / 2
    return free if strategy is Strategy.SPREAD else 100.0 - free


def keep_together_score(runs_here: bool) -> float:
    return 100.0 if runs_here else 0.0


def spread_score(skews: list[int | None]) -> float:
    """``skews``: per soft rule, the skew after placing here (at least 1), or
    None when the target lacks the rule's key."""
    if not skews:
        return 0.0
    return sum(100.0 / s for s in skews if s is not None) / len(skews)


def taint_score(untolerated_prefer_no_schedule: bool) -> float:
    return 0.0 if untolerated_prefer_no_schedule else 100.0


def affinity_score(preferred: int, preferred_total: int, anti: int, anti_total: int) -> float:
    """``preferred``/``anti``: the summed weights of the preferred (anti-)affinity
    terms with a match in the domain; the totals: of all such terms."""
    span = preferred_total + anti_total
    if span <= 0:
        return 0.0
    return 100.0 * (preferred - anti + anti_total) / span


def resource_label(strategy: Strategy) -> str:
    return "least-allocated" if strategy is Strategy.SPREAD else "most-allocated"
