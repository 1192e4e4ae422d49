"""What one gVisor sandbox costs on the host: memory and idle CPU of an idle
busybox httpd replica under runsc versus the same container under runc.

For each engine (docker, podman) and runtime (runc, runsc), interleaved, each
round starts `ENGINE run -d --runtime R --init portway/busybox:latest httpd -f
-p 8080 -h /www` (podman through its CLI: its API cannot pick a runtime, see
portway.drivers.podman), waits --settle seconds, then measures every host
process that exists for the container: the engine's per-container parent
(containerd-shim for docker, conmon for podman) and all its descendants (under
runc: the init and httpd; under runsc also the Sentry "runsc-sandbox", the
gofer and the runsc helpers):

  memory  the sum of their PSS (/proc/PID/smaps_rollup), so pages shared with
          other processes (e.g. the runsc binary) count once per sharer
  cpu     the sum of their utime+stime over a --window seconds idle window

overhead = median(runsc) - median(runc), per engine. portway records the
sandboxed handler's RuntimeHandler.overhead_memory/overhead_cpu from these
figures, rounded up (portway.drivers.runtime_handlers).

RESULT is the larger memory overhead of the two engines in MiB; its target is
the recorded SANDBOX_OVERHEAD_MEMORY, which must stay above it.

Usage: .venv/bin/python bench/sandbox_overhead.py [--rounds N] [--settle S] [--window S]
           [--engine docker|podman|both]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common as c

RUNTIMES = ("runc", "runsc")
# the engine's process that parents one container's processes
PARENTS = {"docker": "containerd-shim", "podman": "conmon"}
MIB = 1024 * 1024


def pss_bytes(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0  # gone, or a kernel thread
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def parent_of(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[1])


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def container_tree(engine: str, name: str) -> list[int]:
    """The engine's per-container parent process and everything below it."""
    pid = int(c.run([engine, "inspect", "--format", "{{.State.Pid}}", name]).stdout.strip())
    if pid <= 0:
        raise c.BenchError(f"{engine} container {name} has no process")
    wanted = PARENTS[engine]
    probe = pid
    while probe > 1 and not comm(probe).startswith(wanted[:15]):  # comm is cut at 15
        probe = parent_of(probe)
    if probe <= 1:
        raise c.BenchError(f"no {wanted} above pid {pid} of {engine} container {name}")
    return [probe, *c.descendants(probe)]


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += c.cpu_seconds(pid)
        except OSError:
            continue
    return total


def measure(
    engine: str, runtime: str, name: str, settle: float, window: float
) -> tuple[float, float]:
    """(PSS MiB, CPU % of one core) of one idle container."""
    c.run(
        [
            engine,
            "run",
            "-d",
            "--init",
            "--runtime",
            runtime,
            "--name",
            name,
            "--label",
            f"portway.dev/bench={name}",
            c.IMAGE,
            *c.HTTPD_COMMAND,
            *c.HTTPD_ARGS,
        ]
    )
    try:
        time.sleep(settle)
        pids = container_tree(engine, name)
        before = cpu_of(pids)
        time.sleep(window)
        cpu = (cpu_of(pids) - before) / window * 100
        memory = sum(pss_bytes(p) for p in pids) / MIB
        c.log(
            f"{engine}/{runtime}: {len(pids)} processes "
            f"({', '.join(sorted({comm(p) for p in pids}))}): {memory:.1f} MiB, {cpu:.2f} %"
        )
        return memory, cpu
    finally:
        c.run([engine, "rm", "-f", name], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per engine (default 3)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=10.0, help="CPU window in seconds")
    parser.add_argument("--engine", choices=("docker", "podman", "both"), default="both")
    opts = parser.parse_args()
    if opts.rounds < 1:
        c.fail("--rounds must be at least 1")
    engines = ("docker", "podman") if opts.engine == "both" else (opts.engine,)
    for engine in engines:
        c.require_engine(c.ENGINES[engine])
    from portway.drivers.runtime_handlers import SANDBOX_OVERHEAD_CPU, SANDBOX_OVERHEAD_MEMORY

    run_id = c.unique_id("bench-sbx")
    memory: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for i in range(1, opts.rounds + 1):
        for engine in engines:
            order = RUNTIMES if i % 2 else RUNTIMES[::-1]
            for runtime in order:
                name = f"{run_id}-{engine}-{runtime}-{i}"
                mib, percent = measure(engine, runtime, name, opts.settle, opts.window)
                memory.setdefault((engine, runtime), []).append(mib)
                cpu.setdefault((engine, runtime), []).append(percent)

    print(f"gVisor sandbox overhead, idle busybox httpd, {opts.rounds} rounds")
    series = [
        c.Series(f"{engine}_{runtime}", memory[(engine, runtime)], "MiB PSS")
        for engine in engines
        for runtime in RUNTIMES
    ]
    series += [
        c.Series(f"{engine}_{runtime}_cpu", cpu[(engine, runtime)], "% core")
        for engine in engines
        for runtime in RUNTIMES
    ]
    c.print_table(series, index_header="round")
    worst = 0.0
    for engine in engines:
        extra_mib = c.median(memory[(engine, "runsc")]) - c.median(memory[(engine, "runc")])
        extra_cpu = c.median(cpu[(engine, "runsc")]) - c.median(cpu[(engine, "runc")])
        worst = max(worst, extra_mib)
        print(f"{engine}: runsc costs {extra_mib:.1f} MiB and {extra_cpu:.2f} % of a core more")
    print(
        f"recorded: overhead_memory {SANDBOX_OVERHEAD_MEMORY / MIB:.0f} MiB, "
        f"overhead_cpu {SANDBOX_OVERHEAD_CPU:g} cores"
    )
    print(c.result_line("sandbox_overhead_mib", worst, SANDBOX_OVERHEAD_MEMORY / MIB, decimals=1))
    return 0


if __name__ == "__main__":
    c.run_main(main)
