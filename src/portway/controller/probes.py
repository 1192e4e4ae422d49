"""Readiness and liveness probes, judged for the whole life of a replica.

HTTP and TCP probes reach the container through the port its driver
published on the host (127.0.0.1 by default), never through an engine-private
network address. Exec probes run through the driver's ``Executor``.
A probe's state belongs to one run of one container: a restart starts afresh.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from portway.drivers.base import Driver, Executor, ReplicaState, ReplicaStatus
from portway.errors import PortwayError
from portway.spec.model import Probe, Probes


@dataclass
class _ProbeState:
    successes: int = 0
    failures: int = 0
    next_due: float = 0.0
    passing: bool = False
    last_message: str = ""
    #: passed its threshold at least once in this run
    ever_passed: bool = False


@dataclass(frozen=True)
class ProbeVerdict:
    ready: bool
    live: bool
    next_due: float | None  # when a probe should run again (clock seconds)
    message: str = ""
    #: readiness passed before in this run (so not ready now is a loss)
    was_ready: bool = False


def run_of(status: ReplicaStatus) -> str:
    """One run of a container: its id and start time (a restart in place
    keeps the id). Replica records keep both, see ``recorded_run``."""
    return recorded_run(
        status.handle.id, status.started_at.isoformat() if status.started_at else None
    )


def recorded_run(container_id: str, started_at: str | None) -> str:
    """``run_of`` from a replica record's ``container_id`` and ``started_at``."""
    return f"{container_id}:{started_at or ''}"


def _probe_host(host_ip: str) -> str:
    """A wildcard binding is probed on loopback; anything else as given."""
    try:
        address = ipaddress.ip_address(host_ip)
    except ValueError:
        return "127.0.0.1"
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return host_ip


def run_probe(probe: Probe, status: ReplicaStatus, driver: Driver) -> tuple[bool, str]:
    """Run one probe once; returns (passed, message)."""
    timeout = probe.timeout_seconds
    if probe.exec is not None:
        if not isinstance(driver, Executor):
            return False, f"driver {driver.name} cannot exec"
        try:
            result = driver.exec(status.handle, probe.exec.command, timeout=timeout)
        except PortwayError as exc:
            return False, str(exc)
        if result.exit_code == 0:
            return True, "exec probe passed"
        return False, f"exec probe exited {result.exit_code}"
    port = probe.port()
    assert port is not None  # the model guarantees exactly one action
    published = status.host_port_for(port, "tcp")
    if published is None:
        return False, f"container port {port} is not published"
    host = _probe_host(published.host_ip)
    if probe.tcp is not None:
        return _tcp_probe(host, published.host_port, timeout)
    assert probe.http is not None
    conn = http.client.HTTPConnection(host, published.host_port, timeout=timeout)
    try:
        conn.request("GET", probe.http.path, headers={"User-Agent": "portway-probe"})
        code = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return False, f"http probe to {host}:{published.host_port} failed: {exc}"
    finally:
        conn.close()
    if 200 <= code < 400:
        return True, f"http probe returned {code}"
    return False, f"http probe returned {code}"


#: how long a TCP probe waits, after connecting, for the connection to be
#: dropped: an engine's userland port proxy (docker-proxy) accepts on the host
#: port whether or not anything listens inside, then closes at once
TCP_SETTLE_SECONDS = 0.25


