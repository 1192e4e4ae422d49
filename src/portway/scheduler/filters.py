"""The scheduler's filters: why a target cannot take one replica of an ask.

Each filter's answer is a short reason that users see counted, as in
Kubernetes' "0/5 targets available: 2 lack isolation tier sandboxed,
3 insufficient memory". The order is part of the contract: a target is
counted under the first filter it fails.

1. ``placement.targets``          "not in placement.targets"
2. ``targetSelector``             "do not match targetSelector"
3. ``Ask.excluded``               the caller's own reason
4. health, then cordon            "unhealthy", "cordoned"
5. isolation tier                 "lack isolation tier <tier>"
6. NoSchedule taints              "have untolerated taint <taint>"
7. memory, then CPU               "insufficient memory", "insufficient cpu"
8. hard spread                    "lack label <key>", "would exceed maxSkew <n> over <key>"
9. required affinity              "do not satisfy affinity"
10. required anti-affinity        "conflict with anti-affinity"

Filters 1-6 depend only on the target and the ask ("static"); 7-10 also on
what is placed, so ``portway.scheduler.state`` checks them on every
candidate. This module holds the static ones and the reason strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from portway.scheduler.fit import Request
from portway.scheduler.model import Ask, Effect, Taint, TargetState, Toleration

NOT_NAMED = "not in placement.targets"
NO_SELECTOR_MATCH = "do not match targetSelector"
UNHEALTHY = "unhealthy"
CORDONED = "cordoned"
INSUFFICIENT_MEMORY = "insufficient memory"
INSUFFICIENT_CPU = "insufficient cpu"
NO_AFFINITY = "do not satisfy affinity"
ANTI_AFFINITY = "conflict with anti-affinity"

#: float sums of CPU shares may overshoot by rounding; as in ``fit.shortfall``
CPU_EPSILON = 1e-9


def lacks_tier(tier: str) -> str:
    return f"lack isolation tier {tier}"


def untolerated_taint(taint: Taint) -> str:
    return f"have untolerated taint {taint}"


def lacks_label(key: str) -> str:
    return f"lack label {key}"


def exceeds_skew(max_skew: int, key: str) -> str:
    return f"would exceed maxSkew {max_skew} over {key}"


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Every pair of ``selector`` is in ``labels`` (an empty selector matches all)."""
    return all(labels.get(key) == value for key, value in selector.items())


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' ``Toleration.ToleratesTaint``: an empty effect matches every
    effect, an empty key every key; ``Exists`` ignores the value."""
    if toleration.effect is not None and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator == "Exists":
        return True
    return toleration.value == taint.value


def untolerated(
    taints: Iterable[Taint], tolerations: Iterable[Toleration], effect: Effect
) -> list[Taint]:
    """The taints with ``effect`` that no toleration tolerates, in the target's order."""
    tolerations = tuple(tolerations)
    return [
        taint
        for taint in taints
        if taint.effect == effect and not any(tolerates(t, taint) for t in tolerations)
    ]


def static_rejection(target: TargetState, labels: Mapping[str, str], ask: Ask) -> str | None:
    """Filters 1-6 for one target (``labels``: its labels as the scheduler sees
    them, ``portway.dev/target`` included); None when it passes them all."""
    if ask.names and target.name not in ask.names:
        return NOT_NAMED
    if not matches(ask.selector, labels):
        return NO_SELECTOR_MATCH
    excluded = ask.excluded.get(target.name)
    if excluded is not None:
        return excluded
    if not target.healthy:
        return UNHEALTHY
    if target.cordoned:
        return CORDONED
    if ask.tier not in target.tiers:
        return lacks_tier(ask.tier)
    refused = untolerated(target.taints, ask.tolerations, Effect.NO_SCHEDULE)
    if refused:
        return untolerated_taint(refused[0])
    return None


def resource_rejection(
    total_memory: int | None, total_cpu: float | None, used: Request, cost: Request
) -> str | None:
    """Filter 7: would ``cost`` on top of ``used`` exceed a known total?
    An unknown (None) total never refuses."""
    if total_memory is not None and used.memory + cost.memory > total_memory:
        return INSUFFICIENT_MEMORY
    if total_cpu is not None and used.cpu + cost.cpu > total_cpu + CPU_EPSILON:
        return INSUFFICIENT_CPU
    return None
