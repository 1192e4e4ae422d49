"""runAsNonRoot through the real CLI and controller against the real dockerd:
a root image is refused for good, reported as Failed, and nothing runs."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.e2e import Portway, containers, remove_namespace

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def client(docker_driver: Any) -> Iterator[docker.DockerClient]:
    c = docker.from_env(timeout=60)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def namespace(client: docker.DockerClient) -> Iterator[str]:
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    yield ns
    remove_namespace(client, ns)


@pytest.fixture
def pw(tmp_path: Path, namespace: str) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    yield portway
    portway.kill_controllers()


def _workload(namespace: str, user: str | None) -> str:
    user_line = f'\n            user: "{user}"' if user is not None else ""
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata:
          name: nonroot
          namespace: {namespace}
        spec:
          image: portway/busybox:latest
          command: ["sleep", "600"]
          replicas: 1
          # until the kept capability matrix holds the runAsNonRoot cases'
          # results, strict placement calls the feature "not proven"
          portability: lenient
          security:
            runAsNonRoot: true{user_line}
        """
    )


def test_root_image_is_refused_and_reported_failed(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    # The controller retries a refused create with backoff (as it does any
    # create the engine refuses), so apply waits until its timeout
    result = pw.apply(_workload(namespace, None), "--timeout", "5", check=False)
    assert result.returncode != 0
    assert "security.runAsNonRoot" in result.stderr
    assert "configures no User" in result.stderr
    assert containers(client, namespace) == []
    events = pw.run("describe", "workload", "nonroot", "-n", namespace).stdout
    assert "Failed" in events and "runAsNonRoot" in events


def test_numeric_user_runs(pw: Portway, client: docker.DockerClient, namespace: str) -> None:
    pw.apply(_workload(namespace, "1000"))
    [replica] = containers(client, namespace)
    assert replica["State"] == "running"
    inspected = client.api.inspect_container(replica["Id"])
    assert inspected["Config"]["User"] == "1000"
