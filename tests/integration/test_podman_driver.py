"""PodmanDriver against the real Podman API service: no mocks.

The service is found at ``PORTWAY_PODMAN_SOCKET`` (default
/run/podman/podman.sock; ``scripts/engines-podman.sh`` starts it). Every test
works in its own namespace (``ns`` fixture), which is emptied afterwards.
Network traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import podman.errors
import pytest
from podman.api import APIClient

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
    Pinger,
    ReplicaState,
    RuntimeHandler,
    StatsSource,
)
from portway.drivers.podman import PodmanDriver
from portway.drivers.registry import open_driver
from portway.errors import (
    ImageNotFoundError,
    PermanentDriverError,
    PortInUseError,
    ReplicaGoneError,
    TargetUnavailableError,
)
from tests.integration.driver_ns import Namespace
from tests.integration.e2e import free_port

pytestmark = pytest.mark.podman

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-images.sh"
SOCKET = os.environ.get("PORTWAY_PODMAN_SOCKET", "/run/podman/podman.sock")
ADDRESS = f"podman://{SOCKET}"
IMAGE = "portway/busybox:latest"  # built by scripts/build-images.sh (podman_driver fixture)
# Podman keeps a short name of a local image under localhost/ and reports that name.
STORED_IMAGE = f"localhost/{IMAGE}"

HTTP = {"ports": [{"containerPort": 8080}]}
# Prints to both streams, then keeps printing one numbered pair per 0.1 s.
CHATTY = [
    "sh",
    "-c",
    "echo out-first; echo err-first >&2; i=0; "
    "while true; do i=$((i+1)); echo out-$i; echo err-$i >&2; sleep 0.1; done",
]


def engines_required() -> bool:
    """A missing service fails the run instead of skipping (as tests/conftest.py)."""
    truthy = {"1", "true", "yes", "on"}
    return any(
        os.environ.get(flag, "").strip().lower() in truthy
        for flag in ("CI", "PORTWAY_REQUIRE_ENGINES")
    )


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


# --- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def podman_driver() -> Iterator[PodmanDriver]:
    driver = PodmanDriver("it-podman", ADDRESS)
    fingerprint = driver.fingerprint()
    if fingerprint.health is not Health.HEALTHY:
        driver.close()
        reason = f"no usable Podman API service at {ADDRESS}: {fingerprint.detail}"
        if engines_required():
            pytest.fail(
                f"{reason}\n(CI=true or PORTWAY_REQUIRE_ENGINES=1: the engine is required; "
                "start it with scripts/engines-podman.sh)",
                pytrace=False,
            )
        pytest.skip(reason)
    env = {**os.environ, "PORTWAY_ENGINE_CLI": "podman"}
    built = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=300, env=env
    )
    if built.returncode != 0:
        driver.close()
        pytest.fail(f"{BUILD_SCRIPT} failed:\n{built.stdout}{built.stderr}", pytrace=False)
    yield driver
    driver.close()


@pytest.fixture(scope="module")
def engine(podman_driver: PodmanDriver) -> Iterator[APIClient]:
    """podman-py, for what the tests do behind portway's back (kill, inspect, volumes)."""
    client = APIClient(base_url=f"unix://{SOCKET}", timeout=30)
    yield client
    client.close()


def engine_json(engine: APIClient, path: str, **params: Any) -> Any:
    response = engine.get(path, params=params or None)
    response.raise_for_status()
    return response.json()


def kill(engine: APIClient, handle: Handle) -> None:
    engine.post(f"/containers/{handle.id}/kill", params={"signal": "KILL"}).raise_for_status()


@pytest.fixture
def ns(podman_driver: PodmanDriver, engine: APIClient) -> Iterator[Namespace]:
    namespace = Namespace(podman_driver, f"t-{uuid.uuid4().hex[:8]}")
    yield namespace
    for status in podman_driver.list_owned({LABEL_NAMESPACE: namespace.name}):
        podman_driver.destroy(status.handle)
    selector = json.dumps({"label": [f"{LABEL_NAMESPACE}={namespace.name}"]})
    for volume in engine_json(engine, "/volumes/json", filters=selector) or []:
        engine.delete(f"/volumes/{volume['Name']}", params={"force": "true"}).raise_for_status()


# --- basics ---------------------------------------------------------------


