"""DockerDriver against the real Docker Engine: no mocks.

Every test works in its own namespace (``ns`` fixture), which is emptied
afterwards. Network traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import pytest

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import (
    LABEL_GENERATION,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_WORKLOAD,
    DriverEvent,
    EventSource,
    Executor,
    Handle,
    Health,
    LogLine,
    LogSource,
    ReplicaState,
    RuntimeHandler,
    StatsSource,
)
from portway.drivers.docker import DockerDriver
from portway.drivers.registry import open_driver
from portway.errors import (
    ImageNotFoundError,
    PermanentDriverError,
    PortInUseError,
    ReplicaGoneError,
    TargetUnavailableError,
)
from tests.integration.e2e import free_port

if TYPE_CHECKING:  # the fixture's type; conftest is not imported at run time
    from tests.integration.conftest import Namespace

pytestmark = pytest.mark.docker

IMAGE = "portway/busybox:latest"  # built by scripts/build-images.sh (docker_driver fixture)

HTTP = {"ports": [{"containerPort": 8080}]}
# Prints to both streams, then keeps printing one numbered pair per 0.1 s.
CHATTY = [
    "sh",
    "-c",
    "echo out-first; echo err-first >&2; i=0; "
    "while true; do i=$((i+1)); echo out-$i; echo err-$i >&2; sleep 0.1; done",
]


def http_get(port: int, timeout: float = 5.0) -> str:
    """GET http://127.0.0.1:PORT/, retrying while the server starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- basics ---------------------------------------------------------------


def test_registry_fingerprint_and_capabilities(docker_driver: DockerDriver) -> None:
    driver = open_driver("local", "docker", docker_driver.address)
    assert isinstance(driver, DockerDriver)
    assert isinstance(driver, LogSource | Executor | StatsSource | EventSource)
    fingerprint = driver.fingerprint()
    assert fingerprint.health is Health.HEALTHY, fingerprint.detail
    assert "runc" in fingerprint.runtime_handlers
    assert fingerprint.version
    for key in ("os", "arch", "cpus", "memory", "cgroup_version", "cgroup_driver"):
        assert fingerprint.attributes[key], key
    assert fingerprint.attributes["os"] == "linux"
    caps = driver.capabilities()
    for feature in (Feature.EXEC, Feature.LOGS_FOLLOW, Feature.VOLUMES_NAMED, Feature.PORTS_UDP):
        assert caps.supports(feature), feature
    # scripts/engines*.sh configure gVisor's runsc as the sandboxed tier
    assert "runsc" in fingerprint.runtime_handlers
    assert caps.isolation_tiers == frozenset({"standard", "sandboxed"})
    assert caps.handler_for("standard") == RuntimeHandler("standard", "runc")
    sandboxed = caps.handler_for("sandboxed")
    assert sandboxed is not None
    assert sandboxed.handler == "runsc"
    assert sandboxed.overhead_memory > 0
    driver.close()


def test_create_start_serves_http_on_ephemeral_port(ns: Namespace) -> None:
    driver = ns.driver
    handle = driver.create(ns.request(HTTP))
    assert handle.name == f"pw-{ns.name}-web-0-g1"
    created = driver.inspect(handle)
    assert created.state is ReplicaState.CREATED
    assert created.exit_code is None and created.started_at is None and created.ports == ()

    driver.start(handle)
    driver.start(handle)  # already running: nothing to do
    status = driver.inspect(handle)
    assert status.state is ReplicaState.RUNNING
    assert status.image == IMAGE
    assert status.labels[LABEL_MANAGED] == "true"
    assert status.labels[LABEL_NAMESPACE] == ns.name
    assert status.index == 0 and status.generation == 1
    assert status.created_at is not None and status.created_at.tzinfo is not None
    assert status.started_at is not None and status.finished_at is None
    assert abs(datetime.now(UTC) - status.started_at) < timedelta(minutes=1)
    published = status.host_port_for(8080, "tcp")
    assert published is not None
    assert published.host_ip == "127.0.0.1" and published.host_port > 0
    assert "hello from portway" in http_get(published.host_port)

    [listed] = driver.list_owned({LABEL_NAMESPACE: ns.name})
    assert listed.handle == handle
    assert listed.state is ReplicaState.RUNNING
    assert listed.ports == status.ports


def test_create_twice_returns_the_same_container(ns: Namespace, engine: docker.APIClient) -> None:
    request = ns.request(HTTP)
    first = ns.driver.create(request)
    second = ns.driver.create(request)
    assert first == second
    found = engine.containers(all=True, filters={"name": f"^/{request.name}$"})
    assert len(found) == 1
    assert len(ns.driver.list_owned({LABEL_NAMESPACE: ns.name})) == 1


