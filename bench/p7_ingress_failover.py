"""P7b: failed requests through the ingress when an engine dies under load.

Two targets, ``docker-a`` and ``podman-b``; one service of 2 replicas
spread over them (one each) behind portway's ingress (HAProxy), a `portway
controller` with default settings. Each run sends a steady 200 requests/s
through the ingress for 16 s and, 4 s in, kills Podman **with its
replicas**: its API service and the replica processes get SIGKILL at the
same moment (Podman's containers outlive its service, so killing only the
service would cost nothing: a host that dies takes both). Reported: failed
requests, and the time from the kill to the last failed request ("errors
stop within"). Between runs Podman's service is restarted and the workload
deleted.

The peer in the same run is the same stream sent straight to the killed
replica's own published port (what a client without a load balancer sees):
every request after the kill fails.

RESULT is the median time until errors stop, in seconds (target 2).

Usage: .venv/bin/python bench/p7_ingress_failover.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import common as c

sys.path.insert(0, str(c.REPO))
from tests.integration.load import Outcome, Stream

NAME = "p7_ingress_errors_stop_seconds"
TARGET = 2.0
RATE = 200.0
SECONDS = 16.0
KILL_AT = 4.0
SERVICE_PATTERN = f"podman system service --time=0 unix://{c.PODMAN_SOCKET}"

WORKLOAD = """\
apiVersion: portway.dev/v1
kind: Workload
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  image: {image}
  command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
  replicas: 2
  ports: [{{name: http, containerPort: 8080}}]
  probes:
    readiness: {{http: {{port: 8080}}, periodSeconds: 1}}
  placement: {{spread: [{{topologyKey: zone, maxSkew: 1}}]}}
  ingress: [{{port: http, listen: {listen}}}]
"""


def podman_pids(namespace: str) -> list[int]:
    ids = c.run(
        ["podman", "ps", "-q", "--filter", f"label={c.LABEL_NAMESPACE}={namespace}"]
    ).stdout.split()
    if not ids:
        return []
    found = json.loads(c.run(["podman", "inspect", *ids]).stdout)
    return [int(item["State"]["Pid"]) for item in found if item["State"]["Pid"]]


def endpoints(home: Path, namespace: str) -> list[dict[str, object]]:
    out = c.portway("get", "services", "-n", namespace, "-o", "json", home=home).stdout
    items = json.loads(out)["items"]
    return list(items[0]["endpoints"]) if items else []


def errors_stop(outcomes: list[Outcome], killed: float) -> float:
    failed = [o.at for o in outcomes if not o.ok and o.at >= killed]
    return (failed[-1] - killed) if failed else 0.0


def one_run(home: Path, namespace: str, run: int, listen: int) -> tuple[int, int, float, int]:
    name = f"svc{run}"
    path = home / f"{name}.yaml"
    path.write_text(WORKLOAD.format(name=name, namespace=namespace, image=c.IMAGE, listen=listen))
    c.portway("apply", "-f", str(path), home=home)

    def balanced() -> bool:
        ready = [e for e in endpoints(home, namespace) if e["ready"]]
        return {e["target"] for e in ready} == {"docker-a", "podman-b"}

    deadline = time.monotonic() + 120
    while not balanced():
        if time.monotonic() > deadline:
            raise c.BenchError("the service did not get ready replicas on both engines")
        time.sleep(0.2)
    time.sleep(2)  # HAProxy has taken both in rotation
    direct_port = next(
        int(str(e["port"])) for e in endpoints(home, namespace) if e["target"] == "podman-b"
    )
    through = Stream(listen, rate=RATE, seconds=SECONDS, threads=8).start()
    direct = Stream(direct_port, rate=20, seconds=SECONDS, threads=2).start()
    time.sleep(KILL_AT)
    pids = podman_pids(namespace)
    killed = time.monotonic()
    subprocess.run(["pkill", "-9", "-f", SERVICE_PATTERN], check=False)
    for pid in pids:
        subprocess.run(["kill", "-9", str(pid)], check=False)
    try:
        outcomes = through.wait()
        peer = direct.wait()
    finally:
        c.podman_service_up()
    failed = sum(1 for o in outcomes if not o.ok)
    peer_failed = sum(1 for o in peer if not o.ok and o.at >= killed)
    stop = errors_stop(outcomes, killed)
    c.portway("delete", name, "-n", namespace, home=home)
    return failed, len(outcomes), stop, peer_failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    opts = parser.parse_args()
    if opts.runs < 1:
        c.fail("--runs must be at least 1")
    c.require_docker()
    c.require_engine(c.PODMAN)
    namespace = c.unique_id("p7b")
    failed: list[float] = []
    stops: list[float] = []
    peers: list[float] = []
    with c.temp_dir("portway-p7b-") as home:
        c.portway(
            "target", "add", "docker-a", "--address", "docker:///var/run/docker.sock",
            "--label", "zone=a", home=home,
        )  # fmt: skip
        c.portway(
            "target", "add", "podman-b", "--address", f"podman://{c.PODMAN_SOCKET}",
            "--label", "zone=b", home=home,
        )  # fmt: skip
        listen = c.free_port()
        try:
            with c.portway_controller(home):
                for run in range(opts.runs):
                    n_failed, total, stop, peer = one_run(home, namespace, run, listen)
                    failed.append(float(n_failed))
                    stops.append(stop)
                    peers.append(float(peer))
                    c.log(
                        f"run {run + 1}: {n_failed}/{total} failed through the ingress, errors "
                        f"stopped {stop:.2f}s after the kill; direct to the killed replica: "
                        f"{peer} failed"
                    )
        finally:
            c.podman_service_up()
            c.remove_containers([c.namespace_label(namespace)])
            c.remove_containers([c.namespace_label(namespace)], engine=c.PODMAN)
            c.stop_ingress(home)
    print(
        f"P7b ingress under an engine kill, {opts.runs} runs: {RATE:g} req/s through the "
        f"ingress for {SECONDS:g} s, podman-b and its replicas SIGKILLed at {KILL_AT:g} s"
    )
    c.print_table(
        [
            c.Series("failed", failed, unit="req"),
            c.Series("errors_stop_s", stops),
            c.Series("direct_failed", peers, unit="req"),
        ],
        index_header="run",
    )
    print(c.result_line(NAME, c.median(stops), TARGET))
    return 0


if __name__ == "__main__":
    c.run_main(main)
