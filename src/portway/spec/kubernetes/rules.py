"""What portway does with each key of an imported Kubernetes object: the
basis of "no silent drops" for manifests, as ``spec.compose.keys`` is for
Compose files.

Keys are matched by a canonical path without list indices, with the pod
spec of every kind under ``pod`` (``spec.template.spec.containers[0].image``
of a Deployment and ``spec.containers[0].image`` of a Pod are both
``pod.containers.image``). A path without a rule takes its nearest
ancestor's; the translator overrides a few by what the value says.
"""

from __future__ import annotations

import re

from portway.spec.compose.keys import Rule
from portway.spec.compose.keys import dropped as _d
from portway.spec.compose.keys import emulated as _e
from portway.spec.compose.keys import honored as _h

__all__ = ["SERVICE_RULES", "WORKLOAD_RULES", "canonical", "rule_for"]


_NO_FIELD = "portway has no field for it"
_SECTION = _e("a section: each of its keys has its own verdict")
_NO_API = "portway replicas have no Kubernetes API to talk to"
_PLACEMENT = "portway places by target labels: write spec.placement"

_CONTAINER: dict[str, Rule] = {
    "": _SECTION,
    "name": _e("portway names containers <cluster>-<namespace>-<workload>-<index>"),
    "image": _h("spec.image"),
    "imagePullPolicy": _d("images must be on the target; nothing is pulled"),
    "command": _h("spec.command"),
    "args": _h("spec.args"),
    "workingDir": _d(_NO_FIELD),
    "env": _h("spec.env"),
    "envFrom": _e("each key of the ConfigMap or Secret becomes a variable at load time"),
    "ports": _h("spec.ports"),
    "ports.hostPort": _h("spec.ports", "becomes hostPort: replica i publishes hostPort + i"),
    "ports.hostIP": _h("spec.ports", "becomes hostIp"),
    "resources": _SECTION,
    "resources.limits": _SECTION,
    "resources.limits.cpu": _h("spec.resources.cpu"),
    "resources.limits.memory": _h("spec.resources.memory"),
    "resources.requests": _d("portway reserves a replica's limits; it has no requests"),
    "livenessProbe": _h("spec.probes.liveness"),
    "readinessProbe": _h("spec.probes.readiness"),
    "livenessProbe.httpGet.httpHeaders": _d(_NO_FIELD),
    "readinessProbe.httpGet.httpHeaders": _d(_NO_FIELD),
    "livenessProbe.httpGet.host": _d("probes go to the replica's published port"),
    "readinessProbe.httpGet.host": _d("probes go to the replica's published port"),
    "livenessProbe.terminationGracePeriodSeconds": _d(_NO_FIELD),
    "startupProbe": _d("no startup probes: use initialDelaySeconds of the others"),
    "volumeMounts": _h("spec.volumes"),
    "volumeMounts.mountPropagation": _d(_NO_FIELD),
    "securityContext": _SECTION,
    "lifecycle": _d("no lifecycle hooks"),
    "terminationMessagePath": _d(_NO_FIELD),
    "terminationMessagePolicy": _d(_NO_FIELD),
    "stdin": _d(_NO_FIELD),
    "stdinOnce": _d(_NO_FIELD),
    "tty": _d(_NO_FIELD),
    "resizePolicy": _d(_NO_FIELD),
}

_SECURITY: dict[str, Rule] = {
    "runAsUser": _h("spec.security.user", "becomes spec.security.user (uid)"),
    "runAsGroup": _h("spec.security.user", "becomes spec.security.user (uid:gid)"),
    "runAsNonRoot": _h("spec.security.runAsNonRoot"),
    "readOnlyRootFilesystem": _h("spec.security.readOnlyRootFilesystem"),
    "allowPrivilegeEscalation": _h("spec.security.noNewPrivileges"),
    "privileged": _h("spec.security.privileged"),
    "capabilities.add": _h("spec.security.capabilities.add"),
    "capabilities.drop": _h("spec.security.capabilities.drop"),
    "capabilities": _SECTION,
    "seccompProfile": _h("spec.security.seccompProfile"),
    "sysctls": _h("spec.security.sysctls"),
}

_POD: dict[str, Rule] = {
    "": _SECTION,
    "initContainers": _d("no init containers: make them a workload that exits 0"),
    "restartPolicy": _h("spec.restart"),
    "runtimeClassName": _h("spec.isolation", "becomes spec.isolation (the tier it names)"),
    "hostNetwork": _h("spec.security.hostNetwork"),
    "hostPID": _h("spec.security.hostPid"),
    "hostIPC": _h("spec.security.hostIpc"),
    "securityContext": _SECTION,
    "securityContext.fsGroup": _d(_NO_FIELD),
    "securityContext.fsGroupChangePolicy": _d(_NO_FIELD),
    "securityContext.supplementalGroups": _d(_NO_FIELD),
    "volumes": _e("each volume becomes a portway volume or secret where a container mounts it"),
    "nodeSelector": _h("spec.placement.targetSelector", "target labels stand in for node labels"),
    "terminationGracePeriodSeconds": _d(_NO_FIELD),
    "serviceAccountName": _d(_NO_API),
    "serviceAccount": _d(_NO_API),
    "automountServiceAccountToken": _d(_NO_API),
    "enableServiceLinks": _e("portway sets service variables for the namespace's services"),
    "dnsPolicy": _d("replicas use the engine's DNS on the namespace network"),
    "dnsConfig": _d(_NO_FIELD),
    "hostname": _d(_NO_FIELD),
    "subdomain": _d(_NO_FIELD),
    "hostAliases": _d(_NO_FIELD),
    "affinity": _d(_PLACEMENT),
    "tolerations": _d(_PLACEMENT),
    "topologySpreadConstraints": _d(_PLACEMENT),
    "priorityClassName": _d("write spec.placement.priority"),
    "imagePullSecrets": _d("images must be on the target; nothing is pulled"),
    "schedulerName": _d(_NO_FIELD),
    "nodeName": _d(_PLACEMENT),
}

