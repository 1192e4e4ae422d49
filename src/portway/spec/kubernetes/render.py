"""Portway workloads and namespaces rendered as Kubernetes objects.

A workload becomes a Deployment (a StatefulSet when it has per-replica
volumes, a Job when it should not be restarted after success), a Service
for its ports, a LoadBalancer Service for its ingress ports,
PersistentVolumeClaims for its own named volumes, and Secrets for the secret
values the input carried. A portway Namespace becomes a Kubernetes Namespace
with the Pod Security admission label of its level. The pod inside comes
from ``pods`` (shared with the Kubernetes driver); what does not map is in
``losses``. Pure: the caller resolves each workload's tier first.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from portway.spec.compose.keys import Verdict
from portway.spec.kubernetes.losses import ExportNote, notes_for
from portway.spec.kubernetes.pods import (
    MANAGED_BY_LABEL,
    claim_name,
    pod_template_for,
    runtime_class_for,
    selector_labels,
)
from portway.spec.model import (
    Isolation,
    Protocol,
    RestartPolicyName,
    VolumeType,
    Workload,
)
from portway.spec.namespace import Namespace

__all__ = ["DEFAULT_CLAIM_SIZE", "Rendered", "SecretValues", "render"]

#: storage requested by a claim portway creates (portway volumes have no size)
DEFAULT_CLAIM_SIZE = "1Gi"

#: (namespace, secret name) -> {key: value}: the secret values the input carried
SecretValues = Mapping[tuple[str, str], Mapping[str, bytes]]

_MANAGED_BY = "portway"


@dataclass
class Rendered:
    documents: list[dict[str, Any]] = field(default_factory=list)
    notes: list[ExportNote] = field(default_factory=list)


def _metadata(name: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def _labels(workload: Workload) -> dict[str, str]:
    return {
        **workload.metadata.labels,
        **selector_labels(workload),
        MANAGED_BY_LABEL: _MANAGED_BY,
    }


def _service_port_name(name: str | None, protocol: Protocol, number: int) -> str:
    return name or f"{protocol.value}-{number}"


def _service(workload: Workload, *, headless: bool) -> dict[str, Any] | None:
    spec = workload.spec
    if not spec.ports and not headless:
        return None
    service_spec: dict[str, Any] = {"selector": selector_labels(workload)}
    if headless:
        service_spec["clusterIP"] = "None"
    service_spec["ports"] = [
        {
            "name": _service_port_name(p.name, p.protocol, p.container_port),
            "port": p.container_port,
            "targetPort": p.container_port,
            "protocol": "UDP" if p.protocol is Protocol.UDP else "TCP",
        }
        for p in spec.ports
    ]
    name, namespace = workload.metadata.name, workload.metadata.namespace
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace, _labels(workload)),
        "spec": service_spec,
    }


def _ingress_service(workload: Workload) -> dict[str, Any] | None:
    """The ingress rules as one LoadBalancer Service (listen port -> named port)."""
    if not workload.spec.ingress:
        return None
    ports: dict[int, dict[str, Any]] = {}
    for rule in workload.spec.ingress:
        # several rules may share a listener (routed by host): one port each
        ports.setdefault(
            rule.listen,
            {"name": f"{rule.port}-{rule.listen}", "port": rule.listen,
             "targetPort": rule.port, "protocol": "TCP"},
        )  # fmt: skip
    name, namespace = workload.metadata.name, workload.metadata.namespace
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(f"{name}-ingress", namespace, _labels(workload)),
        "spec": {
            "type": "LoadBalancer",
            "selector": selector_labels(workload),
            "ports": list(ports.values()),
        },
    }


def _claim_spec() -> dict[str, Any]:
    return {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": DEFAULT_CLAIM_SIZE}},
    }


def _claims(workload: Workload) -> list[dict[str, Any]]:
    """PersistentVolumeClaims of the workload's own (not per-replica) volumes."""
    name, namespace = workload.metadata.name, workload.metadata.namespace
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _metadata(claim_name(name, v), namespace, _labels(workload)),
            "spec": _claim_spec(),
        }
        for v in workload.spec.volumes
        if v.type is VolumeType.NAMED and not v.per_replica and v.source is None and v.claim is None
    ]


