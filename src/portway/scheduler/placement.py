"""Choose a target for a workload.

Pure: it sees only a snapshot of targets, so it can be tested and
benchmarked without engines. When nothing fits it says why, counted per
reason, like Kubernetes' "0/3 targets available: 2 unhealthy, 1 ...".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    name: str
    labels: Mapping[str, str]
    healthy: bool
    cordoned: bool
    isolation_tiers: frozenset[str]
    #: why the workload does not fit the target's free resources
    #: (``fit.shortfall``: "insufficient memory"), None when it fits
    shortfall: str | None = None


@dataclass(frozen=True)
class Placed:
    target: str


@dataclass(frozen=True)
class Unplaceable:
    reasons: Mapping[str, int]
    total: int

    def message(self) -> str:
        parts = ", ".join(f"{n} {why}" for why, n in sorted(self.reasons.items()))
        return f"0/{self.total} targets available" + (f": {parts}" if parts else "")


def _rejection(
    candidate: Candidate,
    selector: Mapping[str, str],
    names: Sequence[str],
    isolation: str,
) -> str | None:
    if names and candidate.name not in names:
        return "not in placement.targets"
    missing = [k for k, v in selector.items() if candidate.labels.get(k) != v]
    if missing:
        return "do not match targetSelector"
    if not candidate.healthy:
        return "unhealthy"
    if candidate.cordoned:
        return "cordoned"
    if isolation not in candidate.isolation_tiers:
        return f"lack isolation tier {isolation}"
    return candidate.shortfall


def choose_target(
    candidates: Sequence[Candidate],
    *,
    selector: Mapping[str, str],
    names: Sequence[str],
    isolation: str,
    current: str | None,
) -> Placed | Unplaceable:
    """Keep the current target while it stays eligible (no needless moves);
    otherwise the first eligible target by name, for determinism."""
    reasons: Counter[str] = Counter()
    eligible: list[str] = []
    for candidate in candidates:
        why = _rejection(candidate, selector, names, isolation)
        if why is None:
            eligible.append(candidate.name)
        else:
            reasons[why] += 1
    if current in eligible:
        return Placed(current)
    if eligible:
        return Placed(sorted(eligible)[0])
    return Unplaceable(dict(reasons), len(candidates))