def test_create_refuses_a_foreign_container_with_the_same_name(ns: Namespace) -> None:
    ns.driver.create(ns.request({"args": ["sleep", "60"]}))
    other_template = ns.request({"args": ["sleep", "61"]})
    with pytest.raises(PermanentDriverError, match="already exists but is not this replica"):
        ns.driver.create(other_template)


def test_fixed_host_port_is_offset_by_replica_index(ns: Namespace) -> None:
    port = free_port()
    spec = {"ports": [{"containerPort": 8080, "hostPort": port - 1}]}
    handle = ns.run(spec, index=1)
    published = ns.driver.inspect(handle).host_port_for(8080)
    assert published is not None and published.host_port == port
    assert "hello from portway" in http_get(port)


def test_stop_and_destroy_are_idempotent(ns: Namespace) -> None:
    driver = ns.driver
    handle = ns.run({"args": ["sleep", "60"]})
    driver.stop(handle, timeout=0)
    driver.stop(handle, timeout=0)
    assert driver.inspect(handle).state is ReplicaState.EXITED
    driver.destroy(handle)
    driver.destroy(handle)
    driver.stop(handle, timeout=0)
    assert driver.recover(handle) is None
    with pytest.raises(ReplicaGoneError):
        driver.inspect(handle)
    with pytest.raises(ReplicaGoneError):
        driver.start(handle)
    assert driver.list_owned({LABEL_NAMESPACE: ns.name}) == []


def test_kill_is_reported_as_exit_137(ns: Namespace, engine: docker.APIClient) -> None:
    handle = ns.run({"args": ["sleep", "60"]})
    engine.kill(handle.id)
    status = ns.wait_exited(handle)
    assert status.exit_code == 137
    assert not status.oom_killed
    assert status.started_at is not None and status.finished_at is not None
    assert status.finished_at >= status.started_at
    assert ns.driver.recover(handle) == status
    [listed] = ns.driver.list_owned({LABEL_NAMESPACE: ns.name})
    assert listed.state is ReplicaState.EXITED and listed.exit_code == 137


def test_out_of_memory_is_reported(ns: Namespace, engine: docker.APIClient) -> None:
    handle = ns.run(
        {
            # tail is OOM-killed; the shell lives on a moment and exits with
            # its status (137), so dockerd records the cgroup's OOM event
            # before the container ends (on a loaded host it could come late).
            # It waits a second before it grows: dockerd misses a kill in the
            # first moments (OOM_MISSED_AT_START)
            "command": [
                "sh",
                "-c",
                "sleep 1; dd if=/dev/zero bs=1M count=64 | tail; s=$?; sleep 1; exit $s",
            ],
            "resources": {"memory": "8Mi"},
        }
    )
    status = ns.wait_exited(handle)
    assert status.oom_killed
    assert status.exit_code == 137
    host_config = engine.inspect_container(handle.id)["HostConfig"]
    assert host_config["Memory"] == host_config["MemorySwap"] == 8 * 1024 * 1024


def test_list_owned_filters_by_selector(ns: Namespace, docker_driver: DockerDriver) -> None:
    for index in (0, 1):
        ns.driver.create(ns.request(workload="web", index=index, generation=3))
    ns.driver.create(ns.request(workload="api", index=0, generation=7))

    web = ns.driver.list_owned({LABEL_NAMESPACE: ns.name, LABEL_WORKLOAD: "web"})
    assert sorted(s.index for s in web) == [0, 1]
    assert {s.generation for s in web} == {3}
    assert {s.state for s in web} == {ReplicaState.CREATED}
    assert {s.workload_key for s in web} == {f"{ns.name}/web"}
    [api] = ns.driver.list_owned({LABEL_NAMESPACE: ns.name, LABEL_WORKLOAD: "api"})
    assert (api.index, api.generation, api.image) == (0, 7, IMAGE)
    assert api.created_at is not None
    assert len(ns.driver.list_owned({LABEL_NAMESPACE: ns.name})) == 3
    selector = {LABEL_NAMESPACE: ns.name, LABEL_GENERATION: "7"}
    assert [s.handle for s in ns.driver.list_owned(selector)] == [api.handle]
    assert ns.driver.list_owned({LABEL_NAMESPACE: ns.name + "-other"}) == []


# --- failures -------------------------------------------------------------


