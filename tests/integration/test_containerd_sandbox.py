"""The sandboxed tier on the real containerd: gVisor's runsc run by the runc
shim through portway's --network=host wrapper (scripts/gvisor.sh). No mocks.

Each test works in its own portway namespace and checks that destroy leaves
nothing behind, including no runsc process and no runsc state. Traffic goes
to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import LABEL_NAMESPACE, Health, ReplicaState
from portway.drivers.registry import open_driver
from portway.errors import PermanentDriverError
from tests.integration.driver_ns import Namespace
from tests.integration.test_containerd_driver import ADDRESS, REPO, ctr, http_get, leftovers

pytestmark = pytest.mark.containerd

HTTP = {"ports": [{"containerPort": 8080}]}
SLEEP = {"command": ["sleep", "1000"]}
SANDBOXED = {"isolation": "sandboxed"}
GVISOR_KERNEL = "Linux version 4.4.0"  # what gVisor's Sentry reports as its kernel
LABEL_RUNTIME = "portway.dev/containerd.runtime"


def runsc_leftovers(container_id: str) -> list[str]:
    """runsc processes (sandbox, gofer, exec proxies) or state of the replica."""
    from portway.drivers.containerd import _sandbox

    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].startswith(b"runsc") and container_id.encode() in b" ".join(argv):
            found.append(argv[0].decode(errors="replace"))
    state = _sandbox.RUNC_ROOT / "portway"
    if state.is_dir():
        found += [f"state {p.name}" for p in state.iterdir() if container_id in p.name]
    return found


def everything_left(container_id: str) -> list[str]:
    return leftovers(container_id) + runsc_leftovers(container_id)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    ready = subprocess.run(
        ["bash", str(REPO / "scripts" / "engines-containerd.sh")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ready.returncode != 0:
        pytest.fail(f"engines-containerd.sh failed:\n{ready.stdout}{ready.stderr}", pytrace=False)
    drv = open_driver("it-containerd-sandbox", "containerd", ADDRESS)
    fingerprint = drv.fingerprint()
    assert fingerprint.health is Health.HEALTHY, fingerprint.detail
    # runsc is installed here (scripts/install.sh), so the tier must be offered
    assert "runsc" in fingerprint.runtime_handlers, fingerprint
    yield drv
    drv.close()  # type: ignore[attr-defined]


@pytest.fixture
def ns(driver: Any) -> Iterator[Namespace]:
    namespace = Namespace(driver, f"t-{uuid.uuid4().hex[:8]}")
    yield namespace
    ids = {h.id for h in namespace.made}
    for status in driver.list_owned({LABEL_NAMESPACE: namespace.name}):
        ids.add(status.handle.id)
        driver.destroy(status.handle)
    for container_id in ids:
        assert everything_left(container_id) == [], f"{container_id} left behind"


def container_binary(container_id: str) -> str:
    """The runc shim's binary_name in the container record, read with ctr (which
    shows the options it has no type for as type URL and base64 value)."""
    from portway.drivers.containerd import _sandbox

    info = json.loads(ctr("containers", "info", container_id))
    options = info["Runtime"].get("Options") or {}
    if not options:
        return ""
    assert options["type_url"] == "containerd.runc.v1.Options"
    return _sandbox.decode_binary_name(base64.b64decode(options["value"]))


def netns_address(container_id: str) -> str:
    """The IPv4 address CNI gave eth0 in the replica's network namespace."""
    from portway.drivers.containerd import _net

    shown = subprocess.run(
        ["ip", "-n", _net.netns_name(container_id), "-4", "-o", "addr", "show", "eth0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return shown.split(" inet ")[1].split("/")[0]


def sandbox_routes(driver: Any, handle: Any) -> set[str]:
    """Destinations in /proc/net/route as seen inside the replica (dotted quads)."""
    table = driver.exec(handle, ["cat", "/proc/net/route"]).output.decode().splitlines()[1:]
    found = set()
    for line in table:
        little_endian = bytes.fromhex(line.split()[1])
        found.add(".".join(str(b) for b in reversed(little_endian)))
    return found


def test_capabilities_declare_the_tier(driver: Any) -> None:
    caps = driver.capabilities()
    assert caps.supports(Feature.ISOLATION_SANDBOXED)
    assert not caps.supports(Feature.ISOLATION_MICROVM)
    assert not caps.supports(Feature.ISOLATION_WASM)
    sandboxed = caps.handler_for("sandboxed")
    assert sandboxed is not None and sandboxed.handler == "runsc"
    # measured by bench/ctd_sandbox_overhead.py: about 29-34 MiB of PSS
    assert sandboxed.overhead_memory >= 32 * 1024 * 1024 and sandboxed.overhead_cpu > 0
    standard = caps.handler_for("standard")
    assert standard is not None and standard.handler == "runc"
    # every gap is a declared feature, with a reason
    gaps = caps.tier_gaps.get("sandboxed", {})
    assert all(caps.supports(f) and reason for f, reason in gaps.items())
    # ... and the tier also drops what no engine offers in it (host access)
    assert caps.features_for("sandboxed") == caps.features - set(caps.gaps_in("sandboxed"))
    assert not caps.features_for("sandboxed") & {
        Feature.SECURITY_PRIVILEGED,
        Feature.SECURITY_HOST_PID,
    }


def test_sandboxed_runs_under_gvisor_standard_does_not(ns: Namespace) -> None:
    driver = ns.driver
    sandboxed = ns.run({**SANDBOXED, **HTTP}, workload="boxed")
    standard = ns.run(HTTP, workload="plain")
    for handle in (sandboxed, standard):
        ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING)
    boxed_kernel = driver.exec(sandboxed, ["cat", "/proc/version"])
    plain_kernel = driver.exec(standard, ["cat", "/proc/version"])
    assert boxed_kernel.exit_code == 0 and plain_kernel.exit_code == 0
    assert boxed_kernel.output.decode().startswith(GVISOR_KERNEL)
    host = Path("/proc/version").read_text()
    assert plain_kernel.output.decode() == host
    assert os.uname().release not in boxed_kernel.output.decode()
    # the container record says which binary the shim runs; the status says so too
    assert container_binary(sandboxed.id) == "/usr/local/lib/portway/runsc-hostnet"
    assert container_binary(standard.id) == ""
    assert driver.inspect(sandboxed).labels[LABEL_RUNTIME] == "runsc"
    assert driver.inspect(standard).labels[LABEL_RUNTIME] == "runc"
    # runsc joined the CNI network namespace the driver made: the sandbox's
    # routing table (gVisor shows the host stack's) has that namespace's address
    assert netns_address(sandboxed.id) in sandbox_routes(driver, sandboxed)
    # published 127.0.0.1 port answers through that namespace
    status = driver.inspect(sandboxed)
    port = status.host_port_for(8080)
    assert port is not None and port.host_ip == "127.0.0.1"
    assert http_get(port.host_port) == "hello from portway\n"


def test_logs_exec_and_init_in_the_sandbox(ns: Namespace) -> None:
    driver = ns.driver
    script = "echo out-1; echo err-1 >&2; dmesg | head -n 1; exec sleep 1000"
    handle = ns.run({**SANDBOXED, "command": ["sh", "-c", script]})
    deadline = time.monotonic() + 10
    while len(list(driver.logs(handle))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [(x.stream, x.text) for x in driver.logs(handle)]
    assert ("stdout", "out-1") in lines and ("stderr", "err-1") in lines
    assert any("Starting gVisor" in text for _, text in lines), lines
    result = driver.exec(handle, ["sh", "-c", "echo hi; echo oops >&2; exit 3"])
    assert (result.exit_code, sorted(result.output.split())) == (3, [b"hi", b"oops"])
    # tini is PID 1 inside the sandbox too, and forwards SIGTERM on stop
    init = driver.exec(handle, ["cat", "/proc/1/cmdline"])
    assert init.output.split(b"\0")[0] == b"/dev/init"
    started = time.monotonic()
    timed_out = driver.exec(handle, ["sh", "-c", "echo before; sleep 30"], timeout=1)
    assert timed_out.exit_code == 124 and timed_out.output == b"before\n"
    assert time.monotonic() - started < 5
    # the timed-out process is gone inside the sandbox, not just its runsc proxy
    ps = driver.exec(handle, ["ps", "-o", "args"]).output.decode()
    assert "sleep 30" not in ps and "sleep 1000" in ps
    driver.stop(handle, 5)
    stopped = driver.inspect(handle)
    assert (stopped.state, stopped.exit_code) == (ReplicaState.EXITED, 143)


def test_destroy_a_created_sandbox(ns: Namespace) -> None:
    """create() makes the task (and so the sandbox) at once; runsc refuses to
    signal it before it starts, yet destroy must remove it."""
    handle = ns.create({**SANDBOXED, **SLEEP})
    assert ns.driver.inspect(handle).state is ReplicaState.CREATED
    assert runsc_leftovers(handle.id)
    ns.driver.destroy(handle)
    assert everything_left(handle.id) == []


def test_stop_destroy_leave_nothing(ns: Namespace) -> None:
    driver = ns.driver
    handle = ns.run({**SANDBOXED, **HTTP})
    ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING)
    assert runsc_leftovers(handle.id)  # the sandbox and its gofer run on the host
    driver.stop(handle, 5)
    # the sandbox ended with its task; its gofer follows within milliseconds
    # (the wait is long only for a loaded machine: the claim is that it goes)
    deadline = time.monotonic() + 10
    while [p for p in runsc_leftovers(handle.id) if not p.startswith("state")]:
        assert time.monotonic() < deadline, runsc_leftovers(handle.id)
        time.sleep(0.01)
    driver.start(handle)  # a new task from the same container: gVisor again
    assert driver.exec(handle, ["cat", "/proc/version"]).output.startswith(b"Linux version 4.4.0")
    driver.destroy(handle)
    assert everything_left(handle.id) == []
    driver.destroy(handle)  # idempotent


def test_restart_keeps_the_root_filesystem_but_not_tmp(ns: Namespace) -> None:
    """A restart (a new task) keeps what the first run wrote to the root
    filesystem, as under runc; but gVisor mounts its own tmpfs on /tmp when the
    image's /tmp is empty, so /tmp starts empty again (a gVisor difference)."""
    script = (
        "[ -f /www/mark ] && { [ -f /tmp/mark ] && exit 8; exit 7; }; "
        "touch /www/mark /tmp/mark; exec sleep 600"
    )
    handle = ns.run({**SANDBOXED, "command": ["sh", "-c", script]})
    ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING)
    # "running" means the process started, not that the first line has run:
    # under load a stop this early killed the shell before its touch
    deadline = time.monotonic() + 20
    while ns.driver.exec(handle, ["sh", "-c", "[ -f /www/mark ]"]).exit_code != 0:
        assert time.monotonic() < deadline, "the first run never wrote /www/mark"
        time.sleep(0.1)
    ns.driver.stop(handle, 5)
    ns.driver.start(handle)
    assert ns.wait_exited(handle).exit_code == 7


