"""P1: latency of `portway apply` of one replica vs `docker run -d`.

Each round (one warm-up round first, not counted) runs, in a rotating order:

  cli      `portway apply -f one.yaml` (1 replica, no probes, unique name), wall
           clock of the CLI process until it exits 0; `portway delete` untimed
  docker   `docker run -d --name X portway/busybox:latest httpd -f -p 8080 -h /www`
           until it exits; `docker rm -f X` untimed
  inproc   the same apply inside this process with warm imports:
           controller_running + apply + wait_for (no interpreter start-up)
  import   `python -c "import portway.cli.main, portway.service.workloads"`

RESULT is median(cli) / median(docker).

Usage: .venv/bin/python bench/p1_apply_latency.py [--pairs N] [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import common as c

NAME = "p1_apply_vs_docker_run"
TARGET = 1.05
DOCKER_CMD = ["docker", "run", "-d", "--name"]


class InProcess:
    """portway's service layer driven from this process (imports already warm)."""

    def __init__(self, home: Path, namespace: str) -> None:
        from portway.service.app import App, Settings

        self.namespace = namespace
        self.app = App(Settings(home=home, store_url="", bind_mount_prefixes=()))

    def apply(self, file: Path) -> float:
        from portway.service import workloads as svc
        from portway.spec.loader import load_documents

        items = [svc.Sourced(w, str(file), doc) for doc, w in load_documents(file)]
        start = time.perf_counter()
        with svc.controller_running(self.app) as link:
            applied = svc.apply(self.app, items)
            link.notify([r.workload.key for r in applied])
            keys = [
                (r.workload.metadata.namespace, r.workload.metadata.name, r.generation)
                for r in applied
            ]
            results = svc.wait_for(self.app, keys, timeout=120)
        elapsed = time.perf_counter() - start
        bad = {k: r.value for k, r in results.items() if r is not svc.WaitResult.READY}
        if bad:
            raise c.BenchError(f"in-process apply did not get ready: {bad}")
        return elapsed

    def delete(self, name: str) -> None:
        from portway.service import workloads as svc

        with svc.controller_running(self.app) as link:
            svc.delete(self.app, self.namespace, name)
            link.notify([f"{self.namespace}/{name}"])
            results = svc.wait_for(
                self.app, [(self.namespace, name, 0)], timeout=120, deleting=True
            )
        if any(r is not svc.WaitResult.DELETED for r in results.values()):
            raise c.BenchError(f"in-process delete of {name} timed out: {results}")

    def close(self) -> None:
        self.app.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=None, help="measured rounds (default 10)")
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 10")
    opts = parser.parse_args()
    pairs = opts.pairs or (5 if opts.quick else 10)
    if pairs < 1:
        c.fail("--pairs must be at least 1")
    c.require_docker()

    cli: list[float] = []
    docker: list[float] = []
    inproc: list[float] = []
    imports: list[float] = []
    notes: list[str] = []
    docker_names: list[str] = []

    with c.portway_sandbox("bench-p1") as (home, ns):
        (home / "inproc").mkdir()
        engine = InProcess(home / "inproc", ns)
        try:

            def run_cli(i: int, keep: bool) -> None:
                name = f"cli-{i}"
                file = c.write_workload(home / f"{name}.yaml", name, ns, 1)
                elapsed, proc = c.timed([c.PORTWAY, "apply", "-f", file], env=c.portway_env(home))
                labels = [c.namespace_label(ns), f"portway.dev/workload={name}"]
                running = c.count_running(labels)
                if running != 1:
                    notes.append(f"after `portway apply` of {name}: {running} running (want 1)")
                if "ready" not in proc.stdout:
                    notes.append(f"`portway apply` of {name} printed no 'ready': {proc.stdout!r}")
                c.portway("delete", name, "-n", ns, "--timeout", "120", home=home)
                left = c.container_ids(labels)
                if left:
                    notes.append(f"`portway delete {name}` returned, {len(left)} container(s) left")
                if keep:
                    cli.append(elapsed)

            def run_docker(i: int, keep: bool) -> None:
                name = f"{ns}-docker-{i}"
                docker_names.append(name)
                elapsed, _ = c.timed([*DOCKER_CMD, name, c.IMAGE, *c.HTTPD_COMMAND, *c.HTTPD_ARGS])
                c.run(["docker", "rm", "-f", name])
                if keep:
                    docker.append(elapsed)

            def run_inproc(i: int, keep: bool) -> None:
                name = f"inproc-{i}"
                file = c.write_workload(home / f"{name}.yaml", name, ns, 1)
                elapsed = engine.apply(file)
                labels = [c.namespace_label(ns), f"portway.dev/workload={name}"]
                running = c.count_running(labels)
                if running != 1:
                    notes.append(f"after in-process apply of {name}: {running} running (want 1)")
                engine.delete(name)
                if keep:
                    inproc.append(elapsed)

            def run_import(i: int, keep: bool) -> None:
                del i
                elapsed, _ = c.timed(
                    [c.PYTHON, "-c", "import portway.cli.main, portway.service.workloads"]
                )
                if keep:
                    imports.append(elapsed)

            steps: list[Callable[[int, bool], None]] = [run_cli, run_docker, run_inproc, run_import]
            c.log("warm-up round (not counted)")
            for step in steps:
                step(0, False)
            for i in range(1, pairs + 1):
                shift = i % len(steps)
                for step in steps[shift:] + steps[:shift]:
                    step(i, True)
                c.log(
                    f"round {i}/{pairs}: cli {cli[-1]:.3f}s docker {docker[-1]:.3f}s "
                    f"inproc {inproc[-1]:.3f}s import {imports[-1]:.3f}s"
                )
        finally:
            engine.close()
            for name in docker_names:
                c.run(["docker", "rm", "-f", name], check=False)

    ratio = c.median(cli) / c.median(docker)
    inproc_ratio = c.median(inproc) / c.median(docker)
    print(f"P1 apply latency, {pairs} rounds, dockerd {c.docker_server_version()}")
    c.print_table(
        [
            c.Series("portway_cli", cli),
            c.Series("docker_run", docker),
            c.Series("inproc_apply", inproc),
            c.Series("py_import", imports),
        ],
        index_header="round",
    )
    print(f"cli/docker    {ratio:.3f}   (portway apply CLI process vs docker run -d)")
    print(f"inproc/docker {inproc_ratio:.3f}   (warm in-process apply+wait vs docker run -d)")
    print(
        f"cli - inproc  {c.median(cli) - c.median(inproc):.3f}s  "
        f"(interpreter start-up, imports, CLI; import alone {c.median(imports):.3f}s)"
    )
    for note in notes:
        print(f"odd: {note}")
    print(c.result_line(NAME, ratio, TARGET))
    return 0


if __name__ == "__main__":
    c.run_main(main)
