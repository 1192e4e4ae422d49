"""Issue 9 (events, health) through the real CLI and controller on the real
dockerd: a replica whose readiness probe starts failing long after Ready is
reported not ready within the probe's period (workload Degraded, a NotReady
event saying why) and Ready again after; an OOM-killed replica is an
``OOMKilled`` event that ``portway events -w`` streams as it happens.

The same behaviour on every engine is the conformance cases
``probes.readiness_lost`` and ``resources.oom_reason``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import docker
import pytest

from portway.controller.records import KIND_WORKLOAD
from portway.service.app import Settings
from portway.store import Store
from tests.integration.e2e import IMAGE_V1, Portway, containers, eventually

pytestmark = pytest.mark.docker

#: readiness period x failure threshold; the NotReady event may come this much
#: later (the probe's exec round trip and a reconcile pass on a loaded machine)
PERIOD, THRESHOLD, SLACK = 1, 1, 3.0


def _workloads(namespace: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: flaky, namespace: {namespace}}}
        spec:
          image: {IMAGE_V1}
          command: ["sh", "-c", "trap 'exit 0' TERM; touch /tmp/ready; sleep 600 & wait"]
          probes:
            readiness:
              exec: {{command: ["cat", "/tmp/ready"]}}
              periodSeconds: {PERIOD}
              failureThreshold: {THRESHOLD}
        ---
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: hog, namespace: {namespace}}}
        spec:
          image: {IMAGE_V1}
          command: ["tail", "/dev/zero"]
          resources: {{memory: 16Mi}}
          restart: {{policy: never}}
        """
    )


class Follower:
    """``portway events -w -o json`` in a subprocess, its lines collected."""

    def __init__(self, pw: Portway, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portway", "events", "-w", "-o", "json", *args],
            env=pw.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.items: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.items.append(json.loads(line))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _phase(store: Store, namespace: str, name: str) -> tuple[str, str]:
    """Read straight from the store: polling through the CLI would cost a
    Python start per look, more than the period being measured."""
    record = store.require(KIND_WORKLOAD, namespace, name)
    return str(record.status.get("phase")), str(record.status.get("message", ""))


def test_readiness_lost_and_oom_kill_are_events(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    pw.apply(_workloads(namespace), "--no-wait")
    store = Store(Settings(home=pw.home).resolved_store_url())
    follower = Follower(pw, "-n", namespace, "--type", "Warning")
    try:
        pw.start_controller()
        oom = eventually(
            lambda: [e for e in follower.items if e["reason"] == "OOMKilled"],
            timeout=60,
            what="an OOMKilled event streamed by portway events -w",
        )
        assert oom[0]["name"] == "hog" and oom[0]["replica"] == 0
        assert "exit code 137" in oom[0]["message"]
        assert {e["type"] for e in follower.items} == {"Warning"}  # the filter held

        eventually(
            lambda: _phase(store, namespace, "flaky")[0] == "Ready", timeout=60, what="flaky Ready"
        )
        [flaky] = [
            c
            for c in containers(client, namespace)
            if c["Labels"].get("portway.dev/workload") == "flaky"
        ]
        removed_at = time.time()
        client.api.exec_start(client.api.exec_create(flaky["Id"], ["rm", "/tmp/ready"]))
        eventually(
            lambda: _phase(store, namespace, "flaky")[0] == "Degraded",
            timeout=30,
            interval=0.05,
            what="flaky Degraded once its readiness probe fails",
        )
        assert (
            "replica 0: not ready (readiness: exec probe exited 1)"
            in (_phase(store, namespace, "flaky")[1])
        )
        [lost] = [
            e for e in store.events(name="flaky", namespace=namespace) if e.reason == "NotReady"
        ]
        took = lost.ts - removed_at
        assert took <= PERIOD * THRESHOLD + SLACK, f"NotReady came {took:.1f}s after the loss"

        client.api.exec_start(client.api.exec_create(flaky["Id"], ["touch", "/tmp/ready"]))
        eventually(
            lambda: _phase(store, namespace, "flaky")[0] == "Ready",
            timeout=30,
            interval=0.05,
            what="flaky Ready again",
        )
        # what a user sees: the CLI's filters over the same events
        [shown] = pw.json("events", "-n", namespace, "--workload", "flaky", "--reason", "NotReady")[
            "items"
        ]
        assert (shown["type"], shown["replica"], shown["target"]) == ("Warning", 0, "local-docker")
        assert "exec probe exited 1" in shown["message"]
        eventually(
            lambda: any(e["reason"] == "NotReady" for e in follower.items),
            timeout=10,
            what="the NotReady event streamed by portway events -w too",
        )
        reasons = [e.reason for e in store.events(name="flaky", namespace=namespace)]
        assert reasons[-2:] == ["Ready", "Recovered"], reasons
        print(f"RESULT readiness_loss_event_seconds {took:.2f} target {PERIOD * THRESHOLD + 1}")
    finally:
        follower.stop()
        store.close()
