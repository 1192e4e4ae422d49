"""Drivers judge their own extension block without calling the engine."""

from __future__ import annotations

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import ExtensionChecker, RuntimeHandler, TierExtensionChecker
from portway.drivers.docker import DockerDriver
from portway.drivers.podman import PodmanDriver
from portway.spec.model import Isolation


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


def test_a_sandboxed_workload_may_not_name_another_runtime() -> None:
    driver = DockerDriver("t", "docker:///nonexistent/docker.sock")
    # handlers as the fingerprint of a dockerd with runsc finds them (set
    # directly: this test calls no engine)
    driver._handlers = (RuntimeHandler("standard", "runc"), RuntimeHandler("sandboxed", "runsc"))
    assert isinstance(driver, TierExtensionChecker)
    assert driver.check_extension({"runtime": "runc"}) == []  # the block itself is fine
    [problem] = driver.check_tier_extension({"runtime": "runc"}, Isolation.SANDBOXED)
    assert "extensions.docker.runtime 'runc' contradicts isolation 'sandboxed'" in problem
    assert driver.check_tier_extension({"runtime": "runsc"}, Isolation.SANDBOXED) == []
    # standard: the runtime extension stays the escape hatch
    assert driver.check_tier_extension({"runtime": "runc"}, Isolation.STANDARD) == []
    capabilities = driver.capabilities()
    assert Feature.ISOLATION_SANDBOXED in capabilities.features
    # what gVisor does not give a sandboxed replica is declared, with the reason
    sandboxed = capabilities.features_for("sandboxed")
    assert Feature.PROBES_TCP not in sandboxed
    assert Feature.RESOURCES_PIDS not in sandboxed
    assert Feature.RESOURCES_MEMORY in sandboxed  # enforced on the sandbox's cgroup
    assert "EAGAIN" in capabilities.tier_gaps["sandboxed"][Feature.PROBES_TCP]
    assert Feature.PROBES_TCP in capabilities.features_for("standard")


def test_an_engine_that_cannot_be_asked_offers_no_sandbox() -> None:
    for driver in (
        DockerDriver("t", "docker:///nonexistent/docker.sock"),
        PodmanDriver("t", "podman:///nonexistent/podman.sock"),
    ):
        capabilities = driver.capabilities()
        assert capabilities.isolation_tiers == {"standard"}
        assert capabilities.handler_for("sandboxed") is None
