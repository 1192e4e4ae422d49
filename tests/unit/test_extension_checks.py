"""Drivers judge their own extension block without calling the engine."""

from __future__ import annotations

from portway.drivers.base import ExtensionChecker
from portway.drivers.docker import DockerDriver
from portway.drivers.podman import PodmanDriver


def test_docker_and_podman_name_the_bad_key_and_the_supported_ones() -> None:
    for driver, name in (
        (DockerDriver("t", "docker:///nonexistent/docker.sock"), "docker"),
        (PodmanDriver("t", "podman:///nonexistent/podman.sock"), "podman"),
    ):
        assert isinstance(driver, ExtensionChecker)
        assert driver.check_extension({"init": False, "shmSize": "64Mi"}) == []
        [problem] = driver.check_extension({"bogus": 1})
        assert f"extensions.{name}.bogus is not supported" in problem
        assert "supported keys: runtime, labels, shmSize, init" in problem
        [wrong_type] = driver.check_extension({"init": "yes"})
        assert "init" in wrong_type
