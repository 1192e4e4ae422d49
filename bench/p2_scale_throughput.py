"""P2: scaling 0 -> 50 replicas with `portway apply` vs `docker-compose up --scale`.

Each run (interleaved, the order alternating between runs):

  portway  apply the workload with replicas: 0 (untimed), then time
           `portway apply` with replicas: 50 until it exits (it waits until all
           are running; no probes); check with docker that 50 containers of the
           namespace run; `portway delete` (untimed, also timed for information)
  compose  a project dir with docker-compose.yml (version 2.4, service web,
           same image and command, no ports); time
           `docker-compose -p P up -d --scale web=50` until it exits; check that
           50 run; `docker-compose -p P down -t 0` (untimed)

RESULT is median(portway) / median(compose).

Usage: .venv/bin/python bench/p2_scale_throughput.py [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common as c

NAME = "p2_scale0to50_vs_compose"
TARGET = 0.40
REPLICAS = 50

COMPOSE_FILE = """\
version: "2.4"
services:
  web:
    image: {image}
    command: [{command}]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="runs per side (default 2)")
    parser.add_argument("--quick", action="store_true", help="1 run per side")
    opts = parser.parse_args()
    runs = opts.runs or (1 if opts.quick else 2)
    if runs < 1:
        c.fail("--runs must be at least 1")
    c.require_docker(compose=True)

    pw_up: list[float] = []
    pw_zero: list[float] = []
    pw_delete: list[float] = []
    co_up: list[float] = []
    co_down: list[float] = []
    notes: list[str] = []
    projects: list[tuple[str, Path]] = []

    with c.portway_sandbox("bench-p2") as (home, ns):
        env = c.portway_env(home)
        command = ", ".join(f'"{a}"' for a in (*c.HTTPD_COMMAND, *c.HTTPD_ARGS))
        try:

            def run_portway(i: int) -> None:
                name = f"scale-{i}"
                labels = [c.namespace_label(ns), f"portway.dev/workload={name}"]
                zero = c.write_workload(home / f"{name}-0.yaml", name, ns, 0)
                full = c.write_workload(home / f"{name}-{REPLICAS}.yaml", name, ns, REPLICAS)
                seconds, _ = c.timed([c.PORTWAY, "apply", "-f", zero], env=env)
                pw_zero.append(seconds)
                if c.container_ids(labels):
                    notes.append(f"{name}: containers exist after applying replicas: 0")
                seconds = c.timed_start(
                    f"run {i}: portway apply replicas={REPLICAS}",
                    [c.PORTWAY, "apply", "-f", full, "--timeout", "600"],
                    labels,
                    REPLICAS,
                    env=env,
                )
                pw_up.append(seconds)
                seconds, _ = c.timed(
                    [c.PORTWAY, "delete", name, "-n", ns, "--timeout", "600"], env=env, timeout=700
                )
                pw_delete.append(seconds)
                left = c.container_ids(labels)
                if left:
                    notes.append(f"`portway delete {name}` returned with {len(left)} left")
                    c.remove_containers(labels)

            def run_compose(i: int) -> None:
                project = f"{ns.replace('-', '')}c{i}"
                project_dir = home / f"compose-{i}"
                project_dir.mkdir()
                file = project_dir / "docker-compose.yml"
                file.write_text(COMPOSE_FILE.format(image=c.IMAGE, command=command))
                projects.append((project, file))
                seconds = c.timed_start(
                    f"run {i}: docker-compose up --scale web={REPLICAS}",
                    c.compose_cmd(project, file, "up", "-d", "--scale", f"web={REPLICAS}"),
                    [c.compose_label(project)],
                    REPLICAS,
                    cwd=project_dir,
                )
                co_up.append(seconds)
                down, _ = c.timed(
                    c.compose_cmd(project, file, "down", "-t", "0", "--remove-orphans"), timeout=700
                )
                co_down.append(down)

            for i in range(1, runs + 1):
                if i % 2:
                    run_portway(i)
                    run_compose(i)
                else:
                    run_compose(i)
                    run_portway(i)
        finally:
            for project, file in projects:
                c.compose_cleanup(project, file)

    ratio = c.median(pw_up) / c.median(co_up)
    print(f"P2 scale 0 -> {REPLICAS}, {runs} run(s) per side, dockerd {c.docker_server_version()}")
    c.print_table(
        [
            c.Series("portway_up", pw_up),
            c.Series("compose_up", co_up),
            c.Series("portway_0", pw_zero),
            c.Series("portway_del", pw_delete),
            c.Series("compose_down", co_down),
        ],
        index_header="run",
    )
    print(
        f"containers/s  portway {REPLICAS / c.median(pw_up):.1f}   "
        f"compose {REPLICAS / c.median(co_up):.1f}"
    )
    print("(portway_0: apply of replicas: 0; portway_del/compose_down: untimed teardown, for info)")
    for note in notes:
        print(f"odd: {note}")
    print(c.result_line(NAME, ratio, TARGET))
    return 0


if __name__ == "__main__":
    c.run_main(main)