def test_missing_image_is_reported_never_pulled(ns: Namespace) -> None:
    missing = "portway/busybox:does-not-exist"
    assert not ns.driver.image_present(missing)
    assert ns.driver.image_present(IMAGE)
    with pytest.raises(ImageNotFoundError, match=r"build-images\.sh") as caught:
        ns.driver.create(ns.request({"image": missing}))
    assert isinstance(caught.value.__cause__, docker.errors.ImageNotFound)
    assert ns.driver.list_owned({LABEL_NAMESPACE: ns.name}) == []


def test_port_in_use_fails_start_and_keeps_the_container(ns: Namespace) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = int(taken.getsockname()[1])
        handle = ns.driver.create(
            ns.request({"ports": [{"containerPort": 8080, "hostPort": port}]})
        )
        with pytest.raises(PortInUseError, match=str(port)):
            ns.driver.start(handle)
    status = ns.driver.inspect(handle)
    assert status.state is ReplicaState.CREATED
    assert "already in use" in status.error
    assert status.exit_code is not None


def test_unknown_extension_key_is_refused(ns: Namespace) -> None:
    request = ns.request({"extensions": {"docker": {"privileged": True}}})
    with pytest.raises(PermanentDriverError, match=r"extensions\.docker\.privileged"):
        ns.driver.create(request)
    assert ns.driver.list_owned({LABEL_NAMESPACE: ns.name}) == []


def test_unreachable_engine_is_a_target_error(tmp_path: Path) -> None:
    driver = DockerDriver("gone", f"docker://{tmp_path}/docker.sock")
    fingerprint = driver.fingerprint()
    assert fingerprint.health is Health.UNDETECTED
    assert "is dockerd running" in fingerprint.detail
    with pytest.raises(TargetUnavailableError, match="not reachable") as caught:
        driver.list_owned({})
    assert caught.value.__cause__ is not None
    refused = DockerDriver("refused", "docker+tcp://127.0.0.1:1")
    assert refused.fingerprint().health is Health.UNDETECTED
    with pytest.raises(PermanentDriverError, match="not a docker address"):
        DockerDriver("bad", "http://127.0.0.1:2375")


# --- configuration reaches the engine --------------------------------------