def _tcp_probe(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """Connect, then make sure the connection is really held open.

    A connect-only check (Kubernetes' tcpSocket) is enough when the prober
    reaches the container directly; through a published port it is not, as
    the conformance suite showed on Docker.
    """
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(min(TCP_SETTLE_SECONDS, timeout))
            try:
                peeked = conn.recv(1, socket.MSG_PEEK)
            except TimeoutError:
                return True, "tcp probe connected"  # held open: a listener is there
            if peeked:
                return True, "tcp probe connected (the server spoke first)"
            return (
                False,
                f"tcp probe to {where}: connection accepted then closed at once "
                "(nothing listens behind the published port)",
            )
    except OSError as exc:
        return False, f"tcp probe to {where} failed: {exc}"


class Prober:
    """Remembers probe results per container run; thread-safe."""

    def __init__(
        self,
        clock: Callable[[], float],
        runner: Callable[[Probe, ReplicaStatus, Driver], tuple[bool, str]] = run_probe,
    ) -> None:
        self._clock = clock
        self._run = runner
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str, str], _ProbeState] = {}

    def evaluate(
        self,
        status: ReplicaStatus,
        probes: Probes,
        driver: Driver,
        *,
        recorded_ready: bool = False,
    ) -> ProbeVerdict:
        """Run the due probes of one running container and judge it.

        ``recorded_ready``: the store says this very run (container and start
        time) was ready, as judged by an earlier controller. Readiness then
        starts out passed, so a controller restart does not turn a ready
        replica not ready (and the workload Degraded) while a probe that
        needs several successes counts them again; it takes the probe's
        failure threshold to lose it, as it would have without the restart."""
        if status.state is not ReplicaState.RUNNING:
            # a stopped container's next run is judged afresh (engines' list
            # calls may not tell us its new start time)
            self.forget(status.handle.id)
            return ProbeVerdict(ready=False, live=True, next_due=None)
        run_id = run_of(status)
        ready, ready_due, ready_msg = self._judge(
            run_id, "readiness", probes.readiness, status, driver, passed_before=recorded_ready
        )
        live, live_due, live_msg = self._judge(run_id, "liveness", probes.liveness, status, driver)
        dues = [d for d in (ready_due, live_due) if d is not None]
        message = "; ".join(m for m in (ready_msg, live_msg) if m)
        was_ready = probes.readiness is not None and self._ever_passed(
            (run_id, "readiness", status.handle.id)
        )
        return ProbeVerdict(ready, live, min(dues) if dues else None, message, was_ready)

    def _ever_passed(self, key: tuple[str, str, str]) -> bool:
        with self._lock:
            state = self._states.get(key)
            return state is not None and state.ever_passed

    def _judge(
        self,
        run_id: str,
        kind: str,
        probe: Probe | None,
        status: ReplicaStatus,
        driver: Driver,
        *,
        passed_before: bool = False,
    ) -> tuple[bool, float | None, str]:
        if probe is None:
            return True, None, ""
        now = self._clock()
        key = (run_id, kind, status.handle.id)
        with self._lock:
            state = self._states.get(key)
            if state is None:
                started = status.started_at.timestamp() if status.started_at else now
                state = _ProbeState(next_due=max(now, started + probe.initial_delay_seconds))
                # liveness starts out passing: a replica is live until proven otherwise
                state.passing = kind == "liveness" or passed_before
                state.ever_passed = passed_before
                self._states[key] = state
            due = state.next_due
        if now < due:
            return state.passing, due, state.last_message
        passed, message = self._run(probe, status, driver)
        with self._lock:
            if passed:
                state.successes += 1
                state.failures = 0
                if state.successes >= probe.success_threshold:
                    state.passing = True
                    state.ever_passed = True
            else:
                state.failures += 1
                state.successes = 0
                if state.failures >= probe.failure_threshold:
                    state.passing = False
            state.last_message = "" if passed else f"{kind}: {message}"
            state.next_due = now + probe.period_seconds
            return state.passing, state.next_due, state.last_message

    def forget(self, container_id: str) -> None:
        """Drop every probe state of one container (it was (re)started)."""
        with self._lock:
            for key in [k for k in self._states if k[2] == container_id]:
                del self._states[key]

    def forget_except(self, live_ids: set[str]) -> None:
        """Drop state for containers that no longer exist."""
        with self._lock:
            for key in [k for k in self._states if k[2] not in live_ids]:
                del self._states[key]
