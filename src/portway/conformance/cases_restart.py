"""Restart policies, applied by portway's controller to replicas on the real
engine, with the restart counts it keeps in the store.

Backoffs are short (0.2 s, doubling) so the cases take seconds.
"""

from __future__ import annotations

from typing import Any

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import LABEL_NAMESPACE, ReplicaState

from .case import Context, case
from .failures import expect
from .harness import ControllerHarness

BACKOFF = {"initialBackoffSeconds": 0.2, "maxBackoffSeconds": 0.8}


def _exited(harness: ControllerHarness) -> bool:
    return harness.replica().get("state") == "exited"


def _exits(harness: ControllerHarness) -> int:
    """Exits the controller reported (one Crashed or Completed event each)."""
    return sum(reason in ("Crashed", "Completed") for reason, _ in harness.events())


def _policy(name: str, **extra: Any) -> dict[str, Any]:
    return {"policy": name, **BACKOFF, **extra}


@case(
    "restart.always_after_kill",
    "always: a replica stopped behind the controller's back is restarted in place",
    features=(Feature.RESTART_ALWAYS,),
)
def always_after_kill(ctx: Context) -> None:
    harness = ctx.controller({"command": ["sleep", "600"], "restart": _policy("always")})
    harness.converge(
        lambda: harness.replica().get("state") == "running", timeout=15, what="replica 0 runs"
    )
    first = str(harness.replica()["container_id"])
    (victim,) = [
        s for s in ctx.driver.list_owned({LABEL_NAMESPACE: ctx.namespace}) if s.handle.id == first
    ]
    ctx.driver.stop(victim.handle, 0)  # no grace: a kill
    ctx.wait_status(
        victim.handle, lambda s: s.state is ReplicaState.EXITED, 10, "the killed replica exits"
    )
    harness.converge(
        lambda: harness.restarts() == 1 and harness.replica().get("state") == "running",
        timeout=10,
        what="replica 0 runs again with restart count 1",
    )
    replica = harness.replica()
    expect(
        replica.get("container_id") == first,
        f"the restart replaced the replica ({first} -> {replica.get('container_id')})",
    )
    expect(
        replica.get("last_exit_code") not in (None, 0),
        f"the killed run's exit code is recorded as {replica.get('last_exit_code')!r}",
    )


@case(
    "restart.always_after_success",
    "always: a replica that exits 0 is restarted too, again and again",
    features=(Feature.RESTART_ALWAYS,),
)
def always_after_success(ctx: Context) -> None:
    harness = ctx.controller(
        {"command": ["sh", "-c", "sleep 0.3; exit 0"], "restart": _policy("always")}
    )
    harness.converge(
        lambda: harness.restarts() >= 2,
        timeout=15,
        what="replica 0 (exits 0 after 0.3s) restarted twice",
    )
    replica = harness.replica()
    expect(
        replica.get("last_exit_code") == 0,
        f"last exit code recorded as {replica.get('last_exit_code')!r}, expected 0",
    )


@case(
    "restart.on_failure_retries",
    "on-failure: a non-zero exit is restarted up to maxRetries, then left exited",
    features=(Feature.RESTART_ON_FAILURE,),
)
def on_failure_retries(ctx: Context) -> None:
    harness = ctx.controller(
        {"command": ["sh", "-c", "exit 3"], "restart": _policy("on-failure", maxRetries=2)}
    )
    # the record says "exited" with the new count already in the pass that
    # restarts it; the third reported exit is the one after the last restart
    harness.converge(
        lambda: _exits(harness) == 3 and harness.restarts() == 2 and _exited(harness),
        timeout=15,
        what="replica 0 (exits 3) restarted twice (maxRetries 2) and exited a third time",
    )
    harness.hold(
        lambda: harness.restarts() == 2 and _exited(harness) and _exits(harness) == 3,
        seconds=2.0,
        what="no third restart (maxRetries 2): restart count 2, exited",
    )
    replica = harness.replica()
    expect(
        replica.get("last_exit_code") == 3,
        f"last exit code recorded as {replica.get('last_exit_code')!r}, expected 3",
    )
    expect(harness.phase() == "Degraded", f"phase {harness.phase()!r}, expected Degraded")


@case(
    "restart.on_failure_success",
    "on-failure: a replica that exits 0 is left exited (Completed)",
    features=(Feature.RESTART_ON_FAILURE,),
)
def on_failure_success(ctx: Context) -> None:
    harness = ctx.controller({"command": ["sh", "-c", "exit 0"], "restart": _policy("on-failure")})
    harness.converge(lambda: _exited(harness), timeout=15, what="replica 0 exits")
    harness.hold(
        lambda: harness.restarts() == 0 and _exited(harness),
        seconds=1.5,
        what="replica 0 (exit 0) to stay exited, never restarted",
    )
    expect(harness.phase() == "Completed", f"phase {harness.phase()!r}, expected Completed")


@case(
    "restart.never",
    "never: a failed replica is left exited, never restarted",
    features=(Feature.RESTART_NEVER,),
)
def never(ctx: Context) -> None:
    harness = ctx.controller({"command": ["sh", "-c", "exit 1"], "restart": _policy("never")})
    harness.converge(lambda: _exited(harness), timeout=15, what="replica 0 exits")
    harness.hold(
        lambda: harness.restarts() == 0 and _exited(harness),
        seconds=1.5,
        what="replica 0 (exit 1, policy never) to stay exited, never restarted",
    )
    replica = harness.replica()
    expect(
        replica.get("last_exit_code") == 1,
        f"last exit code recorded as {replica.get('last_exit_code')!r}, expected 1",
    )
