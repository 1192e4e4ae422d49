"""No silent drops: every key of compose-go's runtime-flags.yaml gets a
verdict per target, and the policy keys are refused with every reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from portway.service.compose import key_verdicts
from portway.spec.compose import ComposeOptions, load_compose
from portway.spec.compose.keys import RULES, SERVICE_KEYS

RUNTIME_FLAGS = (
    Path(__file__).parents[1] / "data" / "compose" / "compose-go-golden" / "runtime-flags.yaml"
)


def key_paths(value: Any, path: str) -> set[str]:
    """Every mapping key's path under ``path`` (list items as [i])."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, child in value.items():
            child_path = f"{path}.{key}"
            found.add(child_path)
            found |= key_paths(child, child_path)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found |= key_paths(child, f"{path}[{i}]")
    return found


def plan_item(targets: list[str], fields: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "policy": [],
        "targets": [
            {"target": t, "driver": t, "fields": fields, "extensions": []} for t in targets
        ],
    }


def test_every_key_of_runtime_flags_has_a_verdict_on_every_target() -> None:
    raw = yaml.safe_load(RUNTIME_FLAGS.read_text())
    expected = set()
    for name, body in raw["services"].items():
        expected |= key_paths(body, f"services.{name}")
    mapped = load_compose(RUNTIME_FLAGS, ComposeOptions(environ={}))
    fields = [{"path": "spec.resources.cpu", "verdict": "dropped", "reason": "no cgroups"}]
    rows = [
        row
        for workload in mapped.workloads
        for row in key_verdicts(workload, plan_item(["one", "two"], fields))
    ]
    got = {row["key"] for row in rows}
    assert expected <= got, sorted(expected - got)
    for row in rows:
        assert set(row["targets"]) == {"one", "two"}
        for verdict in row["targets"].values():
            assert verdict["verdict"] in {"honored", "emulated", "dropped", "rejected"}
            assert verdict["reason"]
    cpus = next(r for r in rows if r["key"] == "services.kitchen-sink.cpus")
    assert cpus["targets"]["one"] == {
        "verdict": "dropped",
        "reason": "spec.resources.cpu: no cgroups",
    }
    by_key = {r["key"]: r["targets"]["one"]["verdict"] for r in rows}
    for rejected in ("devices", "device_cgroup_rules", "userns_mode", "uts", "security_opt"):
        assert by_key[f"services.kitchen-sink.{rejected}"] == "rejected"


def test_a_policy_violation_makes_its_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  a: {image: x, privileged: true, pid: host}\n")
    mapped = load_compose(path, ComposeOptions(environ={}))
    item = plan_item(["t"], [])
    item["policy"] = [
        {"path": "spec.security.privileged", "message": "no", "rule": "baseline/privileged"}
    ]
    rows = {r["key"]: r["targets"]["t"] for r in key_verdicts(mapped.workloads[0], item)}
    assert rows["services.a.privileged"] == {
        "verdict": "rejected",
        "reason": "no [baseline/privileged]",
    }
    assert rows["services.a.pid"]["verdict"] == "honored"  # judged by the drift report


def test_every_rule_names_a_known_service_key() -> None:
    for path in RULES:
        assert path.split(".")[0] in SERVICE_KEYS, path
