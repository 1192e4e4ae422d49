"""Kubernetes manifests in: each kind becomes portway workloads (or secrets,
or namespace policy) with a verdict for every key, checked against the
official schemas first; bad input names file, document, object and key path."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from portway.errors import SpecError
from portway.service.compose import key_verdicts
from portway.service.kubernetes import KubeLoad, load
from portway.spec.kubernetes.source import is_kubernetes_file
from portway.spec.model import Isolation, RestartPolicyName, VolumeType


def write(tmp_path: Path, text: str, name: str = "k8s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def loaded(tmp_path: Path, text: str, *, strict: bool = False) -> KubeLoad:
    return load(write(tmp_path, text), strict=strict)


def verdicts(result: KubeLoad, index: int = 0) -> dict[str, str]:
    return {k.path: k.rule.verdict.value for k in result.translated.workloads[index].keys}


def errors(tmp_path: Path, text: str, *, strict: bool = False) -> list[str]:
    with pytest.raises(SpecError) as caught:
        loaded(tmp_path, text, strict=strict)
    return [str(i) for i in caught.value.issues]


DEPLOYMENT = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: shop, annotations: {team: a}}
    spec:
      replicas: 3
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web, tier: front}}
        spec:
          containers:
            - name: web
              image: portway/busybox:latest
              args: [httpd, -f, -p, "8080"]
              ports: [{containerPort: 8080}]
              resources:
                limits: {cpu: 500m, memory: 64Mi}
                requests: {cpu: 100m}
              livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 5}
              volumeMounts: [{name: cache, mountPath: /cache}]
          volumes:
            - {name: cache, emptyDir: {}}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: shop}
    spec:
      type: NodePort
      selector: {app: web}
      ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
    """


def test_deployment_and_service_become_one_workload(tmp_path: Path) -> None:
    result = loaded(tmp_path, DEPLOYMENT)
    (sourced,) = result.workloads
    workload = sourced.workload
    assert workload.key == "shop/web"
    assert sourced.document == 1
    spec = workload.spec
    assert spec.replicas == 3
    assert spec.args == ["httpd", "-f", "-p", "8080"]
    assert spec.resources.cpu == 0.5 and spec.resources.memory == 64 * 1024 * 1024
    assert spec.probes.liveness is not None and spec.probes.liveness.tcp is not None
    assert spec.volumes[0].type is VolumeType.TMPFS
    (port,) = spec.ports
    # the NodePort Service publishes each replica on 127.0.0.1:nodePort + i
    assert (port.container_port, port.host_port, port.name) == (8080, 30080, "port-8080")
    assert workload.metadata.labels == {"app": "web", "tier": "front"}
    keys = verdicts(result)
    assert keys["metadata.annotations"] == "dropped"
    assert keys["spec.template.spec.containers[0].image"] == "honored"
    assert keys["spec.template.spec.containers[0].resources.requests"] == "dropped"
    assert keys["spec.template.spec.volumes[0]"] == "emulated"  # disk emptyDir -> tmpfs
    assert keys["(Service web) spec.ports[0].nodePort"] == "emulated"
    assert keys["(Service web) spec.ports[0].port"] == "dropped"  # 80 is not 8080


def test_every_key_has_a_verdict_on_every_target(tmp_path: Path) -> None:
    result = loaded(tmp_path, DEPLOYMENT)
    item = result.translated.workloads[0]
    plan_item: dict[str, Any] = {
        "policy": [],
        "targets": [
            {"target": "a", "driver": "docker", "extensions": [], "fields": [
                {"path": "spec.resources.cpu", "verdict": "dropped", "reason": "no cgroups"}]},
            {"target": "b", "driver": "podman", "extensions": [], "fields": []},
        ],
    }  # fmt: skip
    rows = {r["key"]: r for r in key_verdicts(item, plan_item)}
    cpu = rows["spec.template.spec.containers[0].resources.limits.cpu"]
    assert cpu["targets"]["a"]["verdict"] == "dropped"
    assert cpu["targets"]["b"]["verdict"] == "honored"
    assert cpu["line"] == 16
    assert all(set(r["targets"]) == {"a", "b"} for r in rows.values())


