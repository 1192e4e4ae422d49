"""P6: latency of `portway apply` of one sandboxed (gVisor) replica vs
`docker run -d --runtime runsc` of the same image on the same engine.

Each round (one warm-up round first, not counted) runs, in a rotating order:

  cli      `portway apply -f one.yaml` of 1 replica with `isolation: sandboxed`
           (no probes, unique name), wall clock of the CLI process until it
           exits 0 (apply waits until the replica runs); then (untimed) a check
           that exactly one container of it runs, on runtime runsc, and
           `portway delete`
  peer     `docker run -d --init --runtime runsc --name X portway/busybox:latest
           httpd -f -p 8080 -h /www` until it exits; `docker rm -f X` untimed
  inproc   the same apply inside this process with warm imports:
           controller_running + apply + wait_for (no interpreter start-up)

RESULT is median(cli) / median(peer).

Usage: .venv/bin/python bench/p6_sandbox_apply.py [--pairs N] [--quick]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import common as c
from p1_apply_latency import InProcess

TARGET = 1.10
RESULT_NAME = "p6_sandbox_apply_ratio"


def write_sandboxed(path: Path, name: str, namespace: str) -> Path:
    """P1's one-replica workload, in the sandboxed tier. Lenient: the packaged
    matrix has no conformance run of docker's sandboxed tier yet, and strict
    mode refuses what is declared but not proven (lenient records it)."""
    text = c.workload_yaml(name, namespace, 1)
    path.write_text(text + "  isolation: sandboxed\n  portability: lenient\n")
    return path


def peer_command(name: str) -> list[str]:
    # --init: portway's docker replicas run with docker-init too
    workload = [*c.HTTPD_COMMAND, *c.HTTPD_ARGS]
    return [
        "docker",
        "run",
        "-d",
        "--init",
        "--runtime",
        "runsc",
        "--name",
        name,
        c.IMAGE,
        *workload,
    ]


def runtime_of(container: str) -> str:
    return c.run(
        ["docker", "inspect", "--format", "{{.HostConfig.Runtime}}", container]
    ).stdout.strip()


def require_runsc() -> None:
    runtimes = c.run(["docker", "info", "--format", "{{json .Runtimes}}"]).stdout
    if '"runsc"' not in runtimes:
        c.fail(
            "dockerd has no runsc runtime; run: bash scripts/gvisor.sh && bash scripts/engines.sh"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=None, help="measured rounds (default 10)")
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 10")
    opts = parser.parse_args()
    pairs = opts.pairs or (5 if opts.quick else 10)
    if pairs < 1:
        c.fail("--pairs must be at least 1")
    c.require_engine(c.DOCKER)
    require_runsc()

    cli: list[float] = []
    peer: list[float] = []
    inproc: list[float] = []
    notes: list[str] = []
    peer_names: list[str] = []

    with c.portway_sandbox("bench-p6") as (home, ns):
        (home / "inproc").mkdir()
        service = InProcess(home / "inproc", ns, c.DOCKER)
        try:

            def check_one(name: str, how: str) -> None:
                labels = [c.namespace_label(ns), f"portway.dev/workload={name}"]
                ids = c.container_ids(labels)
                running = c.count_running(labels)
                if running != 1 or len(ids) != 1:
                    notes.append(f"after {how} of {name}: {running} running (want 1)")
                elif runtime_of(ids[0]) != "runsc":
                    notes.append(f"after {how} of {name}: runtime {runtime_of(ids[0])}, not runsc")

            def run_cli(i: int, keep: bool) -> None:
                name = f"cli-{i}"
                file = write_sandboxed(home / f"{name}.yaml", name, ns)
                elapsed, proc = c.timed([c.PORTWAY, "apply", "-f", file], env=c.portway_env(home))
                check_one(name, "`portway apply`")
                if "ready" not in proc.stdout:
                    notes.append(f"`portway apply` of {name} printed no 'ready': {proc.stdout!r}")
                c.portway("delete", name, "-n", ns, "--timeout", "120", home=home)
                if keep:
                    cli.append(elapsed)

            def run_peer(i: int, keep: bool) -> None:
                name = f"{ns}-runsc-{i}"
                peer_names.append(name)
                elapsed, _ = c.timed(peer_command(name))
                if runtime_of(name) != "runsc":
                    notes.append(f"peer {name} runs on {runtime_of(name)}, not runsc")
                c.run(["docker", "rm", "-f", name])
                peer_names.remove(name)
                if keep:
                    peer.append(elapsed)

            def run_inproc(i: int, keep: bool) -> None:
                name = f"inproc-{i}"
                elapsed = service.apply(write_sandboxed(home / f"{name}.yaml", name, ns))
                check_one(name, "in-process apply")
                service.delete(name)
                if keep:
                    inproc.append(elapsed)

            steps: list[Callable[[int, bool], None]] = [run_cli, run_peer, run_inproc]
            c.log("warm-up round (not counted)")
            for step in steps:
                step(0, False)
            for i in range(1, pairs + 1):
                shift = i % len(steps)
                for step in steps[shift:] + steps[:shift]:
                    step(i, True)
                c.log(
                    f"round {i}/{pairs}: cli {cli[-1]:.3f}s docker_run_runsc {peer[-1]:.3f}s "
                    f"inproc {inproc[-1]:.3f}s"
                )
        finally:
            service.close()
            for name in peer_names:
                c.run(["docker", "rm", "-f", name], check=False)

    ratio = c.median(cli) / c.median(peer)
    inproc_ratio = c.median(inproc) / c.median(peer)
    print(f"P6 sandboxed apply latency, {pairs} rounds, {c.engine_version(c.DOCKER)}, runsc")
    c.print_table(
        [
            c.Series("portway_cli", cli),
            c.Series("docker_run_runsc", peer),
            c.Series("inproc_apply", inproc),
        ],
        index_header="round",
    )
    print(
        f"{'cli/docker':<14}{ratio:.3f}   (portway apply CLI process vs docker run --runtime runsc)"
    )
    print(f"{'inproc/docker':<14}{inproc_ratio:.3f}   (warm in-process apply+wait vs the same)")
    for note in notes:
        print(f"odd: {note}")
    print(c.result_line(RESULT_NAME, ratio, TARGET))
    return 0


if __name__ == "__main__":
    c.run_main(main)
