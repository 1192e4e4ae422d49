"""Placement across two real engines, through the real CLI and controller:
replicas spread by a target label over Docker and Podman; killing Podman's
API service moves its replicas to Docker; when Podman comes back, the copies
it kept running are fenced and removed. Then drain with a surge, and
priority preemption on a target with little capacity.

Podman is the engine killed here because its containers outlive its API
service (conmon keeps them): exactly the stale copies fencing is for.
Traffic goes only to ports published on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.e2e import REPO, Portway, eventually, http_get

pytestmark = [pytest.mark.docker, pytest.mark.podman]

PODMAN_SOCKET = "/run/podman/podman.sock"
SERVICE_PATTERN = f"podman system service --time=0 unix://{PODMAN_SOCKET}"


@pytest.fixture
def pw(tmp_path: Path) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    portway.env["PORTWAY_CONTROLLER_FAILOVER_GRACE_SECONDS"] = "2"
    portway.run(
        "target", "add", "docker-a", "--address", "docker:///var/run/docker.sock",
        "--label", "zone=a", "--label", "region=eu",
    )  # fmt: skip
    portway.run(
        "target", "add", "podman-b", "--address", f"podman://{PODMAN_SOCKET}",
        "--label", "zone=b", "--label", "region=eu",
    )  # fmt: skip
    yield portway
    portway.kill_controllers()
    _ensure_podman_service()
    for item in portway.json("get", "workloads", "-A")["items"]:
        meta = item["metadata"]
        portway.run("delete", meta["name"], "-n", meta["namespace"], check=False)


def _ensure_podman_service() -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "engines-podman.sh")],
        check=True,
        timeout=180,
        capture_output=True,
    )


def web(name: str, namespace: str, replicas: int, placement: str, extra: str = "") -> str:
    return (
        textwrap.dedent(
            f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          image: portway/busybox:latest
          command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
          replicas: {replicas}
          ports: [{{containerPort: 8080}}]
          probes:
            readiness: {{http: {{port: 8080}}, periodSeconds: 1}}
          placement: {placement}
        """
        )
        + extra
    )


def replicas(pw: Portway, namespace: str, workload: str) -> list[dict[str, Any]]:
    items = pw.json("get", "replicas", "-n", namespace)["items"]
    return [r for r in items if r["workload"] == workload]


def host_port(replica: dict[str, Any]) -> int:
    [endpoint] = replica["endpoints"]  # "tcp 8080 -> 127.0.0.1:40123"
    return int(endpoint.rsplit(":", 1)[1])


def engine_copies(namespace: str) -> dict[str, list[str]]:
    """Running containers of ``namespace`` per engine, as the engines list them."""
    found: dict[str, list[str]] = {}
    for engine in ("docker", "podman"):
        out = subprocess.run(
            [engine, "ps", "--filter", f"label=portway.dev/namespace={namespace}",
             "--format", "{{.Names}}"],
            capture_output=True, text=True, check=False, timeout=60,
        ).stdout  # fmt: skip
        found[engine] = sorted(line for line in out.splitlines() if line.strip())
    return found


def serving(pw: Portway, namespace: str, workload: str, count: int, targets: set[str]) -> bool:
    found = replicas(pw, namespace, workload)
    if len(found) != count or not all(r["ready"] and r["target"] in targets for r in found):
        return False
    return all(http_get(host_port(r)).strip() == "hello from portway" for r in found)


# kills the podman API service every other test is using
@pytest.mark.serial
def test_spread_failover_and_fencing_across_docker_and_podman(pw: Portway) -> None:
    namespace = f"place-{uuid.uuid4().hex[:6]}"
    spread = "{spread: [{topologyKey: zone, maxSkew: 1}]}"
    pw.apply(web("web", namespace, 4, spread))
    pw.start_controller()
    eventually(
        lambda: serving(pw, namespace, "web", 4, {"docker-a", "podman-b"}),
        timeout=90,
        what="4 ready replicas",
    )
    placed = {r["index"]: r["target"] for r in replicas(pw, namespace, "web")}
    assert sorted(placed.values()) == ["docker-a", "docker-a", "podman-b", "podman-b"]
    wide = pw.run("get", "replicas", "-n", namespace, "-o", "wide").stdout
    assert "spread zone" in wide or "zone=" in wide, wide
    on_podman = sorted(i for i, t in placed.items() if t == "podman-b")

    killed = subprocess.run(["pkill", "-9", "-f", SERVICE_PATTERN], check=False)
    assert killed.returncode == 0, "the podman API service was not running"
    died = time.monotonic()
    try:
        eventually(
            lambda: serving(pw, namespace, "web", 4, {"docker-a"}),
            timeout=60,
            interval=0.1,
            what="every replica serving from docker-a after podman died",
        )
        failover_seconds = time.monotonic() - died
        # podman's containers outlived its API service: two copies of those indices run now
        assert len(engine_copies(namespace)["podman"]) == 2
    finally:
        _ensure_podman_service()
    print(f"failover: all replicas serving from docker-a {failover_seconds:.1f}s after the kill")
    events = pw.json("get", "events", "--limit", "500")["items"]
    moved = [e["message"] for e in events if e["reason"] == "FailedOver"]
    assert len(moved) == len(on_podman), moved
    assert all("from podman-b to docker-a" in m for m in moved)

    # podman is back: its stale copies are fenced and removed; none is adopted
    eventually(
        lambda: engine_copies(namespace)["podman"] == [],
        timeout=60,
        what="the stale copies on podman to be removed",
    )
    assert len(engine_copies(namespace)["docker"]) == 4
    assert serving(pw, namespace, "web", 4, {"docker-a"})
    events = pw.json("get", "events", "--limit", "500")["items"]
    fenced = [e["message"] for e in events if e["reason"] == "Removed" and "Fenced" in e["message"]]
    assert len(fenced) == 2, fenced
    status = pw.json("get", "workloads", "web", "-n", namespace)["status"]
    assert status["staleTargets"] == {}


