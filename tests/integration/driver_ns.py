"""A test's private namespace on one engine, for the driver tests of every
backend: build requests, create/start replicas, wait on their state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portway.drivers.base import Driver, Handle, ReplicaRequest, ReplicaState, ReplicaStatus
from portway.spec.model import WorkloadSpec

IMAGE = "portway/busybox:latest"  # built by scripts/build-images.sh


@dataclass
class Namespace:
    """Everything a test makes carries this namespace label; its fixture
    removes it all afterwards (``made`` also lists what ``create`` returned)."""

    driver: Driver
    name: str
    made: list[Handle] = field(default_factory=list)

    def request(
        self,
        spec: dict[str, Any] | None = None,
        *,
        workload: str = "web",
        index: int = 0,
        generation: int = 1,
    ) -> ReplicaRequest:
        model = WorkloadSpec.model_validate({"image": IMAGE, **(spec or {})})
        return ReplicaRequest(
            namespace=self.name,
            workload=workload,
            index=index,
            generation=generation,
            template_hash=model.template_hash(),
            spec=model,
        )

    def create(self, spec: dict[str, Any] | None = None, **kwargs: Any) -> Handle:
        handle = self.driver.create(self.request(spec, **kwargs))
        self.made.append(handle)
        return handle

    def run(self, spec: dict[str, Any] | None = None, **kwargs: Any) -> Handle:
        handle = self.create(spec, **kwargs)
        self.driver.start(handle)
        return handle

    def wait_for(
        self,
        handle: Handle,
        predicate: Callable[[ReplicaStatus], bool],
        timeout: float = 10.0,
    ) -> ReplicaStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.driver.inspect(handle)
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting on {handle.name}; last status {status}")
            time.sleep(0.05)

    def wait_exited(self, handle: Handle, timeout: float = 10.0) -> ReplicaStatus:
        return self.wait_for(handle, lambda s: s.state is ReplicaState.EXITED, timeout)
