"""What a portway workload loses (or keeps only approximately) when it is
rendered as Kubernetes objects: one note per field, with the reason, so an
export is as honest as an import. Pure; ``render`` prints none of it itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from portway.spec.compose.keys import Verdict
from portway.spec.model import (
    FILE_IMAGE_PREFIX,
    Placement,
    Restart,
    RestartPolicyName,
    VolumeType,
    Workload,
)
from portway.spec.services import COMPOSE_EXTENSION

__all__ = ["ExportNote", "notes_for"]


@dataclass(frozen=True)
class ExportNote:
    """One field of one workload that is not rendered one to one."""

    workload: str  # namespace/name
    path: str  # portway field path, e.g. spec.resources.pids
    verdict: Verdict  # emulated, dropped or rejected (rejected: export refuses)
    reason: str

    def __str__(self) -> str:
        return f"{self.workload}: {self.path} {self.verdict.value}: {self.reason}"


_DEFAULT_RESTART = Restart()


def notes_for(workload: Workload) -> list[ExportNote]:
    spec = workload.spec
    key = workload.key
    notes: list[ExportNote] = []

    def note(path: str, verdict: Verdict, reason: str) -> None:
        notes.append(ExportNote(key, path, verdict, reason))

    if spec.image.startswith(FILE_IMAGE_PREFIX):
        note(
            "spec.image",
            Verdict.REJECTED,
            "a file:// image is a module on this host; a cluster pulls images from a "
            "registry (publish it as an OCI artifact and name that)",
        )
    if spec.networks:
        note(
            "spec.networks",
            Verdict.DROPPED,
            "Pods of a namespace share the cluster network; no NetworkPolicy is rendered "
            "to keep replicas on different named networks apart",
        )
    if spec.resources.pids is not None:
        note(
            "spec.resources.pids",
            Verdict.DROPPED,
            "Kubernetes limits processes per node (kubelet podPidsLimit), not per pod",
        )
    if spec.security.user is not None and not re.match(r"^[0-9]+(:[0-9]+)?$", spec.security.user):
        note(
            "spec.security.user",
            Verdict.DROPPED,
            f"user {spec.security.user!r} is a name; runAsUser takes a numeric uid",
        )
    for kind in ("liveness", "readiness"):
        probe = getattr(spec.probes, kind)
        if probe is None:
            continue
        seconds = (probe.initial_delay_seconds, probe.period_seconds, probe.timeout_seconds)
        if any(s != math.ceil(s) for s in seconds):
            note(
                f"spec.probes.{kind}",
                Verdict.EMULATED,
                "Kubernetes counts probe seconds in whole seconds: rounded up",
            )
        if kind == "liveness" and probe.success_threshold != 1:
            note(
                "spec.probes.liveness.successThreshold",
                Verdict.DROPPED,
                "Kubernetes requires 1 for liveness probes",
            )
    restart = spec.restart
    if (
        restart.initial_backoff_seconds != _DEFAULT_RESTART.initial_backoff_seconds
        or restart.max_backoff_seconds != _DEFAULT_RESTART.max_backoff_seconds
    ):
        note(
            "spec.restart",
            Verdict.DROPPED,
            "the kubelet's restart backoff (10 s doubling to 5 min) is not configurable",
        )
    if restart.policy is not RestartPolicyName.ALWAYS:
        note(
            "spec.restart.policy",
            Verdict.EMULATED,
            f"{restart.policy.value}: rendered as a Job (a Deployment always restarts)",
        )
    for i, port in enumerate(spec.ports):
        if port.host_port is not None:
            note(
                f"spec.ports[{i}].hostPort",
                Verdict.EMULATED,
                "replicas are reached through the Service of the workload; per-replica "
                "host ports (hostPort + index) have no Kubernetes equivalent",
            )
    for i, volume in enumerate(spec.volumes):
        path = f"spec.volumes[{i}]"
        if volume.type is VolumeType.BIND:
            note(path, Verdict.EMULATED, "a hostPath volume: the path must exist on every node")
        elif volume.type is VolumeType.NAMED and volume.source is None and volume.claim is None:
            note(
                path,
                Verdict.EMULATED,
                "a PersistentVolumeClaim of 1Gi (ReadWriteOnce) on the default storage class",
            )
        if volume.retention.value == "delete":
            note(
                f"{path}.retention",
                Verdict.DROPPED,
                "claims outlive the workload; delete them with kubectl delete pvc",
            )
    for i, rule in enumerate(spec.ingress):
        if rule.host or rule.path_prefix:
            note(
                f"spec.ingress[{i}]",
                Verdict.DROPPED,
                "host and path routing need a Kubernetes Ingress and its controller; a "
                "LoadBalancer Service carries the port only",
            )
        if rule.drain_seconds != 5.0:
            note(f"spec.ingress[{i}].drainSeconds", Verdict.DROPPED, "no Service field for it")
    if spec.placement != Placement():
        note(
            "spec.placement",
            Verdict.DROPPED,
            "portway's target labels, spread, affinity and priorities are not node labels; "
            "write nodeSelector/affinity for your cluster",
        )
    for engine in sorted(spec.extensions):
        if engine == COMPOSE_EXTENSION:
            continue  # where the workload came from, not a setting
        note(
            f"spec.extensions.{engine}",
            Verdict.DROPPED,
            "engine-specific settings have no Kubernetes field",
        )
    return notes