def test_resources_in_the_sandbox(ns: Namespace) -> None:
    """Memory and CPU limits apply to the sandbox's host cgroup (the Sentry and
    gofer included); a pids limit is left out (it would count the Sentry's
    threads), and stats count the workload's processes, not the host threads."""
    from portway.drivers.containerd.driver import CGROUP_ROOT

    limits = {"memory": "64Mi", "cpu": 0.5, "pids": 8}
    handle = ns.run({**SANDBOXED, **SLEEP, "resources": limits})
    ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING)
    cgroup = f"portway/portway-{handle.id}"
    quota = int((CGROUP_ROOT / "cpu" / cgroup / "cpu.cfs_quota_us").read_text())
    period = int((CGROUP_ROOT / "cpu" / cgroup / "cpu.cfs_period_us").read_text())
    assert quota * 2 == period
    assert (CGROUP_ROOT / "pids" / cgroup / "pids.max").read_text().strip() == "max"
    stats = ns.driver.stats(handle)
    assert stats.memory_limit_bytes == 64 * 1024 * 1024
    assert stats.memory_bytes > 4 * 1024 * 1024  # the Sentry lives in the cgroup too
    assert stats.pids == 2  # tini and sleep
    # inside, gVisor shows no cgroup files at all
    inside = ns.driver.exec(handle, ["ls", "/sys/fs/cgroup"])
    assert inside.exit_code == 0 and inside.output == b""


