"""The ingress with real engines and a real HAProxy, through the CLI and a
`portway controller` process: one service with replicas on Docker and
Podman answers through one listener, balanced over both; a killed replica
or a killed engine leaves the rotation; a rolling update under load fails no
request. Traffic goes only to 127.0.0.1 (the ingress and published ports).
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

from tests.integration.e2e import REPO, Portway, eventually, free_port_range, http_get
from tests.integration.load import Stream, failures

pytestmark = [pytest.mark.docker, pytest.mark.podman, pytest.mark.haproxy]

PODMAN_SOCKET = "/run/podman/podman.sock"
SERVICE_PATTERN = f"podman system service --time=0 unix://{PODMAN_SOCKET}"
#: each replica answers with its own identity and its VERSION
IDENTITY = (
    "mkdir -p /tmp/w && echo $VERSION $HOSTNAME > /tmp/w/index.html "
    "&& exec httpd -f -p 8080 -h /tmp/w"
)


@pytest.fixture
def pw(tmp_path: Path) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    portway.env["PORTWAY_CONTROLLER_FAILOVER_GRACE_SECONDS"] = "2"
    portway.run(
        "target", "add", "docker-a", "--address", "docker:///var/run/docker.sock",
        "--label", "zone=a",
    )  # fmt: skip
    portway.run(
        "target", "add", "podman-b", "--address", f"podman://{PODMAN_SOCKET}", "--label", "zone=b"
    )
    yield portway
    portway.kill_controllers()
    _podman_service_up()
    for item in portway.json("get", "workloads", "-A")["items"]:
        meta = item["metadata"]
        portway.run("delete", meta["name"], "-n", meta["namespace"], check=False)
    _stop_haproxy(tmp_path)


def _podman_service_up() -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "engines-podman.sh")],
        check=True,
        timeout=180,
        capture_output=True,
    )


def _stop_haproxy(home: Path) -> None:
    pidfile = home / "ingress" / "haproxy.pid"
    if pidfile.exists():
        for pid in pidfile.read_text().split():
            subprocess.run(["kill", pid], check=False)


def web(namespace: str, listen: int, version: str = "v1", replicas: int = 2) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          image: portway/busybox:latest
          command: ["sh", "-c", "{IDENTITY}"]
          env: {{VERSION: {version}}}
          replicas: {replicas}
          ports: [{{name: http, containerPort: 8080}}]
          probes:
            readiness: {{http: {{port: 8080}}, periodSeconds: 1}}
          placement: {{spread: [{{topologyKey: zone, maxSkew: 1}}]}}
          ingress: [{{port: http, listen: {listen}, drainSeconds: 2}}]
        """
    )


def service(pw: Portway, namespace: str) -> dict[str, Any]:
    [found] = pw.json("get", "services", "-n", namespace)["items"]
    return dict(found)


def ready_endpoints(pw: Portway, namespace: str) -> list[dict[str, Any]]:
    return [e for e in service(pw, namespace)["endpoints"] if e["ready"] and not e["draining"]]


def answers(listen: int, count: int = 20) -> set[str]:
    return {http_get(listen).strip() for _ in range(count)}


def up(pw: Portway, namespace: str, listen: int, targets: int = 2) -> set[str]:
    """Wait until the ingress answers from ``targets`` distinct replicas."""

    def balanced() -> set[str] | None:
        seen = answers(listen)
        return seen if len(seen) >= targets else None

    found: set[str] = eventually(balanced, timeout=90, what="the ingress to balance")
    return found


def test_one_service_on_two_engines_balanced_through_the_ingress(pw: Portway) -> None:
    namespace = f"ing-{uuid.uuid4().hex[:6]}"
    listen = free_port_range(1, start=30000)
    pw.apply(web(namespace, listen))
    pw.start_controller()
    seen = up(pw, namespace, listen)
    assert len(seen) == 2 and all(s.startswith("v1 ") for s in seen)
    targets = {e["target"] for e in ready_endpoints(pw, namespace)}
    assert targets == {"docker-a", "podman-b"}
    wide = pw.run("get", "services", "-n", namespace, "-o", "wide").stdout
    assert f"127.0.0.1:{listen}/http" in wide and "@docker-a" in wide and "@podman-b" in wide

    # a replica is killed under a steady stream: it leaves rotation, errors stop
    docker_replica = next(e for e in ready_endpoints(pw, namespace) if e["target"] == "docker-a")
    stream = Stream(listen, rate=100, seconds=12).start()
    time.sleep(2)
    killed_at = time.monotonic()
    subprocess.run(["docker", "kill", docker_replica["id"]], check=True, capture_output=True)
    outcomes = stream.wait()
    failed = failures(outcomes)
    print(f"replica kill: {len(failed)} of {len(outcomes)} requests failed")
    after = [o for o in outcomes if o.at > killed_at + 2]
    assert after and not failures(after), "errors continued 2 s after the kill"
    assert len(failed) <= 5, failed[:5]