def test_registry_fingerprint_and_capabilities(podman_driver: PodmanDriver) -> None:
    driver = open_driver("local", "podman", podman_driver.address)
    assert isinstance(driver, PodmanDriver)
    assert isinstance(driver, LogSource | Executor | StatsSource | EventSource | Pinger)
    driver.ping()
    fingerprint = driver.fingerprint()
    assert fingerprint.health is Health.HEALTHY, fingerprint.detail
    assert fingerprint.detail.startswith("Podman ")
    assert "runc" in fingerprint.runtime_handlers
    assert fingerprint.version
    for key in ("os", "arch", "cpus", "memory", "cgroup_version", "cgroup_driver"):
        assert fingerprint.attributes[key], key
    assert fingerprint.attributes["os"] == "linux"
    caps = driver.capabilities()
    for feature in (Feature.EXEC, Feature.LOGS_FOLLOW, Feature.VOLUMES_NAMED, Feature.PORTS_UDP):
        assert caps.supports(feature), feature
    # scripts/engines-podman.sh configures gVisor's runsc and starts the
    # sandbox service (default runtime runsc) next to the target's socket
    assert "runsc" in fingerprint.runtime_handlers
    assert caps.isolation_tiers == frozenset({"standard", "sandboxed"})
    assert caps.handler_for("standard") == RuntimeHandler("standard", "runc")
    sandboxed = caps.handler_for("sandboxed")
    assert sandboxed is not None
    assert sandboxed.handler == "runsc"
    assert sandboxed.overhead_memory > 0
    driver.close()


def test_without_a_sandbox_service_the_tier_is_not_offered(tmp_path: Path) -> None:
    driver = PodmanDriver("it-podman", f"{ADDRESS}?sandbox={tmp_path}/none.sock")
    try:
        assert driver.fingerprint().health is Health.HEALTHY
        assert driver.capabilities().isolation_tiers == frozenset({"standard"})
        with pytest.raises(PermanentDriverError, match="needs a Podman service whose default"):
            driver.create(Namespace(driver, "t-nosandbox").request({"isolation": "sandboxed"}))
    finally:
        driver.close()


def test_short_image_names_resolve_to_local_images(ns: Namespace) -> None:
    assert ns.driver.image_present(IMAGE)
    assert ns.driver.image_present(STORED_IMAGE)
    assert not ns.driver.image_present("portway/busybox:does-not-exist")


def test_create_start_serves_http_on_ephemeral_port(ns: Namespace) -> None:
    driver = ns.driver
    handle = driver.create(ns.request(HTTP))
    assert handle.name == f"pw-{ns.name}-web-0-g1"
    created = driver.inspect(handle)
    assert created.state is ReplicaState.CREATED
    assert created.exit_code is None and created.started_at is None

    driver.start(handle)
    driver.start(handle)  # already running: nothing to do
    status = driver.inspect(handle)
    assert status.state is ReplicaState.RUNNING
    assert status.image == STORED_IMAGE
    assert status.labels[LABEL_MANAGED] == "true"
    assert status.labels[LABEL_NAMESPACE] == ns.name
    assert status.index == 0 and status.generation == 1
    assert status.created_at is not None and status.created_at.tzinfo is not None
    assert status.started_at is not None and status.finished_at is None
    assert abs(datetime.now(UTC) - status.started_at) < timedelta(minutes=1)
    published = status.host_port_for(8080, "tcp")
    assert published is not None
    assert published.host_ip == "127.0.0.1" and published.host_port > 0
    # Podman picks the ephemeral port when it creates the container
    assert created.ports in ((), status.ports)
    assert "hello from portway" in http_get(published.host_port)

    [listed] = driver.list_owned({LABEL_NAMESPACE: ns.name})
    assert listed.handle == handle
    assert listed.state is ReplicaState.RUNNING
    assert listed.ports == status.ports
    assert listed.image == STORED_IMAGE


def test_create_twice_returns_the_same_container(ns: Namespace, engine: APIClient) -> None:
    request = ns.request(HTTP)
    first = ns.driver.create(request)
    second = ns.driver.create(request)
    assert first == second
    found = engine_json(
        engine,
        "/containers/json",
        all="true",
        filters=json.dumps({"name": [f"^{request.name}$"]}),
    )
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
    assert published.host_ip == "127.0.0.1"
    assert "hello from portway" in http_get(port)