def test_drain_moves_replicas_without_dropping_below_the_desired_count(pw: Portway) -> None:
    namespace = f"drain-{uuid.uuid4().hex[:6]}"
    pw.apply(web("web", namespace, 2, "{targets: [podman-b, docker-a]}"))
    pw.start_controller()
    eventually(
        lambda: serving(pw, namespace, "web", 2, {"podman-b", "docker-a"}),
        timeout=90,
        what="2 ready replicas",
    )
    source = replicas(pw, namespace, "web")[0]["target"]
    other = "docker-a" if source == "podman-b" else "podman-b"
    drain = subprocess.Popen(
        [*pw.command(), "target", "drain", source, "--timeout", "90"],
        env=pw.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lowest = 2
    while drain.poll() is None:
        # indices with some ready copy, old or new: a moving index keeps its
        # old copy serving until the new one is ready (its replica record
        # already shows the new one)
        status = pw.json("get", "workloads", "web", "-n", namespace)["status"]
        lowest = min(lowest, status["replicas"]["available"])
        time.sleep(0.2)
    output, _ = drain.communicate()
    assert drain.returncode == 0, output
    assert lowest == 2, "a replica stopped serving before its replacement was ready"
    assert {r["target"] for r in replicas(pw, namespace, "web")} == {other}
    assert serving(pw, namespace, "web", 2, {other})
    engine = "podman" if source == "podman-b" else "docker"
    eventually(lambda: engine_copies(namespace)[engine] == [], timeout=30)
    pw.run("target", "uncordon", source)


def test_high_priority_preempts_low_and_low_returns(pw: Portway) -> None:
    namespace = f"prio-{uuid.uuid4().hex[:6]}"
    pw.run(
        "target", "add", "small", "--address", "docker:///var/run/docker.sock",
        "--capacity", "cpu=4,memory=256Mi", "--label", "size=small",
    )  # fmt: skip
    small = "{targets: [small], priority: PRIORITY}"
    limits = "  resources: {memory: MEMORY}\n"
    low = web("low", namespace, 3, small.replace("PRIORITY", "10"))
    pw.apply(low + limits.replace("MEMORY", "64Mi"))
    pw.start_controller()
    eventually(lambda: serving(pw, namespace, "low", 3, {"small"}), timeout=90, what="low")

    high = web("high", namespace, 2, small.replace("PRIORITY", "100"))
    pw.apply(high + limits.replace("MEMORY", "100Mi"), "--no-wait")
    eventually(lambda: serving(pw, namespace, "high", 2, {"small"}), timeout=90, what="high")
    # 2 x 100Mi leave 56Mi: no 64Mi replica of low fits, so all three were evicted
    eventually(
        lambda: not any(r["state"] == "running" for r in replicas(pw, namespace, "low")),
        timeout=60,
        what="low's replicas to be evicted",
    )
    status = pw.json("get", "workloads", "low", "-n", namespace)["status"]
    assert "insufficient memory" in status["message"], status
    events = pw.json("get", "events", "--limit", "500")["items"]
    assert any(e["reason"] == "Preempted" and e["name"] == "low" for e in events)
    assert any(e["reason"] == "Preempting" and e["name"] == "high" for e in events)
    describe = pw.run("describe", "workload", "low", "-n", namespace).stdout
    assert "Preempted" in describe

    pw.run("delete", "high", "-n", namespace)
    eventually(lambda: serving(pw, namespace, "low", 3, {"small"}), timeout=90, what="low back")
