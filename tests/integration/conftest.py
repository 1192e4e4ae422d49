"""Fixtures for tests against a real Docker Engine (no mocks).

The engine is found at ``PORTWAY_DOCKER_ADDRESS`` (default
``docker:///var/run/docker.sock``). Without a usable engine the tests are
skipped, unless ``CI=true`` or ``PORTWAY_REQUIRE_ENGINES=1``: then they fail.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from portway.drivers.base import (
    LABEL_NAMESPACE,
    Health,
)
from portway.drivers.docker import DockerDriver, docker_base_url
from tests.integration.driver_ns import Namespace
from tests.integration.e2e import Portway, remove_namespace

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-images.sh"
ADDRESS = os.environ.get("PORTWAY_DOCKER_ADDRESS", "docker:///var/run/docker.sock")
IMAGE = "portway/busybox:latest"
IMAGE_V2 = "portway/busybox:v2"


def engines_required() -> bool:
    """A missing engine fails the run instead of skipping (same rule as tests/conftest.py)."""
    truthy = {"1", "true", "yes", "on"}
    return any(
        os.environ.get(flag, "").strip().lower() in truthy
        for flag in ("CI", "PORTWAY_REQUIRE_ENGINES")
    )


@pytest.fixture(scope="session")
def docker_driver() -> Iterator[DockerDriver]:
    driver = DockerDriver("it-docker", ADDRESS)
    fingerprint = driver.fingerprint()
    if fingerprint.health is not Health.HEALTHY:
        driver.close()
        reason = f"no usable Docker Engine at {ADDRESS}: {fingerprint.detail}"
        if engines_required():
            pytest.fail(
                f"{reason}\n(CI=true or PORTWAY_REQUIRE_ENGINES=1: the engine is required; "
                "start dockerd or set PORTWAY_DOCKER_ADDRESS)",
                pytrace=False,
            )
        pytest.skip(reason)
    env = {**os.environ, "DOCKER_HOST": docker_base_url(ADDRESS)}
    built = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=300, env=env
    )
    if built.returncode != 0:
        driver.close()
        pytest.fail(f"{BUILD_SCRIPT} failed:\n{built.stdout}{built.stderr}", pytrace=False)
    yield driver
    driver.close()


@pytest.fixture(scope="session")
def engine(docker_driver: DockerDriver) -> Iterator[docker.APIClient]:
    """The SDK, for what the tests do behind portway's back (kill, inspect, volumes)."""
    client = docker.APIClient(base_url=docker_base_url(ADDRESS), version="auto", timeout=30)
    yield client
    client.close()


@pytest.fixture
def ns(docker_driver: DockerDriver, engine: docker.APIClient) -> Iterator[Namespace]:
    namespace = Namespace(docker_driver, f"t-{uuid.uuid4().hex[:8]}")
    yield namespace
    selector = f"{LABEL_NAMESPACE}={namespace.name}"
    for status in docker_driver.list_owned({LABEL_NAMESPACE: namespace.name}):
        docker_driver.destroy(status.handle)
    for volume in engine.volumes(filters={"label": selector}).get("Volumes") or []:
        engine.remove_volume(volume["Name"], force=True)


# --- the e2e trio: a Docker SDK client, a namespace cleaned up after, the CLI ---
# A module needing another kind of namespace (another engine, another clean-up)
# defines its own ``namespace``; ``pw`` then depends on that one.


@pytest.fixture
def client(docker_driver: DockerDriver) -> Iterator[docker.DockerClient]:
    """A Docker SDK client for checking what really runs (the images come with
    ``docker_driver``)."""
    c = docker.from_env(timeout=60)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def namespace(client: docker.DockerClient) -> Iterator[str]:
    """A fresh namespace whose containers are removed after the test."""
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    yield ns
    remove_namespace(client, ns)


@pytest.fixture
def pw(tmp_path: Path, namespace: str) -> Iterator[Portway]:
    """The CLI on a private home. Depends on ``namespace`` so its controllers
    are killed before the namespace's containers are removed (else they would
    recreate them)."""
    portway = Portway(tmp_path)
    yield portway
    portway.kill_controllers()
