"""What a cluster is, from four reads: ``/version``, the Nodes, the
RuntimeClasses and the target namespace. Pure: the driver fetches, this
module judges, so it is tested against recorded API answers.

- health: healthy when the API server is new enough (scheduling gates, which
  portway's create/start split relies on, are on by default from 1.27) and at
  least one Node is Ready and schedulable;
- attributes: server version and platform, node count, the nodes' container
  runtimes (``containerd://1.7.22``) and kubelet versions, allocatable CPU and
  memory summed over ready schedulable nodes (portway's capacity figures);
- isolation tiers: one ``RuntimeHandler`` per tier a RuntimeClass offers, by
  its handler (``runsc`` -> sandboxed, ``kata*`` -> microvm), with the
  RuntimeClass's ``overhead.podFixed`` as the tier's overhead;
- the namespace's Pod Security Admission ``enforce`` level, which decides
  which host-access features the driver may claim.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from portway.drivers.base import Fingerprint, Health, RuntimeHandler
from portway.drivers.engine_common import Json, obj, text
from portway.spec.model import Isolation, parse_bytes, parse_cpu

#: scheduling gates (KEP-3521) are on by default from here (beta 1.27, GA 1.30)
MIN_SERVER_VERSION = (1, 27)
PSA_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"

_GVISOR = re.compile(r"runsc|gvisor", re.IGNORECASE)
_KATA = re.compile(r"kata", re.IGNORECASE)


@dataclass(frozen=True)
class ClusterFacts:
    fingerprint: Fingerprint
    handlers: tuple[RuntimeHandler, ...] = ()
    #: Pod Security Admission level enforced in the target namespace:
    #: "privileged", "baseline", "restricted", or "" when it could not be read
    pod_security: str = "privileged"
    node_images: tuple[NodeImages, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class NodeImages:
    """The images one node reports (``status.images``, capped by the
    kubelet's ``nodeStatusMaxImages``, 50 by default)."""

    node: str
    names: frozenset[str]
    complete: bool  # fewer than the cap: the list holds every image


def server_version(version: Mapping[str, Any]) -> tuple[int, int]:
    """``{"major": "1", "minor": "30+"}`` -> (1, 30); (0, 0) when unreadable."""
    major = re.match(r"\d+", text(version.get("major")))
    minor = re.match(r"\d+", text(version.get("minor")))
    if major and minor:
        return int(major.group()), int(minor.group())
    found = re.match(r"v?(\d+)\.(\d+)", text(version.get("gitVersion")))
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _ready(node: Json) -> bool:
    for condition in obj(node.get("status")).get("conditions") or []:
        item = obj(condition)
        if item.get("type") == "Ready":
            return item.get("status") == "True"
    return False


def _schedulable(node: Json) -> bool:
    return obj(node.get("spec")).get("unschedulable") is not True


def _quantity(value: Any, parse: Any) -> float:
    try:
        return float(parse(text(value) or value))
    except (ValueError, TypeError):
        return 0.0


def _tier_of(handler: str, name: str) -> str | None:
    if _GVISOR.search(handler) or _GVISOR.search(name):
        return Isolation.SANDBOXED.value
    if _KATA.search(handler) or _KATA.search(name):
        return Isolation.MICROVM.value
    return None


def runtime_handlers(runtime_classes: Iterable[Mapping[str, Any]]) -> tuple[RuntimeHandler, ...]:
    """Standard (the cluster's default runtime: no RuntimeClass) plus one
    handler per other tier; ``handler`` is the RuntimeClass *name*, which is
    what a Pod names. Several classes for one tier: the first by name."""
    found: dict[str, RuntimeHandler] = {}
    for item in sorted((obj(dict(c)) for c in runtime_classes), key=_class_name):
        name = _class_name(item)
        tier = _tier_of(text(item.get("handler")), name)
        if tier is None or tier in found:
            continue
        fixed = obj(obj(item.get("overhead")).get("podFixed"))
        found[tier] = RuntimeHandler(
            tier,
            name,
            overhead_memory=int(_quantity(fixed.get("memory"), parse_bytes)),
            overhead_cpu=_quantity(fixed.get("cpu"), parse_cpu),
        )
    return (RuntimeHandler(Isolation.STANDARD.value, ""), *found.values())


def _class_name(item: Json) -> str:
    return text(obj(item.get("metadata")).get("name"))


def pod_security_level(namespace: Mapping[str, Any] | None) -> str:
    """The namespace's enforced Pod Security level ("" when unknown)."""
    if namespace is None:
        return ""
    labels = obj(obj(dict(namespace).get("metadata")).get("labels"))
    level = text(labels.get(PSA_ENFORCE_LABEL)) or "privileged"
    return level if level in ("privileged", "baseline", "restricted") else ""


def node_images(nodes: Iterable[Mapping[str, Any]], cap: int = 50) -> tuple[NodeImages, ...]:
    out = []
    for node in nodes:
        raw = obj(dict(node))
        images = obj(raw.get("status")).get("images") or []
        names = frozenset(
            normalize_image(text(n))
            for image in images
            for n in obj(image).get("names") or []
            if text(n)
        )
        out.append(NodeImages(text(obj(raw.get("metadata")).get("name")), names, len(images) < cap))
    return tuple(out)


def normalize_image(reference: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest``, as the kubelet
    reports names; a digest reference is kept as it is."""
    name = reference.strip()
    first, slash, _rest = name.partition("/")
    if not slash:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    last = name.rpartition("/")[2]
    if "@" not in last and ":" not in last:
        name += ":latest"
    return name


def cluster_facts(
    version: Mapping[str, Any],
    nodes: Iterable[Mapping[str, Any]],
    runtime_classes: Iterable[Mapping[str, Any]],
    namespace: Mapping[str, Any] | None,
    *,
    namespace_name: str,
    context: str,
) -> ClusterFacts:
    node_list = [obj(dict(n)) for n in nodes]
    usable = [n for n in node_list if _ready(n) and _schedulable(n)]
    infos = [obj(obj(n.get("status")).get("nodeInfo")) for n in node_list]
    runtimes = sorted({text(i.get("containerRuntimeVersion")) for i in infos} - {""})
    kubelets = sorted({text(i.get("kubeletVersion")) for i in infos} - {""})
    allocatable = [obj(obj(n.get("status")).get("allocatable")) for n in usable]
    cpus = sum(_quantity(a.get("cpu"), parse_cpu) for a in allocatable)
    memory = sum(_quantity(a.get("memory"), parse_bytes) for a in allocatable)
    handlers = runtime_handlers(runtime_classes)
    git_version = text(version.get("gitVersion"))
    level = pod_security_level(namespace)
    attributes = {
        "os": "linux"
        if all(text(i.get("operatingSystem")) in ("", "linux") for i in infos)
        else "",
        "arch": ",".join(sorted({text(i.get("architecture")) for i in infos} - {""})),
        "cpus": f"{cpus:g}",
        "memory": str(int(memory)),
        "platform": text(version.get("platform")),
        "nodes": str(len(node_list)),
        "nodes_ready": str(len(usable)),
        "container_runtimes": ",".join(runtimes),
        "kubelet_versions": ",".join(kubelets),
        "runtime_classes": ",".join(h.handler for h in handlers if h.handler),
        "namespace": namespace_name,
        "context": context,
        "pod_security": level or "unknown",
    }
    problem = ""
    found = server_version(version)
    if found < MIN_SERVER_VERSION:
        problem = (
            f"the API server is {git_version or 'of an unknown version'}; portway needs "
            f"Kubernetes {'.'.join(map(str, MIN_SERVER_VERSION))} or newer (Pod scheduling gates)"
        )
    elif not usable:
        problem = (
            f"none of the cluster's {len(node_list)} node(s) is Ready and schedulable"
            if node_list
            else "the cluster has no nodes"
        )
    fingerprint = Fingerprint(
        health=Health.UNHEALTHY if problem else Health.HEALTHY,
        detail=problem
        or f"Kubernetes {git_version} ({len(usable)} ready node(s), {', '.join(runtimes)})",
        version=git_version,
        runtime_handlers=tuple(h.handler for h in handlers if h.handler),
        attributes=attributes,
    )
    return ClusterFacts(fingerprint, handlers, level, node_images(node_list))