def test_stop_and_destroy_are_idempotent(ns: Namespace) -> None:
    driver = ns.driver
    never_started = driver.create(ns.request({"args": ["sleep", "60"]}, index=1))
    driver.stop(never_started, timeout=0)
    assert driver.inspect(never_started).state is ReplicaState.CREATED

    handle = ns.run({"args": ["sleep", "60"]})
    started = time.monotonic()
    driver.stop(handle, timeout=10)  # the init forwards SIGTERM: no need to wait 10 s
    assert time.monotonic() - started < 5
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
    with pytest.raises(ReplicaGoneError):
        driver.stats(handle)
    driver.destroy(never_started)
    assert driver.list_owned({LABEL_NAMESPACE: ns.name}) == []


def test_destroy_kills_a_running_replica_at_once(ns: Namespace) -> None:
    handle = ns.run({"args": ["sleep", "60"], "extensions": {"podman": {"init": False}}})
    started = time.monotonic()
    ns.driver.destroy(handle)
    assert time.monotonic() - started < 5
    assert ns.driver.recover(handle) is None


def test_kill_is_reported_as_exit_137(ns: Namespace, engine: APIClient) -> None:
    handle = ns.run({"args": ["sleep", "60"]})
    kill(engine, handle)
    status = ns.wait_exited(handle)
    assert status.exit_code == 137
    assert not status.oom_killed
    assert status.started_at is not None and status.finished_at is not None
    assert status.finished_at >= status.started_at
    assert ns.driver.recover(handle) == status
    [listed] = ns.driver.list_owned({LABEL_NAMESPACE: ns.name})
    assert listed.state is ReplicaState.EXITED and listed.exit_code == 137


def test_out_of_memory_kill_and_its_declaration_agree(ns: Namespace, engine: APIClient) -> None:
    handle = ns.run(
        {
            "command": ["sh", "-c", "dd if=/dev/zero bs=1M count=64 | tail"],
            "resources": {"memory": "8Mi"},
        }
    )
    status = ns.wait_exited(handle)
    assert status.exit_code == 137
    host_config = engine_json(engine, f"/containers/{handle.id}/json")["HostConfig"]
    assert host_config["Memory"] == host_config["MemorySwap"] == 8 * 1024 * 1024
    # Podman 4.3 on cgroup v1 does not flag the kernel's OOM kill, so the driver
    # must not claim the feature; should Podman start reporting it, declare it.
    assert ns.driver.capabilities().supports(Feature.OOM_REPORTED) == status.oom_killed


def test_list_owned_filters_by_selector(ns: Namespace) -> None:
    for index in (0, 1):
        ns.driver.create(ns.request(workload="web", index=index, generation=3))
    ns.driver.create(ns.request(workload="api", index=0, generation=7))

    web = ns.driver.list_owned({LABEL_NAMESPACE: ns.name, LABEL_WORKLOAD: "web"})
    assert sorted(s.index for s in web) == [0, 1]
    assert {s.generation for s in web} == {3}
    assert {s.state for s in web} == {ReplicaState.CREATED}
    assert {s.workload_key for s in web} == {f"{ns.name}/web"}
    [api] = ns.driver.list_owned({LABEL_NAMESPACE: ns.name, LABEL_WORKLOAD: "api"})
    assert (api.index, api.generation, api.image) == (0, 7, STORED_IMAGE)
    assert api.created_at is not None
    assert len(ns.driver.list_owned({LABEL_NAMESPACE: ns.name})) == 3
    selector = {LABEL_NAMESPACE: ns.name, LABEL_GENERATION: "7"}
    assert [s.handle for s in ns.driver.list_owned(selector)] == [api.handle]
    assert ns.driver.list_owned({LABEL_NAMESPACE: ns.name + "-other"}) == []


# --- failures -------------------------------------------------------------


def test_missing_image_is_reported_never_pulled(ns: Namespace) -> None:
    missing = "portway/busybox:does-not-exist"
    with pytest.raises(ImageNotFoundError, match=r"build-images\.sh") as caught:
        ns.driver.create(ns.request({"image": missing}))
    assert isinstance(caught.value.__cause__, podman.errors.APIError)
    assert ns.driver.list_owned({LABEL_NAMESPACE: ns.name}) == []


def test_port_in_use_fails_start_and_keeps_the_container(ns: Namespace) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = int(taken.getsockname()[1])
        handle = ns.driver.create(
            ns.request({"ports": [{"containerPort": 8080, "hostPort": port}]})
        )
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port}"):
            ns.driver.start(handle)
    # Podman leaves the container created and records no error on it
    status = ns.driver.inspect(handle)
    assert status.state is ReplicaState.CREATED
    ns.driver.start(handle)  # the port is free again
    assert ns.driver.inspect(handle).state is ReplicaState.RUNNING


