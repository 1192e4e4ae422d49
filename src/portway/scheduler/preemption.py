"""Priority preemption: which lower-priority replicas to evict so that one
replica fits a target that is short only of memory or CPU.

Rules (Kubernetes' PreemptLowerPriority, simplified to resources):

- only replicas of strictly lower priority than the asker, never of the
  asker's own workload, never one the ask's required affinity may rely on;
- lowest priority first, then the largest request (to evict few), then by
  workload and index (determinism); then, like kube-scheduler's "reprieve",
  victims are given back, highest priority first, while the replica still
  fits without them;
- between targets: the smallest highest-victim-priority, then the fewest
  victims, then the target's name (``rank``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from portway.scheduler.filters import CPU_EPSILON
from portway.scheduler.model import PlacedReplica

_NO_PRIORITY = -(2**63)  # no victims at all: better than any


def eviction_order(replica: PlacedReplica) -> tuple[int, int, float, str, int]:
    """Sort key: who is evicted first."""
    return (
        replica.priority,
        -replica.request.memory,
        -replica.request.cpu,
        replica.workload,
        replica.index,
    )


def _short(memory: int, cpu: float) -> bool:
    return memory > 0 or cpu > CPU_EPSILON


def choose_victims(
    residents: Iterable[PlacedReplica],
    *,
    priority: int,
    workload: str,
    memory: int,
    cpu: float,
    spare: Callable[[PlacedReplica], bool] = lambda _: False,
) -> tuple[PlacedReplica, ...] | None:
    """Victims among ``residents`` (given in ``eviction_order``) that free at
    least ``memory`` bytes and ``cpu`` cores (what the target is short of;
    zero or less: nothing); None when no allowed set is enough. ``spare``
    marks replicas that must stay (the ask's required affinity needs them)."""
    short_memory, short_cpu = memory, cpu
    chosen: list[PlacedReplica] = []
    for replica in residents:
        if not _short(short_memory, short_cpu):
            break
        if replica.priority >= priority:
            break  # residents are in priority order: nothing later may go either
        if replica.workload == workload or spare(replica):
            continue
        chosen.append(replica)
        short_memory -= replica.request.memory
        short_cpu -= replica.request.cpu
    if _short(short_memory, short_cpu):
        return None
    # reprieve: give back whoever is not needed, highest priority first
    for replica in reversed(chosen[:]):
        if not _short(short_memory + replica.request.memory, short_cpu + replica.request.cpu):
            chosen.remove(replica)
            short_memory += replica.request.memory
            short_cpu += replica.request.cpu
    return tuple(chosen)


def rank(victims: Sequence[PlacedReplica], target: str) -> tuple[int, int, str]:
    """Smaller is better: highest victim priority, number of victims, name."""
    return (max((v.priority for v in victims), default=_NO_PRIORITY), len(victims), target)
