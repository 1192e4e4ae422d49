"""ContainerdDriver against the real containerd (gRPC, runc, CNI): no mocks.

Needs containerd on /run/containerd/containerd.sock (or
``PORTWAY_CONTAINERD_ADDRESS``); the session fixture runs
scripts/engines-containerd.sh, which imports the test images into the
``portway`` namespace and sets route_localnet. Every test works in its own
portway namespace and checks that destroy leaves nothing behind: no container,
task, snapshot, network namespace, iptables rule, logger process or state
directory. Network traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

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

import pytest

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import (
    LABEL_NAMESPACE,
    LABEL_WORKLOAD,
    Executor,
    Health,
    LogLine,
    LogSource,
    ReplicaState,
    StatsSource,
)
from portway.drivers.registry import open_driver
from portway.errors import ImageNotFoundError, PortInUseError, ReplicaGoneError
from tests.integration.driver_ns import Namespace
from tests.integration.e2e import bindable, free_port

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


def logger_processes(container_id: str) -> list[str]:
    """Command lines of processes running a logger for the replica."""
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = " ".join(a.decode(errors="replace") for a in argv)
        if "_logger" in text and f"/{container_id}/" in text:
            found.append(text)
    return found


def leftovers(container_id: str) -> list[str]:
    """Everything of a replica still on the host (empty: fully cleaned up)."""
    from portway.drivers.containerd import _net
    from portway.drivers.containerd.driver import STATE_DIR

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
    if logger_processes(container_id):
        found.append("logger")
    if (STATE_DIR / "portway" / container_id).exists():
        found.append("state directory")
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
    # engines-containerd.sh installs the runsc wrapper wherever runsc is installed
    from portway.drivers.containerd import _sandbox

    sandboxed = _sandbox.find_wrapper() is not None
    assert caps.isolation_tiers == ({"standard", "sandboxed"} if sandboxed else {"standard"})
    assert fingerprint.runtime_handlers == (("runc", "runsc") if sandboxed else ("runc",))
    assert isinstance(driver, LogSource)
    assert isinstance(driver, Executor)
    assert isinstance(driver, StatsSource)


def test_lifecycle_http_and_cleanup(ns: Namespace) -> None:
    driver = ns.driver
    started = time.monotonic()
    handle = ns.create(HTTP)
    created = driver.inspect(handle)
    assert created.state is ReplicaState.CREATED
    assert created.started_at is None
    before = datetime.now(UTC)
    driver.start(handle)
    elapsed_ms = (time.monotonic() - started) * 1000
    status = driver.inspect(handle)
    assert status.state is ReplicaState.RUNNING
    assert status.image == IMAGE
    assert status.started_at is not None
    assert before <= status.started_at <= datetime.now(UTC)
    assert status.finished_at is None
    [listed] = driver.list_owned({LABEL_NAMESPACE: ns.name})
    assert listed.started_at == status.started_at
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
    assert stopped.started_at == status.started_at
    assert stopped.started_at <= stopped.finished_at
    [listed] = driver.list_owned({LABEL_NAMESPACE: ns.name})
    assert (listed.started_at, listed.finished_at) == (stopped.started_at, stopped.finished_at)
    driver.start(handle)  # a new task: a new start time
    restarted = driver.inspect(handle)
    assert restarted.state is ReplicaState.RUNNING
    assert restarted.started_at is not None and restarted.started_at > stopped.finished_at
    assert restarted.finished_at is None
    driver.stop(handle, 5)
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
        sock.bind(("127.0.0.1", free_port()))
        base = int(sock.getsockname()[1])
        spec = {"ports": [{"containerPort": 8080, "hostPort": base}]}
        with pytest.raises(PortInUseError):
            ns.driver.create(ns.request(spec))
    handle = ns.run(spec)
    assert http_get(base) == "hello from portway\n"
    with pytest.raises(PortInUseError):  # another replica already publishes it
        ns.driver.create(ns.request(spec, workload="other"))
    ns.driver.destroy(handle)


def test_published_ports_are_held_while_the_replica_exists(ns: Namespace) -> None:
    """portmap's DNAT binds nothing: the task's logger holds the host port, so
    no other program is handed it (as Docker's and Podman's are held), through
    a restart's new task too, and it is free again once the replica is gone."""
    handle = ns.run(HTTP)
    published = ns.driver.inspect(handle).host_port_for(8080)
    assert published is not None
    port = published.host_port
    assert not bindable(port)
    assert http_get(port) == "hello from portway\n"  # held, and still forwarded
    ns.driver.stop(handle, 5)
    ns.driver.start(handle)  # a new task, with a new logger
    assert not bindable(port)
    assert http_get(port) == "hello from portway\n"
    ns.driver.destroy(handle)
    assert bindable(port)


