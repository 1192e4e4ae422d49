"""Probes: ``run_probe`` against a real HTTP/TCP server on 127.0.0.1 and a fake
exec driver, and the ``Prober``'s thresholds, delays and per-run state."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.fakes import FakeClock, FakeDriver

from portway.controller.probes import Prober, run_probe
from portway.drivers.base import (
    LABEL_REPLICA,
    Driver,
    ExecResult,
    Handle,
    PublishedPort,
    ReplicaRequest,
    ReplicaState,
    ReplicaStatus,
)
from portway.errors import TargetUnavailableError
from portway.spec.model import Probe, Probes, WorkloadSpec

CONTAINER_PORT = 8080


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = {"/ok": 200, "/redirect": 302, "/missing": 404}.get(self.path, 500)
        body = b"fine" if code < 400 else b"nope"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()  # nothing listens there now
    return port


def probe(**fields: Any) -> Probe:
    return Probe.model_validate({"timeoutSeconds": 1, **fields})


def running(
    host_port: int | None = None,
    *,
    host_ip: str = "127.0.0.1",
    started: float = 0.0,
    container_id: str = "c1",
    state: ReplicaState = ReplicaState.RUNNING,
) -> ReplicaStatus:
    ports = () if host_port is None else (PublishedPort(CONTAINER_PORT, "tcp", host_ip, host_port),)
    return ReplicaStatus(
        handle=Handle("fake", "local", container_id, "pw-ns-web-0-g1"),
        labels={LABEL_REPLICA: "0"},
        state=state,
        started_at=datetime.fromtimestamp(started, UTC),
        ports=ports,
    )


# --- run_probe -------------------------------------------------------------------


def test_http_probe_passes_on_2xx_and_3xx(server_port: int) -> None:
    driver = FakeDriver()
    ok, message = run_probe(
        probe(http={"port": CONTAINER_PORT, "path": "/ok"}), running(server_port), driver
    )
    assert ok
    assert "200" in message
    ok, message = run_probe(
        probe(http={"port": CONTAINER_PORT, "path": "/redirect"}), running(server_port), driver
    )
    assert ok
    assert "302" in message


@pytest.mark.parametrize(("path", "code"), [("/boom", 500), ("/missing", 404)])
def test_http_probe_fails_on_an_error_status(server_port: int, path: str, code: int) -> None:
    ok, message = run_probe(
        probe(http={"port": CONTAINER_PORT, "path": path}), running(server_port), FakeDriver()
    )
    assert not ok
    assert message == f"http probe returned {code}"


def test_http_probe_fails_on_a_closed_port(closed_port: int) -> None:
    ok, message = run_probe(
        probe(http={"port": CONTAINER_PORT}), running(closed_port), FakeDriver()
    )
    assert not ok
    assert f"127.0.0.1:{closed_port} failed" in message


def test_tcp_probe_connects(server_port: int) -> None:
    ok, message = run_probe(probe(tcp={"port": CONTAINER_PORT}), running(server_port), FakeDriver())
    assert ok
    assert message == "tcp probe connected"


def test_tcp_probe_fails_on_a_closed_port(closed_port: int) -> None:
    ok, message = run_probe(probe(tcp={"port": CONTAINER_PORT}), running(closed_port), FakeDriver())
    assert not ok
    assert message.startswith(f"tcp probe to 127.0.0.1:{closed_port} failed")


def test_a_wildcard_binding_is_probed_on_loopback(server_port: int) -> None:
    status = running(server_port, host_ip="0.0.0.0")
    ok, _ = run_probe(probe(tcp={"port": CONTAINER_PORT}), status, FakeDriver())
    assert ok


def test_an_unpublished_port_fails_without_connecting() -> None:
    ok, message = run_probe(probe(tcp={"port": CONTAINER_PORT}), running(None), FakeDriver())
    assert not ok
    assert message == f"container port {CONTAINER_PORT} is not published"


def _fake_with_container(driver: FakeDriver) -> ReplicaStatus:
    spec = WorkloadSpec.model_validate({"image": "portway/app:1"})
    handle = driver.create(ReplicaRequest("ns", "web", 0, 1, "h", spec))
    driver.start(handle)
    return driver.inspect(handle)


def test_exec_probe_runs_through_the_driver() -> None:
    driver = FakeDriver()
    status = _fake_with_container(driver)
    check = probe(exec={"command": ["true"]})
    assert run_probe(check, status, driver) == (True, "exec probe passed")
    driver.exec_results[status.handle.id] = ExecResult(3, b"unhealthy")
    assert run_probe(check, status, driver) == (False, "exec probe exited 3")


def test_exec_probe_fails_when_the_engine_fails() -> None:
    driver = FakeDriver()
    status = _fake_with_container(driver)
    driver.outage()
    ok, message = run_probe(probe(exec={"command": ["true"]}), status, driver)
    assert not ok
    assert "engine unreachable" in message


class _NoExec:
    """A driver without the Executor feature (only what run_probe touches)."""

    name = "plain"
    target = "local"


def test_exec_probe_on_a_driver_that_cannot_exec_fails() -> None:
    driver: Any = _NoExec()
    ok, message = run_probe(probe(exec={"command": ["true"]}), running(), driver)
    assert not ok
    assert message == "driver plain cannot exec"


# --- Prober ------------------------------------------------------------------------


class ScriptedRunner:
    """Returns queued results (default: pass) and counts calls."""

    def __init__(self) -> None:
        self.results: list[bool] = []
        self.calls: list[str] = []
        self.default = True

    def __call__(self, check: Probe, status: ReplicaStatus, driver: Driver) -> tuple[bool, str]:
        kind = "readiness" if check.tcp is not None else "liveness"
        self.calls.append(kind)
        passed = self.results.pop(0) if self.results else self.default
        return passed, "ok" if passed else "refused"


READINESS = {"tcp": {"port": CONTAINER_PORT}}
LIVENESS = {"exec": {"command": ["check"]}}


def probes(
    readiness: dict[str, Any] | None = None, liveness: dict[str, Any] | None = None
) -> Probes:
    return Probes(
        readiness=None if readiness is None else probe(**readiness),
        liveness=None if liveness is None else probe(**liveness),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000.0)


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


@pytest.fixture
def prober(clock: FakeClock, runner: ScriptedRunner) -> Prober:
    return Prober(clock, runner=runner)


def test_without_probes_a_running_replica_is_ready_and_live(prober: Prober) -> None:
    verdict = prober.evaluate(running(started=1_000.0), Probes(), FakeDriver())
    assert (verdict.ready, verdict.live, verdict.next_due) == (True, True, None)


@pytest.mark.parametrize("state", [ReplicaState.CREATED, ReplicaState.EXITED, ReplicaState.PAUSED])
def test_a_replica_that_is_not_running_is_not_ready(
    prober: Prober, runner: ScriptedRunner, state: ReplicaState
) -> None:
    verdict = prober.evaluate(
        running(started=1_000.0, state=state), probes(READINESS, LIVENESS), FakeDriver()
    )
    assert (verdict.ready, verdict.live, verdict.next_due) == (False, True, None)
    assert runner.calls == []


def test_readiness_starts_failing_and_liveness_passing_during_the_initial_delay(
    prober: Prober, runner: ScriptedRunner, clock: FakeClock
) -> None:
    checks = probes(
        {**READINESS, "initialDelaySeconds": 5, "periodSeconds": 10},
        {**LIVENESS, "initialDelaySeconds": 20, "periodSeconds": 10},
    )
    status = running(started=1_000.0)
    verdict = prober.evaluate(status, checks, FakeDriver())
    assert (verdict.ready, verdict.live) == (False, True)
    assert verdict.next_due == 1_005.0
    assert runner.calls == []

    clock.advance(4.9)
    assert not prober.evaluate(status, checks, FakeDriver()).ready
    assert runner.calls == []

    clock.advance(0.1)
    verdict = prober.evaluate(status, checks, FakeDriver())
    assert verdict.ready
    assert runner.calls == ["readiness"]
    assert verdict.next_due == 1_015.0  # readiness: now + period; liveness at 1_020


def test_initial_delay_counts_from_the_start_of_the_replica(
    prober: Prober, runner: ScriptedRunner, clock: FakeClock
) -> None:
    clock.advance(30)  # first seen long after it started
    checks = probes({**READINESS, "initialDelaySeconds": 5})
    verdict = prober.evaluate(running(started=1_000.0), checks, FakeDriver())
    assert verdict.ready
    assert runner.calls == ["readiness"]


def test_a_probe_runs_once_per_period(
    prober: Prober, runner: ScriptedRunner, clock: FakeClock
) -> None:
    checks = probes({**READINESS, "periodSeconds": 10})
    status = running(started=1_000.0)
    for _ in range(5):
        prober.evaluate(status, checks, FakeDriver())
        clock.advance(1.0)
    assert runner.calls == ["readiness"]
    clock.advance(5.0)  # t = 1_010
    verdict = prober.evaluate(status, checks, FakeDriver())
    assert runner.calls == ["readiness", "readiness"]
    assert verdict.next_due == 1_020.0


def test_success_threshold_needs_consecutive_successes(
    prober: Prober, runner: ScriptedRunner, clock: FakeClock
) -> None:
    checks = probes({**READINESS, "periodSeconds": 1, "successThreshold": 3})
    status = running(started=1_000.0)
    runner.results = [True, True, False, True, True, True]
    seen = []
    for _ in range(6):
        seen.append(prober.evaluate(status, checks, FakeDriver()).ready)
        clock.advance(1.0)
    assert seen == [False, False, False, False, False, True]


def test_failure_threshold_needs_consecutive_failures(
    prober: Prober, runner: ScriptedRunner, clock: FakeClock
) -> None:
    checks = probes(liveness={**LIVENESS, "periodSeconds": 1, "failureThreshold": 3})
    status = running(started=1_000.0)
    runner.results = [True, False, False, True, False, False, False, True]
    seen = []
    for _ in range(8):
        seen.append(prober.evaluate(status, checks, FakeDriver()).live)
        clock.advance(1.0)
    assert seen == [True, True, True, True, True, True, False, True]


def test_readiness_is_lost_after_failures_and_regained(
    prober: Prober, runner: ScriptedRunner, clock: FakeClock
) -> None:
    checks = probes({**READINESS, "periodSeconds": 1, "failureThreshold": 2})
    status = running(started=1_000.0)
    runner.results = [True, False, False, True]
    seen = []
    for _ in range(4):
        verdict = prober.evaluate(status, checks, FakeDriver())
        seen.append((verdict.ready, verdict.message))
        clock.advance(1.0)
    assert seen == [
        (True, ""),
        (True, "readiness: refused"),
        (False, "readiness: refused"),
        (True, ""),
    ]


def test_a_new_run_of_the_container_starts_afresh(
    prober: Prober, runner: ScriptedRunner, clock: FakeClock
) -> None:
    checks = probes(
        {**READINESS, "periodSeconds": 10},
        {**LIVENESS, "periodSeconds": 10, "failureThreshold": 1, "initialDelaySeconds": 3},
    )
    first_run = running(started=1_000.0)
    runner.results = [True]  # readiness passes; liveness waits for its delay
    assert prober.evaluate(first_run, checks, FakeDriver()).ready
    clock.advance(3.0)
    runner.default = False
    verdict = prober.evaluate(first_run, checks, FakeDriver())
    assert not verdict.live
    assert "liveness: refused" in verdict.message

    # restarted: same container, new start time -> readiness fails, liveness passes again
    calls_before = len(runner.calls)
    clock.advance(1.0)
    second_run = running(started=clock())
    verdict = prober.evaluate(second_run, checks, FakeDriver())
    assert verdict.live
    assert runner.calls[calls_before:] == ["readiness"]  # liveness waits its delay again
    assert not verdict.ready


def test_state_is_kept_per_container(
    prober: Prober, runner: ScriptedRunner, clock: FakeClock
) -> None:
    checks = probes({**READINESS, "periodSeconds": 10})
    runner.results = [True, False]
    assert prober.evaluate(running(started=1_000.0, container_id="a"), checks, FakeDriver()).ready
    assert not prober.evaluate(
        running(started=1_000.0, container_id="b"), checks, FakeDriver()
    ).ready
    assert prober.evaluate(running(started=1_000.0, container_id="a"), checks, FakeDriver()).ready


def test_forget_except_drops_the_state_of_gone_containers(
    prober: Prober, runner: ScriptedRunner, clock: FakeClock
) -> None:
    checks = probes({**READINESS, "periodSeconds": 10})
    for cid in ("a", "b"):
        prober.evaluate(running(started=1_000.0, container_id=cid), checks, FakeDriver())
    assert len(runner.calls) == 2
    prober.forget_except({"a"})
    prober.evaluate(running(started=1_000.0, container_id="a"), checks, FakeDriver())
    prober.evaluate(running(started=1_000.0, container_id="b"), checks, FakeDriver())
    assert len(runner.calls) == 3  # "b" started over and probed at once; "a" was not due


def test_prober_with_a_real_http_probe(server_port: int, clock: FakeClock) -> None:
    prober = Prober(clock)  # the real run_probe
    good = probes(
        {"http": {"port": CONTAINER_PORT, "path": "/ok"}},
        {"tcp": {"port": CONTAINER_PORT}},
    )
    verdict = prober.evaluate(running(server_port, started=1_000.0), good, FakeDriver())
    assert (verdict.ready, verdict.live) == (True, True)
    bad = probes({"http": {"port": CONTAINER_PORT, "path": "/boom"}})
    verdict = prober.evaluate(
        running(server_port, started=1_000.0, container_id="other"), bad, FakeDriver()
    )
    assert not verdict.ready
    assert "500" in verdict.message


def test_outage_helper_makes_every_call_fail() -> None:
    driver = FakeDriver()
    driver.outage()
    with pytest.raises(TargetUnavailableError):
        driver.fingerprint()
    driver.outage(False)
    assert driver.fingerprint().version == "1.0"


def test_tcp_probe_fails_when_the_connection_is_accepted_then_dropped() -> None:
    """What Docker's userland port proxy does when nothing listens inside."""
    import socket as socket_module
    import threading as threading_module

    from portway.controller.probes import _tcp_probe

    server = socket_module.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]

    def accept_and_drop() -> None:
        # however many times the probe connects; ends when the test closes the server
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    thread = threading_module.Thread(target=accept_and_drop, daemon=True)
    thread.start()
    try:
        passed, message = _tcp_probe("127.0.0.1", port, 1.0)
        assert not passed
        assert "accepted then closed" in message
    finally:
        server.close()
        thread.join(timeout=2)


def test_tcp_probe_passes_when_the_connection_is_held_open() -> None:
    import socket as socket_module

    from portway.controller.probes import _tcp_probe

    with socket_module.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        passed, message = _tcp_probe("127.0.0.1", server.getsockname()[1], 1.0)
    assert passed, message