def test_pod_statefulset_configmap_secret_and_namespace(tmp_path: Path) -> None:
    result = loaded(
        tmp_path,
        """\
        apiVersion: v1
        kind: Namespace
        metadata: {name: data, labels: {pod-security.kubernetes.io/enforce: restricted}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: db, namespace: data}
        data: {password: c2VjcmV0}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings, namespace: data}
        data: {mode: fast}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: once, namespace: data, labels: {app: once}}
        spec:
          restartPolicy: OnFailure
          runtimeClassName: gvisor
          containers:
            - name: job
              image: portway/busybox:latest
              envFrom: [{configMapRef: {name: settings}, prefix: APP_}]
              volumeMounts: [{name: creds, mountPath: /run/creds, readOnly: true}]
          volumes:
            - {name: creds, secret: {secretName: db, defaultMode: 0400}}
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: store, namespace: data}
        spec:
          serviceName: store
          replicas: 2
          selector: {matchLabels: {app: store}}
          template:
            metadata: {labels: {app: store}}
            spec:
              containers:
                - name: s
                  image: portway/busybox:latest
                  volumeMounts: [{name: data, mountPath: /data}]
          volumeClaimTemplates:
            - metadata: {name: data}
              spec:
                accessModes: [ReadWriteOnce]
                resources: {requests: {storage: 1Gi}}
        """,
    )
    once, store = (s.workload for s in result.workloads)
    assert once.spec.restart.policy is RestartPolicyName.ON_FAILURE
    assert once.spec.isolation is Isolation.SANDBOXED
    assert once.spec.env == {"APP_mode": "fast"}
    (ref,) = once.spec.secrets
    assert (ref.secret, ref.key, ref.mount_path, ref.mode) == (
        "db", "password", "/run/creds/password", 0o400
    )  # fmt: skip
    (volume,) = store.spec.volumes
    assert volume.type is VolumeType.NAMED and volume.per_replica
    assert verdicts(result, 1)["spec.volumeClaimTemplates[0].spec"] == "dropped"
    stored = {(s.namespace, s.name): dict(s.data) for s in result.translated.secrets}
    assert stored == {
        ("data", "db"): {"password": b"secret"},
        ("data", "configmap-settings"): {"mode": b"fast"},
    }
    (namespace,) = result.namespaces
    assert namespace.namespace.name == "data"
    assert namespace.namespace.spec.pod_security.value == "restricted"


def test_load_balancer_service_becomes_ingress(tmp_path: Path) -> None:
    result = loaded(
        tmp_path,
        DEPLOYMENT.replace("type: NodePort", "type: LoadBalancer").replace(", nodePort: 30080", ""),
    )
    (rule,) = result.workloads[0].workload.spec.ingress
    assert (rule.port, rule.listen, rule.mode.value) == ("port-8080", 80, "tcp")


def test_strict_refuses_every_dropped_key_at_once(tmp_path: Path) -> None:
    found = errors(tmp_path, DEPLOYMENT, strict=True)
    assert any(
        "k8s.yaml:3, document 1 (Deployment web), metadata.annotations: strict:" in f for f in found
    ), found
    assert any("resources.requests: strict" in f for f in found)
    assert any(
        "k8s.yaml, (Service web) spec.ports[0].port: strict: clients reach the container port "
        "8080 by name, not 80" in f
        for f in found
    ), found


def test_schema_errors_name_file_document_object_and_key(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: ok}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
                - name: web
                  image: portway/busybox:latest
                  ports: [{containerPort: "80"}]
        ---
        apiVersion: apps/v1
        kind: Deploymnt
        metadata: {name: typo}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers: [{name: c, image: x, imagePullPolicyy: Always}]
        """,
    )
    file = str(tmp_path / "k8s.yaml")
    assert found == [
        f"{file}:16, document 2 (Deployment web), "
        "spec.template.spec.containers[0].ports[0].containerPort: "
        "expected integer, got string '80'",
        f"{file}:19, document 3 (Deploymnt typo), kind: Kubernetes 1.30 has no kind 'Deploymnt' "
        "in apiVersion 'apps/v1' (check the spelling of kind and apiVersion, e.g. kind "
        "Deployment in apps/v1)",
        f"{file}:26, document 4 (Pod p), spec.containers[0].imagePullPolicyy: unknown field "
        "(not in the Kubernetes 1.30 schema) (did you mean 'imagePullPolicy'?)",
    ]


def test_what_portway_cannot_import_is_an_error(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """\
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: in}
        spec: {}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: two}
        spec:
          runtimeClassName: mystery
          containers:
            - {name: a, image: portway/busybox:latest}
            - {name: b, image: portway/busybox:latest}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: files}
        spec:
          containers:
            - name: a
              image: portway/busybox:latest
              volumeMounts: [{name: s, mountPath: /s}]
          volumes: [{name: s, secret: {secretName: elsewhere}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: lonely}
        spec: {selector: {app: none}, ports: [{port: 80}]}
        """,
    )
    text = "\n".join(found)
    assert "document 1 (Ingress in), kind: kind Ingress is not imported" in text
    assert "document 2 (Pod two), spec.runtimeClassName: runtimeClassName 'mystery'" in text
    assert "document 2 (Pod two), spec.containers: portway runs one container" in text
    assert "document 3 (Pod files), spec.volumes[0].secret: Secret elsewhere is not in this" in text
    assert "document 4 (Service lonely), spec.selector: this Service selects no Pod" in text


def test_model_errors_name_the_object(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers: [{name: c, image: "Not An Image"}]
        """,
    )
    assert any("(document 1, Pod p)" in f and "spec.image" in f for f in found), found


def test_detection(tmp_path: Path) -> None:
    assert is_kubernetes_file(write(tmp_path, DEPLOYMENT))
    portway = write(
        tmp_path,
        "apiVersion: portway.dev/v1\nkind: Namespace\nmetadata: {name: a}\n",
        "pw.yaml",
    )
    assert not is_kubernetes_file(portway)
    compose = write(tmp_path, "services: {web: {image: x}}\n", "compose.yaml")
    assert not is_kubernetes_file(compose)
    mixed = write(
        tmp_path,
        textwrap.dedent(DEPLOYMENT)
        + "---\napiVersion: portway.dev/v1\nkind: Namespace\nmetadata: {name: a}\n",
        "mixed.yaml",
    )
    with pytest.raises(SpecError, match="a portway document in a file of Kubernetes objects"):
        load(mixed)
