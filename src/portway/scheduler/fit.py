"""Does a workload fit a target's free resources, sandbox overhead included?

Pure, like placement: the caller passes the target's free capacity and the
runtime handler of the workload's isolation tier. A tier's handler may cost
more than the workload's own limits (a gVisor sandbox: its Sentry and gofer;
Kubernetes RuntimeClass ``overhead``), and that cost is paid once per
replica, so it is added to every replica's request.

Placement asks ``shortfall`` of every candidate target (see
``portway.controller.capacity``): a target whose free memory or CPU cannot
hold the workload's replicas, overhead included, is not chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from portway.spec.model import WorkloadSpec

_MIB = 1024 * 1024


class Overhead(Protocol):
    """What a runtime handler costs per replica beyond the workload's limits
    (``portway.drivers.base.RuntimeHandler`` has this shape; the scheduler
    may not import drivers)."""

    @property
    def overhead_memory(self) -> int: ...  # bytes

    @property
    def overhead_cpu(self) -> float: ...  # cores


@dataclass(frozen=True)
class Capacity:
    """A target's free resources; None: unknown, so never the reason to refuse."""

    memory: int | None = None  # bytes
    cpu: float | None = None  # cores


@dataclass(frozen=True)
class Request:
    """What all replicas of a workload ask for, overhead included."""

    memory: int  # bytes
    cpu: float  # cores

    def __add__(self, other: Request) -> Request:
        return Request(self.memory + other.memory, self.cpu + other.cpu)


NOTHING = Request(0, 0.0)


def free_of(total: Capacity, used: Request) -> Capacity:
    """What is left of a target's ``total`` once ``used`` is committed."""
    return Capacity(
        memory=None if total.memory is None else total.memory - used.memory,
        cpu=None if total.cpu is None else total.cpu - used.cpu,
    )


def request_of(spec: WorkloadSpec, handler: Overhead | None) -> Request:
    """Replicas x (limit + overhead). A workload without a memory or CPU limit
    asks only for the overhead of that resource: its own use is unknown."""
    replicas = spec.replicas
    memory = (spec.resources.memory or 0) + (handler.overhead_memory if handler else 0)
    cpu = (spec.resources.cpu or 0.0) + (handler.overhead_cpu if handler else 0.0)
    return Request(memory=replicas * memory, cpu=replicas * cpu)


def misfit(spec: WorkloadSpec, handler: Overhead | None, capacity: Capacity) -> str | None:
    """Why the workload does not fit ``capacity`` (None: it fits)."""
    need = request_of(spec, handler)
    extra = ""
    if handler is not None and (handler.overhead_memory or handler.overhead_cpu):
        extra = (
            f" (including the {spec.isolation.value} runtime's overhead of "
            f"{handler.overhead_memory / _MIB:g}Mi and {handler.overhead_cpu:g} cores per replica)"
        )
    if capacity.memory is not None and need.memory > capacity.memory:
        return (
            f"needs {need.memory / _MIB:g}Mi of memory for {spec.replicas} replica(s){extra}; "
            f"{capacity.memory / _MIB:g}Mi free"
        )
    if capacity.cpu is not None and need.cpu > capacity.cpu + 1e-9:
        return (
            f"needs {need.cpu:g} cores for {spec.replicas} replica(s){extra}; {capacity.cpu:g} free"
        )
    return None


def fits(spec: WorkloadSpec, handler: Overhead | None, capacity: Capacity) -> bool:
    return misfit(spec, handler, capacity) is None


def shortfall(spec: WorkloadSpec, handler: Overhead | None, capacity: Capacity) -> str | None:
    """The short reason placement counts ("insufficient memory"), or None."""
    need = request_of(spec, handler)
    if capacity.memory is not None and need.memory > capacity.memory:
        return "insufficient memory"
    if capacity.cpu is not None and need.cpu > capacity.cpu + 1e-9:
        return "insufficient cpu"
    return None
