"""The Pod a replica becomes: owner labels, gate, portway's restart and pull
rules, and validity against the official Kubernetes JSON schema (strict)."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from portway.drivers.base import ReplicaRequest
from portway.drivers.kubernetes.manifest import (
    MANIFEST_ANNOTATION,
    gated,
    pod_manifest,
    started,
)
from portway.drivers.kubernetes.status import START_GATE, pod_view
from portway.spec.model import WorkloadSpec

SCHEMA_VERSION = "1.31"


def _request(**spec: Any) -> ReplicaRequest:
    model = WorkloadSpec.model_validate({"image": "portway/busybox:latest", **spec})
    return ReplicaRequest(
        namespace="shop",
        workload="web",
        index=2,
        generation=4,
        template_hash=model.template_hash(),
        spec=model,
        cluster="c0ffee12ab",
        epoch=1,
    )


FULL = {
    "command": ["httpd", "-f", "-p", "8080"],
    "env": {"A": "1"},
    "ports": [
        {"name": "http", "containerPort": 8080, "hostPort": 18080},
        {"containerPort": 53, "protocol": "udp"},
    ],
    "resources": {"cpu": "500m", "memory": "64Mi"},
    "probes": {"readiness": {"http": {"path": "/", "port": 8080}}},
    "volumes": [{"name": "scratch", "type": "tmpfs", "mountPath": "/scratch", "sizeLimit": "16Mi"}],
    "security": {"user": "1000:1000", "readOnlyRootFilesystem": True},
}


def test_pod_is_valid_against_the_official_schema() -> None:
    manifest = pod_manifest(_request(**FULL), "kind", namespace="portway", runtime_class="gvisor")
    for pod in (manifest, gated(manifest)):
        kubernetes_validate.validate(pod, SCHEMA_VERSION, strict=True)


def test_owner_labels_name_and_namespace() -> None:
    request = _request()
    pod = pod_manifest(request, "kind", namespace="portway", runtime_class=None)
    assert pod["metadata"]["name"] == request.name == "pwc0ffee-shop-web-2-g4e1"
    assert pod["metadata"]["namespace"] == "portway"
    assert pod["metadata"]["labels"] == request.labels("kind")
    assert "runtimeClassName" not in pod["spec"]


def test_portway_owns_restarts_probes_and_images() -> None:
    pod = pod_manifest(_request(**FULL), "kind", namespace="portway", runtime_class="gvisor")
    spec = pod["spec"]
    container = spec["containers"][0]
    assert spec["restartPolicy"] == "Never"
    assert container["imagePullPolicy"] == "Never"
    assert "readinessProbe" not in container and "livenessProbe" not in container
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["enableServiceLinks"] is False
    assert spec["automountServiceAccountToken"] is False
    # replica i publishes hostPort + i
    assert container["ports"][0]["hostPort"] == 18082
    assert container["ports"][1]["protocol"] == "UDP"
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "64Mi"}


def test_gate_then_start_reapplies_the_same_manifest_without_the_gate() -> None:
    manifest = pod_manifest(_request(**FULL), "kind", namespace="portway", runtime_class=None)
    held = gated(manifest)
    assert held["spec"]["schedulingGates"] == [{"name": START_GATE}]
    assert "schedulingGates" not in manifest["spec"]
    assert json.loads(held["metadata"]["annotations"][MANIFEST_ANNOTATION]) == manifest
    # what the API server returns carries server fields; start reads the annotation
    live = {**held, "status": {"phase": "Pending"}}
    assert pod_view(live).state.value == "created"
    again = started(live)
    assert again is not None
    assert "schedulingGates" not in again["spec"]
    assert again["spec"] == manifest["spec"]
    assert again["metadata"]["labels"] == manifest["metadata"]["labels"]
    assert again["metadata"]["annotations"] == held["metadata"]["annotations"]


@pytest.mark.parametrize("annotation", [None, "", "not json", "[]"])
def test_a_pod_without_a_usable_manifest_cannot_be_started(annotation: str | None) -> None:
    meta: dict[str, Any] = {"name": "x"}
    if annotation is not None:
        meta["annotations"] = {MANIFEST_ANNOTATION: annotation}
    assert started({"metadata": meta}) is None


def test_secret_references_are_not_rendered() -> None:
    """The controller delivers secret env values itself; a secretKeyRef would
    name a Kubernetes Secret that does not exist."""
    request = _request(secrets=[{"secret": "db", "key": "password", "env": "DB_PASSWORD"}])
    pod = pod_manifest(request, "kind", namespace="portway", runtime_class=None)
    container = pod["spec"]["containers"][0]
    assert "valueFrom" not in json.dumps(container)