def test_logs_streams_times_tail_since(ns: Namespace) -> None:
    script = "echo out-1; echo err-1 >&2; sleep 0.3; echo out-2; echo err-2 >&2; printf unended"
    before = datetime.now(UTC)
    done = ns.run({"command": ["sh", "-c", script]})
    finished = ns.wait_exited(done)
    lines = list(ns.driver.logs(done))  # right after the exit: nothing is missing
    by_stream = {s: [x.text for x in lines if x.stream == s] for s in ("stdout", "stderr")}
    assert by_stream == {"stdout": ["out-1", "out-2", "unended"], "stderr": ["err-1", "err-2"]}
    assert finished.finished_at is not None
    for line in lines:
        assert line.timestamp is not None
        assert before <= line.timestamp <= finished.finished_at + timedelta(seconds=1)
    stamps = [x.timestamp for x in lines if x.timestamp is not None]
    assert stamps == sorted(stamps)
    assert [x.text for x in ns.driver.logs(done, tail=2)] == [x.text for x in lines[-2:]]
    assert list(ns.driver.logs(done, tail=0)) == []
    assert len(list(ns.driver.logs(done, tail=100))) == 5
    later = [x for x in lines if x.text in ("out-2", "err-2", "unended")]
    since = min(x.timestamp for x in later if x.timestamp is not None)
    assert {x.text for x in ns.driver.logs(done, since=since)} == {"out-2", "err-2", "unended"}
    naive = since.astimezone(UTC).replace(tzinfo=None)  # a naive time is UTC
    assert {x.text for x in ns.driver.logs(done, since=naive)} == {"out-2", "err-2", "unended"}
    assert list(ns.driver.logs(done, since=datetime.now(UTC))) == []


def test_logs_long_lines_and_restart(ns: Namespace) -> None:
    from portway.drivers.containerd import _logger

    size = _logger.MAX_LINE * 2 + 100
    script = f"head -c {size} /dev/zero | tr '\\0' x; echo; echo after"
    handle = ns.run({"command": ["sh", "-c", script]})
    ns.wait_exited(handle)
    lines = [x.text for x in ns.driver.logs(handle)]
    assert [len(x) for x in lines] == [_logger.MAX_LINE, _logger.MAX_LINE, 100, 5]
    assert "".join(lines[:3]) == "x" * size and lines[3] == "after"
    ns.driver.start(handle)  # a second run appends to the same log
    ns.wait_exited(handle)
    assert [x.text for x in ns.driver.logs(handle, tail=2)] == ["x" * 100, "after"]
    assert len(list(ns.driver.logs(handle))) == 8


def test_logs_follow(ns: Namespace) -> None:
    chatty = ns.run(
        {
            "command": [
                "sh",
                "-c",
                "i=0; while true; do i=$((i+1)); echo line-$i; echo err-$i >&2; sleep 0.1; done",
            ]
        },
        workload="chatty",
    )
    stop = threading.Event()
    seen: list[LogLine] = []
    for line in ns.driver.logs(chatty, follow=True, stop=stop):
        seen.append(line)
        if len(seen) == 10:
            stop.set()
    assert [x.text for x in seen if x.stream == "stdout"][:5] == [f"line-{i}" for i in range(1, 6)]
    assert [x.text for x in seen if x.stream == "stderr"][:3] == [f"err-{i}" for i in range(1, 4)]
    assert all(x.timestamp is not None for x in seen)
    # follow with tail=0 sees only what comes after it began
    time.sleep(0.3)
    written = len([x for x in ns.driver.logs(chatty) if x.stream == "stdout"])
    stop = threading.Event()
    fresh: list[str] = []
    for line in ns.driver.logs(chatty, follow=True, tail=0, stop=stop):
        if line.stream == "stdout":
            fresh.append(line.text)
        if len(fresh) == 3:
            stop.set()
    assert int(fresh[0].removeprefix("line-")) > written
    follower = ns.run({"command": ["sh", "-c", "echo a; sleep 0.5; echo b >&2"]}, workload="f")
    followed = [(x.stream, x.text) for x in ns.driver.logs(follower, follow=True)]
    assert followed == [("stdout", "a"), ("stderr", "b")]  # ends by itself when the task exits
    assert logger_processes(follower.id)  # the logger lives until the task is deleted
    ns.driver.destroy(follower)
    assert logger_processes(follower.id) == []


