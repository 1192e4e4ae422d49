"""P10: `portway apply -f compose.yaml` vs `docker-compose up -d` of the same file.

The file has 5 services (a web tier and four helpers, the way a small stack
looks) with `deploy.replicas: 10` each: 50 containers on Docker, no ports, no
healthchecks, so both tools only have to create and start containers.

Each run (interleaved, the order alternating between runs):

  portway  time `portway apply -f compose.yaml` until it exits (it records the
           five workloads and waits until all 50 replicas run); check with
           docker that 50 containers of the project run; `portway delete -f`
           (untimed)
  compose  the same file in its own project directory; time
           `docker-compose -p P up -d` until it exits; check that 50 run;
           `docker-compose down -t 0` (untimed)
  floor    (not a contestant) 50 create+start calls straight to dockerd's API
           from 8 threads on one new network: what the engine itself needs
           (common.engine_floor_seconds). floor / compose is the lowest ratio
           any tool could reach on this engine.

RESULT is median(portway) / median(compose); target <= 0.5.

Usage: .venv/bin/python bench/p10_compose_apply.py [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import common as c

NAME = "p10_compose_apply_vs_docker_compose"
TARGET = 0.5
SERVICES = ("web", "api", "worker", "cache", "metrics")
REPLICAS = 10


def compose_file() -> str:
    # no top-level `name:` (docker-compose 1.29 refuses it): both tools take the
    # project name from the directory (portway) or -p (docker-compose)
    command = ", ".join(f'"{a}"' for a in (*c.HTTPD_COMMAND, *c.HTTPD_ARGS))
    lines = ["services:"]
    for service in SERVICES:
        lines += [
            f"  {service}:",
            f"    image: {c.IMAGE}",
            f"    command: [{command}]",
            "    deploy:",
            f"      replicas: {REPLICAS}",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="runs per side (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 run per side")
    opts = parser.parse_args()
    runs = opts.runs or (1 if opts.quick else 3)
    if runs < 1:
        c.fail("--runs must be at least 1")
    c.require_docker(compose=True)
    total = len(SERVICES) * REPLICAS

    pw_up: list[float] = []
    co_up: list[float] = []
    floor: list[float] = []
    notes: list[str] = []
    projects: list[tuple[str, Path]] = []
    portway_projects: list[str] = []

    with c.portway_sandbox("bench-p10") as (home, ns):
        env = c.portway_env(home)
        try:

            def run_portway(i: int) -> None:
                # the Compose project becomes the portway namespace
                project = f"{ns}-p{i}"
                portway_projects.append(project)
                project_dir = home / project
                project_dir.mkdir()
                file = project_dir / "compose.yaml"
                file.write_text(compose_file())
                labels = [c.namespace_label(project)]
                seconds = c.timed_start(
                    f"run {i}: portway apply -f ({len(SERVICES)} x {REPLICAS})",
                    [c.PORTWAY, "apply", "-f", file, "--timeout", "600"],
                    labels,
                    total,
                    env=env,
                )
                pw_up.append(seconds)
                c.timed([c.PORTWAY, "delete", "-f", file], env=env, timeout=700)
                left = c.remove_containers(labels)
                if left:
                    notes.append(f"`portway delete -f` returned with {left} container(s) left")

            def run_compose(i: int) -> None:
                project = f"{ns.replace('-', '')}c{i}"
                project_dir = home / f"compose-{i}"
                project_dir.mkdir()
                file = project_dir / "compose.yaml"
                file.write_text(compose_file())
                projects.append((project, file))
                seconds = c.timed_start(
                    f"run {i}: docker-compose up -d ({len(SERVICES)} x {REPLICAS})",
                    c.compose_cmd(project, file, "up", "-d"),
                    [c.compose_label(project)],
                    total,
                    cwd=project_dir,
                )
                co_up.append(seconds)
                # untimed; dockerd sometimes still holds an endpoint when
                # compose removes its network: the final clean-up retries
                down = c.run(
                    c.compose_cmd(project, file, "down", "-t", "0", "--remove-orphans"),
                    timeout=700,
                    cwd=project_dir,
                    check=False,
                )
                if down.returncode != 0:
                    notes.append(f"docker-compose down: {down.stderr.strip().splitlines()[-1]}")

            for i in range(1, runs + 1):
                if i % 2:
                    run_portway(i)
                    run_compose(i)
                else:
                    run_compose(i)
                    run_portway(i)
                floor.append(c.engine_floor_seconds(total, prefix="bench-p10-floor"))
                c.log(f"run {i}: engine floor {floor[-1]:.2f}s")
        finally:
            for project, file in projects:
                c.compose_cleanup(project, file)
            for project in portway_projects:
                with contextlib.suppress(c.BenchError):
                    c.remove_containers([c.namespace_label(project)])

    ratio = c.median(pw_up) / c.median(co_up)
    print(
        f"P10 Compose file, {len(SERVICES)} services x {REPLICAS} replicas, {runs} run(s) per "
        f"side, dockerd {c.docker_server_version()}"
    )
    c.print_table(
        [
            c.Series("portway_apply", pw_up),
            c.Series("compose_up", co_up),
            c.Series("engine_floor", floor),
        ],
        index_header="run",
    )
    print(
        f"containers/s  portway {total / c.median(pw_up):.1f}   "
        f"compose {total / c.median(co_up):.1f}   engine floor {total / c.median(floor):.1f}"
    )
    print(
        f"engine floor / compose {c.median(floor) / c.median(co_up):.3f}: no tool can go below "
        f"this ratio on this engine; portway / floor {c.median(pw_up) / c.median(floor):.3f}"
    )
    for note in notes:
        print(f"odd: {note}")
    print(c.result_line(NAME, ratio, TARGET))
    return 0


if __name__ == "__main__":
    c.run_main(main)