#: Pod, Deployment and StatefulSet keys (canonical paths)
WORKLOAD_RULES: dict[str, Rule] = {
    "apiVersion": _e("picks the translation"),
    "kind": _e("picks the translation"),
    "metadata": _SECTION,
    "metadata.name": _h("metadata.name"),
    "metadata.namespace": _h("metadata.namespace"),
    "metadata.labels": _h("metadata.labels"),
    "metadata.annotations": _d(_NO_FIELD),
    "spec": _SECTION,
    "spec.replicas": _h("spec.replicas"),
    "spec.selector": _e("portway selects a workload's replicas by its own labels"),
    "spec.strategy": _e("portway replaces one replica at a time, the new one ready first"),
    "spec.updateStrategy": _e("portway replaces one replica at a time, the new one ready first"),
    "spec.minReadySeconds": _d(_NO_FIELD),
    "spec.revisionHistoryLimit": _d("portway keeps no old revisions"),
    "spec.progressDeadlineSeconds": _d("apply --timeout bounds the wait"),
    "spec.serviceName": _e("replicas answer to the workload's name on the namespace network"),
    "spec.podManagementPolicy": _e("portway starts replicas in parallel"),
    "spec.persistentVolumeClaimRetentionPolicy": _d("per-replica volumes are kept"),
    "spec.volumeClaimTemplates": _h("spec.volumes", "each becomes a per-replica named volume"),
    "spec.volumeClaimTemplates.spec": _d(
        "portway volumes have no size, storage class or access mode"
    ),
    "spec.template": _SECTION,
    "spec.template.metadata": _SECTION,
    "spec.template.metadata.labels": _h("metadata.labels", "pod labels become workload labels"),
    "spec.template.metadata.annotations": _d(_NO_FIELD),
    **{f"pod.{k}" if k else "pod": v for k, v in _POD.items()},
    **{f"pod.containers.{k}" if k else "pod.containers": v for k, v in _CONTAINER.items()},
    **{f"pod.containers.securityContext.{k}": v for k, v in _SECURITY.items()},
    **{f"pod.securityContext.{k}": v for k, v in _SECURITY.items()},
}

#: Service keys
SERVICE_RULES: dict[str, Rule] = {
    "apiVersion": _e("picks the translation"),
    "kind": _e("picks the translation"),
    "metadata": _SECTION,
    "metadata.name": _e("replicas answer to the workload's name on the namespace network"),
    "metadata.namespace": _h("metadata.namespace"),
    "metadata.labels": _d("a Service is not an object of its own in portway"),
    "metadata.annotations": _d(_NO_FIELD),
    "spec": _SECTION,
    "spec.selector": _e("matched to the workloads of this file whose pod labels it selects"),
    "spec.ports": _h("spec.ports", "the target port becomes a named port of the workload"),
    "spec.ports.nodePort": _h("spec.ports", "becomes hostPort: replica i publishes it + i"),
    "spec.type": _e("ClusterIP: replicas answer to the workload's name"),
    "spec.clusterIP": _d("replicas are reached by name, not by a virtual IP"),
    "spec.clusterIPs": _d("replicas are reached by name, not by a virtual IP"),
    "spec.sessionAffinity": _d(_NO_FIELD),
    "spec.externalTrafficPolicy": _d(_NO_FIELD),
    "spec.internalTrafficPolicy": _d(_NO_FIELD),
    "spec.ipFamilies": _d(_NO_FIELD),
    "spec.ipFamilyPolicy": _d(_NO_FIELD),
    "spec.publishNotReadyAddresses": _d(_NO_FIELD),
}


def canonical(kind: str, path: str) -> str:
    """``spec.template.spec.containers[0].image`` of a Deployment ->
    ``pod.containers.image``."""
    bare = re.sub(r"\[\d+\]", "", path)
    prefix = "spec" if kind == "Pod" else "spec.template.spec"
    if kind in ("Pod", "Deployment", "StatefulSet") and (
        bare == prefix or bare.startswith(prefix + ".")
    ):
        return "pod" + bare[len(prefix) :]
    return bare


def rule_for(rules: dict[str, Rule], key: str) -> Rule:
    """The rule of a canonical key, or of its nearest ancestor."""
    while True:
        if key in rules:
            return rules[key]
        if "." not in key:
            return _d(_NO_FIELD)
        key = key.rsplit(".", 1)[0]
