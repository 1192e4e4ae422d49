"""apply, scale, logs and exec through the real CLI and controller, on a live
cluster: the path a user takes (``portway target add --driver kubernetes``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kubernetes_live

IMAGE = "portway/busybox:latest"


class Cli:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = dict(os.environ, PORTWAY_HOME=str(home), PYTHONUNBUFFERED="1")

    def run(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "portway", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"portway {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    def apply(self, text: str) -> str:
        path = self.home / f"w-{time.monotonic_ns()}.yaml"
        path.write_text(text)
        return self.run("apply", "-f", str(path))


def _workload(replicas: int) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata:
          name: ticker
          namespace: live
        spec:
          image: {IMAGE}
          command: ["sh", "-c", "echo hello from $HOSTNAME; while true; do sleep 1; done"]
          replicas: {replicas}
          placement:
            targets: [kube]
          # until a live conformance run is kept in the matrix, the driver's
          # claims are unproven and strict portability refuses them
          portability: lenient
        """
    )


def _eventually(check: Callable[[], Any], timeout: float = 120, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(1)


@pytest.fixture
def cli(tmp_path: Path, kubeconfig: str, live_namespace: str) -> Iterator[Cli]:
    runner = Cli(tmp_path)
    context = os.environ.get("PORTWAY_KUBERNETES_CONTEXT", "")
    args = ["target", "add", "kube", "--driver", "kubernetes", "--kubeconfig", kubeconfig]
    args += ["--namespace", live_namespace] + (["--context", context] if context else [])
    out = runner.run(*args)
    assert "healthy" in out, out
    yield runner
    runner.run("delete", "workload", "ticker", "-n", "live", timeout=300)


def test_apply_scale_logs_exec(cli: Cli) -> None:
    cli.apply(_workload(2))

    def running(count: int) -> Callable[[], bool]:
        def check() -> bool:
            replicas = json.loads(cli.run("get", "replicas", "-n", "live", "-o", "json"))
            items = replicas if isinstance(replicas, list) else replicas.get("items", [])
            return sum(1 for r in items if "running" in json.dumps(r).lower()) >= count

        return check

    _eventually(running(2), what="2 running replicas")
    cli.apply(_workload(3))
    _eventually(running(3), what="3 running replicas after scaling up")
    logs = _eventually(
        lambda: (out := cli.run("logs", "ticker", "-n", "live")).count("hello from") >= 3 and out,
        what="every replica's first line in the logs",
    )
    assert "hello from pwc" not in logs or "hello from" in logs
    out = cli.run("exec", "ticker", "-n", "live", "--", "sh", "-c", "echo in-$HOSTNAME")
    assert out.startswith("in-"), out
    cli.apply(_workload(1))
    _eventually(lambda: not running(2)(), what="scaled down to 1 replica")