def test_logger_process(tmp_path: Path) -> None:
    """The logger as the shim runs it: pipes on fds 3 and 4, ready on fd 5, the
    query as arguments, the bundle (with runc's init.pid) as working directory."""
    import fcntl
    import signal
    import sys

    from portway.drivers.containerd import _logger

    log = tmp_path / "output.log"
    init = subprocess.Popen(["sleep", "30"])  # stands in for the container's init
    (tmp_path / "init.pid").write_text(f"{init.pid}\n")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ready_r, ready_w = os.pipe()
    # out of the way of 3, 4 and 5, which bash then sets as the shim does
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 50) for fd in (out_r, err_r, ready_w)]
    for fd in (out_r, err_r, ready_w):
        os.close(fd)
    command = (
        f'exec "$0" -I "$1" unknown "" path "$2" 3<&{high[0]} 4<&{high[1]} 5>&{high[2]} '
        + " ".join(f"{fd}>&-" for fd in high)
    )
    logger = subprocess.Popen(
        ["bash", "-c", command, sys.executable, _logger.__file__, str(log)],
        cwd=tmp_path,
        env={"CONTAINER_ID": "x", "CONTAINER_NAMESPACE": "portway"},
        pass_fds=high,
    )
    try:
        for fd in high:
            os.close(fd)
        assert os.read(ready_r, 1) == b""  # ready: fd 5 closed
        assert log.exists()
        os.write(out_w, b"one\ntw")
        os.write(err_w, "é-err\n".encode())
        os.write(out_w, b"o\nunended")
        time.sleep(0.3)
        assert not _logger.wait_complete(log, 0.1)  # the "container" still runs
        init.kill()
        init.wait()
        # drained, though the pipes are open (10 s: slack for a loaded host)
        assert _logger.wait_complete(log, 10)
        records, rest = _logger.read_records(log.read_bytes())
        assert rest == b""
        by_stream = {s: [r.text for r in records if r.stream == s] for s in ("stdout", "stderr")}
        assert by_stream == {"stdout": ["one", "two", "unended"], "stderr": ["é-err"]}
        assert all(r.timestamp is not None for r in records)
        assert logger.poll() is None  # it waits for the pipes to close
        os.close(out_w)
        os.close(err_w)
        out_w = err_w = -1
        logger.send_signal(signal.SIGTERM)
        assert logger.wait(timeout=5) == 0
    finally:
        for fd in (out_w, err_w, ready_r):
            if fd >= 0:
                os.close(fd)
        init.kill()
        logger.kill()
        logger.wait()
        init.wait()


def test_logger_format_helpers(tmp_path: Path) -> None:
    from portway.drivers.containerd import _logger

    stream = _logger._Stream(3, "stdout")
    text = "a" + "é" * _logger.MAX_LINE  # two bytes each: a cut must not split one
    stamp = _logger.rfc3339nano(1_700_000_000_123_456_789)
    assert stamp == "2023-11-14T22:13:20.123456789Z"
    records = stream.feed(text.encode() + b"\nrest", stamp)
    pieces = [_logger.decode(r.rstrip(b"\n")) for r in records]
    assert "".join(p.text for p in pieces) == text
    assert all("\ufffd" not in p.text for p in pieces)
    assert [b'"p": true' in r for r in records] == [True, True, False]
    assert stream.pending == b"rest"
    assert [_logger.decode(r.rstrip(b"\n")).text for r in stream.flush(stamp)] == ["rest"]
    old = _logger.decode(b"raw line of an older log")  # before records: stdout, no time
    assert (old.timestamp, old.stream, old.text) == (None, "stdout", "raw line of an older log")
    record = _logger.decode(_logger.encode("stderr", b'a"\\\x01\xff', stamp))
    assert (record.stream, record.text) == ("stderr", 'a"\\\x01\ufffd')
    assert record.timestamp == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    path = tmp_path / "log"
    path.write_bytes(b"a\nb\nc\nunfinish")
    fd = os.open(path, os.O_RDONLY)
    try:
        size = path.stat().st_size
        offsets = [_logger.tail_offset(fd, size, n, block=3) for n in (0, 1, 2, 3, 9)]
        assert offsets == [6, 4, 2, 0, 0]
    finally:
        os.close(fd)


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
    big = ns.driver.exec(handle, ["sh", "-c", "head -c 300000 /dev/zero; echo done >&2"])
    assert big.exit_code == 0
    assert big.output.count(b"\0") == 300000 and b"done\n" in big.output
    from portway.drivers.containerd.driver import STATE_DIR

    assert not list((STATE_DIR / "portway" / handle.id).glob("pwexec-*"))  # fifos removed


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
    # the replica's own CNI interface (the bridge sends it packets as it comes up)
    assert stats.network_rx_bytes is not None and stats.network_tx_bytes is not None
    whoami = ns.driver.exec(limited, ["id", "-u"])
    assert whoami.output.strip() == b"65534"
    assert ns.driver.exec(limited, ["touch", "/rootfile"]).exit_code != 0
    assert ns.driver.exec(limited, ["touch", "/scratch/file"]).exit_code == 0
    caps = ns.driver.exec(limited, ["grep", "CapEff", "/proc/self/status"]).output
    assert caps.split()[-1] == b"0000000000000000"
