"""`portway audit` through the real CLI against the real Docker Engine: the
facts come from the engine's inspect output (the docker driver's
SecurityInspector), judged against CIS Docker Benchmark section 5."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.e2e import IMAGE_V1, Portway, free_port_range, remove_namespace

pytestmark = pytest.mark.docker


@pytest.fixture
def namespace() -> str:
    return f"aud-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def pw(tmp_path: Path, namespace: str) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    yield portway
    for name in ("hardened", "loose"):
        portway.run("delete", name, "-n", namespace, check=False)
    client = docker.from_env()
    remove_namespace(client, namespace)
    client.close()


def files(namespace: str, port: int) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Namespace
        metadata: {{name: {namespace}}}
        spec: {{podSecurity: privileged}}
        ---
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: hardened, namespace: {namespace}}}
        spec:
          image: {IMAGE_V1}
          command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
          ports: [{{containerPort: 8080, hostPort: {port}}}]
          resources: {{cpu: 250m, memory: 32Mi, pids: 64}}
          probes:
            readiness: {{tcp: {{port: 8080}}, periodSeconds: 1}}
          volumes: [{{name: tmp, type: tmpfs, mountPath: /tmp}}]
          security:
            user: "65534"
            readOnlyRootFilesystem: true
            noNewPrivileges: true
            capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}
        ---
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: loose, namespace: {namespace}}}
        spec:
          image: {IMAGE_V1}
          command: ["sleep", "3600"]
          security:
            capabilities: {{add: [NET_ADMIN]}}
        """
    )


def findings(report: dict[str, Any], workload: str) -> dict[str, str]:
    [replica] = [
        r for t in report["targets"] for r in t["replicas"] if r["workload"].endswith(workload)
    ]
    return {f["rule"]: f["level"] for f in replica["findings"]}


def test_audit_judges_what_the_engine_runs(pw: Portway, namespace: str) -> None:
    port = free_port_range(1)
    pw.apply(files(namespace, port), "--timeout", "120")
    result = pw.run("audit", "--target", "local-docker", "-o", "json", check=False)
    assert result.returncode == 1, result.stderr  # a rule fails: the exit code says so
    report = json.loads(result.stdout)
    [target] = report["targets"]
    assert target["target"] == "local-docker" and target["auditable"]

    hardened = findings(report, "/hardened")
    assert {rule for rule, level in hardened.items() if level != "pass"} == set(), hardened

    loose = findings(report, "/loose")
    assert loose["5.3"] == "fail"  # NET_ADMIN added
    for rule in ("5.10", "5.11", "5.12", "5.25", "5.26", "5.28"):
        assert loose[rule] == "warn", (rule, loose)
    for rule in ("5.4", "5.9", "5.15", "5.16", "5.21", "5.31"):
        assert loose[rule] == "pass", (rule, loose)
    assert report["summary"]["fail"] >= 1 and report["summary"]["replicas"] == 2

    text = pw.run("audit", check=False)
    assert text.returncode == 1
    assert f"{namespace}/loose replica 0 on local-docker" in text.stdout
    assert "5.3" in text.stdout and "adds capabilities NET_ADMIN" in text.stdout
    assert "2 replica(s) on 1 target(s)" in text.stdout
