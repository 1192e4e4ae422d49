"""P1: latency of `portway apply` of one replica vs the engine's own client.

Each round (one warm-up round first, not counted) runs, in a rotating order:

  cli      `portway apply -f one.yaml` (1 replica, no probes, unique name), wall
           clock of the CLI process until it exits 0; `portway delete` untimed
  peer     the engine's own client on the same engine, until it exits; removal untimed:
             docker      `docker run -d --name X portway/busybox:latest httpd -f -p 8080 -h /www`
             podman      `podman run -d --init --name X portway/busybox:latest httpd ...`
             containerd  `ctr -n portway run -d docker.io/portway/busybox:latest X httpd ...`
  inproc   the same apply inside this process with warm imports:
           controller_running + apply + wait_for (no interpreter start-up)
  import   `python -c "import portway.cli.main, portway.service.workloads"`

With --engine podman or containerd the workload is placed (placement.targets) on
target local-podman / local-containerd, registered in the temporary
PORTWAY_HOME; the automatic local-docker target is removed there.

RESULT is median(cli) / median(peer).

Usage: .venv/bin/python bench/p1_apply_latency.py [--engine docker|podman|containerd]
           [--pairs N] [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import common as c

TARGET = 1.05


@dataclass(frozen=True)
class Peer:
    """The engine's own client doing what `portway apply` of one replica does."""

    engine: c.Engine
    result_name: str
    series: str  # column name in the table
    label: str  # how the report calls it

    def command(self, name: str) -> list[str]:
        workload = [*c.HTTPD_COMMAND, *c.HTTPD_ARGS]
        if self.engine.name == "docker":
            return ["docker", "run", "-d", "--name", name, c.IMAGE, *workload]
        if self.engine.name == "podman":
            # portway's podman replicas run with an init (catatonit) by default
            return ["podman", "run", "-d", "--init", "--name", name, c.IMAGE, *workload]
        return [*c.CTR, "run", "-d", c.CTR_IMAGE, name, *workload]

    def running(self, name: str) -> bool:
        if self.engine.name == "podman":
            state = c.run(["podman", "inspect", "--format", "{{.State.Running}}", name])
            return state.stdout.strip() == "true"
        if self.engine.name == "containerd":
            return name in c.ctr_running_tasks()
        return True  # docker: not checked (as before)

    def remove(self, name: str, *, check: bool = True) -> None:
        if self.engine.name == "containerd":
            c.remove_ctr_container(name, check=check)
        else:
            c.run([self.engine.name, "rm", "-f", name], check=check)


PEERS = {
    "docker": Peer(c.DOCKER, "p1_apply_vs_docker_run", "docker_run", "docker run -d"),
    "podman": Peer(c.PODMAN, "p1_apply_vs_podman_run", "podman_run", "podman run -d --init"),
    "containerd": Peer(c.CONTAINERD, "p1_apply_vs_ctr_run", "ctr_run", "ctr run -d"),
}


def register_target(home: Path, engine: c.Engine) -> None:
    """Make ``engine`` the only target of the CLI's PORTWAY_HOME (untimed)."""
    added = c.portway(
        "target", "add", engine.target, "--address", engine.address, home=home, check=False
    )
    if added.returncode != 0 or "healthy" not in added.stdout or "unhealthy" in added.stdout:
        raise c.BenchError(
            f"`portway target add {engine.target} --address {engine.address}` did not give a "
            f"healthy target: {(added.stdout + added.stderr).strip()}; set the engine up: "
            f"{engine.setup}"
        )
    targets = c.portway("get", "targets", home=home).stdout
    if c.DOCKER.target in targets.split():
        c.portway("target", "remove", c.DOCKER.target, home=home)


