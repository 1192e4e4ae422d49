"""Namespace policy through the real CLI against the real Docker Engine: a
namespace whose minimum tier is sandboxed refuses a standard workload with
the reason and writes nothing; a workload there that names no tier gets the
namespace's default (sandboxed), and only a target offering that tier runs it."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.e2e import IMAGE_V1, Portway, containers, remove_namespace

pytestmark = pytest.mark.docker


@pytest.fixture
def namespace() -> str:
    return f"pol-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def pw(tmp_path: Path, namespace: str) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    yield portway
    portway.run("delete", "web", "-n", namespace, check=False)
    client = docker.from_env()
    remove_namespace(client, namespace)
    client.close()


def policy(namespace: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Namespace
        metadata: {{name: {namespace}}}
        spec:
          podSecurity: baseline
          isolation: {{default: sandboxed, minimum: sandboxed}}
        """
    )


def workload(namespace: str, isolation: str | None) -> str:
    tier = f"\n          isolation: {isolation}" if isolation else ""
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: web, namespace: {namespace}}}
        spec:
          image: {IMAGE_V1}
          command: ["sleep", "3600"]{tier}
        """
    )


def test_minimum_tier_refuses_standard_and_default_tier_applies(
    pw: Portway, namespace: str
) -> None:
    refused = pw.apply(policy(namespace) + "---\n" + workload(namespace, "standard"), check=False)
    assert refused.returncode == 2, refused.stderr
    assert "document 2, spec.isolation" in refused.stderr
    assert "isolation/minimum-tier" in refused.stderr
    assert "weaker than the namespace's minimum tier sandboxed" in refused.stderr
    # nothing was written: neither the namespace nor the workload
    names = [n["name"] for n in pw.json("get", "namespaces")["items"]]
    assert namespace not in names
    assert pw.json("get", "workloads", "-n", namespace)["items"] == []

    created = pw.apply(policy(namespace))
    assert f"namespace/{namespace} created" in created.stdout
    [listed] = [n for n in pw.json("get", "namespaces")["items"] if n["name"] == namespace]
    assert listed["source"] == "object"
    assert listed["spec"]["isolation"] == {"default": "sandboxed", "minimum": "sandboxed"}
    described = pw.run("describe", "namespace", namespace).stdout
    assert "default sandboxed, minimum sandboxed" in described

    # the namespace applied on its own now refuses a standard workload too
    again = pw.apply(workload(namespace, "standard"), check=False)
    assert again.returncode == 2 and "isolation/minimum-tier" in again.stderr

    # a workload that names no tier is planned in the namespace's default tier
    path = pw.home / "default-tier.yaml"
    path.write_text(workload(namespace, None))
    [plan] = pw.json("plan", "-f", str(path))["items"]
    assert plan["isolation"] == "sandboxed"
    assert plan["policy"] == []

    # ... and runs only on a target that offers it
    targets = {t["name"]: t for t in pw.json("get", "targets")["items"]}
    offers_sandbox = "sandboxed" in (targets["local-docker"].get("tiers") or {})
    applied = pw.run("apply", "-f", str(path), "--timeout", "120", check=False)
    client = docker.from_env()
    try:
        made = containers(client, namespace)
        if offers_sandbox:
            assert applied.returncode == 0, applied.stderr
            [item] = made
            inspected = client.api.inspect_container(item["Id"])
            assert inspected["HostConfig"]["Runtime"] == "runsc"
        else:
            # a target without runsc is never chosen for a sandboxed workload
            assert applied.returncode == 2, applied.stderr
            assert "lack isolation tier sandboxed" in applied.stderr
            assert made == []
    finally:
        client.close()
    [stored] = pw.json("get", "workloads", "-n", namespace)["items"] or [None]
    if offers_sandbox:
        assert stored is not None and stored["spec"]["isolation"] == "sandboxed"