def test_recover_after_reopening_the_driver(ns: Namespace) -> None:
    handle = ns.run({**SANDBOXED, **SLEEP})
    ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING)
    reopened = open_driver("it-containerd-sandbox", "containerd", ADDRESS)
    try:
        recovered = reopened.recover(handle)
        assert recovered is not None
        assert recovered.state is ReplicaState.RUNNING
        assert recovered.labels[LABEL_RUNTIME] == "runsc"
        [listed] = reopened.list_owned({LABEL_NAMESPACE: ns.name})
        assert listed.labels[LABEL_RUNTIME] == "runsc"
        # the process dies; the reopened driver restarts it, still in gVisor
        ctr("tasks", "kill", "--signal", "SIGKILL", "--all", handle.id)
        deadline = time.monotonic() + 10
        while reopened.inspect(handle).state is not ReplicaState.EXITED:
            assert time.monotonic() < deadline, "the killed task did not exit"
            time.sleep(0.05)
        assert reopened.inspect(handle).exit_code == 137
        reopened.start(handle)
        kernel = reopened.exec(handle, ["cat", "/proc/version"]).output.decode()
        assert kernel.startswith(GVISOR_KERNEL)
    finally:
        reopened.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("isolation", "reason"),
    [
        ("microvm", "no micro-VM runtime"),
        ("wasm", "wasm driver"),
    ],
)
def test_other_tiers_refused(ns: Namespace, isolation: str, reason: str) -> None:
    request = ns.request({"isolation": isolation, **SLEEP})
    with pytest.raises(PermanentDriverError, match=reason):
        ns.driver.create(request)
    assert everything_left(request.name) == []


def test_without_the_wrapper_no_tier(
    ns: Namespace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PORTWAY_RUNSC_WRAPPER", str(tmp_path / "missing"))
    bare = open_driver("it-containerd-bare", "containerd", ADDRESS)
    try:
        assert bare.fingerprint().runtime_handlers == ("runc",)
        caps = bare.capabilities()
        assert not caps.supports(Feature.ISOLATION_SANDBOXED)
        assert caps.handler_for("sandboxed") is None
        request = ns.request({**SANDBOXED, **SLEEP})
        with pytest.raises(PermanentDriverError, match=r"runsc wrapper .* is missing"):
            bare.create(request)
        assert everything_left(request.name) == []
    finally:
        bare.close()  # type: ignore[attr-defined]
