"""One workload file, three engines: the same responses on its ports, the
same logs and the same exit behaviour on Docker, Podman and containerd,
through the real CLI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.e2e import Portway, eventually, free_port_range, http_get, workload_yaml

pytestmark = [pytest.mark.docker, pytest.mark.podman, pytest.mark.containerd]

TARGETS = {
    "local-docker": None,  # registered on first use
    "local-podman": "podman:///run/podman/podman.sock",
    "local-containerd": "containerd:///run/containerd/containerd.sock",
}


@pytest.fixture
def pw(tmp_path: Path) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    for name, address in TARGETS.items():
        if address is not None:
            portway.run("target", "add", name, "--address", address)
    yield portway
    portway.kill_controllers()
    for item in portway.json("get", "workloads", "-A")["items"]:
        meta = item["metadata"]
        portway.run("delete", meta["name"], "-n", meta["namespace"], check=False)


def placed(text: str, target: str) -> str:
    return text.replace("spec:\n", f"spec:\n  placement: {{targets: [{target}]}}\n", 1)


def replica(pw: Portway, namespace: str, name: str) -> dict[str, Any]:
    items = pw.json("get", "replicas", "-n", namespace)["items"]
    [found] = [r for r in items if r["workload"] == name]
    return dict(found)


def test_same_workload_behaves_the_same_on_every_backend(pw: Portway) -> None:
    namespace = f"same-{uuid.uuid4().hex[:6]}"
    port = free_port_range(len(TARGETS))
    command = ["sh", "-c", "echo started as $(id -u); exec httpd -f -p 8080 -h /www"]
    observed: dict[str, dict[str, Any]] = {}
    for offset, target in enumerate(TARGETS):
        name = f"web-{target.removeprefix('local-')}"
        text = workload_yaml(name, namespace, replicas=1, host_port=port + offset, command=command)
        applied = pw.apply(placed(text, target))
        assert f"workload/{name} ready at 127.0.0.1:{port + offset}" in applied.stdout
        logs = eventually(
            lambda name=name: pw.run("logs", name, "-n", namespace).stdout, timeout=20
        )
        ran = pw.run(
            "exec", name, "-n", namespace, "--", "sh", "-c", "echo hi; exit 3", check=False
        )
        observed[target] = {
            "body": http_get(port + offset),
            "logs": logs.strip(),
            "exec": (ran.returncode, ran.stdout.strip()),
            "target": replica(pw, namespace, name)["target"],
        }
    for target, seen in observed.items():
        assert seen["target"] == target
    bodies = {t: o["body"] for t, o in observed.items()}
    assert set(bodies.values()) == {"hello from portway\n"}, bodies
    assert {o["logs"] for o in observed.values()} == {"started as 0"}, observed
    assert {o["exec"] for o in observed.values()} == {(3, "hi")}, observed

    # the same exit behaviour: a replica that fails under restart policy never
    failing = ["sh", "-c", "echo bye; exit 7"]
    for target in TARGETS:
        name = f"fail-{target.removeprefix('local-')}"
        text = workload_yaml(name, namespace, replicas=1, restart="never", command=failing)
        result = pw.apply(placed(text, target), check=False)
        assert result.returncode == 1 and "exit code 7" in result.stderr, (target, result)
        seen = replica(pw, namespace, name)
        assert (seen["state"], seen["last_exit_code"], seen["restart_count"]) == ("exited", 7, 0)
