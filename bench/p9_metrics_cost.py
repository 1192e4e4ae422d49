"""P9: CPU cost of metrics collection: 200 replicas, sampled and scraped every 15 s.

Applies N busybox sleepers with the CLI, half on Docker and half on Podman
(``--docker-only``: all on Docker). Then, in this process, runs what
``portway server`` runs for ``/metrics``: the controller's ``ReplicaSampler``
(one pass per period: read the Replica records, one-shot stats per replica
on Docker from a pool of 32, one batched stats call on Podman) and one
Prometheus scrape (``generate_latest`` of the controller's registry) per
period, over a window of several periods. The cost is this process's CPU
time (utime + stime of all its threads, from getrusage) over the window, in
percent of one core; a warm-up pass before the window opens the engine
connections, as a running controller has them open.

The peer, in the same run and at the same period: the engines' own CLIs
sampling the same containers once (``docker stats --no-stream`` and
``podman stats --no-stream``), measured as CPU of those child processes.
Also shown: the engine daemons' CPU during our passes and during the peer's.

RESULT is portway's collection CPU in percent of one core.

Usage: .venv/bin/python bench/p9_metrics_cost.py [--replicas N] [--periods K]
       [--period S] [--docker-only] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import common as c

NAME = "p9_metrics_cpu_percent"
TARGET = 2.0


@dataclass(frozen=True)
class Pass:
    own_cpu: float  # seconds of this process's CPU for the pass and the scrape
    wall: float  # seconds the pass took
    sampled: int  # replicas with a resource sample
    scrape_bytes: int
    engine_cpu: float  # daemon CPU during the pass
    peer_cpu: float  # CPU of the engines' stats CLIs for the same replicas
    peer_wall: float
    peer_engine_cpu: float  # daemon CPU during the peer's stats


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def daemons_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += c.cpu_seconds(pid)
    return total


def measured(action: Callable[[], object], daemons: list[int]) -> tuple[float, float, float]:
    """(own CPU, wall, daemon CPU) of ``action``."""
    cpu, wall, engine = own_cpu(), time.monotonic(), daemons_cpu(daemons)
    action()
    return own_cpu() - cpu, time.monotonic() - wall, daemons_cpu(daemons) - engine


def peer_stats(groups: dict[str, list[str]]) -> tuple[float, float]:
    """(CPU, wall) of each engine's own CLI sampling its containers once."""
    cpu, wall = children_cpu(), time.monotonic()
    for engine, ids in groups.items():
        if ids:
            c.run([engine, "stats", "--no-stream", "--format", "{{json .}}", *ids], timeout=300)
    return children_cpu() - cpu, time.monotonic() - wall


