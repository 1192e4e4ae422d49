"""`portway plan` and the strict gate of `apply` across the three real engines."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.e2e import REPO, Portway

pytestmark = [pytest.mark.docker, pytest.mark.podman, pytest.mark.containerd]


@pytest.fixture
def pw(tmp_path: Path) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    portway.run("target", "add", "local-podman", "--address", "podman:///run/podman/podman.sock")
    portway.run(
        "target",
        "add",
        "local-containerd",
        "--address",
        "containerd:///run/containerd/containerd.sock",
    )
    yield portway
    for item in portway.json("get", "workloads", "-A")["items"]:
        meta = item["metadata"]
        portway.run("delete", meta["name"], "-n", meta["namespace"], check=False)


def test_plan_shows_what_each_backend_does_with_each_field(pw: Portway) -> None:
    example = str(REPO / "examples" / "stateful.yaml")
    report = pw.json("plan", "-f", example)
    [item] = report["items"]
    verdicts = {
        t["target"]: {f["path"]: (f["verdict"], f["reason"]) for f in t["fields"]}
        for t in item["targets"]
    }
    # local-wasm is registered on first use too: it offers only the wasm tier
    assert set(verdicts) == {"local-docker", "local-podman", "local-containerd", "local-wasm"}
    verdict, reason = verdicts["local-wasm"]["spec.isolation"]
    assert verdict == "rejected" and "has no runtime handler for the standard tier" in reason
    # containerd's named volumes are portway-managed directories (docs/volumes.md)
    for target in ("local-docker", "local-podman", "local-containerd"):
        assert verdicts[target]["spec.volumes[0]"][0] == "honored"
        assert "conformance passed" in verdicts[target]["spec.volumes[0]"][1]
    assert verdicts["local-docker"]["spec.restart.policy"][0] == "emulated"
    deployable = {t["target"]: t["deployable"]["strict"] for t in item["targets"]}
    assert deployable == {
        "local-docker": True,
        "local-podman": True,
        "local-containerd": True,
        "local-wasm": False,
    }

    text = pw.run("plan", "-f", example).stdout
    assert "local-wasm: spec.isolation rejected" in text
    assert "local-wasm: refused in strict mode (" in text
    assert "field(s) differ between targets" in text


def test_strict_apply_refuses_the_backend_that_lacks_a_feature(pw: Portway) -> None:
    namespace = f"plan-{uuid.uuid4().hex[:6]}"
    text = (REPO / "examples" / "stateful.yaml").read_text()
    text = text.replace(
        "  name: stateful-counter\n", f"  name: counter\n  namespace: {namespace}\n"
    )
    on_wasm = text.replace("spec:\n", "spec:\n  placement: {targets: [local-wasm]}\n", 1)
    refused = pw.apply(on_wasm, check=False)
    # the only target allowed lacks the standard tier the example needs
    assert refused.returncode == 2
    assert "1 lack isolation tier standard" in refused.stderr
    assert pw.json("get", "workloads", "-n", namespace)["items"] == []  # nothing written

    on_podman = text.replace("spec:\n", "spec:\n  placement: {targets: [local-podman]}\n", 1)
    applied = pw.apply(on_podman)
    assert "workload/counter ready" in applied.stdout
    [replica] = pw.json("get", "replicas", "-n", namespace)["items"]
    assert replica["target"] == "local-podman" and replica["state"] == "running"