def test_configuration_reaches_the_engine(ns: Namespace, engine: docker.APIClient) -> None:
    handle = ns.driver.create(
        ns.request(
            {
                "env": {"GREETING": "hi"},
                "resources": {"cpu": "500m", "memory": "64Mi", "pids": 50},
                "extensions": {
                    "docker": {"runtime": "runc", "labels": {"team": "a"}, "shmSize": "16Mi"}
                },
                "ports": [{"containerPort": 8080}, {"containerPort": 9000, "protocol": "udp"}],
            }
        )
    )
    info = engine.inspect_container(handle.id)
    host = info["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024
    assert host["PidsLimit"] == 50
    assert host["RestartPolicy"]["Name"] in ("", "no")
    assert host["Init"] is True  # default: an init forwards SIGTERM (fast graceful stops)
    assert host["Runtime"] == "runc"
    assert host["ShmSize"] == 16 * 1024 * 1024
    assert host["PortBindings"]["9000/udp"] == [{"HostIp": "127.0.0.1", "HostPort": ""}]
    assert info["Config"]["Labels"]["team"] == "a"
    assert "GREETING=hi" in info["Config"]["Env"]


def test_security_settings_hold_inside_the_container(ns: Namespace) -> None:
    handle = ns.run(
        {
            "security": {
                "user": "65534",
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
                "noNewPrivileges": True,
            },
            "volumes": [
                {"name": "scratch", "type": "tmpfs", "mountPath": "/scratch", "sizeLimit": "16Mi"}
            ],
        }
    )
    run = ns.driver.exec
    assert run(handle, ["id", "-u"]).output.strip() == b"65534"
    touch = run(handle, ["touch", "/x"])
    assert touch.exit_code != 0
    assert b"Read-only file system" in touch.output
    status = run(handle, ["grep", "-E", "^(CapEff|NoNewPrivs)", "/proc/self/status"]).output
    assert b"CapEff:\t0000000000000000" in status
    assert b"NoNewPrivs:\t1" in status
    mounts = run(handle, ["grep", " /scratch ", "/proc/mounts"])
    assert mounts.exit_code == 0
    assert mounts.output.startswith(b"tmpfs /scratch tmpfs rw")
    assert b"size=16384k" in mounts.output
    assert run(handle, ["touch", "/scratch/ok"]).exit_code == 0  # writable for uid 65534


def test_named_volume_survives_destroy_and_recreate(
    ns: Namespace, engine: docker.APIClient
) -> None:
    spec = {
        "args": ["sleep", "60"],
        "volumes": [{"name": "data", "type": "named", "mountPath": "/data"}],
    }
    first = ns.run(spec)
    wrote = ns.driver.exec(first, ["sh", "-c", "echo persisted > /data/file"])
    assert wrote.exit_code == 0, wrote.output
    ns.driver.destroy(first)

    volume = engine.inspect_volume(f"{ns.name}-web-data")
    assert volume["Labels"][LABEL_NAMESPACE] == ns.name
    assert volume["Labels"][LABEL_MANAGED] == "true"

    second = ns.run(spec, generation=2)
    assert second.id != first.id
    read = ns.driver.exec(second, ["cat", "/data/file"])
    assert read.output == b"persisted\n"


def test_bind_volume_is_mounted_read_only(ns: Namespace, tmp_path: Path) -> None:
    (tmp_path / "greeting").write_text("from the host\n")
    handle = ns.run(
        {
            "args": ["sleep", "60"],
            "volumes": [
                {
                    "name": "host",
                    "type": "bind",
                    "source": str(tmp_path),
                    "mountPath": "/host",
                    "readOnly": True,
                }
            ],
        }
    )
    assert ns.driver.exec(handle, ["cat", "/host/greeting"]).output == b"from the host\n"
    assert ns.driver.exec(handle, ["touch", "/host/new"]).exit_code != 0


# --- optional protocols -----------------------------------------------------


def test_logs_keep_streams_apart_and_follow_until_stopped(ns: Namespace) -> None:
    driver = ns.driver
    handle = ns.run({"command": CHATTY})
    # dockerd copies stdout and stderr in goroutines of their own: under load
    # one stream's first line can reach the log a moment after the other's
    deadline = time.monotonic() + 10
    lines = list(driver.logs(handle))
    while {line.stream for line in lines} != {"stdout", "stderr"}:
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
        lines = list(driver.logs(handle))
    stdout = [line.text for line in lines if line.stream == "stdout"]
    stderr = [line.text for line in lines if line.stream == "stderr"]
    assert stdout[0] == "out-first" and stderr[0] == "err-first"
    assert all(text.startswith("out-") for text in stdout)
    assert all(text.startswith("err-") for text in stderr)
    assert all(line.timestamp is not None and line.timestamp.tzinfo for line in lines)
    assert len(list(driver.logs(handle, tail=2))) == 2
    since = lines[len(lines) // 2].timestamp
    assert since is not None
    recent = list(driver.logs(handle, since=since))
    assert recent and len(recent) < len(lines) + 4
    assert all(line.timestamp is not None and line.timestamp >= since for line in recent)

    stop = threading.Event()
    followed: list[LogLine] = []
    stream = driver.logs(handle, follow=True, tail=0, stop=stop)

    def consume() -> None:
        for line in stream:
            followed.append(line)

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(0.5)
    stop.set()
    reader.join(timeout=3)
    assert not reader.is_alive(), "follow did not end after stop was set"
    assert {line.stream for line in followed} == {"stdout", "stderr"}
    newest = max(int(line.text.split("-")[1]) for line in lines if line.text[-1].isdigit())
    assert all(int(line.text.split("-")[1]) > newest for line in followed)


def test_follow_ends_when_the_container_exits(ns: Namespace) -> None:
    handle = ns.run({"command": ["sh", "-c", "echo one; sleep 0.3; echo two >&2"]})
    started = time.monotonic()
    lines = list(ns.driver.logs(handle, follow=True))
    assert [(line.stream, line.text) for line in lines] == [("stdout", "one"), ("stderr", "two")]
    assert time.monotonic() - started < 5


def test_exec_returns_exit_code_and_output(ns: Namespace) -> None:
    handle = ns.run({"args": ["sleep", "60"]})
    result = ns.driver.exec(handle, ["sh", "-c", "echo hi; echo oops >&2; exit 7"])
    assert result.exit_code == 7
    assert b"hi\n" in result.output and b"oops\n" in result.output
    started = time.monotonic()
    slow = ns.driver.exec(handle, ["sh", "-c", "echo early; sleep 5"], timeout=0.5)
    assert slow.exit_code == 124
    assert slow.output == b"early\n"
    assert time.monotonic() - started < 3
    with pytest.raises(PermanentDriverError):
        ns.driver.exec(handle, [])


def test_stats_report_usage_and_limits(ns: Namespace) -> None:
    handle = ns.run({**HTTP, "resources": {"memory": "64Mi", "pids": 20}})
    stats = ns.driver.stats(handle)
    assert stats.memory_bytes > 0
    assert stats.memory_limit_bytes == 64 * 1024 * 1024
    assert stats.cpu_seconds >= 0
    assert stats.pids is not None and stats.pids >= 1
    assert stats.network_rx_bytes is not None and stats.network_tx_bytes is not None
    unlimited = ns.run(HTTP, index=1)
    assert ns.driver.stats(unlimited).memory_limit_bytes is None


# the engine's event stream carries every portway replica's events; the first
# death seen must be this test's, so no other test may stop replicas meanwhile
@pytest.mark.serial
def test_events_report_die_and_end_on_stop(ns: Namespace, engine: docker.APIClient) -> None:
    stop = threading.Event()
    seen: list[DriverEvent] = []
    died = threading.Event()
    stream = ns.driver.events(stop)

    def consume() -> None:
        for event in stream:
            seen.append(event)
            if event.action == "die":
                died.set()

    reader = threading.Thread(target=consume)
    reader.start()
    try:
        handle = ns.run({"args": ["sleep", "60"]})
        engine.kill(handle.id)
        assert died.wait(10), f"no die event; saw {[e.action for e in seen]}"
    finally:
        stop.set()
        reader.join(timeout=3)
    assert not reader.is_alive(), "events did not end after stop was set"
    die = next(e for e in seen if e.action == "die")
    assert die.handle_id == handle.id
    assert die.labels[LABEL_NAMESPACE] == ns.name
    assert {"create", "start", "die"} <= {e.action for e in seen if e.handle_id == handle.id}


# --- isolation tiers ----------------------------------------------------------

# What gVisor's Sentry answers for /proc/version whatever the host runs (runsc
# release 20221219 emulates Linux 4.4.0); the host's own kernel never says it.
GVISOR_PROC_VERSION = "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016"


def proc_version(driver: DockerDriver, handle: Handle) -> str:
    result = driver.exec(handle, ["cat", "/proc/version"])
    assert result.exit_code == 0, result.output
    return result.output.decode().strip()


def test_sandboxed_replica_runs_in_gvisor_serves_on_loopback_and_stops(
    ns: Namespace, engine: docker.APIClient
) -> None:
    driver = ns.driver
    assert isinstance(driver, DockerDriver)
    handle = ns.run({**HTTP, "isolation": "sandboxed"})
    status = ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING and bool(s.ports))
    assert engine.inspect_container(handle.id)["HostConfig"]["Runtime"] == "runsc"
    assert proc_version(driver, handle) == GVISOR_PROC_VERSION
    [port] = status.ports
    assert port.host_ip == "127.0.0.1"
    assert "hello from portway" in http_get(port.host_port, timeout=10)
    driver.stop(handle, timeout=10)
    assert ns.wait_exited(handle).state is ReplicaState.EXITED
    driver.destroy(handle)
    with pytest.raises(ReplicaGoneError):
        driver.inspect(handle)
    assert driver.list_owned({LABEL_NAMESPACE: ns.name}) == []


def test_the_same_spec_in_the_standard_tier_shows_the_host_kernel(
    ns: Namespace, engine: docker.APIClient
) -> None:
    driver = ns.driver
    assert isinstance(driver, DockerDriver)
    kernel = driver.fingerprint().attributes["kernel"]
    handle = ns.run(HTTP)
    ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING)
    assert engine.inspect_container(handle.id)["HostConfig"]["Runtime"] == "runc"
    version = proc_version(driver, handle)
    assert kernel in version
    assert version != GVISOR_PROC_VERSION