def workloads(namespace: str, replicas: int, engines: list[c.Engine]) -> str:
    share, extra = divmod(replicas, len(engines))
    documents = [
        c.workload_yaml(
            f"sleep-{engine.name}",
            namespace,
            share + (1 if i < extra else 0),
            command=("sleep",),
            args=("3600",),
            targets=(engine.target,),
        )
        for i, engine in enumerate(engines)
    ]
    return "---\n".join(documents)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=None, help="default 200 (quick: 40)")
    parser.add_argument("--period", type=float, default=None, help="seconds, default 15 (quick 5)")
    parser.add_argument("--periods", type=int, default=None, help="window, default 4 (quick 3)")
    parser.add_argument("--docker-only", action="store_true", help="all replicas on Docker")
    parser.add_argument("--quick", action="store_true", help="40 replicas, 3 periods of 5 s")
    opts = parser.parse_args()
    replicas = opts.replicas or (40 if opts.quick else 200)
    period = opts.period or (5.0 if opts.quick else 15.0)
    periods = opts.periods or (3 if opts.quick else 4)
    if replicas < 2 or period <= 0 or periods < 1:
        c.fail("--replicas must be at least 2, --period and --periods positive")
    engines = [c.DOCKER] if opts.docker_only else [c.DOCKER, c.PODMAN]
    for engine in engines:
        c.require_engine(engine)
    daemons = c.pidof("dockerd") + (c.pidof("podman") if not opts.docker_only else [])

    passes: list[Pass] = []
    notes: list[str] = []
    with c.portway_sandbox("bench-p9") as (home, ns):
        env = c.portway_env(home)
        file = home / "sleepers.yaml"
        file.write_text(workloads(ns, replicas, engines))
        applied = False
        try:
            for engine in engines:
                if engine is not c.DOCKER:
                    c.portway(
                        "target", "add", engine.target, "--address", engine.address, home=home
                    )
            c.log(f"applying {replicas} replicas on {', '.join(e.name for e in engines)} ...")
            applied = True
            apply_seconds, _ = c.timed(
                [c.PORTWAY, "apply", "-f", file, "--timeout", "1200"], env=env, timeout=1300
            )
            c.log(f"applied in {apply_seconds:.1f}s")
            groups = {
                e.name: c.container_ids([c.namespace_label(ns)], running_only=True, engine=e)
                for e in engines
            }
            running = sum(len(ids) for ids in groups.values())
            if running != replicas:
                raise c.BenchError(f"`portway apply` exited 0 but {running}/{replicas} run")

            os.environ["PORTWAY_HOME"] = str(home)
            os.environ.pop("PORTWAY_STORE", None)
            from prometheus_client import generate_latest

            from portway.controller.metrics import ControllerMetrics
            from portway.controller.sampling import ReplicaSampler, SamplerSettings
            from portway.service.app import App

            service = App()
            metrics = ControllerMetrics()
            sampler = ReplicaSampler(
                service.store, service.targets, SamplerSettings(period_seconds=period)
            )
            metrics.watch_replicas(lambda: sampler.latest)
            warm = sampler.sample()
            c.log(f"warm-up pass: {sum(1 for r in warm.replicas if r.stats)} sampled")
            scrape: list[bytes] = []

            def collect() -> None:
                sampler.sample()
                scrape[:] = [generate_latest(metrics.registry)]

            c.log(f"measuring {periods} periods of {period:.0f}s ...")
            window_cpu, window_start = own_cpu(), time.monotonic()
            for k in range(periods):
                tick = window_start + k * period
                time.sleep(max(0.0, tick - time.monotonic()))
                cpu, wall, engine_cpu = measured(collect, daemons)
                snapshot = sampler.latest
                assert snapshot is not None
                peer_engine = daemons_cpu(daemons)
                peer_cpu, peer_wall = peer_stats(groups)
                passes.append(
                    Pass(
                        cpu,
                        wall,
                        sum(1 for r in snapshot.replicas if r.stats is not None),
                        len(scrape[0]),
                        engine_cpu,
                        peer_cpu,
                        peer_wall,
                        daemons_cpu(daemons) - peer_engine,
                    )
                )
            # the window ends one period after its last tick, as the next pass would come
            time.sleep(max(0.0, window_start + periods * period - time.monotonic()))
            window_wall = time.monotonic() - window_start
            # the peer ran as child processes: its CPU is not in RUSAGE_SELF
            window_own = own_cpu() - window_cpu
            sampler.close()
            service.close()
        finally:
            if applied:
                c.log("deleting the workloads ...")
                deleted = c.portway(
                    "delete", "-f", str(file), "--timeout", "900", home=home, check=False
                )
                if deleted.returncode != 0:
                    notes.append(f"`portway delete` failed: {deleted.stderr.strip()[:300]}")
            for engine in engines:
                left = c.remove_containers([c.namespace_label(ns)], engine=engine)
                if left:
                    notes.append(f"force-removed {left} leftover container(s) on {engine.name}")

    pct = 100.0 * window_own / window_wall
    peer_pct = 100.0 * sum(p.peer_cpu for p in passes) / window_wall
    print(
        f"P9 metrics collection cost, {replicas} replicas on "
        f"{' + '.join(e.name for e in engines)}, a pass and a scrape every {period:.0f}s, "
        f"{periods} periods ({window_wall:.1f}s window)"
    )
    print(
        f"{'pass':>4}{'sampled':>9}{'cpu_ms':>9}{'wall_ms':>9}{'scrape_kb':>11}"
        f"{'engine_cpu_ms':>15}{'peer_cpu_ms':>13}{'peer_wall_ms':>14}{'peer_engine_ms':>16}"
    )
    for i, p in enumerate(passes):
        print(
            f"{i:>4}{p.sampled:>9}{p.own_cpu * 1e3:>9.0f}{p.wall * 1e3:>9.0f}"
            f"{p.scrape_bytes / 1024:>11.1f}{p.engine_cpu * 1e3:>15.0f}"
            f"{p.peer_cpu * 1e3:>13.0f}{p.peer_wall * 1e3:>14.0f}{p.peer_engine_cpu * 1e3:>16.0f}"
        )
    print(f"portway collection CPU {pct:.3f}% of one core ({window_own:.2f} s over the window)")
    print(f"peer (engine stats CLIs, same period) CPU {peer_pct:.3f}% of one core")
    print(f"apply of {replicas} replicas took {apply_seconds:.1f}s")
    for p in passes:
        if p.sampled != replicas:
            notes.append(f"a pass sampled {p.sampled}/{replicas} replicas")
            break
    for note in notes:
        print(f"odd: {note}")
    print(c.result_line(NAME, pct, TARGET, decimals=3))
    return 0


if __name__ == "__main__":
    c.run_main(main)
