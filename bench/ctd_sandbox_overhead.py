"""What a gVisor sandbox costs on containerd: memory and idle CPU of one idle
busybox replica in the sandboxed tier (runsc) against the same replica in the
standard tier (runc), measured in the same run.

Each round creates and starts one replica per tier through portway's
containerd driver (in this process; the order alternates between rounds),
running ``sleep`` under tini, waits a settle period, then sums over every host
process the replica adds (the replica's containerd-shim-runc-v2 and all its
descendants: portway's logger, tini and sleep under runc; runsc's gofer,
sandbox and its Sentry threads under runsc):

- PSS (``/proc/PID/smaps_rollup``: shared pages split among their users; one
  replica at a time, so the figure is the pessimistic one), and RSS;
- the replica's memory cgroup usage (what ``stats()`` reports);
- CPU (utime+stime) over an idle window.

The sandbox's overhead is the sandboxed median minus the standard median. The
driver's ``_sandbox.OVERHEAD_MEMORY`` must cover it: RESULT is the measured
memory overhead in MiB, its target that constant in MiB (lower is better).

Usage: PYTHONPATH=src .venv/bin/python bench/ctd_sandbox_overhead.py [--rounds N] [--idle S]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common as c

NAME = "ctd_sandbox_memory_overhead_mib"
TIERS = ("standard", "sandboxed")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    tier: str
    processes: int
    pss: int  # bytes
    rss: int  # bytes
    cgroup: int  # bytes, as the driver's stats() reports
    cpu: float  # seconds over the idle window


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = (entry / "stat").read_text()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def shim_of(container_id: str) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"containerd-shim-runc-v2") and container_id.encode() in argv:
                return int(entry.name)
    raise c.BenchError(f"no containerd-shim-runc-v2 found for {container_id}")


def subtree(root: int) -> list[int]:
    tree = children()
    found = [root]
    for pid in found:
        found.extend(tree.get(pid, []))
    return found


def memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in bytes; (0, 0) for a process that is gone or has no memory."""
    pss = rss = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Pss", "Rss"):
                kib = int(value.split()[0]) * 1024
                pss, rss = (kib, rss) if key == "Pss" else (pss, kib)
    return pss, rss


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += c.cpu_seconds(pid)
    return total


@contextlib.contextmanager
def replica(driver: Any, namespace: str, tier: str, index: int) -> Iterator[Any]:
    from portway.drivers.base import ReplicaRequest
    from portway.spec.model import WorkloadSpec

    spec = WorkloadSpec.model_validate(
        {"image": c.IMAGE, "isolation": tier, "command": ["sleep", "100000"]}
    )
    request = ReplicaRequest(
        namespace=namespace,
        workload=tier,
        index=index,
        generation=1,
        template_hash=spec.template_hash(),
        spec=spec,
    )
    handle = driver.create(request)
    try:
        driver.start(handle)
        yield handle
    finally:
        driver.destroy(handle)


def measure(
    driver: Any, namespace: str, tier: str, index: int, settle: float, idle: float
) -> Sample:
    with replica(driver, namespace, tier, index) as handle:
        time.sleep(settle)
        pids = subtree(shim_of(handle.id))
        before = cpu(pids)
        time.sleep(idle)
        used = cpu(pids) - before
        pss = rss = 0
        for pid in pids:
            p, r = memory(pid)
            pss, rss = pss + p, rss + r
        cgroup = driver.stats(handle).memory_bytes
    return Sample(tier, len(pids), pss, rss, cgroup, used)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--idle", type=float, default=5.0, help="CPU window in seconds")
    args = parser.parse_args()
    c.require_engine(c.CONTAINERD)

    from portway.drivers.base import LABEL_NAMESPACE
    from portway.drivers.containerd import _sandbox
    from portway.drivers.registry import open_driver

    driver = open_driver("bench-containerd", "containerd", c.CONTAINERD.address)
    if driver.capabilities().handler_for("sandboxed") is None:
        raise c.BenchError("the containerd target offers no sandboxed tier (run scripts/gvisor.sh)")
    namespace = c.unique_id("bench-sbx")
    samples: list[Sample] = []
    try:
        for index in range(args.rounds):
            order = TIERS if index % 2 == 0 else TIERS[::-1]
            for tier in order:
                sample = measure(driver, namespace, tier, index, args.settle, args.idle)
                c.log(
                    f"round {index + 1}/{args.rounds} {tier}: {sample.processes} processes, "
                    f"PSS {sample.pss / MIB:.1f} MiB, RSS {sample.rss / MIB:.1f} MiB, "
                    f"cgroup {sample.cgroup / MIB:.1f} MiB, CPU {sample.cpu * 1000:.0f} ms"
                )
                samples.append(sample)
    finally:
        for status in driver.list_owned({LABEL_NAMESPACE: namespace}):
            driver.destroy(status.handle)
        driver.close()

    def median(tier: str, field: str) -> float:
        return statistics.median(getattr(s, field) for s in samples if s.tier == tier)

    print(f"{'tier':10} {'procs':>5} {'PSS MiB':>8} {'RSS MiB':>8} {'cgroup MiB':>10} {'CPU %':>6}")
    for tier in TIERS:
        print(
            f"{tier:10} {median(tier, 'processes'):5.0f} {median(tier, 'pss') / MIB:8.1f} "
            f"{median(tier, 'rss') / MIB:8.1f} {median(tier, 'cgroup') / MIB:10.1f} "
            f"{100 * median(tier, 'cpu') / args.idle:6.2f}"
        )
    overhead = (median("sandboxed", "pss") - median("standard", "pss")) / MIB
    ratio = median("sandboxed", "pss") / max(1.0, median("standard", "pss"))
    cpu_overhead = (median("sandboxed", "cpu") - median("standard", "cpu")) / args.idle
    print(f"sandboxed/standard PSS ratio: {ratio:.2f}")
    print(f"memory overhead (PSS, median of {args.rounds}): {overhead:.1f} MiB")
    print(f"idle CPU overhead: {cpu_overhead:.4f} cores")
    print(f"declared: {_sandbox.OVERHEAD_MEMORY / MIB:.0f} MiB, {_sandbox.OVERHEAD_CPU} cores")
    print(f"RESULT {NAME} {overhead:.1f} target {_sandbox.OVERHEAD_MEMORY / MIB:.0f}")
    return 0


if __name__ == "__main__":
    c.run_main(main)