def _controller(workload: Workload, runtime_class: str | None) -> dict[str, Any]:
    spec = workload.spec
    name, namespace = workload.metadata.name, workload.metadata.namespace
    per_replica = [v for v in spec.volumes if v.type is VolumeType.NAMED and v.per_replica]
    template = pod_template_for(
        workload, runtime_class=runtime_class, claim_templates=bool(per_replica)
    )
    metadata = _metadata(name, namespace, _labels(workload))
    policy = spec.restart.policy
    if policy is not RestartPolicyName.ALWAYS:
        # a workload that is done once it exits 0 is a Job, not a Deployment
        template["spec"]["restartPolicy"] = "OnFailure" if policy.value == "on-failure" else "Never"
        job_spec: dict[str, Any] = {
            "completions": spec.replicas,
            "parallelism": spec.replicas,
            "backoffLimit": spec.restart.max_retries if spec.restart.max_retries is not None else 6,
            "template": template,
        }
        if policy is RestartPolicyName.NEVER:
            job_spec["backoffLimit"] = 0
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
    template["spec"]["restartPolicy"] = "Always"
    selector = {"matchLabels": selector_labels(workload)}
    if per_replica:
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": metadata,
            "spec": {
                "serviceName": name,
                "replicas": spec.replicas,
                "selector": selector,
                "template": template,
                "volumeClaimTemplates": [
                    {"metadata": {"name": v.name}, "spec": _claim_spec()} for v in per_replica
                ],
            },
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": spec.replicas,
            "selector": selector,
            # portway replaces one replica at a time and removes the old one
            # only when the new one is ready
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": template,
        },
    }


def _namespace(name: str, policy: Namespace | None) -> dict[str, Any]:
    labels: dict[str, str] = dict(policy.metadata.labels) if policy else {}
    if policy is not None:
        # Pod Security admission enforces the same levels portway judges
        labels["pod-security.kubernetes.io/enforce"] = policy.spec.pod_security.value
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def _secret(namespace: str, name: str, values: Mapping[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in sorted(values.items())},
    }


def _namespace_notes(policy: Namespace) -> list[ExportNote]:
    key = f"namespace/{policy.name}"
    spec = policy.spec
    notes = []
    if spec.isolation.minimum is not None:
        notes.append(
            ExportNote(key, "spec.isolation.minimum", Verdict.DROPPED,
                       "no Kubernetes field: restrict RuntimeClasses with an admission policy")
        )  # fmt: skip
    if spec.images.allowed_prefixes or spec.images.require_digest:
        notes.append(
            ExportNote(key, "spec.images", Verdict.DROPPED,
                       "no Kubernetes field: enforce image rules with an admission policy")
        )  # fmt: skip
    return notes


def render(
    workloads: Sequence[Workload],
    namespaces: Sequence[Namespace] = (),
    *,
    runtime_classes: Mapping[Isolation, str] | None = None,
    secrets: SecretValues | None = None,
) -> Rendered:
    """Every Kubernetes object of ``workloads`` (tiers already resolved) and
    ``namespaces``, Namespaces first, then each workload's Secrets, claims,
    controller and Services, in input order."""
    out = Rendered()
    policies = {n.name: n for n in namespaces}
    used = [n.name for n in namespaces] + [w.metadata.namespace for w in workloads]
    for name in dict.fromkeys(used):
        if name != "default" or name in policies:
            out.documents.append(_namespace(name, policies.get(name)))
    for policy in namespaces:
        out.notes += _namespace_notes(policy)
    rendered_secrets: set[tuple[str, str]] = set()
    for workload in workloads:
        namespace = workload.metadata.namespace
        for ref in workload.spec.secrets:
            secret_key = (namespace, ref.secret)
            if secret_key in rendered_secrets:
                continue
            rendered_secrets.add(secret_key)
            values = (secrets or {}).get(secret_key)
            if values is None:
                out.notes.append(
                    ExportNote(
                        workload.key,
                        "spec.secrets",
                        Verdict.EMULATED,
                        f"secret {ref.secret!r}: its values are not in the input, so no "
                        "Secret is rendered; create it in the cluster (kubectl create "
                        "secret generic)",
                    )
                )
                continue
            out.documents.append(_secret(namespace, ref.secret, values))
        out.documents += _claims(workload)
        controller = _controller(
            workload, runtime_class_for(workload.spec.isolation, runtime_classes)
        )
        out.documents.append(controller)
        service = _service(workload, headless=controller["kind"] == "StatefulSet")
        if service is not None:
            out.documents.append(service)
        ingress = _ingress_service(workload)
        if ingress is not None:
            out.documents.append(ingress)
        out.notes += notes_for(workload)
    return out