class InProcess:
    """portway's service layer driven from this process (imports already warm)."""

    def __init__(self, home: Path, namespace: str, engine: c.Engine) -> None:
        from portway.service.app import App, Settings

        self.namespace = namespace
        self.app = App(Settings(home=home, store_url="", bind_mount_prefixes=()))
        if engine.name != "docker":
            self._only_target(engine)

    def _only_target(self, engine: c.Engine) -> None:
        """Like register_target, for this process's own store."""
        from portway.service.targets import add_target, remove_target

        view = add_target(self.app, engine.target, engine.address, None, {})
        if view.health != "healthy":
            raise c.BenchError(
                f"in-process target {engine.target} is {view.health}: {view.detail}; "
                f"set the engine up: {engine.setup}"
            )
        if any(t.name == c.DOCKER.target for t in self.app.target_views()):
            remove_target(self.app, c.DOCKER.target)

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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--engine",
        choices=sorted(PEERS),
        default="docker",
        help="engine to run portway and the peer on (default docker)",
    )
    parser.add_argument("--pairs", type=int, default=None, help="measured rounds (default 10)")
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 10")
    opts = parser.parse_args()
    pairs = opts.pairs or (5 if opts.quick else 10)
    if pairs < 1:
        c.fail("--pairs must be at least 1")
    peer = PEERS[opts.engine]
    engine = peer.engine
    c.require_engine(engine)
    # placement on the engine under test (docker: as before, the default target)
    targets: Sequence[str] = () if engine.name == "docker" else (engine.target,)
    # The packaged capability matrix has no conformance run for containerd yet, so
    # strict portability refuses spec.command/args/isolation there ("declared but
    # not proven"); lenient deploys the same replica and records that on the workload.
    portability = "lenient" if engine.name == "containerd" else ""

    cli: list[float] = []
    peer_times: list[float] = []
    inproc: list[float] = []
    imports: list[float] = []
    notes: list[str] = []
    peer_names: list[str] = []

    with c.portway_sandbox("bench-p1", engine=engine) as (home, ns):
        (home / "inproc").mkdir()
        if engine.name != "docker":
            register_target(home, engine)
        service = InProcess(home / "inproc", ns, engine)
        try:

            def run_cli(i: int, keep: bool) -> None:
                name = f"cli-{i}"
                file = c.write_workload(
                    home / f"{name}.yaml", name, ns, 1, targets=targets, portability=portability
                )
                elapsed, proc = c.timed([c.PORTWAY, "apply", "-f", file], env=c.portway_env(home))
                labels = [c.namespace_label(ns), f"portway.dev/workload={name}"]
                running = c.count_running(labels, engine=engine)
                if running != 1:
                    notes.append(f"after `portway apply` of {name}: {running} running (want 1)")
                if "ready" not in proc.stdout:
                    notes.append(f"`portway apply` of {name} printed no 'ready': {proc.stdout!r}")
                c.portway("delete", name, "-n", ns, "--timeout", "120", home=home)
                left = c.container_ids(labels, engine=engine)
                if left:
                    notes.append(f"`portway delete {name}` returned, {len(left)} container(s) left")
                if keep:
                    cli.append(elapsed)

            def run_peer(i: int, keep: bool) -> None:
                name = f"{ns}-{engine.name}-{i}"
                peer_names.append(name)
                elapsed, _ = c.timed(peer.command(name))
                if not peer.running(name):
                    notes.append(f"after `{peer.label}` of {name}: not running")
                peer.remove(name)
                peer_names.remove(name)
                if keep:
                    peer_times.append(elapsed)

            def run_inproc(i: int, keep: bool) -> None:
                name = f"inproc-{i}"
                file = c.write_workload(
                    home / f"{name}.yaml", name, ns, 1, targets=targets, portability=portability
                )
                elapsed = service.apply(file)
                labels = [c.namespace_label(ns), f"portway.dev/workload={name}"]
                running = c.count_running(labels, engine=engine)
                if running != 1:
                    notes.append(f"after in-process apply of {name}: {running} running (want 1)")
                service.delete(name)
                if keep:
                    inproc.append(elapsed)

            def run_import(i: int, keep: bool) -> None:
                del i
                elapsed, _ = c.timed(
                    [c.PYTHON, "-c", "import portway.cli.main, portway.service.workloads"]
                )
                if keep:
                    imports.append(elapsed)

            steps: list[Callable[[int, bool], None]] = [run_cli, run_peer, run_inproc, run_import]
            c.log(f"engine {engine.name}; warm-up round (not counted)")
            for step in steps:
                step(0, False)
            for i in range(1, pairs + 1):
                shift = i % len(steps)
                for step in steps[shift:] + steps[:shift]:
                    step(i, True)
                c.log(
                    f"round {i}/{pairs}: cli {cli[-1]:.3f}s {peer.series} {peer_times[-1]:.3f}s "
                    f"inproc {inproc[-1]:.3f}s import {imports[-1]:.3f}s"
                )
        finally:
            service.close()
            for name in peer_names:
                peer.remove(name, check=False)

    ratio = c.median(cli) / c.median(peer_times)
    inproc_ratio = c.median(inproc) / c.median(peer_times)
    short = peer.series.removesuffix("_run")
    print(f"P1 apply latency, {pairs} rounds, {c.engine_version(engine)}")
    c.print_table(
        [
            c.Series("portway_cli", cli),
            c.Series(peer.series, peer_times),
            c.Series("inproc_apply", inproc),
            c.Series("py_import", imports),
        ],
        index_header="round",
    )
    print(f"{'cli/' + short:<14}{ratio:.3f}   (portway apply CLI process vs {peer.label})")
    print(
        f"{'inproc/' + short:<14}{inproc_ratio:.3f}   (warm in-process apply+wait vs {peer.label})"
    )
    print(
        f"cli - inproc  {c.median(cli) - c.median(inproc):.3f}s  "
        f"(interpreter start-up, imports, CLI; import alone {c.median(imports):.3f}s)"
    )
    for note in notes:
        print(f"odd: {note}")
    print(c.result_line(peer.result_name, ratio, TARGET))
    return 0


if __name__ == "__main__":
    c.run_main(main)
