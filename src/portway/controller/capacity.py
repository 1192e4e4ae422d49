"""What placement knows of each target: its tiers and whether a workload's
replicas fit what the target has left.

A target's total comes from its fingerprint (``cpus``, ``memory``); what is
committed is the sum of the limits of every workload placed there, plus the
per-replica overhead of each workload's runtime handler (a gVisor sandbox
costs 32-40 MiB beyond the workload's own limit). Workloads without limits
commit only that overhead: their use is unknown, and refusing them would
make every target look full.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from portway.controller.records import KIND_WORKLOAD, TargetView, workload_of
from portway.controller.targets import TargetPool
from portway.errors import PortwayError
from portway.scheduler.fit import NOTHING, Capacity, Request, free_of, request_of, shortfall
from portway.scheduler.placement import Candidate
from portway.spec.model import Workload
from portway.store import Record, Store


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


def committed(records: Iterable[Record], views: Mapping[str, TargetView]) -> dict[str, Request]:
    """Per target, what the workloads placed there ask for, overhead included."""
    used: dict[str, Request] = {}
    for record in records:
        target = record.status.get("target")
        if not isinstance(target, str) or target not in views:
            continue
        try:
            spec = workload_of(record).spec
        except (PortwayError, ValueError):
            continue  # a record this version cannot read commits nothing
        handler = views[target].tiers.get(spec.isolation.value)
        used[target] = used.get(target, NOTHING) + request_of(spec, handler)
    return used


def candidates(
    store: Store,
    pool: TargetPool,
    views: Mapping[str, TargetView],
    workload: Workload,
    *,
    assume_healthy: bool = False,
) -> list[Candidate]:
    """Every target as placement sees it for ``workload`` (whose own record, if
    any, does not count against the target it is on)."""
    others = [r for r in store.list(KIND_WORKLOAD) if r.key != workload.key]
    used = committed(others, views)
    found = []
    for view in views.values():
        handler = view.tiers.get(workload.spec.isolation.value)
        free = free_of(total_of(view), used.get(view.name, NOTHING))
        found.append(
            Candidate(
                name=view.name,
                labels=view.labels,
                healthy=True if assume_healthy else view.healthy,
                cordoned=view.cordoned,
                isolation_tiers=pool.isolation_tiers(view),
                shortfall=shortfall(workload.spec, handler, free),
            )
        )
    return found
