"""Issue 10 (Kubernetes manifests in): ``portway apply -f`` of a plain
Kubernetes manifest (ConfigMap, Secret, Deployment, NodePort Service) runs on
Docker through the real CLI: the Deployment's replicas serve the ConfigMap's
file on 127.0.0.1:nodePort + i, the Secret's value reaches the replica as an
environment variable, ``plan`` shows each Kubernetes key's verdict, and
``delete -f`` removes the workload."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.e2e import IMAGE_V1, Portway, eventually, free_port_range, http_get

pytestmark = pytest.mark.docker


def manifest(namespace: str, node_port: int, page: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: site, namespace: {namespace}}}
        data:
          index.html: "{page}"
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: api, namespace: {namespace}}}
        stringData: {{token: t0k3n}}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          replicas: 2
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              containers:
                - name: httpd
                  image: {IMAGE_V1}
                  command: [httpd, -f, -p, "8080", -h, /www]
                  ports: [{{name: http, containerPort: 8080}}]
                  env:
                    - {{name: TOKEN, valueFrom: {{secretKeyRef: {{name: api, key: token}}}}}}
                  readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
                  resources: {{limits: {{cpu: 250m, memory: 32Mi}}, requests: {{cpu: 100m}}}}
                  volumeMounts: [{{name: site, mountPath: /www}}]
              volumes:
                - {{name: site, configMap: {{name: site}}}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          type: NodePort
          selector: {{app: web}}
          ports: [{{name: http, port: 8080, targetPort: http, nodePort: {node_port}}}]
        """
    )


@pytest.fixture
def pw(tmp_path: Path) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    portway.env["PORTWAY_LOCAL_WASM"] = "0"
    portway.env.pop("PORTWAY_SECRET_KEY_FILE", None)
    yield portway


def test_deployment_and_service_manifest_runs_on_docker(pw: Portway, tmp_path: Path) -> None:
    namespace = f"k8s-{uuid.uuid4().hex[:6]}"
    port = free_port_range(2)
    page = f"hello from {namespace}"
    file = tmp_path / "web.yaml"
    file.write_text(manifest(namespace, port, page))
    try:
        plan = pw.run("plan", "-f", str(file)).stdout
        assert "kubernetes keys of Deployment web:" in plan
        assert "resources.requests dropped: portway reserves a replica's limits" in plan
        assert "(Service web) spec.ports[0].nodePort" in plan

        applied = pw.run("apply", "-f", str(file), "--timeout", "90").stdout
        assert f"secret/{namespace}/api stored" in applied
        assert f"secret/{namespace}/configmap-site stored" in applied
        assert "workload/web ready" in applied
        for replica in range(2):
            # the ConfigMap's file, served by each replica on nodePort + index
            body = eventually(lambda r=replica: http_get(port + r), timeout=30)
            assert body.strip() == page
        token = pw.run("exec", "web", "-n", namespace, "--", "sh", "-c", "echo $TOKEN").stdout
        assert token.strip() == "t0k3n"
    finally:
        pw.run("delete", "-f", str(file), "--timeout", "60", check=False)
    remaining = pw.json("get", "replicas", "-n", namespace)["items"]
    assert remaining == []
