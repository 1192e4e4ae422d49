"""Cluster facts from recorded /version, NodeList, RuntimeClassList, Namespace."""

from __future__ import annotations

from tests.unit.kubernetes_driver.fixtures import load

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import Health, RuntimeHandler
from portway.drivers.kubernetes.capabilities import HOST_ACCESS, capabilities_for
from portway.drivers.kubernetes.fingerprint import (
    cluster_facts,
    node_images,
    normalize_image,
    pod_security_level,
    runtime_handlers,
    server_version,
)


def test_healthy_cluster_attributes() -> None:
    facts = cluster_facts(
        load("version"),
        load("nodes")["items"],
        load("runtimeclasses")["items"],
        load("namespace-privileged"),
        namespace_name="portway",
        context="kind-kind",
    )
    fp = facts.fingerprint
    assert fp.health is Health.HEALTHY
    assert fp.version == "v1.31.2"
    assert "Kubernetes v1.31.2" in fp.detail and "2 ready node(s)" in fp.detail
    attrs = fp.attributes
    # the NotReady, cordoned node counts as a node but not as capacity
    assert (attrs["nodes"], attrs["nodes_ready"]) == ("3", "2")
    assert attrs["container_runtimes"] == "containerd://1.7.18,cri-o://1.30.4"
    assert attrs["kubelet_versions"] == "v1.31.2"
    assert attrs["cpus"] == "15.5"  # 8 + 7500m
    assert attrs["memory"] == str((16318444 + 15294444) * 1024)
    assert (attrs["os"], attrs["arch"], attrs["platform"]) == ("linux", "amd64", "linux/amd64")
    assert attrs["runtime_classes"] == "gvisor,kata-qemu"
    assert (attrs["namespace"], attrs["context"], attrs["pod_security"]) == (
        "portway",
        "kind-kind",
        "privileged",
    )
    assert fp.runtime_handlers == ("gvisor", "kata-qemu")


def test_runtime_classes_become_tiers_with_overhead() -> None:
    handlers = runtime_handlers(load("runtimeclasses")["items"])
    assert handlers == (
        RuntimeHandler("standard", ""),
        RuntimeHandler("sandboxed", "gvisor", overhead_memory=120 * 1024**2, overhead_cpu=0.25),
        RuntimeHandler("microvm", "kata-qemu", overhead_memory=160 * 1024**2, overhead_cpu=0.25),
    )
    assert runtime_handlers([]) == (RuntimeHandler("standard", ""),)


def test_old_server_is_unhealthy_and_says_why() -> None:
    fp = cluster_facts(
        load("version-old"), load("nodes")["items"], [], None, namespace_name="x", context="c"
    ).fingerprint
    assert fp.health is Health.UNHEALTHY
    assert "v1.25.16-eks-8a0ae3f" in fp.detail and "1.27" in fp.detail
    assert server_version(load("version-old")) == (1, 25)


def test_no_ready_node_is_unhealthy() -> None:
    nodes = [n for n in load("nodes")["items"] if n["metadata"]["name"] == "kind-worker2"]
    fp = cluster_facts(
        load("version"), nodes, [], None, namespace_name="x", context="c"
    ).fingerprint
    assert fp.health is Health.UNHEALTHY
    assert "none of the cluster's 1 node(s) is Ready" in fp.detail
    empty = cluster_facts(load("version"), [], [], None, namespace_name="x", context="c")
    assert empty.fingerprint.detail == "the cluster has no nodes"


def test_pod_security_level_decides_host_access() -> None:
    assert pod_security_level(load("namespace-privileged")) == "privileged"
    assert pod_security_level(load("namespace-baseline")) == "baseline"
    assert pod_security_level(None) == ""
    handlers = runtime_handlers(load("runtimeclasses")["items"])
    privileged = capabilities_for("privileged", handlers)
    baseline = capabilities_for("baseline", handlers)
    unknown = capabilities_for("", handlers)
    assert privileged.features >= HOST_ACCESS
    assert not HOST_ACCESS & baseline.features
    assert not HOST_ACCESS & unknown.features
    assert privileged.isolation_tiers == {"standard", "sandboxed", "microvm"}
    assert Feature.LOGS in baseline.features and Feature.EXEC in baseline.features
    # never claimed: no Service, no PVC, no per-Pod pids limit
    for feature in (Feature.SERVICES_DNS, Feature.VOLUMES_NAMED, Feature.RESOURCES_PIDS):
        assert feature not in privileged.features
    assert Feature.SECURITY_CAP_ADD in privileged.gaps_in("sandboxed")


def test_without_runtime_classes_only_standard() -> None:
    caps = capabilities_for("privileged", runtime_handlers([]))
    assert caps.isolation_tiers == {"standard"}


def test_node_images_and_reference_normalization() -> None:
    images = node_images(load("nodes")["items"])
    worker = next(n for n in images if n.node == "kind-worker")
    assert normalize_image("portway/busybox:latest") in worker.names
    assert normalize_image("portway/busybox") in worker.names
    assert normalize_image("busybox:1.36") in worker.names
    assert worker.complete
    assert not node_images(load("nodes-full-image-list")["items"])[0].complete
    assert (
        normalize_image("registry.example.com:5000/a/b") == "registry.example.com:5000/a/b:latest"
    )
    assert normalize_image("localhost/x:1") == "localhost/x:1"
    digest = "busybox@sha256:" + "0" * 64
    assert normalize_image(digest) == "docker.io/library/" + digest