# kills the podman API service every other test is using
@pytest.mark.serial
def test_an_engine_killed_under_load_leaves_rotation(pw: Portway) -> None:
    namespace = f"ing-{uuid.uuid4().hex[:6]}"
    listen = free_port_range(1, start=31000)
    pw.apply(web(namespace, listen))
    pw.start_controller()
    up(pw, namespace, listen)
    stream = Stream(listen, rate=100, seconds=14).start()
    time.sleep(2)
    subprocess.run(["pkill", "-9", "-f", SERVICE_PATTERN], check=True)
    killed_at = time.monotonic()
    try:
        outcomes = stream.wait()
    finally:
        _podman_service_up()
    failed = failures(outcomes)
    print(f"engine kill: {len(failed)} of {len(outcomes)} requests failed")
    after = [o for o in outcomes if o.at > killed_at + 2]
    assert after and not failures(after)
    # after failover both endpoints are on docker, and the ingress still balances
    eventually(
        lambda: (
            {e["target"] for e in ready_endpoints(pw, namespace)} == {"docker-a"}
            and len(ready_endpoints(pw, namespace)) == 2
        ),
        timeout=60,
        what="both replicas on docker-a",
    )
    assert len(up(pw, namespace, listen)) == 2


def test_rolling_update_under_load_fails_no_request(pw: Portway) -> None:
    namespace = f"ing-{uuid.uuid4().hex[:6]}"
    listen = free_port_range(1, start=32000)
    pw.apply(web(namespace, listen, "v1"))
    pw.start_controller()
    up(pw, namespace, listen)
    stream = Stream(listen, rate=50, seconds=60).start()
    time.sleep(1)
    pw.apply(web(namespace, listen, "v2"), "--no-wait")

    def updated() -> bool:
        return answers(listen, 10) and all(s.startswith("v2 ") for s in answers(listen, 10))

    try:
        eventually(updated, timeout=90, what="every answer from v2")
    finally:
        outcomes = stream.stop()
    failed = failures(outcomes)
    versions = [o.body.split()[0] for o in outcomes if o.ok]
    print(f"rolling update: {len(outcomes)} requests, {len(failed)} failed")
    assert not failed, failed[:5]
    assert "v1" in versions and "v2" in versions
    events = pw.json("get", "events", "--limit", "500")["items"]
    assert any(e["reason"] == "Draining" for e in events)


@pytest.mark.parametrize("target", ["docker-a", "podman-b"])
def test_a_workload_reaches_another_by_its_service_name(pw: Portway, target: str) -> None:
    """Through the controller: the service's replicas get their names, and a
    client created after it gets WEB_SERVICE_HOST/PORT."""
    namespace = f"dns-{uuid.uuid4().hex[:6]}"
    server = textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          image: portway/busybox:latest
          command: ["sh", "-c", "{IDENTITY}"]
          env: {{VERSION: named}}
          ports: [{{name: http, containerPort: 8080}}]
          probes:
            readiness: {{http: {{port: 8080}}, periodSeconds: 1}}
          placement: {{targets: [{target}]}}
        """
    )
    client = textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: client, namespace: {namespace}}}
        spec:
          image: portway/busybox:latest
          command: ["sleep", "3600"]
          placement: {{targets: [{target}]}}
        """
    )
    pw.apply(server)
    pw.apply(client)
    env = pw.run(
        "exec",
        "client",
        "-n",
        namespace,
        "--",
        "sh",
        "-c",
        "echo $WEB_SERVICE_HOST:$WEB_SERVICE_PORT_HTTP",
    )
    assert env.stdout.strip() == f"web.{namespace}:8080"
    for name in (f"web.{namespace}", "web"):
        got = eventually(
            lambda name=name: pw.run(
                "exec",
                "client",
                "-n",
                namespace,
                "--",
                "wget",
                "-qO-",
                f"http://{name}:8080/",
                check=False,
            ).stdout.strip(),
            timeout=30,
            what=f"{name} to resolve inside the client",
        )
        assert got.startswith("named "), got
