"""``portway top``: the resource use of replicas now, in the same figures
``/metrics`` exposes (controller.sampling), read from the engines directly."""

from __future__ import annotations

import time
from dataclasses import dataclass

from portway.controller.sampling import ReplicaSample, ReplicaSampler, SamplerSettings
from portway.errors import InputError
from portway.service.app import App


@dataclass(frozen=True)
class Usage:
    sample: ReplicaSample
    #: CPU over the interval, in percent of one core (None: not sampled twice)
    cpu_percent: float | None


def replica_usage(
    app: App, namespace: str | None, workload: str | None, interval: float = 1.0
) -> list[Usage]:
    """Two stats passes ``interval`` seconds apart over the replicas asked
    for; CPU is the difference, memory and the counters the second pass."""
    if interval <= 0:
        raise InputError(f"--interval {interval}: expected a number of seconds above 0")
    sampler = ReplicaSampler(app.store, app.targets, SamplerSettings(period_seconds=interval))
    try:
        first = sampler.sample(namespace, workload)
        started = time.monotonic()
        time.sleep(interval)
        second = sampler.sample(namespace, workload)
        elapsed = time.monotonic() - started
    finally:
        sampler.close()
    before = {_key(s): s for s in first.replicas}
    found = []
    for sample in second.replicas:
        earlier = before.get(_key(sample))
        percent = None
        if sample.stats is not None and earlier is not None and earlier.stats is not None:
            used = sample.stats.cpu_seconds - earlier.stats.cpu_seconds
            percent = max(used, 0.0) / elapsed * 100.0
        found.append(Usage(sample, percent))
    return sorted(found, key=lambda u: (u.sample.namespace, u.sample.workload, u.sample.index))


def _key(sample: ReplicaSample) -> tuple[str, str, int, str]:
    return (sample.namespace, sample.workload, sample.index, sample.target)
