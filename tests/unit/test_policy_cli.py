"""The policy commands in-process (typer's runner), with a private store and
no engine: apply of namespace documents, get/describe namespaces, plan's
policy verdict, audit with nothing to audit."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from portway.cli.main import app

NS = textwrap.dedent(
    """\
    apiVersion: portway.dev/v1
    kind: Namespace
    metadata: {name: sealed}
    spec:
      podSecurity: restricted
      isolation: {default: sandboxed, minimum: sandboxed}
      images: {allowedPrefixes: ["portway/"], requireDigest: true}
      hostPorts: ["20000-20099"]
    """
)


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PORTWAY_HOME", str(tmp_path))
    monkeypatch.setenv("PORTWAY_DOCKER_SOCKET", str(tmp_path / "no-docker.sock"))
    monkeypatch.delenv("PORTWAY_STORE", raising=False)
    monkeypatch.delenv("PORTWAY_DEFAULT_POD_SECURITY", raising=False)
    return CliRunner()


def test_namespace_apply_get_describe(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "ns.yaml"
    path.write_text(NS)
    first = runner.invoke(app, ["apply", "-f", str(path)])
    assert first.exit_code == 0, first.output
    assert "namespace/sealed created" in first.output
    again = runner.invoke(app, ["apply", "-f", str(path)])
    assert "namespace/sealed unchanged" in again.output

    table = runner.invoke(app, ["get", "namespaces", "-o", "wide"])
    assert table.exit_code == 0, table.output
    [row] = [line.split() for line in table.output.splitlines() if line.startswith("sealed")]
    assert row[:5] == ["sealed", "restricted", "sandboxed", "sandboxed", "0"]
    assert "20000-20099" in row and "portway/" in row and "object" in row

    listed = json.loads(runner.invoke(app, ["get", "namespaces", "-o", "json"]).output)
    [item] = listed["items"]
    assert item["spec"]["images"] == {"allowedPrefixes": ["portway/"], "requireDigest": True}

    described = runner.invoke(app, ["describe", "namespace", "sealed"])
    assert described.exit_code == 0, described.output
    assert "Pod security:  restricted" in described.output
    assert "allowed prefixes portway/; digest required" in described.output
    assert "Violations:    <none>" in described.output

    missing = runner.invoke(app, ["describe", "namespace", "nowhere"])
    assert missing.exit_code == 3
    assert "namespace nowhere not found" in missing.output


def test_plan_prints_every_violation_with_its_rule(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        NS
        + textwrap.dedent(
            """\
            ---
            apiVersion: portway.dev/v1
            kind: Workload
            metadata: {name: w, namespace: sealed}
            spec: {image: "evil/x:1", isolation: standard}
            """
        )
    )
    text = runner.invoke(app, ["plan", "-f", str(path)])
    assert text.exit_code == 0, text.output
    assert "policy: refused by namespace sealed" in text.output
    for rule in (
        "[isolation/minimum-tier]",
        "[image/registry]",
        "[image/digest]",
        "[restricted/run-as-non-root]",
    ):
        assert rule in text.output
    report = json.loads(runner.invoke(app, ["plan", "-f", str(path), "-o", "json"]).output)
    rules = {v["rule"] for v in report["items"][0]["policy"]}
    assert {"isolation/minimum-tier", "image/registry", "image/digest"} <= rules

    refused = runner.invoke(app, ["apply", "-f", str(path)])
    assert refused.exit_code == 2
    assert "w.yaml:13, document 2, spec.isolation: refused by policy of namespace sealed" in (
        refused.output
    )
    listed = json.loads(runner.invoke(app, ["get", "namespaces", "-o", "json"]).output)
    assert listed["items"] == []  # the refused file wrote nothing, not even its namespace


def test_audit_with_nothing_to_audit_exits_zero(runner: CliRunner) -> None:
    result = runner.invoke(app, ["audit"])
    assert result.exit_code == 0, result.output
    assert "0 replica(s) on 0 target(s): 0 fail, 0 warn, 0 pass" in result.output
    unknown = runner.invoke(app, ["audit", "--target", "nope"])
    assert unknown.exit_code == 2
    assert "no target named nope" in unknown.output
