"""P3: scheduler throughput, 50,000 replicas over 5,000 simulated targets.

Pure: no engine, no store. Random but seeded targets (regions x zones x
clouds labels, isolation tiers with overhead, taints, some unhealthy or
cordoned, a small tainted "gpu" pool) and 500 workloads of 100 replicas
with mixed constraints (selectors, tiers, tolerations, ~25% hard spread over
zone, ~10% required anti-affinity per target, ~10% preferred affinity, some
preferred anti-affinity or soft spread, binpack or spread, priorities; the
gpu pool is filled by low-priority batch workloads and then preempted by
critical ones). Each workload is one ``ClusterState.schedule`` call on one
state, in order.

Measured in the same run:
  main      all 50,000 replicas at 5,000 targets (``--runs``, default 3);
            RESULT = the median placements/s
  growth    the same 50,000 replicas at 500 and 20,000 targets (capacity per
            target scaled so the cluster is as full), one run each
  peer      there is no kube-scheduler here, so the peer is the same
            scheduler without sampling (every feasible target scored) on a
            slice (the first ``--slice`` workloads at 5,000 targets),
            interleaved with the sampling one on the same slice
Published anchors are printed as text, not measured.

Usage: .venv/bin/python bench/p3_scheduler.py [--runs N] [--slice W] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import common as c

# import the scheduler of this checkout, whichever one the venv was installed from
sys.path.insert(0, str(c.REPO / "src"))

from portway.scheduler.fit import Capacity, Request
from portway.scheduler.model import (
    TARGET_KEY,
    AffinityTerm,
    Ask,
    Effect,
    Overhead,
    SpreadRule,
    Strategy,
    Taint,
    TargetState,
    Toleration,
)
from portway.scheduler.state import DEFAULT_SAMPLE, ClusterState

NAME = "p3_placements_per_second"
TARGET = 5000
TARGETS = 5_000
WORKLOADS = 500
REPLICAS = 100
SEED = 3

MIB = 1024 * 1024
GIB = 1024 * MIB
REGIONS = ("eu", "us", "ap", "sa")
ZONES = ("a", "b", "c")
CLOUDS = ("aws", "gcp", "onprem")
SANDBOX = Overhead(memory=64 * MIB, cpu=0.1)
WASM = Overhead(memory=8 * MIB, cpu=0.01)
GPU_TAINT = Taint("gpu", "yes", Effect.NO_SCHEDULE)
BATCH_TAINT = Taint("dedicated", "batch", Effect.NO_SCHEDULE)
SOON_GONE = Taint("maintenance", "", Effect.PREFER_NO_SCHEDULE)
GPU_POOL = 0.01  # share of targets in the gpu pool

ANCHORS = (
    "kube-scheduler: CI performance thresholds of about 680-810 pods/s at 5,000 nodes "
    "(scheduler_perf; Go, sampling with percentageOfNodesToScore, parallel filter/score)",
    "Nomad C2M (2020): about 1,500 placements/s cluster-wide "
    "(2 million containers, as published by HashiCorp)",
)


def make_targets(n: int, rng: random.Random) -> list[TargetState]:
    """``n`` targets; capacity per target scaled by TARGETS/n so that the same
    workloads fill any size of cluster alike."""
    scale = TARGETS / n
    out = []
    for i in range(n):
        name = f"t{i:05d}"
        region, zone, cloud = rng.choice(REGIONS), rng.choice(ZONES), rng.choice(CLOUDS)
        labels = {
            "region": region,
            "zone": f"{region}-{zone}",
            "cloud": cloud,
            "disk": rng.choice(("ssd", "hdd")),
            TARGET_KEY: name,
        }
        tiers = {"standard": Overhead()}
        if rng.random() < 0.4:
            tiers["sandboxed"] = SANDBOX
        if rng.random() < 0.2:
            tiers["wasm"] = WASM
        taints: tuple[Taint, ...] = ()
        size = rng.choice((4, 8, 16))
        if i % int(1 / GPU_POOL) == 7:
            labels["pool"] = "gpu"
            taints = (GPU_TAINT,)
            size = 8
        elif rng.random() < 0.05:
            taints = (BATCH_TAINT,)
        elif rng.random() < 0.05:
            taints = (SOON_GONE,)
        unknown = rng.random() < 0.03 and "pool" not in labels
        capacity = (
            Capacity()
            if unknown
            else Capacity(memory=int(size * GIB * scale), cpu=size / 2 * scale)
        )
        out.append(
            TargetState(
                name=name,
                labels=labels,
                healthy=rng.random() > 0.01,
                cordoned=rng.random() < 0.01,
                tiers=tiers,
                capacity=capacity,
                taints=taints,
            )
        )
    return out


def make_asks(rng: random.Random) -> list[Ask]:
    asks: list[Ask] = []
    late: list[Ask] = []
    for w in range(WORKLOADS):
        name = f"bench/w{w:03d}"
        labels = {"app": f"w{w:03d}", "portway.dev/workload": name}
        own = {"app": labels["app"]}
        indices = tuple(range(REPLICAS))
        memory = rng.choice((128, 256, 512, 1024)) * MIB
        cpu = rng.choice((0.1, 0.25, 0.5, 1.0))
        if w % 125 == 1:  # low-priority batch filling the gpu pool
            asks.append(
                Ask(
                    name,
                    indices,
                    labels=labels,
                    request=Request(GIB, 0.25),
                    selector={"pool": "gpu"},
                    tolerations=(Toleration("gpu", "Exists"),),
                    priority=10,
                    strategy=Strategy.BINPACK,
                )
            )
            continue
        if w % 250 == 5:  # critical, later, preempts batch in the gpu pool
            late.append(
                Ask(
                    name,
                    indices,
                    labels=labels,
                    request=Request(GIB, 0.25),
                    selector={"pool": "gpu"},
                    tolerations=(Toleration("gpu", "Equal", "yes", Effect.NO_SCHEDULE),),
                    priority=1000,
                )
            )
            continue
        roll = rng.random()
        selector: dict[str, str] = {}
        if roll < 0.15:
            selector = {"cloud": rng.choice(CLOUDS)}
        elif roll < 0.3:
            selector = {"region": rng.choice(REGIONS)}
        elif roll < 0.35:
            selector = {"disk": "ssd"}
        tier = rng.choices(("standard", "sandboxed", "wasm"), (0.7, 0.2, 0.1))[0]
        tolerations = (Toleration("dedicated", "Equal", "batch"),) if rng.random() < 0.1 else ()
        spread: tuple[SpreadRule, ...] = ()
        anti: tuple[AffinityTerm, ...] = ()
        preferred: tuple[AffinityTerm, ...] = ()
        preferred_anti: tuple[AffinityTerm, ...] = ()
        roll = rng.random()
        if roll < 0.25:
            spread = (SpreadRule("zone", max_skew=rng.choice((1, 2))),)
        elif roll < 0.30:
            spread = (SpreadRule("region", max_skew=1, hard=False),)
        roll = rng.random()
        if roll < 0.10:
            anti = (AffinityTerm(own, TARGET_KEY),)
        elif roll < 0.20 and w > 10:
            other = {"app": f"w{rng.randrange(w):03d}"}
            preferred = (AffinityTerm(other, "zone", weight=50),)
        elif roll < 0.25:
            preferred_anti = (AffinityTerm(own, "region", weight=30),)
        asks.append(
            Ask(
                name,
                indices,
                labels=labels,
                request=Request(memory, cpu),
                tier=tier,
                selector=selector,
                tolerations=tolerations,
                spread=spread,
                anti_affinity=anti,
                preferred_affinity=preferred,
                preferred_anti_affinity=preferred_anti,
                priority=rng.choice((50, 50, 50, 100)),
                strategy=Strategy.BINPACK if rng.random() < 0.2 else Strategy.SPREAD,
            )
        )
    return asks + late


@dataclass(frozen=True)
class Run:
    targets: int
    asks: int
    placed: int
    unplaced: int
    victims: int
    build: float  # seconds to build the ClusterState
    seconds: float  # seconds in schedule()
    spread: float  # mean targets per workload
    sampled: bool

    @property
    def rate(self) -> float:
        return self.placed / self.seconds if self.seconds else 0.0


def run_once(targets: Sequence[TargetState], asks: Sequence[Ask], sample: int | None) -> Run:
    gc.collect()
    start = time.perf_counter()
    state = ClusterState(targets, sample=sample)
    built = time.perf_counter()
    placed = unplaced = victims = 0
    for ask in asks:
        decision = state.schedule(ask)
        placed += len(decision.placed)
        unplaced += len(decision.unplaced)
        victims += sum(len(a.victims) for a in decision.placed)
    done = time.perf_counter()
    per_workload: dict[str, set[str]] = {}
    for replica in state.replicas():
        per_workload.setdefault(replica.workload, set()).add(replica.target)
    mean_targets = statistics.fmean(len(t) for t in per_workload.values()) if per_workload else 0
    check_capacity(state, targets)
    return Run(
        targets=len(targets),
        asks=len(asks),
        placed=placed,
        unplaced=unplaced,
        victims=victims,
        build=built - start,
        seconds=done - built,
        spread=mean_targets,
        sampled=sample is not None,
    )


def check_capacity(state: ClusterState, targets: Sequence[TargetState]) -> None:
    """The hard rule the benchmark can check cheaply: nothing over capacity."""
    for target in targets:
        free = state.free(target.name)
        if (free.memory is not None and free.memory < 0) or (
            free.cpu is not None and free.cpu < -1e-6
        ):
            raise c.BenchError(f"{target.name} is over capacity: free {free}")


def describe(label: str, run: Run) -> str:
    return (
        f"{label:<22}{run.targets:>8}{run.placed:>9}{run.unplaced:>9}{run.victims:>9}"
        f"{run.build:>9.2f}{run.seconds:>9.2f}{run.rate:>11.0f}{run.spread:>10.1f}"
    )


HEADER = (
    f"{'run':<22}{'targets':>8}{'placed':>9}{'unplaced':>9}{'evicted':>9}"
    f"{'build_s':>9}{'sched_s':>9}{'placed/s':>11}{'tgt/wl':>10}"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="main runs (default 3)")
    parser.add_argument("--slice", type=int, default=10, help="workloads in the peer slice")
    parser.add_argument("--quick", action="store_true", help="1 main run, no 20,000 targets")
    opts = parser.parse_args()
    runs = opts.runs or (1 if opts.quick else 3)
    if runs < 1 or opts.slice < 1:
        c.fail("--runs and --slice must be at least 1")

    asks = make_asks(random.Random(SEED))
    replicas = sum(len(a.indices) for a in asks)
    targets = make_targets(TARGETS, random.Random(SEED))
    c.log(f"{replicas} replicas in {len(asks)} workloads over {TARGETS} targets")

    main_runs: list[Run] = []
    slice_sampled: list[Run] = []
    slice_exhaustive: list[Run] = []
    peer_asks = asks[: opts.slice]
    for i in range(runs):
        c.log(f"main run {i + 1}/{runs} ...")
        main_runs.append(run_once(targets, asks, DEFAULT_SAMPLE))
        # the peer interleaved with the main runs, its order alternating
        pair = [(slice_sampled, DEFAULT_SAMPLE), (slice_exhaustive, None)]
        for bucket, sample in pair if i % 2 == 0 else reversed(pair):
            c.log(f"slice ({len(peer_asks)} workloads), sample={sample} ...")
            bucket.append(run_once(targets, peer_asks, sample))

    growth: list[Run] = []
    for n in (500, 20_000) if not opts.quick else (500,):
        c.log(f"growth: {n} targets ...")
        growth.append(run_once(make_targets(n, random.Random(SEED)), asks, DEFAULT_SAMPLE))

    rate = c.median([r.rate for r in main_runs])
    print(
        f"P3 scheduler: {replicas} replicas in {len(asks)} workloads, sample={DEFAULT_SAMPLE} "
        f"feasible targets per placement, Python {sys.version.split()[0]}, one process"
    )
    print(HEADER)
    for i, run in enumerate(main_runs, 1):
        print(describe(f"main #{i}", run))
    for run in slice_sampled:
        print(describe("slice sampled", run))
    for run in slice_exhaustive:
        print(describe("slice exhaustive", run))
    for run in growth:
        print(describe("growth", run))
    print()
    by_size = sorted([*growth, min(main_runs, key=lambda r: r.seconds)], key=lambda r: r.targets)
    base = next(r for r in by_size if r.targets == TARGETS)
    print("growth of the total time with the number of targets (same 50,000 replicas):")
    print(f"{'targets':>10}{'sched_s':>10}{'placed/s':>11}{'x time':>9}")
    for run in by_size:
        print(
            f"{run.targets:>10}{run.seconds:>10.2f}{run.rate:>11.0f}"
            f"{run.seconds / base.seconds:>9.2f}"
        )
    sampled_rate = c.median([r.rate for r in slice_sampled])
    exhaustive_rate = c.median([r.rate for r in slice_exhaustive])
    print()
    print(
        f"peer (same scheduler, no sampling) on {len(peer_asks)} workloads at {TARGETS} "
        f"targets: {exhaustive_rate:.0f} placements/s; sampled {sampled_rate:.0f}; "
        f"ratio sampled/exhaustive {sampled_rate / exhaustive_rate:.1f}"
    )
    print(
        "  targets per workload (keep-together quality): sampled "
        f"{c.median([r.spread for r in slice_sampled]):.2f}, exhaustive "
        f"{c.median([r.spread for r in slice_exhaustive]):.2f}"
    )
    print("published anchors (not measured here):")
    for anchor in ANCHORS:
        print(f"  - {anchor}")
    print(
        "notes: unplaced replicas are the gpu pool's batch overflow (by design) and, at 500 "
        "targets, asks whose constraints (one replica per target, hard spread) need more "
        "targets than match; evicted = batch replicas preempted by critical ones"
    )
    print(c.result_line(NAME, rate, TARGET, decimals=0))
    return 0


if __name__ == "__main__":
    c.run_main(main)