def test_unknown_extension_key_is_refused(ns: Namespace) -> None:
    request = ns.request({"extensions": {"podman": {"privileged": True}}})
    with pytest.raises(PermanentDriverError, match=r"extensions\.podman\.privileged"):
        ns.driver.create(request)
    with pytest.raises(PermanentDriverError, match=r"extensions\.podman\.init"):
        ns.driver.create(ns.request({"extensions": {"podman": {"init": "yes"}}}))
    assert ns.driver.list_owned({LABEL_NAMESPACE: ns.name}) == []


def test_unreachable_engine_is_a_target_error(tmp_path: Path) -> None:
    driver = PodmanDriver("gone", f"podman://{tmp_path}/podman.sock")
    fingerprint = driver.fingerprint()
    assert fingerprint.health is Health.UNDETECTED
    assert "podman system service" in fingerprint.detail
    with pytest.raises(TargetUnavailableError, match="not reachable") as caught:
        driver.list_owned({})
    assert caught.value.__cause__ is not None
    with pytest.raises(TargetUnavailableError):
        driver.ping()
    with pytest.raises(PermanentDriverError, match="not a podman address"):
        PodmanDriver("bad", "http://127.0.0.1:8080")


# --- configuration reaches the engine --------------------------------------


def test_configuration_reaches_the_engine(ns: Namespace, engine: APIClient) -> None:
    handle = ns.driver.create(
        ns.request(
            {
                "env": {"GREETING": "hi"},
                "resources": {"cpu": "500m", "memory": "64Mi", "pids": 50},
                "extensions": {
                    "podman": {"runtime": "runc", "labels": {"team": "a"}, "shmSize": "16Mi"}
                },
                "ports": [{"containerPort": 8080}, {"containerPort": 9000, "protocol": "udp"}],
            }
        )
    )
    info = engine_json(engine, f"/containers/{handle.id}/json")
    host = info["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024
    assert host["PidsLimit"] == 50
    assert host["RestartPolicy"]["Name"] in ("", "no")
    assert host["Init"] is True  # default: an init forwards SIGTERM (fast graceful stops)
    assert info["OCIRuntime"] == "runc"
    assert host["ShmSize"] == 16 * 1024 * 1024
    [udp] = host["PortBindings"]["9000/udp"]
    assert udp["HostIp"] == "127.0.0.1"
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


def test_added_capability_is_effective(ns: Namespace) -> None:
    handle = ns.run(
        {"args": ["sleep", "60"], "security": {"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}}
    )
    status = ns.driver.exec(handle, ["grep", "^CapEff", "/proc/self/status"]).output
    assert status == b"CapEff:\t0000000000000001\n"  # CAP_CHOWN alone


def udp_no_ports(driver: PodmanDriver, handle: Handle) -> int:
    """Datagrams that reached the container's network namespace with no listener."""
    _, values = driver.exec(handle, ["grep", "^Udp:", "/proc/net/snmp"]).output.splitlines()
    return int(values.split()[2])


def test_udp_port_delivers_datagrams(ns: Namespace) -> None:
    # busybox has no UDP server: count the datagrams the kernel finds no socket for
    port = free_port()
    spec = {
        "args": ["sleep", "60"],
        "ports": [{"containerPort": 9000, "protocol": "udp", "hostPort": port}],
    }
    handle = ns.run(spec)
    published = ns.driver.inspect(handle).host_port_for(9000, "udp")
    assert published is not None and published.host_port == port
    before = udp_no_ports(ns.driver, handle)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(3):
            sender.sendto(b"ping\n", ("127.0.0.1", port))
    deadline = time.monotonic() + 5
    while udp_no_ports(ns.driver, handle) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert udp_no_ports(ns.driver, handle) == before + 3


def test_named_volume_survives_destroy_and_recreate(ns: Namespace, engine: APIClient) -> None:
    spec = {
        "args": ["sleep", "60"],
        "volumes": [{"name": "data", "type": "named", "mountPath": "/data"}],
    }
    first = ns.run(spec)
    wrote = ns.driver.exec(first, ["sh", "-c", "echo persisted > /data/file"])
    assert wrote.exit_code == 0, wrote.output
    ns.driver.destroy(first)

    volume = engine_json(engine, f"/volumes/{ns.name}-web-data/json")
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
    deadline = time.monotonic() + 5
    while len(list(driver.logs(handle))) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)

    lines = list(driver.logs(handle))
    stdout = [line.text for line in lines if line.stream == "stdout"]
    stderr = [line.text for line in lines if line.stream == "stderr"]
    assert stdout[0] == "out-first" and stderr[0] == "err-first"
    assert all(text.startswith("out-") for text in stdout)
    assert all(text.startswith("err-") for text in stderr)
    assert all(line.timestamp is not None and line.timestamp.tzinfo for line in lines)
    assert len(list(driver.logs(handle, tail=2))) == 2
    # Podman 4.3 sends timestamps in whole seconds, so ``since`` is the second
    # of the middle line: it may bring back a few lines before that one.
    since = lines[len(lines) // 2].timestamp
    assert since is not None
    recent = list(driver.logs(handle, since=since))
    assert recent and len(recent) < len(lines) + 30
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


def test_long_log_lines_arrive_whole(ns: Namespace) -> None:
    handle = ns.run(
        {"command": ["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' x; echo; echo end"]}
    )
    ns.wait_exited(handle)
    lines = list(ns.driver.logs(handle))
    assert [line.text for line in lines] == ["x" * 20000, "end"]


def test_exec_returns_exit_code_and_output(ns: Namespace) -> None:
    handle = ns.run({"args": ["sleep", "60"]})
    result = ns.driver.exec(handle, ["sh", "-c", "echo hi; echo oops >&2; exit 7"])
    assert result.exit_code == 7
    assert b"hi\n" in result.output and b"oops\n" in result.output
    assert ns.driver.exec(handle, ["no-such-command"]).exit_code == 127
    started = time.monotonic()
    slow = ns.driver.exec(handle, ["sh", "-c", "echo early; sleep 5"], timeout=0.5)
    assert slow.exit_code == 124
    assert slow.output == b"early\n"
    assert time.monotonic() - started < 3
    with pytest.raises(PermanentDriverError):
        ns.driver.exec(handle, [])


def test_an_exec_that_stops_its_container_reports_a_kill(
    ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exec's processes die by SIGKILL with the container. When the
    container is started again before the exec's exit code is read (the
    controller restarts a replica within 0.2 s), Podman has dropped the
    session (seen in CI: a `kill` of a replica's server through exec)."""
    handle = ns.run({"args": ["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done"]})
    command = ["sh", "-c", "echo stopping; kill -TERM 1; sleep 30"]
    result = ns.driver.exec(handle, command)
    assert (result.exit_code, result.output) == (137, b"stopping\n")
    assert ns.driver.inspect(handle).exit_code == 3

    ns.driver.start(handle)
    read_json = ns.driver._get_json

    def restarted_first(client: Any, path: str, **params: Any) -> Any:
        if path.startswith("/exec/") and ns.driver.inspect(handle).state is ReplicaState.EXITED:
            ns.driver.start(handle)  # as the controller would, before the exec is read
        return read_json(client, path, **params)

    monkeypatch.setattr(ns.driver, "_get_json", restarted_first)
    result = ns.driver.exec(handle, command)
    assert (result.exit_code, result.output) == (137, b"stopping\n")
    assert ns.driver.inspect(handle).state is ReplicaState.RUNNING
    assert ns.driver.exec(handle, ["sh", "-c", "exit 5"]).exit_code == 5


def test_stats_report_usage_and_limits(ns: Namespace) -> None:
    handle = ns.run({**HTTP, "resources": {"memory": "64Mi", "pids": 20}})
    stats = ns.driver.stats(handle)
    assert stats.memory_bytes > 0
    assert stats.memory_limit_bytes == 64 * 1024 * 1024
    assert stats.cpu_seconds > 0
    assert stats.pids is not None and stats.pids >= 1
    assert stats.network_rx_bytes is not None and stats.network_tx_bytes is not None
    unlimited = ns.run(HTTP, index=1)
    assert ns.driver.stats(unlimited).memory_limit_bytes is None
    # many in one call; one that is gone fails the engine's batch, not ours
    assert set(ns.driver.stats_many([handle, unlimited])) == {handle.id, unlimited.id}
    ns.driver.stop(unlimited, timeout=0)
    assert set(ns.driver.stats_many([handle, unlimited])) == {handle.id}
    ns.driver.destroy(unlimited)
    batch = ns.driver.stats_many([handle, unlimited])
    assert set(batch) == {handle.id} and batch[handle.id].memory_bytes > 0


# the engine's event stream carries every portway replica's events; the first
# death seen must be this test's, so no other test may stop replicas meanwhile
@pytest.mark.serial
def test_events_report_died_and_end_on_stop(ns: Namespace, engine: APIClient) -> None:
    stop = threading.Event()
    seen: list[DriverEvent] = []
    died = threading.Event()
    stream = ns.driver.events(stop)

    def consume() -> None:
        for event in stream:
            seen.append(event)
            if event.action == "died":
                died.set()

    reader = threading.Thread(target=consume)
    reader.start()
    try:
        handle = ns.run({"args": ["sleep", "60"]})
        kill(engine, handle)
        assert died.wait(10), f"no died event; saw {[e.action for e in seen]}"
    finally:
        stop.set()
        reader.join(timeout=3)
    assert not reader.is_alive(), "events did not end after stop was set"
    die = next(e for e in seen if e.action == "died")
    assert die.handle_id == handle.id
    assert die.labels[LABEL_NAMESPACE] == ns.name
    assert {"create", "start", "died"} <= {e.action for e in seen if e.handle_id == handle.id}


# --- isolation tiers ----------------------------------------------------------


# gVisor's Sentry (runsc 20221219) answers this whatever kernel the host runs
GVISOR_PROC_VERSION = "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016"


def proc_version(driver: PodmanDriver, handle: Handle) -> str:
    result = driver.exec(handle, ["cat", "/proc/version"])
    assert result.exit_code == 0, result.output
    return result.output.decode().strip()


def test_sandboxed_replica_runs_in_gvisor_serves_on_loopback_and_stops(
    ns: Namespace, engine: APIClient
) -> None:
    driver = ns.driver
    assert isinstance(driver, PodmanDriver)
    handle = ns.run({**HTTP, "isolation": "sandboxed"})
    status = ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING and bool(s.ports))
    assert engine_json(engine, f"/containers/{handle.id}/json")["OCIRuntime"] == "runsc"
    assert proc_version(driver, handle) == GVISOR_PROC_VERSION
    [port] = status.ports
    assert port.host_ip == "127.0.0.1"
    assert "hello from portway" in http_get(port.host_port, timeout=10)
    driver.stop(handle, timeout=10)
    assert ns.wait_exited(handle).state is ReplicaState.EXITED
    driver.start(handle)  # the target's own service restarts it on runsc
    ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING)
    assert proc_version(driver, handle) == GVISOR_PROC_VERSION
    driver.destroy(handle)
    with pytest.raises(ReplicaGoneError):
        driver.inspect(handle)
    assert driver.list_owned({LABEL_NAMESPACE: ns.name}) == []


def test_the_same_spec_in_the_standard_tier_shows_the_host_kernel(
    ns: Namespace, engine: APIClient
) -> None:
    driver = ns.driver
    assert isinstance(driver, PodmanDriver)
    kernel = driver.fingerprint().attributes["kernel"]
    handle = ns.run(HTTP)
    ns.wait_for(handle, lambda s: s.state is ReplicaState.RUNNING)
    assert engine_json(engine, f"/containers/{handle.id}/json")["OCIRuntime"] == "runc"
    version = proc_version(driver, handle)
    assert kernel in version
    assert version != GVISOR_PROC_VERSION


def test_other_tiers_and_weakening_extensions_are_refused(ns: Namespace) -> None:
    for tier in ("microvm", "wasm"):
        with pytest.raises(PermanentDriverError, match=f"isolation '{tier}' is not offered"):
            ns.create({**HTTP, "isolation": tier})
    weakened = {**HTTP, "isolation": "sandboxed", "extensions": {"podman": {"runtime": "runc"}}}
    with pytest.raises(PermanentDriverError, match="'runc' contradicts isolation 'sandboxed'"):
        ns.create(weakened)
    assert ns.driver.list_owned({LABEL_NAMESPACE: ns.name}) == []


def test_an_extension_runtime_the_service_ignores_is_refused_not_run(
    ns: Namespace, engine: APIClient
) -> None:
    spec = {**HTTP, "extensions": {"podman": {"runtime": "runsc"}}}
    with pytest.raises(PermanentDriverError, match=r"'runsc' was not honoured.*runtime 'runc'"):
        ns.create(spec)
    # the container the service made with the wrong runtime is gone again
    assert ns.driver.list_owned({LABEL_NAMESPACE: ns.name}) == []
    # the service's default runtime, named explicitly, is honoured
    handle = ns.create({**HTTP, "extensions": {"podman": {"runtime": "runc"}}})
    assert engine_json(engine, f"/containers/{handle.id}/json")["OCIRuntime"] == "runc"
