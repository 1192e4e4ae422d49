"""One Pod per portway replica, rendered for server-side apply.

The Pod's spec comes from ``portway.spec.kubernetes.pods`` (the same
rendering ``portway export`` wraps in Deployments), with what makes it
portway's replica rather than a Kubernetes-managed one:

- ``restartPolicy: Never`` and no probes: portway's controller owns restarts
  and probes on every backend (docs/architecture.md), so the kubelet must not
  restart or kill on its own;
- ``imagePullPolicy: Never``: portway never pulls images on any backend; a
  missing image is reported (``ErrImageNeverPull``), not fetched;
- a scheduling gate while the replica is *created* but not *started*: the
  API server has validated and admitted the Pod (so a bad spec fails at
  create, while the old replica still runs), but no node runs it yet;
- the owner labels of every backend, and the applied manifest in an
  annotation, so ``start`` and a restart re-apply exactly what ``create`` did.

Secrets: the controller has already put ``secrets[].env`` values into
``env``; secret *files* are not offered by this driver (capabilities.py).
"""

from __future__ import annotations

import json
from typing import Any

from portway.drivers.base import ReplicaRequest
from portway.drivers.engine_common import Json, obj, text
from portway.drivers.kubernetes.status import START_GATE
from portway.spec.kubernetes.pods import pod_spec_for
from portway.spec.model import Probes

#: the manifest ``create`` applied, minus the gate (JSON)
MANIFEST_ANNOTATION = "portway.dev/manifest"
#: how long the kubelet waits between SIGTERM and SIGKILL when portway stops
#: a replica: the controller's default stop timeout (a Pod's grace period is
#: fixed at creation; ``stop(timeout)`` cannot change it per call)
TERMINATION_GRACE_SECONDS = 10


def pod_manifest(
    request: ReplicaRequest,
    target: str,
    *,
    namespace: str,
    runtime_class: str | None,
) -> Json:
    """The started Pod for ``request`` (no gate); ``gated`` adds the gate."""
    spec = request.spec.model_copy(update={"probes": Probes(), "secrets": []})
    pod_spec: dict[str, Any] = pod_spec_for(
        spec,
        workload_name=request.workload,
        runtime_class=runtime_class,
        host_port_offset=request.index,
        replica_index=request.index,
    )
    for container in pod_spec.get("containers", []):
        container["imagePullPolicy"] = "Never"
    pod_spec["restartPolicy"] = "Never"
    pod_spec["terminationGracePeriodSeconds"] = TERMINATION_GRACE_SECONDS
    # no other Service's variables (portway sets its own, services.env) and no
    # API credentials in a workload that did not ask for them
    pod_spec["enableServiceLinks"] = False
    pod_spec["automountServiceAccountToken"] = False
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": request.name,
            "namespace": namespace,
            "labels": request.labels(target),
        },
        "spec": pod_spec,
    }


def gated(manifest: Json) -> Json:
    """The manifest as ``create`` applies it: held by portway's gate, with
    the started manifest kept in an annotation for ``start``."""
    meta = dict(obj(manifest.get("metadata")))
    annotations = dict(obj(meta.get("annotations")))
    annotations[MANIFEST_ANNOTATION] = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    meta["annotations"] = annotations
    spec = {**obj(manifest.get("spec")), "schedulingGates": [{"name": START_GATE}]}
    return {**manifest, "metadata": meta, "spec": spec}


def started(pod: Json) -> Json | None:
    """The manifest to apply to start ``pod`` (its annotation, without the
    gate, keeping the annotation so a later restart finds it); None if the
    Pod carries no manifest (not made by this driver)."""
    meta = obj(pod.get("metadata"))
    raw = text(obj(meta.get("annotations")).get(MANIFEST_ANNOTATION))
    if not raw:
        return None
    try:
        manifest = obj(json.loads(raw))
    except ValueError:
        return None
    if not manifest:
        return None
    manifest_meta = dict(obj(manifest.get("metadata")))
    manifest_meta["annotations"] = {MANIFEST_ANNOTATION: raw}
    return {**manifest, "metadata": manifest_meta}
