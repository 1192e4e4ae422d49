"""Probes, run by portway's controller against replicas on the real engine.

Readiness must gate: a replica is not ready while the thing its probe checks
is missing, and becomes ready once it appears (``GATE_SECONDS`` after start).
Liveness must act: a replica whose liveness probe fails is stopped and, under
the default ``always`` policy, restarted in place. HTTP and TCP probes go to
the port the replica publishes on 127.0.0.1 (see controller/probes.py).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import LABEL_NAMESPACE, Executor, ReplicaState

from .case import HTTP_PORT, LOOPBACK, Context, case
from .failures import CaseFailed, expect
from .harness import ControllerHarness

#: the replica creates what its readiness probe checks this long after it starts
#: (long enough that a loaded engine still shows it running well before then)
GATE_SECONDS = 5.0
FAST = {"periodSeconds": 0.5, "timeoutSeconds": 1, "failureThreshold": 1}
RESTART_FAST = {"policy": "always", "initialBackoffSeconds": 0.2, "maxBackoffSeconds": 1}
HTTPD = f"httpd -f -p {HTTP_PORT} -h /www"
PORTS = [{"containerPort": HTTP_PORT}]
# paths inside the replica, not on this host
READY_FILE = "/tmp/ready"  # noqa: S108
HEALTHY_FILE = "/tmp/healthy"  # noqa: S108


def _readiness_gates(ctx: Context, spec: dict[str, Any], what: str) -> None:
    """Run ``spec`` under the controller and check that readiness waits for ``what``."""
    # The replica starts after this moment, so ``what`` cannot exist before
    # ``created + GATE_SECONDS``: timed on this host's clock, needing no start
    # time from the engine.
    created = time.time()
    harness = ctx.controller(spec)
    harness.converge(
        lambda: harness.replica().get("state") == "running", timeout=15, what="replica 0 runs"
    )
    closed_until = created + GATE_SECONDS - 0.75
    window = closed_until - time.time()
    expect(
        window > 0.5,
        f"replica 0 was seen running only {time.time() - created:.1f}s after it was applied; "
        "too late to check that readiness waits",
    )
    harness.hold(
        lambda: time.time() > closed_until or harness.replica().get("ready") is False,
        seconds=window,
        what=f"replica 0 not ready while {what} does not exist yet (it appears "
        f"{GATE_SECONDS:g}s after start)",
    )
    expect(
        harness.phase() != "Ready",
        f"workload phase is Ready before {what} exists; {harness.describe()}",
    )
    harness.converge(
        lambda: harness.replica().get("ready") is True,
        timeout=GATE_SECONDS + 8,
        what=f"replica 0 is ready once {what} exists",
    )
    harness.converge(
        lambda: harness.phase() == "Ready", timeout=5, what="the workload phase is Ready"
    )


#: a lost readiness must show within the probe's period times its failure
#: threshold; this much more covers an exec's round trip on a loaded engine
LOSS_SLACK_SECONDS = 4.0


def _exec_in_replica(ctx: Context, command: list[str]) -> None:
    if not isinstance(ctx.driver, Executor):
        raise CaseFailed(f"driver {ctx.driver.name} declares exec probes but cannot exec")
    running = [
        s
        for s in ctx.driver.list_owned({LABEL_NAMESPACE: ctx.namespace})
        if s.state is ReplicaState.RUNNING
    ]
    expect(len(running) == 1, f"expected one running replica, found {len(running)}")
    result = ctx.driver.exec(running[0].handle, command, timeout=10)
    expect(result.exit_code == 0, f"{' '.join(command)} in the replica exited {result.exit_code}")


def _readiness_lost_and_regained(ctx: Context, harness: ControllerHarness) -> None:
    """Readiness keeps being judged after the first Ready: a replica whose
    probe starts failing is reported not ready (workload Degraded, with a
    NotReady event saying why), and Ready again once it passes."""
    _exec_in_replica(ctx, ["rm", READY_FILE])
    bound = FAST["periodSeconds"] * FAST["failureThreshold"] + LOSS_SLACK_SECONDS
    harness.converge(
        lambda: harness.replica().get("ready") is False and harness.phase() == "Degraded",
        timeout=bound,
        what=f"replica 0 is not ready and the workload Degraded once {READY_FILE} is gone",
    )
    lost = [m for r, m in harness.events() if r == "NotReady"]
    expect(
        bool(lost) and "exec probe exited" in lost[-1],
        f"no NotReady event naming the failing probe; {harness.describe()}",
    )
    expect(
        "not ready" in str(harness.status().get("message", "")),
        f"the workload's message does not say which replica is not ready; {harness.describe()}",
    )
    _exec_in_replica(ctx, ["touch", READY_FILE])
    harness.converge(
        lambda: harness.replica().get("ready") is True and harness.phase() == "Ready",
        timeout=bound,
        what=f"replica 0 is ready and the workload Ready again once {READY_FILE} is back",
    )
    reasons = [r for r, _ in harness.events()]
    expect(
        "Recovered" in reasons and reasons.count("Ready") >= 1,
        f"no Ready/Recovered events after readiness came back; {harness.describe()}",
    )


def _liveness_restarts(ctx: Context, spec: dict[str, Any], what: str) -> None:
    harness = ctx.controller({**spec, "restart": RESTART_FAST})
    harness.converge(
        lambda: harness.replica().get("state") == "running", timeout=15, what="replica 0 runs"
    )
    first = harness.replica().get("container_id")
    harness.converge(
        lambda: harness.restarts() >= 1,
        timeout=10,
        what=f"the failing liveness probe ({what}) gets replica 0 restarted",
    )
    replica = harness.replica()
    expect(
        replica.get("last_reason") == "LivenessProbeFailed",
        f"replica 0 restarted, but its last exit is {replica.get('last_reason')!r}, not "
        f"LivenessProbeFailed; {harness.describe()}",
    )
    expect(
        replica.get("container_id") == first,
        f"the liveness restart replaced the replica ({first} -> {replica.get('container_id')})"
        " instead of restarting it in place",
    )
    stopped = [m for r, m in harness.events() if r == "Stopped" and "LivenessProbeFailed" in m]
    expect(bool(stopped), f"no Stopped (LivenessProbeFailed) event; {harness.describe()}")


@case(
    "probes.readiness_exec",
    "an exec readiness probe keeps a replica unready until its command succeeds",
    features=(Feature.PROBES_EXEC,),
)
def readiness_exec(ctx: Context) -> None:
    script = f"sleep {GATE_SECONDS:g}; touch {READY_FILE}; exec sleep 600"
    probe = {"exec": {"command": ["cat", READY_FILE]}, **FAST}
    _readiness_gates(
        ctx,
        {"command": ["sh", "-c", script], "probes": {"readiness": probe}},
        READY_FILE,
    )


@case(
    "probes.readiness_lost",
    "readiness is judged for a replica's whole life: a probe that starts failing after "
    "Ready makes the replica unready and the workload Degraded (with a NotReady event), "
    "until it passes again",
    features=(Feature.PROBES_EXEC,),
    # judging readiness over time is the controller's, alike in every tier; the
    # sandboxed tier's exec probes are proven by probes.readiness_exec there
    tiers=("standard", "microvm"),
)
def readiness_lost(ctx: Context) -> None:
    probe = {"exec": {"command": ["cat", READY_FILE]}, **FAST}
    # a shell that ends on SIGTERM at once (``wait`` is interrupted by a
    # trapped signal): a PID 1 sleep would hold every engine's stop timeout
    script = f"trap 'exit 0' TERM; touch {READY_FILE}; sleep 600 & wait"
    harness = ctx.controller({"command": ["sh", "-c", script], "probes": {"readiness": probe}})
    harness.converge(
        lambda: harness.replica().get("ready") is True and harness.phase() == "Ready",
        timeout=20,
        what="replica 0 is ready",
    )
    _readiness_lost_and_regained(ctx, harness)


@case(
    "probes.readiness_http",
    "an HTTP readiness probe keeps a replica unready until the path answers 2xx",
    features=(Feature.PROBES_HTTP,),
)
def readiness_http(ctx: Context) -> None:
    script = f"{HTTPD} & sleep {GATE_SECONDS:g}; echo ok > /www/ready.html; wait"
    probe = {"http": {"port": HTTP_PORT, "path": "/ready.html"}, **FAST}
    _readiness_gates(
        ctx,
        {"command": ["sh", "-c", script], "ports": PORTS, "probes": {"readiness": probe}},
        "/ready.html",
    )


def _accepts_without_listener(ctx: Context) -> str:
    """A hint for a failed TCP case: does the published port accept a
    connection (and close it at once) although nothing listens in the replica?"""
    for status in ctx.driver.list_owned({LABEL_NAMESPACE: ctx.namespace}):
        published = status.host_port_for(HTTP_PORT, "tcp")
        if published is None:
            continue
        try:
            with socket.create_connection((LOOPBACK, published.host_port), timeout=1) as conn:
                conn.settimeout(1)
                closed = conn.recv(1) == b""
        except OSError:
            return ""
        if closed:
            return (
                f"{LOOPBACK}:{published.host_port} accepts TCP connections while nothing "
                f"listens on container port {HTTP_PORT}, then closes them: the engine's port "
                "proxy answers for the replica, so a connect-only TCP probe always passes"
            )
    return ""


@case(
    "probes.readiness_tcp",
    "a TCP readiness probe keeps a replica unready until something listens",
    features=(Feature.PROBES_TCP,),
)
def readiness_tcp(ctx: Context) -> None:
    script = f"sleep {GATE_SECONDS:g}; exec {HTTPD}"
    probe = {"tcp": {"port": HTTP_PORT}, **FAST}
    try:
        _readiness_gates(
            ctx,
            {"command": ["sh", "-c", script], "ports": PORTS, "probes": {"readiness": probe}},
            f"a listener on container port {HTTP_PORT}",
        )
    except CaseFailed as exc:
        hint = _accepts_without_listener(ctx)
        raise CaseFailed(f"{hint}. {exc}" if hint else str(exc)) from None


@case(
    "probes.liveness_exec",
    "a failing exec liveness probe restarts the replica in place",
    features=(Feature.PROBES_EXEC,),
    requires=(Feature.RESTART_ALWAYS,),  # the restart is the instrument here
)
def liveness_exec(ctx: Context) -> None:
    probe = {"exec": {"command": ["cat", HEALTHY_FILE]}, **FAST}
    _liveness_restarts(
        ctx,
        {"command": ["sleep", "600"], "probes": {"liveness": probe}},
        f"cat {HEALTHY_FILE}, which does not exist",
    )


@case(
    "probes.liveness_http",
    "a failing HTTP liveness probe (404) restarts the replica in place",
    features=(Feature.PROBES_HTTP,),
    requires=(Feature.RESTART_ALWAYS,),  # the restart is the instrument here
)
def liveness_http(ctx: Context) -> None:
    probe = {"http": {"port": HTTP_PORT, "path": "/healthz"}, **FAST}
    _liveness_restarts(
        ctx,
        {"ports": PORTS, "probes": {"liveness": probe}},
        "GET /healthz answers 404",
    )


@case(
    "probes.liveness_tcp",
    "a failing TCP liveness probe (nothing listens) restarts the replica in place",
    features=(Feature.PROBES_TCP,),
    requires=(Feature.RESTART_ALWAYS,),  # the restart is the instrument here
)
def liveness_tcp(ctx: Context) -> None:
    probe = {"tcp": {"port": HTTP_PORT}, **FAST}
    try:
        _liveness_restarts(
            ctx,
            {"command": ["sleep", "600"], "ports": PORTS, "probes": {"liveness": probe}},
            f"nothing listens on container port {HTTP_PORT}",
        )
    except CaseFailed as exc:
        hint = _accepts_without_listener(ctx)
        raise CaseFailed(f"{hint}. {exc}" if hint else str(exc)) from None


@case(
    "probes.passing",
    "passing HTTP and exec probes: ready, and never restarted",
    features=(Feature.PROBES_HTTP, Feature.PROBES_EXEC),
)
def passing(ctx: Context) -> None:
    probes = {
        "readiness": {"http": {"port": HTTP_PORT, "path": "/"}, **FAST},
        "liveness": {"exec": {"command": ["cat", "/www/index.html"]}, **FAST},
    }
    harness = ctx.controller({"ports": PORTS, "probes": probes, "restart": RESTART_FAST})
    harness.converge(
        lambda: harness.replica().get("ready") is True, timeout=15, what="replica 0 is ready"
    )
    harness.hold(
        lambda: harness.replica().get("ready") is True and harness.restarts() == 0,
        seconds=2.5,
        what="replica 0 to stay ready and never restart while its probes pass",
    )
