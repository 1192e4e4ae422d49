"""fits(): a workload's limits plus its tier's per-replica overhead against free capacity."""

from __future__ import annotations

from typing import Any

from portway.drivers.base import RuntimeHandler
from portway.scheduler.fit import Capacity, fits, misfit, request_of
from portway.spec.model import WorkloadSpec

MI = 1024 * 1024
GVISOR = RuntimeHandler("sandboxed", "runsc", overhead_memory=64 * MI, overhead_cpu=0.01)
RUNC = RuntimeHandler("standard", "runc")


def spec(**fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"image": "portway/busybox:latest", **fields})


def test_overhead_is_added_once_per_replica() -> None:
    workload = spec(replicas=3, isolation="sandboxed", resources={"memory": "100Mi", "cpu": 0.5})
    need = request_of(workload, GVISOR)
    assert need.memory == 3 * (100 + 64) * MI
    assert abs(need.cpu - 3 * 0.51) < 1e-9
    assert request_of(workload, RUNC).memory == 300 * MI
    assert request_of(workload, None).memory == 300 * MI


def test_a_workload_that_fits_under_runc_may_not_fit_in_a_sandbox() -> None:
    workload = spec(replicas=2, resources={"memory": "100Mi"})
    capacity = Capacity(memory=250 * MI)
    assert fits(workload, RUNC, capacity)
    sandboxed = spec(replicas=2, isolation="sandboxed", resources={"memory": "100Mi"})
    why = misfit(sandboxed, GVISOR, capacity)
    assert why is not None
    assert "needs 328Mi of memory for 2 replica(s)" in why
    assert "sandboxed runtime's overhead of 64Mi and 0.01 cores per replica" in why
    assert "250Mi free" in why
    assert not fits(sandboxed, GVISOR, capacity)


def test_cpu_and_unknown_capacity() -> None:
    workload = spec(replicas=4, isolation="sandboxed", resources={"cpu": 0.5})
    assert not fits(workload, GVISOR, Capacity(cpu=2.0))  # 4 x 0.51 > 2
    assert fits(workload, GVISOR, Capacity(cpu=2.04))
    assert "needs 2.04 cores" in (misfit(workload, GVISOR, Capacity(cpu=2.0)) or "")
    assert fits(workload, GVISOR, Capacity())  # nothing known: nothing refused


def test_no_limit_still_pays_the_overhead() -> None:
    workload = spec(replicas=2, isolation="sandboxed")
    assert request_of(workload, GVISOR).memory == 128 * MI
    assert not fits(workload, GVISOR, Capacity(memory=100 * MI))
    assert fits(spec(replicas=2), RUNC, Capacity(memory=100 * MI))
