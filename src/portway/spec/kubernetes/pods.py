"""The pod-level pieces of a Kubernetes object, rendered from a portway
``WorkloadSpec``: one container and the pod spec around it.

Pure and shared: ``portway export --to kubernetes`` wraps them in Deployments
and StatefulSets, and the Kubernetes driver builds its Pods from them, so a
workload means the same pod on both paths. What does not map one to one is
listed by ``portway.spec.kubernetes.losses`` (so this module only renders).

Output is plain JSON-able dicts in the field order ``kubectl`` prints, ready
for ``yaml.safe_dump(sort_keys=False)`` or the Kubernetes API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from portway.spec.model import (
    Isolation,
    Probe,
    Protocol,
    SecretRef,
    Volume,
    VolumeType,
    Workload,
    WorkloadSpec,
)

#: the container's name in every rendered pod (a pod of portway has one)
CONTAINER_NAME = "main"

#: label that ties rendered pods to their workload (the Service selector)
NAME_LABEL = "app.kubernetes.io/name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

#: RuntimeClass names used for each isolation tier unless told otherwise
#: (``--runtime-class TIER=NAME``): the names the gVisor, Kata and runwasi
#: install guides use. Standard pods run on the cluster's default runtime.
DEFAULT_RUNTIME_CLASSES: Mapping[Isolation, str] = {
    Isolation.SANDBOXED: "gvisor",
    Isolation.MICROVM: "kata",
    Isolation.WASM: "wasmtime",
}

_UID_RE = re.compile(r"^([0-9]+)(?::([0-9]+))?$")


def runtime_class_for(
    isolation: Isolation, overrides: Mapping[Isolation, str] | None = None
) -> str | None:
    """The RuntimeClass a pod of this tier names (None: the default runtime)."""
    chosen = {**DEFAULT_RUNTIME_CLASSES, **(overrides or {})}
    return chosen.get(isolation)


def cpu_quantity(cores: float) -> str:
    """0.5 -> ``500m``; whole cores stay plain (``2``)."""
    millis = max(1, round(cores * 1000))
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(size: int) -> str:
    """Bytes in the largest binary unit that divides them (``64Mi``)."""
    for unit, factor in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _seconds(value: float, minimum: int) -> int:
    # Kubernetes counts probe timing in whole seconds; round up so a probe
    # is never stricter than the spec asked.
    return max(minimum, math.ceil(value))


def probe_for(probe: Probe, *, liveness: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if probe.exec is not None:
        out["exec"] = {"command": list(probe.exec.command)}
    elif probe.http is not None:
        out["httpGet"] = {"path": probe.http.path, "port": probe.http.port, "scheme": "HTTP"}
    elif probe.tcp is not None:
        out["tcpSocket"] = {"port": probe.tcp.port}
    out["initialDelaySeconds"] = _seconds(probe.initial_delay_seconds, 0)
    out["periodSeconds"] = _seconds(probe.period_seconds, 1)
    out["timeoutSeconds"] = _seconds(probe.timeout_seconds, 1)
    out["failureThreshold"] = probe.failure_threshold
    # the API server insists on 1 for liveness (losses.py reports a change)
    out["successThreshold"] = 1 if liveness else probe.success_threshold
    return out


def _security_context(spec: WorkloadSpec) -> dict[str, Any]:
    security = spec.security
    out: dict[str, Any] = {}
    if security.user is not None:
        match = _UID_RE.match(security.user)
        if match:  # a user *name* has no Kubernetes field (losses.py says so)
            out["runAsUser"] = int(match.group(1))
            if match.group(2) is not None:
                out["runAsGroup"] = int(match.group(2))
    if security.run_as_non_root:
        out["runAsNonRoot"] = True
    if security.read_only_root_filesystem:
        out["readOnlyRootFilesystem"] = True
    if security.no_new_privileges:
        out["allowPrivilegeEscalation"] = False
    if security.privileged:
        out["privileged"] = True
    capabilities: dict[str, list[str]] = {}
    if security.capabilities.add:
        capabilities["add"] = list(security.capabilities.add)
    if security.capabilities.drop:
        capabilities["drop"] = list(security.capabilities.drop)
    if capabilities:
        out["capabilities"] = capabilities
    out["seccompProfile"] = {"type": security.seccomp_profile.value}
    return out


def secret_volume_name(index: int) -> str:
    return f"secret-{index}"


def claim_name(workload_name: str, volume: Volume, replica_index: int | None = None) -> str:
    """The PersistentVolumeClaim a named volume mounts: its ``source`` or
    ``claim`` if given, else ``<workload>-<volume>`` (claims are namespaced, so
    the namespace need not be in the name); a per-replica volume appends the
    replica index, as StatefulSet claims do."""
    base = volume.source or volume.claim or f"{workload_name}-{volume.name}"
    return base if replica_index is None or not volume.per_replica else f"{base}-{replica_index}"


def _env(spec: WorkloadSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in spec.env.items()]
    for ref in spec.secrets:
        if ref.env is not None:
            env.append(
                {
                    "name": ref.env,
                    "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}},
                }
            )
    return env


def _ports(spec: WorkloadSpec, host_port_offset: int | None) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for port in spec.ports:
        item: dict[str, Any] = {}
        if port.name is not None:
            item["name"] = port.name
        item["containerPort"] = port.container_port
        item["protocol"] = "UDP" if port.protocol is Protocol.UDP else "TCP"
        if host_port_offset is not None and port.host_port is not None:
            item["hostPort"] = port.host_port + host_port_offset
            item["hostIP"] = port.host_ip
        ports.append(item)
    return ports


def _mounts(spec: WorkloadSpec) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = []
    for volume in spec.volumes:
        mount: dict[str, Any] = {"name": volume.name, "mountPath": volume.mount_path}
        if volume.read_only:
            mount["readOnly"] = True
        mounts.append(mount)
    for i, ref in enumerate(spec.secrets):
        if ref.mount_path is not None:
            # subPath puts the one key at the file path portway promises,
            # instead of a directory of keys
            mounts.append(
                {
                    "name": secret_volume_name(i),
                    "mountPath": ref.mount_path,
                    "subPath": ref.key,
                    "readOnly": True,
                }
            )
    return mounts


def container_for(spec: WorkloadSpec, *, host_port_offset: int | None = None) -> dict[str, Any]:
    """The pod's one container.

    ``host_port_offset``: None renders no hostPort (a Deployment's replicas
    would collide on a node; a Service exposes them instead); an integer i
    renders ``hostPort + i`` on ``hostIP`` for each port that has one, as
    portway publishes replica i (for a driver that creates one Pod per replica).
    """
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": spec.image}
    if spec.command is not None:
        container["command"] = list(spec.command)
    if spec.args is not None:
        container["args"] = list(spec.args)
    env = _env(spec)
    if env:
        container["env"] = env
    ports = _ports(spec, host_port_offset)
    if ports:
        container["ports"] = ports
    limits: dict[str, str] = {}
    if spec.resources.cpu is not None:
        limits["cpu"] = cpu_quantity(spec.resources.cpu)
    if spec.resources.memory is not None:
        limits["memory"] = memory_quantity(spec.resources.memory)
    if limits:
        # portway's limits are what it reserves on a target too: requests =
        # limits (Guaranteed QoS) keeps the scheduler's view the same
        container["resources"] = {"limits": limits, "requests": dict(limits)}
    if spec.probes.liveness is not None:
        container["livenessProbe"] = probe_for(spec.probes.liveness, liveness=True)
    if spec.probes.readiness is not None:
        container["readinessProbe"] = probe_for(spec.probes.readiness, liveness=False)
    mounts = _mounts(spec)
    if mounts:
        container["volumeMounts"] = mounts
    container["securityContext"] = _security_context(spec)
    return container


def _volume_source(workload_name: str, volume: Volume, replica_index: int | None) -> dict[str, Any]:
    if volume.type is VolumeType.TMPFS:
        empty_dir: dict[str, Any] = {"medium": "Memory"}
        if volume.size_limit is not None:
            empty_dir["sizeLimit"] = memory_quantity(volume.size_limit)
        return {"emptyDir": empty_dir}
    if volume.type is VolumeType.BIND:
        return {"hostPath": {"path": volume.source}}
    claim: dict[str, Any] = {"claimName": claim_name(workload_name, volume, replica_index)}
    if volume.read_only:
        claim["readOnly"] = True
    return {"persistentVolumeClaim": claim}


def _secret_volume(index: int, ref: SecretRef) -> dict[str, Any]:
    return {
        "name": secret_volume_name(index),
        "secret": {
            "secretName": ref.secret,
            "items": [{"key": ref.key, "path": ref.key, "mode": ref.mode}],
        },
    }


def pod_spec_for(
    spec: WorkloadSpec,
    *,
    workload_name: str,
    runtime_class: str | None,
    host_port_offset: int | None = None,
    replica_index: int | None = None,
    claim_templates: bool = False,
) -> dict[str, Any]:
    """The PodSpec of one replica.

    ``runtime_class``: the RuntimeClass of the tier (``runtime_class_for``).
    ``replica_index``: for a per-replica named volume, which claim to mount
    (``<claim>-<index>``); ``claim_templates=True`` leaves per-replica volumes
    out instead, for a StatefulSet whose volumeClaimTemplates provide them.
    """
    pod: dict[str, Any] = {}
    if runtime_class is not None:
        pod["runtimeClassName"] = runtime_class
    security = spec.security
    if security.host_network:
        pod["hostNetwork"] = True
    if security.host_pid:
        pod["hostPID"] = True
    if security.host_ipc:
        pod["hostIPC"] = True
    if security.sysctls:
        pod["securityContext"] = {
            "sysctls": [{"name": k, "value": v} for k, v in security.sysctls.items()]
        }
    pod["containers"] = [container_for(spec, host_port_offset=host_port_offset)]
    volumes: list[dict[str, Any]] = [
        {"name": v.name, **_volume_source(workload_name, v, replica_index)}
        for v in spec.volumes
        if not (claim_templates and v.type is VolumeType.NAMED and v.per_replica)
    ]
    volumes += [
        _secret_volume(i, ref) for i, ref in enumerate(spec.secrets) if ref.mount_path is not None
    ]
    if volumes:
        pod["volumes"] = volumes
    return pod


def selector_labels(workload: Workload) -> dict[str, str]:
    """The labels a Service or Deployment selects this workload's pods by."""
    return {NAME_LABEL: workload.metadata.name}


def pod_labels(workload: Workload) -> dict[str, str]:
    """The workload's own labels plus the selector labels."""
    return {**workload.metadata.labels, **selector_labels(workload)}


def pod_template_for(
    workload: Workload,
    *,
    runtime_class: str | None,
    claim_templates: bool = False,
) -> dict[str, Any]:
    """A PodTemplateSpec (metadata + spec) for a Deployment or StatefulSet."""
    return {
        "metadata": {"labels": pod_labels(workload)},
        "spec": pod_spec_for(
            workload.spec,
            workload_name=workload.metadata.name,
            runtime_class=runtime_class,
            claim_templates=claim_templates,
        ),
    }
