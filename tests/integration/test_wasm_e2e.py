"""The wasm tier end to end, through the real CLI and a real controller
process: import modules into local-wasm's artifact store, apply wasm
workloads, watch restarts, logs, limit kills and deletion. Needs no engine
(wasmtime is a Python dependency), so it carries no engine marker and never
skips."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portway.conformance import wasm_modules
from tests.integration.e2e import Portway, eventually
from tests.integration.wasm_helpers import worker_pids


@pytest.fixture
def pw(tmp_path: Path) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    for name, wat in wasm_modules.MODULES.items():
        (tmp_path / f"{name}.wat").write_text(wat)
    yield portway
    portway.kill_controllers()
    for item in portway.json("get", "workloads", "-A")["items"]:
        meta = item["metadata"]
        portway.run("delete", meta["name"], "-n", meta["namespace"], check=False)


def wasm_workload(name: str, namespace: str, image: str, extra: str = "") -> str:
    text = f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          image: {image}
          isolation: wasm
          portability: lenient
        """
    return textwrap.dedent(text) + textwrap.indent(textwrap.dedent(extra), "  ")


def replica(pw: Portway, namespace: str, name: str) -> dict[str, Any]:
    [found] = [
        r for r in pw.json("get", "replicas", "-n", namespace)["items"] if r["workload"] == name
    ]
    return dict(found)


def events(pw: Portway, namespace: str, name: str) -> list[str]:
    """Each event once per time it happened (a repeat is one row with a count)."""
    items = pw.json("get", "events", name, "-n", namespace, "--limit", "200")["items"]
    return [f"{e['reason']}: {e['message']}" for e in items for _ in range(e.get("count", 1))]


def test_wasm_workloads_restart_log_hit_limits_and_leave_nothing_behind(
    pw: Portway, tmp_path: Path
) -> None:
    namespace = f"wasm-{uuid.uuid4().hex[:6]}"
    for name in ("exit3", "grow", "spin"):
        out = pw.run("artifact", "import", f"test/{name}:1", str(tmp_path / f"{name}.wat")).stdout
        assert f"artifact/test/{name}:1 imported into local-wasm" in out
    listed = pw.json("artifact", "ls")["items"]
    assert {a["name"] for a in listed} == {"test/exit3:1", "test/grow:1", "test/spin:1"}
    assert all(a["target"] == "local-wasm" and a["digest"].startswith("sha256:") for a in listed)

    controller = pw.start_controller()
    pw.wait_for_lease(controller)
    crash = wasm_workload(
        "crasher",
        namespace,
        "test/exit3:1",
        """\
        restart: {policy: on-failure, maxRetries: 2, initialBackoffSeconds: 0.2,
                  maxBackoffSeconds: 1}
        """,
    )
    assert "workload/crasher created" in pw.apply(crash).stdout

    def gave_up() -> dict[str, Any] | None:
        found = replica(pw, namespace, "crasher")
        done = found["restart_count"] == 2 and found["state"] == "exited"
        return found if done else None

    final = eventually(gave_up, timeout=60, what="two restarts, then giving up")
    assert final["target"] == "local-wasm" and final["last_exit_code"] == 3
    crashed = [e for e in events(pw, namespace, "crasher") if e.startswith("Crashed")]
    assert len(crashed) == 3 and all("exit code 3" in e for e in crashed)
    logs = pw.run("logs", "crasher", "-n", namespace)
    assert logs.stdout.splitlines() == ["crashing"] * 3
    assert logs.stderr.splitlines() == ["exit code 3"] * 3

    grow = wasm_workload(
        "grower", namespace, "test/grow:1", "restart: {policy: never}\nresources: {memory: 16Mi}\n"
    )
    spin = wasm_workload(
        "spinner",
        namespace,
        "test/spin:1",
        "restart: {policy: never}\nextensions: {wasm: {fuel: 50000000}}\n",
    )
    pw.apply(grow)
    pw.apply(spin)
    eventually(lambda: replica(pw, namespace, "grower")["state"] == "exited", what="the OOM")
    eventually(lambda: replica(pw, namespace, "spinner")["state"] == "exited", what="no fuel")
    described = pw.run("describe", "workload", "grower", "-n", namespace).stdout
    assert "OOMKilled, exit code 137: memory limit 16Mi reached" in described
    assert any(
        "exit code 137: CPU limit: fuel exhausted (50000000 units)" in e
        for e in events(pw, namespace, "spinner")
    )

    state = tmp_path / "wasm"
    for name in ("crasher", "grower", "spinner"):
        pw.run("delete", name, "-n", namespace)
    assert worker_pids(state) == []
    assert [p.name for p in (state / "replicas").iterdir() if not p.name.startswith(".")] == []


def test_a_long_running_module_is_stopped_on_delete(pw: Portway, tmp_path: Path) -> None:
    namespace = f"wasm-{uuid.uuid4().hex[:6]}"
    pw.run("artifact", "import", "test/tick:1", str(tmp_path / "tick.wat"))
    pw.apply(wasm_workload("ticker", namespace, "test/tick:1", "replicas: 2\n"))
    state = tmp_path / "wasm"
    assert len(eventually(lambda: len(worker_pids(state)) == 2 and worker_pids(state))) == 2
    logs = eventually(
        lambda: (
            (out := pw.run("logs", "ticker", "-n", namespace, "--replica", "1").stdout)
            and "tick 2" in out
            and out
        )
    )
    assert logs.startswith("tick 1\n")
    pw.run("delete", "ticker", "-n", namespace)
    assert worker_pids(state) == []
    pw.run("artifact", "rm", "test/tick:1")
    assert pw.json("artifact", "ls")["items"] == []
    missing = pw.run("artifact", "rm", "test/tick:1", check=False)
    assert missing.returncode == 3 and "no artifact named test/tick:1" in missing.stderr


def test_plan_says_what_the_wasm_tier_cannot_do(pw: Portway) -> None:
    text = wasm_workload(
        "web",
        "default",
        "test/hello:1",
        'ports: [{containerPort: 8080}]\nprobes: {readiness: {exec: {command: ["true"]}}}\n',
    )
    path = pw.home / "web.yaml"
    path.write_text(text)
    [item] = pw.json("plan", "-f", str(path))["items"]
    [wasm] = [t for t in item["targets"] if t["target"] == "local-wasm"]
    fields = {f["path"]: (f["verdict"], f["reason"]) for f in wasm["fields"]}
    assert fields["spec.ports[0]"] == (
        "rejected",
        "the wasm driver cannot publish a TCP port on the host",
    )
    verdict, reason = fields["spec.probes.readiness.exec"]
    assert verdict == "rejected" and "exec" in reason
    assert wasm["deployable"] == {"strict": False, "lenient": False}
    refused = pw.apply(text, check=False)
    assert refused.returncode == 2 and "wasm driver cannot publish a TCP port" in refused.stderr
    # a standard workload is never placed on the wasm target
    standard = text.replace("isolation: wasm", "isolation: standard").replace(
        "test/hello:1", "portway/busybox:latest"
    )
    path.write_text(standard)
    [item] = pw.json("plan", "-f", str(path))["items"]
    [wasm] = [t for t in item["targets"] if t["target"] == "local-wasm"]
    isolation = {f["path"]: f for f in wasm["fields"]}["spec.isolation"]
    assert isolation["verdict"] == "rejected"
    assert "has no runtime handler for the standard tier" in isolation["reason"]
