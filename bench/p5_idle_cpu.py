"""P5: CPU used by an idle `portway controller` that keeps 200 replicas running.

Applies a workload of N replicas (no probes) with the CLI, starts
`portway controller` (same PORTWAY_HOME) as a subprocess, waits until it logs
"holds the lease" and a settle period more, then reads utime+stime of the
controller (/proc/PID/stat, all threads) and of dockerd at the start and end of
a window. The peer figure is dockerd's CPU over the same window. Also reports
the controller's thread count and child processes (must be 0: no process per
replica).

RESULT is the controller's CPU in percent of one core over the window.

Usage: .venv/bin/python bench/p5_idle_cpu.py [--replicas N] [--seconds S] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import common as c

NAME = "p5_idle_controller_cpu"
TARGET = 1.0
WORKLOAD = "idle"
LEASE_MESSAGE = "holds the lease"


@dataclass(frozen=True)
class Sample:
    wall: float
    controller: float
    dockerd: float


def dockerd_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += c.cpu_seconds(pid)
    return total


def sample(controller: int, dockerd: list[int]) -> Sample:
    return Sample(time.monotonic(), c.cpu_seconds(controller), dockerd_cpu(dockerd))


def percent(cpu: float, wall: float) -> float:
    return 100.0 * cpu / wall if wall > 0 else 0.0


def wait_for_lease(proc: subprocess.Popen[bytes], log_file: Path, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise c.BenchError(
                f"`portway controller` exited with {proc.returncode}:\n{log_file.read_text()}"
            )
        if LEASE_MESSAGE in log_file.read_text(errors="replace"):
            return time.monotonic() - start
        time.sleep(0.1)
    raise c.BenchError(f"`portway controller` did not log {LEASE_MESSAGE!r} in {timeout:.0f}s")


def stop_controller(proc: subprocess.Popen[bytes]) -> float | None:
    """SIGTERM, wait; returns seconds until it exited (None if it had to be killed)."""
    if proc.poll() is not None:
        return 0.0
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=None, help="default 200 (quick: 50)")
    parser.add_argument("--seconds", type=float, default=None, help="window, default 60 (quick 20)")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds after the lease")
    parser.add_argument("--interval", type=float, default=5.0, help="sub-interval for the table")
    parser.add_argument("--quick", action="store_true", help="50 replicas, 20 s window")
    opts = parser.parse_args()
    replicas = opts.replicas or (50 if opts.quick else 200)
    seconds = opts.seconds or (20.0 if opts.quick else 60.0)
    if replicas < 1 or seconds <= 0:
        c.fail("--replicas and --seconds must be positive")
    c.require_docker()
    dockerd = c.pidof("dockerd")
    if not dockerd:
        c.log("warning: pidof dockerd found nothing; the dockerd figure will be 0")

    notes: list[str] = []
    with c.portway_sandbox("bench-p5") as (home, ns):
        env = c.portway_env(home)
        labels = [c.namespace_label(ns), f"portway.dev/workload={WORKLOAD}"]
        file = c.write_workload(home / "idle.yaml", WORKLOAD, ns, replicas)
        log_file = home / "controller.log"
        proc: subprocess.Popen[bytes] | None = None
        applied = False
        try:
            c.log(f"applying {replicas} replicas ...")
            applied = True
            apply_seconds, _ = c.timed(
                [c.PORTWAY, "apply", "-f", file, "--timeout", "900"], env=env, timeout=1000
            )
            running = c.count_running(labels)
            c.log(f"applied in {apply_seconds:.1f}s; {running} running")
            if running != replicas:
                raise c.BenchError(f"`portway apply` exited 0 but {running}/{replicas} run")

            with log_file.open("wb") as log_out:
                proc = subprocess.Popen(
                    [str(c.PORTWAY), "controller"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_out,
                    stderr=subprocess.STDOUT,
                )
            lease_seconds = wait_for_lease(proc, log_file, 60)
            c.log(f"controller pid {proc.pid} holds the lease after {lease_seconds:.1f}s")
            c.log(f"settling {opts.settle:.0f}s, then measuring {seconds:.0f}s ...")
            time.sleep(opts.settle)
            log_mark = len(log_file.read_bytes())

            samples = [sample(proc.pid, dockerd)]
            threads_start = c.thread_count(proc.pid)
            end = samples[0].wall + seconds
            while (now := time.monotonic()) < end:
                time.sleep(min(opts.interval, end - now))
                if proc.poll() is not None:
                    raise c.BenchError(f"the controller exited ({proc.returncode}) mid-window")
                samples.append(sample(proc.pid, dockerd))
            threads_end = c.thread_count(proc.pid)
            children = c.descendants(proc.pid)
            still_running = c.count_running(labels)
            window_log = log_file.read_bytes()[log_mark:].decode(errors="replace")
        finally:
            if proc is not None:
                stopped = stop_controller(proc)
                if stopped is None:
                    notes.append("the controller ignored SIGTERM for 60 s and was killed")
                elif stopped > 5:
                    notes.append(f"the controller took {stopped:.1f}s to stop on SIGTERM")
            if applied:
                c.log("deleting the workload ...")
                start = time.monotonic()
                deleted = c.portway(
                    "delete", WORKLOAD, "-n", ns, "--timeout", "600", home=home, check=False
                )
                delete_seconds = time.monotonic() - start
                if deleted.returncode != 0:
                    notes.append(
                        f"`portway delete` failed ({deleted.returncode}): {deleted.stderr.strip()}"
                    )
                left = c.container_ids(labels)
                if left:
                    notes.append(f"`portway delete` returned with {len(left)} container(s) left")
                c.log(f"deleted in {delete_seconds:.1f}s")

    first, last = samples[0], samples[-1]
    wall = last.wall - first.wall
    ctl_pct = percent(last.controller - first.controller, wall)
    dockerd_pct = percent(last.dockerd - first.dockerd, wall)
    print(
        f"P5 idle controller CPU, {replicas} replicas, {wall:.1f}s window after "
        f"{opts.settle:.0f}s settle, dockerd {c.docker_server_version()}"
    )
    print(f"{'from_s':>8}{'to_s':>8}{'controller_%':>14}{'dockerd_%':>12}")
    for a, b in itertools.pairwise(samples):
        span = b.wall - a.wall
        print(
            f"{a.wall - first.wall:>8.1f}{b.wall - first.wall:>8.1f}"
            f"{percent(b.controller - a.controller, span):>14.2f}"
            f"{percent(b.dockerd - a.dockerd, span):>12.2f}"
        )
    print(
        f"{'window':>16}{ctl_pct:>14.2f}{dockerd_pct:>12.2f}   "
        f"(cpu s: controller {last.controller - first.controller:.2f}, "
        f"dockerd {last.dockerd - first.dockerd:.2f}; tick {1 / c.CLK_TCK:.2f}s)"
    )
    ratio = f"{ctl_pct / dockerd_pct:.3f}" if dockerd_pct > 0 else "n/a"
    print(f"controller/dockerd CPU ratio {ratio}")
    print(f"controller threads {threads_start} at start, {threads_end} at end")
    print(f"controller child processes {len(children)} (must be 0) {children or ''}")
    print(f"replicas running at end of window {still_running}/{replicas}")
    print(f"apply of {replicas} replicas took {apply_seconds:.1f}s")
    print(f"controller held the lease {lease_seconds:.1f}s after it started")
    noisy = [line for line in window_log.splitlines() if " WARNING " in line or " ERROR " in line]
    if noisy:
        notes.append(f"{len(noisy)} warning/error log line(s) in the window, e.g. {noisy[0]}")
    if children:
        notes.append(f"the controller has child processes: {children}")
    if still_running != replicas:
        notes.append(f"only {still_running}/{replicas} replicas running at the end of the window")
    for note in notes:
        print(f"odd: {note}")
    print(c.result_line(NAME, ctl_pct, TARGET, decimals=2))
    return 0


if __name__ == "__main__":
    c.run_main(main)
