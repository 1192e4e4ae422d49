"""A sandboxed workload through the real CLI on the real Docker Engine: it
runs in gVisor (its kernel says so through `portway exec`), serves on its
127.0.0.1 port and is deleted with everything it made."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.e2e import (
    Portway,
    containers,
    eventually,
    free_port_range,
    http_get,
    workload_yaml,
)

pytestmark = pytest.mark.docker

# gVisor's Sentry (runsc 20221219) answers this whatever kernel the host runs
GVISOR_PROC_VERSION = "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016"


@pytest.fixture
def pw(tmp_path: Path) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    yield portway
    portway.kill_controllers()
    for item in portway.json("get", "workloads", "-A")["items"]:
        meta = item["metadata"]
        portway.run("delete", meta["name"], "-n", meta["namespace"], check=False)


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    engine = docker.from_env()
    yield engine
    engine.close()


def sandboxed(text: str) -> str:
    # lenient: the packaged matrix has no conformance run of docker's sandboxed
    # tier yet, and strict mode refuses what is declared but not proven
    return text.replace("spec:\n", "spec:\n  isolation: sandboxed\n  portability: lenient\n", 1)


def test_apply_sandboxed_runs_in_gvisor_serves_and_deletes(
    pw: Portway, client: docker.DockerClient
) -> None:
    namespace = f"sbx-{uuid.uuid4().hex[:6]}"
    port = free_port_range(1)
    # no readiness probe: HTTP probes are a declared gap of the sandboxed tier
    # on docker (runsc --network=host drops some connections, see DockerDriver)
    text = sandboxed(workload_yaml("web", namespace, replicas=1, host_port=port, readiness=False))
    applied = pw.apply(text)
    assert f"workload/web ready at 127.0.0.1:{port}" in applied.stdout, applied.stdout
    assert eventually(lambda: http_get(port) == "hello from portway\n", timeout=20)

    [made] = containers(client, namespace)
    assert client.api.inspect_container(made["Id"])["HostConfig"]["Runtime"] == "runsc"
    kernel = pw.run("exec", "web", "-n", namespace, "--", "cat", "/proc/version")
    assert kernel.stdout.strip() == GVISOR_PROC_VERSION
    targets = {t["name"]: t for t in pw.json("get", "targets")["items"]}
    assert targets["local-docker"]["tiers"]["sandboxed"]["handler"] == "runsc"

    pw.run("delete", "web", "-n", namespace, "--timeout", "60")
    assert eventually(lambda: containers(client, namespace) == [], timeout=30)


def test_the_same_workload_in_the_standard_tier_runs_on_the_host_kernel(
    pw: Portway, client: docker.DockerClient
) -> None:
    namespace = f"std-{uuid.uuid4().hex[:6]}"
    port = free_port_range(1)
    pw.apply(workload_yaml("web", namespace, replicas=1, host_port=port))
    kernel = pw.run("exec", "web", "-n", namespace, "--", "cat", "/proc/version")
    assert kernel.stdout.strip() != GVISOR_PROC_VERSION
    assert client.version()["KernelVersion"] in kernel.stdout
    pw.run("delete", "web", "-n", namespace, "--timeout", "60")


def test_a_sandboxed_workload_may_not_name_another_runtime(pw: Portway) -> None:
    namespace = f"sbx-{uuid.uuid4().hex[:6]}"
    text = sandboxed(workload_yaml("web", namespace, replicas=1, readiness=False))
    text += "  extensions:\n    docker:\n      runtime: runc\n"
    refused = pw.apply(text, check=False)
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "extensions.docker.runtime 'runc' contradicts isolation 'sandboxed'" in said, said
    assert pw.json("get", "workloads", "-A")["items"] == []
