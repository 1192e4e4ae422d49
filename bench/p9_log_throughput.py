"""P9: log throughput of `portway logs -f` vs `docker logs -f` on one replica
that prints as fast as it can.

One workload, one replica on local-docker, running busybox `yes` with an
80-character line (the replica writes far faster than either reader can
take, so each side's figure is what its reader sustains). Each round
measures both sides one after the other, in an order that alternates per
round: the reader is started with `--tail 0`, its stdout is read by this
script through a pipe, and once the first line came and `--warmup` seconds
passed, the lines that arrive in the next `--seconds` seconds are counted.
portway prints the bare lines there (one replica: no prefix), as docker does.

RESULT is the median over rounds of portway lines/s ÷ docker lines/s
(target >= 0.9). The CPU each reader used in its window is printed too (in
% of one core; this machine has 2 cores, shared with dockerd and the
replica).

Usage: .venv/bin/python bench/p9_log_throughput.py [--rounds N] [--seconds S] [--warmup S]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import common as c

NAME = "p9_log_throughput_ratio"
TARGET = 0.9
WORKLOAD = "chatty"
LINE = "portway-p9 " + "x" * 69  # 80 characters, a typical log line


def _reader_env(home: Path) -> dict[str, str]:
    env = c.portway_env(home)
    # the portway of this checkout, whichever checkout the venv was made for
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(c.REPO / "src"), env.get("PYTHONPATH")]))
    return env


def measure(
    command: list[str], env: dict[str, str] | None, warmup: float, seconds: float
) -> tuple[float, float]:
    """(lines per second, CPU % of one core) of ``command``'s stdout over the window."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        deadline = time.monotonic() + 120
        first = b""
        while not first:  # the reader starts (portway imports, reads its store)
            if time.monotonic() > deadline or proc.poll() is not None:
                raise c.BenchError(f"{command[:4]}... printed nothing")
            if select.select([fd], [], [], 1.0)[0]:
                first = os.read(fd, 1 << 20)
        start_warm = time.monotonic()
        while time.monotonic() - start_warm < warmup:
            os.read(fd, 1 << 20)
        lines = 0
        cpu_before = c.cpu_seconds(proc.pid)
        started = time.monotonic()
        end = started + seconds
        while (now := time.monotonic()) < end:
            if select.select([fd], [], [], end - now)[0]:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                lines += chunk.count(b"\n")
        elapsed = time.monotonic() - started
        cpu = c.cpu_seconds(proc.pid) - cpu_before
        return lines / elapsed, 100.0 * cpu / elapsed
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side (default 5)")
    parser.add_argument("--seconds", type=float, default=4.0, help="window per run (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured s (default 1)")
    opts = parser.parse_args()
    if opts.rounds < 1 or opts.seconds <= 0 or opts.warmup < 0:
        c.fail("--rounds must be at least 1, --seconds above 0, --warmup 0 or more")
    c.require_docker()
    ours: list[float] = []
    docker: list[float] = []
    ratios: list[float] = []
    cpu_ours: list[float] = []
    cpu_docker: list[float] = []
    with c.portway_sandbox("p9") as (home, namespace):
        spec = home / "chatty.yaml"
        spec.write_text(
            c.workload_yaml(
                WORKLOAD, namespace, 1, command=("yes",), args=(LINE,), targets=("local-docker",)
            )
        )
        c.portway("apply", "-f", str(spec), home=home)
        replicas = json.loads(
            c.portway("get", "replicas", "-n", namespace, "-o", "json", home=home).stdout
        )["items"]
        container = replicas[0]["container_id"]
        env = _reader_env(home)
        follow = ["logs", WORKLOAD, "-n", namespace, "-f", "--tail", "0"]
        sides = {
            "portway": ([str(c.PYTHON), "-m", "portway", *follow], env),
            "docker": (["docker", "logs", "-f", "--tail", "0", container], None),
        }
        for round_ in range(opts.rounds):
            order = ["portway", "docker"] if round_ % 2 == 0 else ["docker", "portway"]
            got: dict[str, tuple[float, float]] = {}
            for side in order:
                command, side_env = sides[side]
                got[side] = measure(command, side_env, opts.warmup, opts.seconds)
            ours.append(got["portway"][0])
            docker.append(got["docker"][0])
            cpu_ours.append(got["portway"][1])
            cpu_docker.append(got["docker"][1])
            ratios.append(got["portway"][0] / got["docker"][0])
            c.log(
                f"round {round_ + 1}: portway {got['portway'][0]:,.0f} lines/s, "
                f"docker {got['docker'][0]:,.0f} lines/s"
            )
        c.portway("delete", WORKLOAD, "-n", namespace, home=home, check=False)
    print(
        f"P9 log throughput, one replica printing {len(LINE) + 1}-byte lines with `yes`, "
        f"{opts.rounds} rounds of {opts.seconds:g} s"
    )
    c.print_table(
        [
            c.Series("portway_lines_s", ours, unit="lines/s"),
            c.Series("docker_lines_s", docker, unit="lines/s"),
            c.Series("portway_cpu", cpu_ours, unit="%core"),
            c.Series("docker_cpu", cpu_docker, unit="%core"),
            c.Series("ratio", ratios, unit="x"),
        ],
        index_header="round",
    )
    print(c.result_line(NAME, c.median(ratios), TARGET))
    return 0


if __name__ == "__main__":
    c.run_main(main)
