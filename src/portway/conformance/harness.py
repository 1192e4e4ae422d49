"""portway's controller, in-process, against one real driver.

Restart policies and probes are provided by the controller, not by engines,
so they are only proven by running the real ``Reconciler`` over the real
engine: a private SQLite store in a temporary directory, one Target record
for the driver under test, a ``TargetPool`` whose opener returns that same
driver, and the Workload record written the way ``apply`` writes it.
``converge`` then calls ``reconcile`` repeatedly, sleeping the delay each
pass asks for (capped, so a case notices a change quickly).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from portway.controller.probes import Prober
from portway.controller.reconciler import ReconcileError, Reconciler, Settings
from portway.controller.records import (
    CLUSTER_NAMESPACE,
    KIND_CLUSTER,
    KIND_REPLICA,
    KIND_TARGET,
    KIND_WORKLOAD,
    workload_spec_envelope,
)
from portway.controller.targets import TargetPool
from portway.drivers.base import Driver, Health
from portway.spec.model import Workload
from portway.store import Store

from .failures import CaseFailed

#: never sleep longer than this between passes: cases wait on seconds, not minutes
MAX_SLEEP_SECONDS = 0.25
#: and never spin: a pass that asks to look again at once still sleeps this long
MIN_SLEEP_SECONDS = 0.02


class ControllerHarness:
    """One workload under portway's controller, on the driver under test."""

    def __init__(
        self,
        driver: Driver,
        workload: Workload,
        *,
        cluster: str,
        workdir: Path,
        stop_timeout: float = 2.0,
    ) -> None:
        self.driver = driver
        self.workload = workload
        self.namespace = workload.metadata.namespace
        self.name = workload.metadata.name
        self.key = workload.key
        self.passes = 0
        self.errors: list[str] = []  # failed actions, as the work queue would retry them
        workdir.mkdir(parents=True, exist_ok=True)
        self.store = Store(f"sqlite:///{workdir / 'state.db'}")
        try:
            # This installation's identity is the suite's cluster id, so replicas
            # the controller makes carry the same owner label as the case's own.
            self.store.create(KIND_CLUSTER, CLUSTER_NAMESPACE, "identity", {"id": cluster})
            self.store.create(
                KIND_TARGET,
                CLUSTER_NAMESPACE,
                driver.target,
                {
                    "driver": driver.name,
                    "address": str(getattr(driver, "address", f"{driver.name}://conformance")),
                    "labels": {},
                },
            )
            self.targets = TargetPool(self.store, opener=lambda _name, _driver, _addr: driver)
            self.reconciler = Reconciler(
                self.store,
                self.targets,
                Prober(time.time),
                settings=Settings(stop_timeout=stop_timeout, action_workers=4),
            )
        except BaseException:
            self.store.close()
            raise
        try:
            self._check_target()
            envelope = workload_spec_envelope(workload, 1, workload.spec.template_hash())
            self.store.create(KIND_WORKLOAD, self.namespace, self.name, envelope)
        except BaseException:
            self.close()
            raise

    def _check_target(self) -> None:
        """Fingerprint the target the way the controller's health loop does."""
        view = self.targets.view(self.driver.target)
        assert view is not None
        fingerprint = self.targets.check(view)
        if fingerprint.health is not Health.HEALTHY:
            raise CaseFailed(
                f"controller: target {self.driver.target} is {fingerprint.health.value}: "
                f"{fingerprint.detail}"
            )

    def close(self) -> None:
        self.reconciler.close()
        self.store.close()

    # --- driving ------------------------------------------------------------

    def reconcile(self) -> float | None:
        """One pass; a pass whose actions failed is retried soon, as the queue would."""
        self.passes += 1
        try:
            return self.reconciler.reconcile(self.key)
        except ReconcileError as exc:
            self.errors.append(str(exc))
            return 0.2

    def _sleep(self, wake: float | None) -> None:
        delay = MAX_SLEEP_SECONDS if wake is None else wake
        time.sleep(min(max(delay, MIN_SLEEP_SECONDS), MAX_SLEEP_SECONDS))

    def converge(
        self, until: Callable[[], bool], *, timeout: float, what: str = "the condition held"
    ) -> float:
        """Reconcile until ``until()`` holds; returns the seconds it took.
        Raises ``CaseFailed`` (with the workload's state) after ``timeout``."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            wake = self.reconcile()
            if until():
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise CaseFailed(
                    f"controller: timed out after {timeout:g}s waiting until {what}; "
                    f"{self.describe()}"
                )
            self._sleep(wake)

    def hold(
        self, invariant: Callable[[], bool], *, seconds: float, what: str = "the invariant"
    ) -> None:
        """Keep reconciling for ``seconds``; ``invariant()`` must hold after every pass."""
        deadline = time.monotonic() + seconds
        while True:
            wake = self.reconcile()
            if not invariant():
                raise CaseFailed(f"controller: expected {what}, but it changed; {self.describe()}")
            if time.monotonic() > deadline:
                return
            self._sleep(wake)

    # --- reading ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        record = self.store.get(KIND_WORKLOAD, self.namespace, self.name)
        return {} if record is None else dict(record.status)

    def phase(self) -> str:
        return str(self.status().get("phase", ""))

    def replicas(self) -> dict[int, dict[str, Any]]:
        """Replica records (``get replicas``) by index."""
        found: dict[int, dict[str, Any]] = {}
        for record in self.store.list(KIND_REPLICA, self.namespace):
            prefix, _, index = record.name.rpartition("-")
            if prefix == self.name and index.isdigit():
                found[int(index)] = dict(record.status)
        return found

    def replica(self, index: int = 0) -> dict[str, Any]:
        """One replica record's status; empty before the first pass wrote it."""
        return self.replicas().get(index, {})

    def restarts(self, index: int = 0) -> int:
        return int(self.replica(index).get("restart_count", 0))

    def events(self) -> list[tuple[str, str]]:
        """(reason, message) of each event, once per time it happened: the
        store folds a repeat into one row with a count (as kubectl shows it)."""
        found = self.store.events(KIND_WORKLOAD, self.namespace, self.name, limit=1000)
        return [(e.reason, e.message) for e in found for _ in range(max(e.count, 1))]

    def describe(self) -> str:
        """The workload's state in one line, for failure messages."""
        status = self.status()
        parts = [f"phase {status.get('phase', '-')!r}"]
        if status.get("message"):
            parts.append(f"message {status['message']!r}")
        for index, replica in sorted(self.replicas().items()):
            parts.append(
                f"replica {index}: state={replica.get('state')} ready={replica.get('ready')} "
                f"restarts={replica.get('restart_count')} "
                f"last_exit={replica.get('last_exit_code')} ({replica.get('last_reason') or '-'})"
                f" container={str(replica.get('container_id', ''))[:12] or '-'}"
            )
        events = self.events()[-6:]
        if events:
            parts.append("events: " + "; ".join(f"{r}: {m}" for r, m in events))
        if self.errors:
            parts.append(f"last action error: {self.errors[-1]}")
        return "; ".join(parts)
