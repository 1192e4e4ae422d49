"""Issue 9's merged log view through the real CLI on real engines: replicas
on Docker and on Podman merged in time order, and a follow that goes on
printing across a rolling replacement."""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import textwrap
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.e2e import IMAGE_V1, IMAGE_V2, Portway, eventually, remove_namespace

pytestmark = [pytest.mark.docker, pytest.mark.podman]

#: each replica says who it is (image tag, container) and counts, 5 lines a second
TALKER = 'i=0; while true; do i=$((i+1)); echo "$MARK $HOSTNAME $i"; sleep 0.2; done'


def talker(name: str, namespace: str, *, replicas: int, image: str, mark: str, spread: bool) -> str:
    placement = (
        "placement:\n"
        "  targets: [local-docker, local-podman]\n"
        "  spread: [{topologyKey: portway.dev/target, maxSkew: 1, "
        "whenUnsatisfiable: DoNotSchedule}]\n"
        if spread
        else "placement: {targets: [local-docker]}\n"
    )
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          image: {image}
          command: ["sh", "-c", {json.dumps(TALKER)}]
          env: {{MARK: {mark}}}
          replicas: {replicas}
          restart: {{policy: always, initialBackoffSeconds: 0.2, maxBackoffSeconds: 2}}
        """
    ) + textwrap.indent(placement, "  ")


@pytest.fixture
def pw(tmp_path: Path, docker_driver: Any) -> Iterator[tuple[Portway, str]]:
    portway = Portway(tmp_path)
    portway.run("target", "add", "local-podman", "--address", "podman:///run/podman/podman.sock")
    namespace = f"logs-{uuid.uuid4().hex[:8]}"
    yield portway, namespace
    for item in portway.json("get", "workloads", "-n", namespace)["items"]:
        portway.run("delete", item["metadata"]["name"], "-n", namespace, check=False)
    client = docker.from_env(timeout=60)
    try:
        remove_namespace(client, namespace)
    finally:
        client.close()


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_replicas_on_docker_and_podman_come_merged_in_time_order(
    pw: tuple[Portway, str],
) -> None:
    portway, namespace = pw
    portway.apply(talker("duo", namespace, replicas=2, image=IMAGE_V1, mark="v1", spread=True))

    def both_spoke() -> list[dict[str, Any]] | None:
        records = _records(portway.run("logs", "duo", "-n", namespace, "-o", "json").stdout)
        targets = {r["target"] for r in records}
        return records if targets == {"local-docker", "local-podman"} and len(records) > 8 else None

    records = eventually(both_spoke, timeout=30, what="lines from both targets")
    times = [datetime.fromisoformat(r["time"]) for r in records]
    assert times == sorted(times), "merged lines are not in time order"
    assert {(r["replica"], r["target"]) for r in records} == {
        (0, "local-docker"),
        (1, "local-podman"),
    } or {(r["replica"], r["target"]) for r in records} == {
        (0, "local-podman"),
        (1, "local-docker"),
    }
    switches = sum(1 for a, b in itertools.pairwise(records) if a["target"] != b["target"])
    assert switches >= 2, "the two replicas' lines should interleave, not come one after the other"
    assert set(records[0]) == {"time", "workload", "replica", "target", "stream", "line"}

    text = portway.run("logs", "duo", "-n", namespace, "--target", "local-podman", "--tail", "2")
    lines = text.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("v1 ") for line in lines), lines
    bad = portway.run("logs", "duo", "-n", namespace, "--since", "soon", check=False)
    assert bad.returncode != 0 and "--since 'soon'" in bad.stderr


def test_a_follow_prints_the_replacement_replicas_lines(pw: tuple[Portway, str]) -> None:
    portway, namespace = pw
    portway.apply(talker("solo", namespace, replicas=1, image=IMAGE_V1, mark="v1", spread=False))
    follow = subprocess.Popen(
        [*portway.command(), "logs", "solo", "-n", namespace, "-f", "-o", "json"],
        env=portway.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        assert follow.stdout is not None
        for line in follow.stdout:
            lines.put(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[dict[str, Any]] = []

    def until(mark: str) -> dict[str, Any]:
        while True:
            item = lines.get(timeout=60)
            seen.append(item)
            if item["line"].startswith(mark):
                return item

    try:
        first = until("v1 ")
        portway.apply(
            talker("solo", namespace, replicas=1, image=IMAGE_V2, mark="v2", spread=False)
        )
        second = until("v2 ")
        assert follow.poll() is None, "the follow ended instead of going on"
    finally:
        follow.terminate()
        follow.wait(timeout=30)
        reader.join(timeout=10)  # it ends at the pipe's end of file
        for pipe in (follow.stdout, follow.stderr):
            if pipe is not None:
                pipe.close()
    old_host, new_host = first["line"].split()[1], second["line"].split()[1]
    assert old_host != new_host, "the v2 lines should come from the new container"
    # the new container's lines start at its first: nothing of it was lost
    assert second["line"] == f"v2 {new_host} 1", second
