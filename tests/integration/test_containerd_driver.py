"""ContainerdDriver against the real containerd (gRPC, runc, CNI): no mocks.

Needs containerd on /run/containerd/containerd.sock (or
``PORTWAY_CONTAINERD_ADDRESS``); the session fixture runs
scripts/engines-containerd.sh, which imports the test images into the
``portway`` namespace and sets route_localnet. Every test works in its own
portway namespace and checks that destroy leaves nothing behind: no container,
task, snapshot, network namespace or iptables rule. Network traffic goes to
127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import (
    LABEL_NAMESPACE,
    LABEL_WORKLOAD,
    Executor,
    Handle,
    Health,
    LogSource,
    ReplicaRequest,
    ReplicaState,
    ReplicaStatus,
    StatsSource,
)
from portway.drivers.registry import open_driver
from portway.errors import ImageNotFoundError, PortInUseError, ReplicaGoneError
from portway.spec.model import WorkloadSpec

pytestmark = pytest.mark.containerd

REPO = Path(__file__).resolve().parents[2]
ADDRESS = os.environ.get(
    "PORTWAY_CONTAINERD_ADDRESS", "containerd:///run/containerd/containerd.sock"
)
SOCKET = ADDRESS.removeprefix("containerd://")
IMAGE = "portway/busybox:latest"
HTTP = {"ports": [{"containerPort": 8080}]}
SLEEP = {"command": ["sleep", "1000"]}


def ctr(*args: str) -> str:
    done = subprocess.run(
        ["ctr", "--address", SOCKET, "-n", "portway", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout


def http_get(port: int, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def leftovers(container_id: str) -> list[str]:
    """Everything of a replica still on the host (empty: fully cleaned up)."""
    from portway.drivers.containerd import _net

    found: list[str] = []
    if container_id in ctr("containers", "ls", "-q").split():
        found.append("container")
    if container_id in ctr("tasks", "ls", "-q").split():
        found.append("task")
    if container_id in ctr("snapshots", "--snapshotter", "overlayfs", "ls"):
        found.append("snapshot")
    if Path(_net.netns_path(container_id)).exists():
        found.append("netns")
    rules = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30
    ).stdout
    if container_id in rules:
        found.append("iptables")
    return found


@pytest.fixture(scope="session")
def driver() -> Iterator[Any]:
    ready = subprocess.run(
        ["bash", str(REPO / "scripts" / "engines-containerd.sh")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ready.returncode != 0:
        pytest.fail(f"engines-containerd.sh failed:\n{ready.stdout}{ready.stderr}", pytrace=False)
    drv = open_driver("it-containerd", "containerd", ADDRESS)
    fingerprint = drv.fingerprint()
    assert fingerprint.health is Health.HEALTHY, fingerprint.detail
    yield drv
    drv.close()  # type: ignore[attr-defined]


@dataclass
class Namespace:
    driver: Any
    name: str
    made: list[Handle] = field(default_factory=list)

    def request(
        self, spec: dict[str, Any] | None = None, *, workload: str = "web", index: int = 0
    ) -> ReplicaRequest:
        model = WorkloadSpec.model_validate({"image": IMAGE, **(spec or {})})
        return ReplicaRequest(
            namespace=self.name,
            workload=workload,
            index=index,
            generation=1,
            template_hash=model.template_hash(),
            spec=model,
        )

    def create(self, spec: dict[str, Any] | None = None, **kwargs: Any) -> Handle:
        handle: Handle = self.driver.create(self.request(spec, **kwargs))
        self.made.append(handle)
        return handle

    def run(self, spec: dict[str, Any] | None = None, **kwargs: Any) -> Handle:
        handle = self.create(spec, **kwargs)
        self.driver.start(handle)
        return handle

    def wait_for(
        self, handle: Handle, predicate: Callable[[ReplicaStatus], bool], timeout: float = 10.0
    ) -> ReplicaStatus:
        deadline = time.monotonic() + timeout
        while True:
            status: ReplicaStatus = self.driver.inspect(handle)
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting on {handle.name}; last status {status}")
            time.sleep(0.05)

    def wait_exited(self, handle: Handle, timeout: float = 10.0) -> ReplicaStatus:
        return self.wait_for(handle, lambda s: s.state is ReplicaState.EXITED, timeout)


@pytest.fixture
def ns(driver: Any) -> Iterator[Namespace]:
    namespace = Namespace(driver, f"t-{uuid.uuid4().hex[:8]}")
    yield namespace
    ids = {h.id for h in namespace.made}
    for status in driver.list_owned({LABEL_NAMESPACE: namespace.name}):
        ids.add(status.handle.id)
        driver.destroy(status.handle)
    for container_id in ids:
        assert leftovers(container_id) == [], f"{container_id} left behind"


def test_fingerprint_and_capabilities(driver: Any) -> None:
    fingerprint = driver.fingerprint()
    assert fingerprint.health is Health.HEALTHY
    assert fingerprint.version.startswith("1.")
    driver.ping()
    caps = driver.capabilities()
    assert caps.supports(Feature.PORTS_TCP)
    assert caps.isolation_tiers == {"standard"}
    assert isinstance(driver, LogSource)
    assert isinstance(driver, Executor)
    assert isinstance(driver, StatsSource)


def test_lifecycle_http_and_cleanup(ns: Namespace) -> None:
    driver = ns.driver
    started = time.monotonic()
    handle = ns.create(HTTP)
    created = driver.inspect(handle)
    assert created.state is ReplicaState.CREATED
    driver.start(handle)
    elapsed_ms = (time.monotonic() - started) * 1000
    status = driver.inspect(handle)
    assert status.state is ReplicaState.RUNNING
    assert status.image == IMAGE
    port = status.host_port_for(8080)
    assert port is not None and port.host_ip == "127.0.0.1"
    assert http_get(port.host_port) == "hello from portway\n"
    print(f"create+start: {elapsed_ms:.0f} ms")
    driver.start(handle)  # idempotent
    driver.stop(handle, 5)  # tini forwards SIGTERM to httpd
    stopped = driver.inspect(handle)
    assert stopped.state is ReplicaState.EXITED
    assert stopped.exit_code == 143
    assert stopped.finished_at is not None
    driver.stop(handle, 5)  # idempotent
    driver.destroy(handle)
    assert leftovers(handle.id) == []
    driver.destroy(handle)  # idempotent
    with pytest.raises(ReplicaGoneError):
        driver.inspect(handle)
    assert driver.recover(handle) is None


def test_create_is_idempotent(ns: Namespace) -> None:
    first = ns.create(SLEEP)
    second = ns.create(SLEEP)
    assert first == second
    assert len(ns.driver.list_owned({LABEL_NAMESPACE: ns.name})) == 1


def test_kill_reports_137_and_restart(ns: Namespace) -> None:
    handle = ns.run(SLEEP)
    ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING)
    ctr("tasks", "kill", "--signal", "SIGKILL", "--all", handle.id)
    status = ns.wait_exited(handle)
    assert status.exit_code == 137
    assert not status.oom_killed
    ns.driver.start(handle)  # a new task from the same container
    assert ns.driver.inspect(handle).state is ReplicaState.RUNNING


def test_list_owned_selectors(ns: Namespace) -> None:
    a0 = ns.create(SLEEP, workload="a", index=0)
    a1 = ns.create(SLEEP, workload="a", index=1)
    b0 = ns.run(SLEEP, workload="b")
    everything = ns.driver.list_owned({LABEL_NAMESPACE: ns.name})
    assert {s.handle.id for s in everything} == {a0.id, a1.id, b0.id}
    only_a = ns.driver.list_owned({LABEL_NAMESPACE: ns.name, LABEL_WORKLOAD: "a"})
    assert sorted(s.index for s in only_a) == [0, 1]
    states = {s.handle.id: s.state for s in everything}
    assert states[b0.id] is ReplicaState.RUNNING
    assert states[a0.id] is ReplicaState.CREATED
    assert ns.driver.list_owned({LABEL_NAMESPACE: "no-such-namespace"}) == []


def test_missing_image(ns: Namespace) -> None:
    assert ns.driver.image_present(IMAGE)
    assert not ns.driver.image_present("portway/no-such-image:1")
    request = ns.request({"image": "portway/no-such-image:1"})
    with pytest.raises(ImageNotFoundError):
        ns.driver.create(request)
    assert leftovers(request.name) == []


def test_fixed_host_port_and_conflict(ns: Namespace) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        base = int(sock.getsockname()[1])
        spec = {"ports": [{"containerPort": 8080, "hostPort": base}]}
        with pytest.raises(PortInUseError):
            ns.driver.create(ns.request(spec))
    handle = ns.run(spec)
    assert http_get(base) == "hello from portway\n"
    with pytest.raises(PortInUseError):  # another replica already publishes it
        ns.driver.create(ns.request(spec, workload="other"))
    ns.driver.destroy(handle)


def test_logs_and_follow(ns: Namespace) -> None:
    done = ns.run({"command": ["sh", "-c", "echo one; echo two >&2; echo three"]})
    ns.wait_exited(done)
    lines = [line.text for line in ns.driver.logs(done)]
    assert sorted(lines) == ["one", "three", "two"]
    # stdout and stderr share one file, in whatever order the shim wrote them
    assert [line.text for line in ns.driver.logs(done, tail=1)] == lines[-1:]
    chatty = ns.run(
        {"command": ["sh", "-c", "i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.1; done"]},
        workload="chatty",
    )
    stop = threading.Event()
    seen: list[str] = []
    for line in ns.driver.logs(chatty, follow=True, stop=stop):
        seen.append(line.text)
        if len(seen) == 5:
            stop.set()
    assert seen[:5] == [f"line-{i}" for i in range(1, 6)]
    follower = ns.run({"command": ["sh", "-c", "echo a; sleep 0.5; echo b"]}, workload="f")
    followed = [line.text for line in ns.driver.logs(follower, follow=True)]
    assert followed == ["a", "b"]  # ends by itself when the task exits


def test_exec(ns: Namespace) -> None:
    handle = ns.run({**SLEEP, "env": {"GREETING": "hi"}})
    result = ns.driver.exec(handle, ["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"])
    assert result.exit_code == 3
    assert sorted(result.output.split()) == [b"hi", b"oops"]  # two pipes: order may vary
    assert ns.driver.exec(handle, ["true"]).exit_code == 0
    started = time.monotonic()
    slow = ns.driver.exec(handle, ["sh", "-c", "echo before; sleep 30"], timeout=1)
    assert slow.exit_code == 124
    assert slow.output == b"before\n"
    assert time.monotonic() - started < 10


def test_oom_stats_and_security(ns: Namespace) -> None:
    spec = {
        "command": ["sh", "-c", "x=a; while true; do x=$x$x; done"],
        "resources": {"memory": "8Mi"},
    }
    oom = ns.run(spec, workload="oom")
    status = ns.wait_exited(oom)
    assert status.exit_code == 137 and status.oom_killed
    limited = ns.run(
        {
            **SLEEP,
            "resources": {"memory": "32Mi", "pids": 20},
            "security": {
                "user": "nobody",
                "readOnlyRootFilesystem": True,
                "noNewPrivileges": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumes": [{"name": "scratch", "type": "tmpfs", "mountPath": "/scratch"}],
        },
        workload="limited",
    )
    stats = ns.driver.stats(limited)
    assert stats.memory_limit_bytes == 32 * 1024 * 1024
    assert stats.pids is not None and stats.pids >= 1
    whoami = ns.driver.exec(limited, ["id", "-u"])
    assert whoami.output.strip() == b"65534"
    assert ns.driver.exec(limited, ["touch", "/rootfile"]).exit_code != 0
    assert ns.driver.exec(limited, ["touch", "/scratch/file"]).exit_code == 0
    caps = ns.driver.exec(limited, ["grep", "CapEff", "/proc/self/status"]).output
    assert caps.split()[-1] == b"0000000000000000"
