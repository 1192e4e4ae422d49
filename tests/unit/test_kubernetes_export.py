"""``portway export --to kubernetes``: every example, every Compose case
and a manifest round trip render objects that pass the official Kubernetes
schemas (kubernetes-validate), with the tier's RuntimeClass and a note for
each field that does not map."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from portway.cli.main import app
from portway.errors import InputError
from portway.service.export import export_file, parse_runtime_classes
from portway.service.kubernetes import load
from portway.spec.compose import ComposeOptions
from portway.spec.kubernetes.pods import container_for, cpu_quantity, memory_quantity
from portway.spec.kubernetes.schema import check_version, object_issue
from portway.spec.model import Isolation, WorkloadSpec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
COMPOSE = REPO / "tests" / "data" / "compose"
COMPOSE_CASES = sorted(COMPOSE.rglob("*.y*ml"))


def kinds(documents: list[dict[str, Any]]) -> list[str]:
    return [f"{d['kind']} {d['metadata']['name']}" for d in documents]


def assert_schema_valid(documents: list[dict[str, Any]], version: str = "1.30") -> None:
    assert documents
    problems = [
        str(issue)
        for i, d in enumerate(documents, start=1)
        if (issue := object_issue(d, file="out", index=i, version=version))
    ]
    assert problems == []


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_exports_schema_valid_manifests(example: Path) -> None:
    exported = export_file(example)
    assert_schema_valid(exported.documents)
    assert exported.version == "1.30"
    # the YAML handed out is the same objects
    assert list(yaml.safe_load_all(exported.text())) == exported.documents


@pytest.mark.parametrize(
    "case", COMPOSE_CASES, ids=[str(p.relative_to(COMPOSE)) for p in COMPOSE_CASES]
)
def test_compose_files_export_schema_valid_manifests(case: Path, tmp_path: Path) -> None:
    """The real Compose files of tests/data, with stand-ins for the secret and
    config files the conformance harness writes beside them at run time."""
    copy = tmp_path / case.parent.name
    shutil.copytree(case.parent, copy)
    raw = yaml.safe_load(case.read_text())
    for section in ("secrets", "configs"):
        for spec in (raw.get(section) or {}).values():
            if isinstance(spec, dict) and spec.get("file"):
                target = copy / spec["file"]
                if not target.exists():
                    target.write_text("stand-in value\n")
    exported = export_file(copy / case.name, compose_options=ComposeOptions(environ={}))
    assert_schema_valid(exported.documents)
    assert any(d["kind"] in ("Deployment", "Job") for d in exported.documents)
    for secret in (d for d in exported.documents if d["kind"] == "Secret"):
        assert secret["data"], secret  # the file's values, not an empty shell


def test_hello_renders_deployment_and_service_with_notes() -> None:
    exported = export_file(REPO / "examples" / "hello.yaml")
    assert kinds(exported.documents) == ["Deployment hello", "Service hello"]
    deployment, service = exported.documents
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert "runtimeClassName" not in pod  # standard tier: the cluster's default runtime
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "250m", "memory": "32Mi"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": 8080, "scheme": "HTTP"}
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "hello"}
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}
    ]
    notes = {(n.path, n.verdict.value) for n in exported.notes}
    assert ("spec.resources.pids", "dropped") in notes
    assert ("spec.ports[0].hostPort", "emulated") in notes


def test_namespace_default_tier_becomes_runtime_class_and_pod_security_label() -> None:
    exported = export_file(REPO / "examples" / "untrusted.yaml")
    namespace = exported.documents[0]
    assert namespace["kind"] == "Namespace"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = next(d for d in exported.documents if d["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "untrusted"
    assert deployment["spec"]["template"]["spec"]["runtimeClassName"] == "gvisor"
    custom = export_file(
        REPO / "examples" / "untrusted.yaml",
        runtime_classes=parse_runtime_classes(["sandboxed=gvisor-kvm"]),
    )
    deployment = next(d for d in custom.documents if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["runtimeClassName"] == "gvisor-kvm"


def test_restart_on_failure_is_a_job_and_named_volume_a_claim() -> None:
    exported = export_file(REPO / "examples" / "worker.yaml")
    assert kinds(exported.documents) == [
        "Job flaky-worker",
        "PersistentVolumeClaim counter-state",
        "Deployment counter",
    ]
    job = exported.documents[0]
    assert job["spec"]["backoffLimit"] == 5
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"


def test_per_replica_volumes_make_a_statefulset(tmp_path: Path) -> None:
    path = tmp_path / "db.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            apiVersion: portway.dev/v1
            kind: Workload
            metadata: {name: db}
            spec:
              image: portway/busybox:latest
              replicas: 3
              isolation: microvm
              volumes:
                - {name: data, type: named, mountPath: /data, perReplica: true}
            """
        )
    )
    exported = export_file(path)
    assert_schema_valid(exported.documents)
    assert kinds(exported.documents) == ["StatefulSet db", "Service db"]
    statefulset, service = exported.documents
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "kata"
    assert "volumes" not in pod  # the claim templates provide them
    assert pod["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert service["spec"]["clusterIP"] == "None"


def test_file_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wasm.yaml"
    path.write_text(
        "apiVersion: portway.dev/v1\nkind: Workload\nmetadata: {name: fn}\n"
        "spec: {image: 'file:///opt/fn.wasm', isolation: wasm}\n"
    )
    with pytest.raises(InputError, match=r"spec.image: default/fn: a file:// image"):
        export_file(path)


def test_named_networks_are_a_dropped_note(tmp_path: Path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(
        "apiVersion: portway.dev/v1\nkind: Workload\nmetadata: {name: api}\n"
        "spec: {image: 'portway/busybox:latest', networks: [back]}\n"
    )
    exported = export_file(path)
    assert_schema_valid(exported.documents)
    assert ("spec.networks", "dropped") in {(n.path, n.verdict.value) for n in exported.notes}


MANIFEST = textwrap.dedent(
    """\
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: web-config}
    data: {GREETING: hello, index.html: "<h1>hi</h1>"}
    ---
    apiVersion: v1
    kind: Secret
    metadata: {name: web-secret}
    stringData: {token: s3cret}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, labels: {app: web}}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          runtimeClassName: gvisor
          containers:
            - name: httpd
              image: portway/busybox:latest
              command: [httpd, -f, -p, "8080", -h, /www]
              env:
                - {name: GREETING, valueFrom: {configMapKeyRef: {name: web-config, key: GREETING}}}
                - {name: TOKEN, valueFrom: {secretKeyRef: {name: web-secret, key: token}}}
              ports: [{name: http, containerPort: 8080}]
              resources: {limits: {cpu: 250m, memory: 32Mi}}
              readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 2}
              volumeMounts:
                - {name: www, mountPath: /www}
                - {name: scratch, mountPath: /tmp}
              securityContext:
                runAsUser: 65534
                allowPrivilegeEscalation: false
                capabilities: {drop: [ALL]}
          volumes:
            - name: www
              configMap: {name: web-config, items: [{key: index.html, path: index.html}]}
            - {name: scratch, emptyDir: {medium: Memory, sizeLimit: 16Mi}}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports: [{name: http, port: 8080, targetPort: http}]
    """
)


def test_manifest_round_trip_keeps_the_workload(tmp_path: Path) -> None:
    original = tmp_path / "web.yaml"
    original.write_text(MANIFEST)
    exported = export_file(original)
    assert_schema_valid(exported.documents)
    secrets = {d["metadata"]["name"] for d in exported.documents if d["kind"] == "Secret"}
    assert secrets == {"web-secret", "configmap-web-config"}
    again = tmp_path / "again.yaml"
    again.write_text(exported.text())
    first = load(original).workloads[0].workload
    second = load(again).workloads[0].workload
    assert second.spec == first.spec
    assert first.spec.isolation is Isolation.SANDBOXED
    assert {k: v for k, v in second.metadata.labels.items() if k == "app"} == {"app": "web"}


def test_pod_pieces_are_shared_with_the_driver() -> None:
    spec = WorkloadSpec.model_validate(
        {
            "image": "portway/busybox:latest",
            "ports": [{"containerPort": 80, "hostPort": 18000, "hostIp": "127.0.0.1"}],
            "security": {"user": "1000:1000", "privileged": True},
        }
    )
    container = container_for(spec, host_port_offset=2)
    assert container["ports"][0]["hostPort"] == 18002
    assert container["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["runAsGroup"] == 1000
    assert "hostPort" not in container_for(spec)["ports"][0]
    assert cpu_quantity(2.0) == "2" and cpu_quantity(0.25) == "250m"
    assert memory_quantity(64 * 1024 * 1024) == "64Mi" and memory_quantity(1000) == "1000"


def test_bad_flags_name_the_flag() -> None:
    with pytest.raises(InputError, match=r"--runtime-class: 'gvisor': expected TIER=NAME"):
        parse_runtime_classes(["gvisor"])
    with pytest.raises(InputError, match=r"--runtime-class: 'standard=x'"):
        parse_runtime_classes(["standard=x"])
    with pytest.raises(InputError, match=r"--kubernetes-version: .*'1.99'.*expected one of"):
        check_version("1.99")
    assert check_version("v1.31.4") == "1.31"
    with pytest.raises(InputError, match=r"--to: 'nomad': expected one of kubernetes"):
        export_file(REPO / "examples" / "hello.yaml", to="nomad")


def test_cli_export_writes_manifests_and_notes(tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    result = CliRunner().invoke(
        app,
        ["export", "-f", str(REPO / "examples" / "hello.yaml"), "--kubernetes-version", "1.33",
         "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(out.read_text()))
    assert kinds(documents) == ["Deployment hello", "Service hello"]
    assert_schema_valid(documents, "1.33")
    assert "note: default/hello: spec.resources.pids dropped" in result.output
    assert "2 object(s), valid for Kubernetes 1.33" in result.output
    bad = CliRunner().invoke(
        app, ["export", "-f", str(REPO / "examples" / "hello.yaml"), "--runtime-class", "x"]
    )
    assert bad.exit_code == 2
    assert "--runtime-class" in bad.output
