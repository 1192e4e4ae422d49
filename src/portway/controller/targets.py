"""The controller's view of targets: their drivers and their health.

Health comes from fingerprinting each target periodically; a change is
written to the target's record and recorded as an event, so ``get targets``
and ``describe`` tell the truth about an engine that went away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from portway import tracing
from portway.controller.records import CLUSTER_NAMESPACE, KIND_TARGET, TargetView
from portway.drivers.base import Driver, Fingerprint, Health, Pinger
from portway.drivers.registry import open_driver
from portway.drivers.traced import traced
from portway.errors import ConflictError, NotFoundError, PortwayError
from portway.store import Store

log = logging.getLogger(__name__)

#: a healthy target is fully fingerprinted this often, and only pinged between
FULL_FINGERPRINT_SECONDS = 60.0


class TargetPool:
    def __init__(
        self,
        store: Store,
        opener: Callable[[str, str, str], Driver] = open_driver,
    ) -> None:
        self._store = store
        self._open = opener
        self._lock = threading.Lock()
        self._drivers: dict[str, tuple[str, str, Driver]] = {}

    def views(self) -> list[TargetView]:
        return [TargetView.from_record(r) for r in self._store.list(KIND_TARGET, CLUSTER_NAMESPACE)]

    def view(self, name: str) -> TargetView | None:
        record = self._store.get(KIND_TARGET, CLUSTER_NAMESPACE, name)
        return None if record is None else TargetView.from_record(record)

    def driver(self, target: TargetView) -> Driver:
        """The driver for a target, opened once and reused (it holds connections)."""
        with self._lock:
            cached = self._drivers.get(target.name)
            if cached and cached[:2] == (target.driver, target.address):
                return cached[2]
            driver = self._open(target.name, target.driver, target.address)
            if tracing.enabled():
                driver = traced(driver)
            self._drivers[target.name] = (target.driver, target.address, driver)
            return driver

    def isolation_tiers(self, target: TargetView) -> frozenset[str]:
        """The isolation tiers the target offers: as its last healthy
        fingerprint recorded them, else as its driver declares them (none if it
        cannot load). Placement never puts a workload on a target lacking its tier."""
        if target.tiers:
            return frozenset(target.tiers)
        try:
            return self.driver(target).capabilities().isolation_tiers
        except PortwayError:
            return frozenset()

    def check(self, target: TargetView) -> Fingerprint:
        """Health of one target now; a change is recorded (and an event made).

        A target recorded healthy less than ``FULL_FINGERPRINT_SECONDS`` ago
        is only pinged: a full fingerprint (version, runtimes, capacity) costs
        the engine and us far more, and checks run every few seconds.
        """
        try:
            driver = self.driver(target)
        except PortwayError as exc:  # e.g. the driver's SDK is not installed
            fingerprint = Fingerprint(Health.UNDETECTED, detail=str(exc))
            if target.health != fingerprint.health.value or target.detail != fingerprint.detail:
                self._record(target, fingerprint, event=target.health != fingerprint.health.value)
            return fingerprint
        fresh = time.time() - target.checked_at < FULL_FINGERPRINT_SECONDS
        if target.healthy and fresh and isinstance(driver, Pinger):
            try:
                driver.ping()
            except PortwayError:
                pass  # fall through to a full fingerprint, which says why
            else:
                return Fingerprint(
                    Health.HEALTHY,
                    detail=target.detail,
                    version=target.version,
                    runtime_handlers=target.runtime_handlers,
                    attributes=target.attributes,
                )
        try:
            fingerprint = driver.fingerprint()
        except PortwayError as exc:
            fingerprint = Fingerprint(Health.UNDETECTED, detail=str(exc))
        changed = fingerprint.health.value != target.health or (
            fingerprint.health is Health.HEALTHY and fingerprint.version != target.version
        )
        if changed or fingerprint.health is Health.HEALTHY:
            tiers = tiers_of(driver) if fingerprint.health is Health.HEALTHY else None
            self._record(target, fingerprint, event=changed, tiers=tiers)
        return fingerprint

    def check_all(self) -> None:
        for view in self.views():
            self.check(view)

    def _record(
        self,
        target: TargetView,
        fingerprint: Fingerprint,
        *,
        event: bool,
        tiers: dict[str, dict[str, object]] | None = None,
    ) -> None:
        for _ in range(5):
            try:
                record = self._store.require(KIND_TARGET, CLUSTER_NAMESPACE, target.name)
                status = dict(record.status)
                if status.get("health") != fingerprint.health.value or not status.get(
                    "healthSince"
                ):
                    # failover counts the grace period from here
                    status["healthSince"] = time.time()
                status.update(
                    health=fingerprint.health.value,
                    detail=fingerprint.detail,
                    checkedAt=time.time(),
                )
                if fingerprint.health is Health.HEALTHY:
                    status.update(
                        version=fingerprint.version,
                        runtimeHandlers=list(fingerprint.runtime_handlers),
                        attributes=dict(fingerprint.attributes),
                    )
                if tiers is not None:
                    status["tiers"] = tiers
                self._store.update_status(record, status)
                break
            except ConflictError:
                continue
            except NotFoundError:
                return
        if not event:
            return
        healthy = fingerprint.health is Health.HEALTHY
        self._store.record_event(
            KIND_TARGET,
            CLUSTER_NAMESPACE,
            target.name,
            "TargetHealthy" if healthy else "TargetUnhealthy",
            f"target {target.name} is {fingerprint.health.value}"
            + (f": {fingerprint.detail}" if fingerprint.detail else ""),
            warning=not healthy,
            target=target.name,
        )
        log.info(
            "target %s is now %s %s", target.name, fingerprint.health.value, fingerprint.detail
        )


def tiers_of(driver: Driver) -> dict[str, dict[str, object]]:
    """The isolation tiers a target offers, as recorded on its target record:
    tier -> runtime handler and the sandbox's overhead. Drivers that name no
    handlers offer the tiers their features declare, with unnamed handlers."""
    try:
        capabilities = driver.capabilities()
    except PortwayError:
        return {}
    if capabilities.handlers:
        return {
            h.tier: {
                "handler": h.handler,
                "overheadMemory": h.overhead_memory,
                "overheadCpu": h.overhead_cpu,
            }
            for h in capabilities.handlers
        }
    return {
        tier: {"handler": "", "overheadMemory": 0, "overheadCpu": 0.0}
        for tier in sorted(capabilities.isolation_tiers)
    }
