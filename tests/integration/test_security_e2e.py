"""runAsNonRoot through the real CLI and controller against the real dockerd:
a root image is refused for good, reported as Failed, and nothing runs."""

from __future__ import annotations

import textwrap

import docker
import pytest

from tests.integration.e2e import Portway, containers

pytestmark = pytest.mark.docker


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