def test_tiers_the_driver_cannot_run_and_weakening_extensions_are_refused(ns: Namespace) -> None:
    for tier in ("microvm", "wasm"):
        with pytest.raises(PermanentDriverError, match=f"isolation '{tier}' is not offered"):
            ns.create({**HTTP, "isolation": tier})
    weakened = {**HTTP, "isolation": "sandboxed", "extensions": {"docker": {"runtime": "runc"}}}
    with pytest.raises(PermanentDriverError, match="'runc' contradicts isolation 'sandboxed'"):
        ns.create(weakened)
    assert ns.driver.list_owned({LABEL_NAMESPACE: ns.name}) == []
    # naming the sandbox's own runtime is allowed
    same = {**HTTP, "isolation": "sandboxed", "extensions": {"docker": {"runtime": "runsc"}}}
    ns.create(same)


def test_a_sandboxed_replica_with_a_pids_limit_starts(
    ns: Namespace, engine: docker.APIClient
) -> None:
    # the limit would count gVisor's own threads (16 keeps runsc from starting):
    # a declared gap of the tier, so the driver leaves it out
    spec = {"isolation": "sandboxed", "resources": {"pids": 16}, "command": ["sleep", "60"]}
    handle = ns.run(spec, workload="pids")
    ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING)
    assert not engine.inspect_container(handle.id)["HostConfig"]["PidsLimit"]
