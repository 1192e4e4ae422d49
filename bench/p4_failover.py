"""P4: failover time, from an engine's death to the replacement answering.

Two targets on this machine: ``podman-b`` (Podman's API service) and
``docker-a`` (dockerd), the latter tainted PreferNoSchedule so the replica
starts on Podman. A ``portway controller`` runs with its default settings
(health checks every 1 s, an engine's event stream ending triggers a check at
once, failover grace period 2 s). Each run:

  portway  apply a 1-replica HTTP workload (ephemeral host port, HTTP
           readiness probe); wait until it answers from podman-b; SIGKILL
           Podman's API service; time until the replica's record names
           docker-a and its published port answers HTTP 200 (polled every
           20 ms from this process, reading the store directly); restart
           Podman's service and wait until the stale copy it kept running is
           fenced (removed); delete the workload.
  manual   the floor any failover includes: `docker run -d -p
           127.0.0.1::8080` of the same image and command, timed until it
           answers HTTP 200 (the same polling), then removed.

RESULT is the median failover time in seconds (target <= 3 s; Kubernetes'
default eviction takes minutes: 40 s node-monitor grace + 300 s toleration).
The ratio to the manual start is printed for reference.

Usage: .venv/bin/python bench/p4_failover.py [--runs N]
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from pathlib import Path

import common as c

NAME = "p4_failover_seconds"
TARGET = 3.0
POLL = 0.02
SERVICE_PATTERN = f"podman system service --time=0 unix://{c.PODMAN_SOCKET}"

WORKLOAD = """\
apiVersion: portway.dev/v1
kind: Workload
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  image: {image}
  command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
  replicas: 1
  ports: [{{containerPort: 8080}}]
  probes:
    readiness: {{http: {{port: 8080}}, periodSeconds: 1}}
  placement: {{targets: [podman-b, docker-a]}}
"""


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def endpoint_port(endpoints: list[str]) -> int | None:
    for endpoint in endpoints:  # "tcp 8080 -> 127.0.0.1:40123"
        if endpoint.startswith("tcp 8080 -> "):
            return int(endpoint.rsplit(":", 1)[1])
    return None


class Store:
    """Reads replica records straight from the state store (no CLI start-up
    in the measured path)."""

    def __init__(self, home: Path) -> None:
        from portway.service.app import App, Settings

        self.app = App(Settings(home=home, store_url=""))

    def replica(self, namespace: str, name: str) -> tuple[str, int | None, bool]:
        from portway.service import workloads as svc

        for view in svc.replicas_of(self.app, namespace, name):
            return view.target, endpoint_port(view.endpoints), view.ready
        return "", None, False


def podman_copies(namespace: str) -> int:
    out = c.run(
        ["podman", "ps", "-q", "--filter", f"label={c.LABEL_NAMESPACE}={namespace}"],
        check=False,
    ).stdout
    return len(out.split())


def wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(POLL)
    raise c.BenchError(f"timed out after {timeout:.0f}s waiting for {what}")


def one_failover(home: Path, store: Store, namespace: str, run: int) -> tuple[float, float]:
    """Returns (failover seconds, seconds until the stale copy was fenced)."""
    name = f"fo{run}"
    path = home / f"{name}.yaml"
    path.write_text(WORKLOAD.format(name=name, namespace=namespace, image=c.IMAGE))
    c.portway("apply", "-f", str(path), "--no-wait", home=home)

    def on(target: str) -> bool:
        where, port, _ = store.replica(namespace, name)
        return where == target and port is not None and answers(port)

    wait(lambda: on("podman-b"), 120, "the replica to answer from podman-b")
    killed = c.run(["pkill", "-9", "-f", SERVICE_PATTERN], check=False)
    if killed.returncode != 0:
        raise c.BenchError("the podman API service was not running")
    died = time.perf_counter()
    try:
        wait(lambda: on("docker-a"), 60, "the replacement to answer from docker-a")
        failover = time.perf_counter() - died
    finally:
        c.podman_service_up()
    back = time.perf_counter()
    wait(lambda: podman_copies(namespace) == 0, 60, "the stale copy to be fenced")
    fenced = time.perf_counter() - back
    c.portway("delete", name, "-n", namespace, home=home)
    return failover, fenced


def one_manual(namespace: str, run: int) -> float:
    name = f"p4-manual-{namespace}-{run}"
    start = time.perf_counter()
    c.run(
        ["docker", "run", "-d", "--name", name, "--label", f"{c.LABEL_NAMESPACE}={namespace}",
         "-p", "127.0.0.1::8080", c.IMAGE, *c.HTTPD_COMMAND, *c.HTTPD_ARGS],
    )  # fmt: skip
    try:
        port = int(c.run(["docker", "port", name, "8080/tcp"]).stdout.split(":")[-1])
        wait(lambda: answers(port), 60, "the manual container to answer")
        return time.perf_counter() - start
    finally:
        c.run(["docker", "rm", "-f", name], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per side (default 5)")
    opts = parser.parse_args()
    if opts.runs < 1:
        c.fail("--runs must be at least 1")
    c.require_docker()
    c.require_engine(c.PODMAN)
    namespace = c.unique_id("p4")
    failovers: list[float] = []
    fences: list[float] = []
    manual: list[float] = []
    with c.temp_dir("portway-p4-") as home:
        c.portway(
            "target", "add", "docker-a", "--address", "docker:///var/run/docker.sock",
            "--taint", "prefer=podman:PreferNoSchedule", home=home,
        )  # fmt: skip
        c.portway(
            "target", "add", "podman-b", "--address", f"podman://{c.PODMAN_SOCKET}", home=home
        )
        store = Store(home)
        try:
            with c.portway_controller(home):
                for run in range(opts.runs):
                    manual.append(one_manual(namespace, run))
                    failover, fenced = one_failover(home, store, namespace, run)
                    failovers.append(failover)
                    fences.append(fenced)
                    c.log(
                        f"run {run + 1}: failover {failover:.3f}s, fenced {fenced:.3f}s after "
                        f"podman returned, manual start {manual[-1]:.3f}s"
                    )
        finally:
            c.podman_service_up()
            c.remove_containers([c.namespace_label(namespace)])
            c.remove_containers([c.namespace_label(namespace)], engine=c.PODMAN)
    print(f"P4 failover, {opts.runs} runs: podman-b (API service SIGKILLed) -> docker-a")
    print("controller defaults: health check 1 s, event-stream end checks at once, grace 2 s")
    c.print_table(
        [
            c.Series("failover", failovers),
            c.Series("fenced_after_return", fences),
            c.Series("manual_docker_run", manual),
        ],
        index_header="run",
    )
    ratio = c.median(failovers) / c.median(manual)
    print(f"failover/manual {ratio:.2f}  (the manual start is the floor: no detection, no grace)")
    print(c.result_line(NAME, c.median(failovers), TARGET))
    return 0


if __name__ == "__main__":
    c.run_main(main)
