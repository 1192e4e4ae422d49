"""The user's path through the real CLI and controller against the fake API
server: ``target add --driver kubernetes --context``, ``apply`` (waits until
ready), ``delete``. Proves the driver works inside the reconciler (create
behind the gate, start, stop by deadline, destroy), not only call by call.
(``portway logs``/``exec`` on this target worked by hand too; the driver's
logs and exec are tested call by call in test_driver_fake_api.py, and each
CLI process here costs seconds.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.kubernetes_driver.fake_api import (
    FakeCluster,
    fake_api_server,
    write_kubeconfig,
)

WORKLOAD = textwrap.dedent(
    """\
    apiVersion: portway.dev/v1
    kind: Workload
    metadata: {name: ticker, namespace: live}
    spec:
      image: portway/busybox:latest
      command: ["sh", "-c", "echo hi; sleep 600"]
      replicas: 2
      placement: {targets: [kube]}
      portability: lenient
    """
)


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, int]]:
    with fake_api_server() as running:
        yield running


def test_target_add_apply_delete(cluster: tuple[FakeCluster, int], tmp_path: Path) -> None:
    fake, port = cluster
    config = write_kubeconfig(tmp_path / "kubeconfig", port)
    env = dict(os.environ, PORTWAY_HOME=str(tmp_path / "home"), PORTWAY_CONTEXT="local")

    def portway(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "portway", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"portway {args}: {done.stdout}{done.stderr}"
        return done.stdout

    added = portway(
        "target", "add", "kube", "--driver", "kubernetes", "--context", "fake-ctx",
        "--kubeconfig", str(config),
    )  # fmt: skip
    assert "healthy: Kubernetes v1.31.2" in added
    (tmp_path / "w.yaml").write_text(WORKLOAD)
    assert "workload/ticker ready" in portway("apply", "-f", str(tmp_path / "w.yaml"))
    with fake.lock:
        pods = {name: pod["status"]["phase"] for name, pod in fake.pods.items()}
    assert sorted(pods) == [n for n in sorted(pods) if "-live-ticker-" in n] and len(pods) == 2
    assert set(pods.values()) == {"Running"}
    gates = [
        r.body["spec"].get("schedulingGates")
        for r in fake.requests_to("PATCH", "/pods/")
        if r.headers["content-type"] == "application/apply-patch+yaml"
    ]
    assert gates.count([{"name": "portway.dev/start"}]) == 2 and gates.count(None) == 2
    portway("delete", "workload", "ticker", "-n", "live")
    assert fake.pods == {}
    stops = [
        r for r in fake.requests_to("PATCH", "/pods/")
        if r.headers["content-type"] == "application/merge-patch+json"
    ]  # fmt: skip
    assert len(stops) == 2  # each replica stopped gracefully, then deleted
    assert len(fake.requests_to("DELETE", "/pods/")) == 2
