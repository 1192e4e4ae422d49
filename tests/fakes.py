"""An in-memory Driver (plus Executor and LogSource) and a fake clock.

``FakeDriver`` behaves like a small container engine: ``create`` is
idempotent by name, ``start`` of a running replica does nothing, stopping or
destroying something already gone is not an error, fixed host ports conflict
at ``start`` like a real engine's, and every state change is stamped with the
injected clock. Tests steer it with helpers: ``crash``, ``oom``, ``outage``,
``fail`` (one operation), ``add_container`` (e.g. a duplicate).

Thread-safe: the reconciler calls drivers from a pool of worker threads.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import (
    LABEL_GENERATION,
    LABEL_MANAGED,
    LABEL_REPLICA,
    DriverCapabilities,
    ExecResult,
    Fingerprint,
    Handle,
    Health,
    LogLine,
    PublishedPort,
    ReplicaRequest,
    ReplicaState,
    ReplicaStatus,
)
from portway.errors import (
    PermanentDriverError,
    PortInUseError,
    PortwayError,
    ReplicaGoneError,
    TargetUnavailableError,
)

DRIVER_NAME = "fake"
#: exit code of a replica stopped gracefully (SIGTERM), as shells report it
STOP_EXIT_CODE = 143


class FakeClock:
    """Seconds since the epoch that move only when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self.now += seconds
            return self.now

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self(), UTC)


@dataclass
class FakeContainer:
    id: str
    name: str
    labels: dict[str, str]
    image: str
    state: ReplicaState = ReplicaState.CREATED
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    ports: tuple[PublishedPort, ...] = ()
    logs: list[LogLine] = field(default_factory=list)
    starts: int = 0

    @property
    def index(self) -> int:
        return int(self.labels.get(LABEL_REPLICA, "-1"))

    @property
    def generation(self) -> int:
        return int(self.labels.get(LABEL_GENERATION, "-1"))


class FakeDriver:
    """Driver + Executor + LogSource, all in memory."""

    name = DRIVER_NAME

    def __init__(
        self,
        target: str = "local",
        *,
        clock: Callable[[], float] | None = None,
        list_details: bool = True,
        ephemeral_ports: range = range(40000, 41000),
    ) -> None:
        self.target = target
        self.clock: Callable[[], float] = clock or FakeClock()
        #: False: ``list_owned`` omits start/finish times and exit details, as
        #: Docker's container list does (only ``inspect`` has them)
        self.list_details = list_details
        self.images: set[str] | None = None  # None: every image is present
        self.unavailable = False
        #: operation name -> error raised by the next calls of that operation
        self.failures: dict[str, PortwayError] = {}
        #: exec results per container id, else ``exec_default``
        self.exec_results: dict[str, ExecResult] = {}
        self.exec_default = ExecResult(0, b"")
        self.calls: list[tuple[str, str]] = []  # (operation, container name)
        self._containers: dict[str, FakeContainer] = {}
        self._ids = itertools.count(1)
        self._ephemeral = iter(ephemeral_ports)
        self._lock = threading.RLock()

    # --- test helpers -------------------------------------------------------

    def outage(self, down: bool = True) -> None:
        """While down, every call raises TargetUnavailableError."""
        self.unavailable = down

    def fail(self, operation: str, error: PortwayError | None = None) -> None:
        """Make every ``operation`` call ("create", "start", ...) raise until ``heal``."""
        self.failures[operation] = error or TargetUnavailableError(
            self.target, f"{operation}: injected failure"
        )

    def heal(self, operation: str | None = None) -> None:
        if operation is None:
            self.failures.clear()
        else:
            self.failures.pop(operation, None)

    def containers(self) -> list[FakeContainer]:
        with self._lock:
            return sorted(self._containers.values(), key=lambda c: (c.index, c.generation, c.id))

    def container(self, index: int, generation: int | None = None) -> FakeContainer:
        found = [
            c
            for c in self.containers()
            if c.index == index and (generation is None or c.generation == generation)
        ]
        if len(found) != 1:
            raise AssertionError(f"expected one container for index {index}, found {found}")
        return found[0]

    def running(self) -> list[FakeContainer]:
        return [c for c in self.containers() if c.state is ReplicaState.RUNNING]

    def crash(self, container: FakeContainer | Handle, exit_code: int = 1) -> None:
        """The process in a running replica exits by itself."""
        with self._lock:
            found = self._containers[container.id]
            found.state = ReplicaState.EXITED
            found.exit_code = exit_code
            found.oom_killed = False
            found.finished_at = self._now()

    def oom(self, container: FakeContainer | Handle) -> None:
        """The kernel killed the replica for exceeding its memory limit."""
        with self._lock:
            self.crash(container, exit_code=137)
            self._containers[container.id].oom_killed = True

    def add_container(
        self,
        request: ReplicaRequest,
        *,
        name: str,
        state: ReplicaState = ReplicaState.RUNNING,
        created_at: datetime | None = None,
    ) -> FakeContainer:
        """Put a container in place behind the controller's back (e.g. a duplicate)."""
        with self._lock:
            container = self._new(request, name)
            container.state = state
            if created_at is not None:
                container.created_at = created_at
            if state is ReplicaState.RUNNING:
                container.started_at = self._now()
            return container

    def log(self, container: FakeContainer, text: str, stream: str = "stdout") -> None:
        with self._lock:
            container.logs.append(LogLine(self._now(), stream, text))

    # --- Driver ---------------------------------------------------------------

    def fingerprint(self) -> Fingerprint:
        self._enter("fingerprint", "")
        return Fingerprint(Health.HEALTHY, detail=DRIVER_NAME, version="1.0")

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(
            frozenset(
                {
                    Feature.COMMAND,
                    Feature.ARGS,
                    Feature.ENV,
                    Feature.EXEC,
                    Feature.LOGS,
                    Feature.PORTS_TCP,
                    Feature.PORTS_UDP,
                    Feature.PORTS_HOST_PORT,
                    Feature.VOLUMES_TMPFS,
                    Feature.RESOURCES_MEMORY,
                    Feature.RESOURCES_CPU,
                    Feature.ISOLATION_STANDARD,
                }
            )
        )

    def create(self, request: ReplicaRequest) -> Handle:
        with self._lock:
            self._enter("create", request.name)
            if self.images is not None and request.spec.image not in self.images:
                raise PermanentDriverError(self.target, f"image {request.spec.image} not found")
            for existing in self._containers.values():
                if existing.name == request.name:
                    return self._handle(existing)
            return self._handle(self._new(request, request.name))

    def start(self, handle: Handle) -> None:
        with self._lock:
            container = self._get("start", handle)
            if container.state is ReplicaState.RUNNING:
                return
            for port in container.ports:
                for other in self._containers.values():
                    if other.id == container.id or other.state is not ReplicaState.RUNNING:
                        continue
                    if any(
                        (p.host_ip, p.host_port, p.protocol)
                        == (port.host_ip, port.host_port, port.protocol)
                        for p in other.ports
                    ):
                        raise PortInUseError(
                            self.target,
                            f"start {container.name}: {port.host_ip}:{port.host_port} "
                            f"is already allocated by {other.name}",
                        )
            container.state = ReplicaState.RUNNING
            container.started_at = self._now()
            container.finished_at = None
            container.exit_code = None
            container.oom_killed = False
            container.starts += 1

    def inspect(self, handle: Handle) -> ReplicaStatus:
        with self._lock:
            return self._status(self._get("inspect", handle), details=True)

    def stop(self, handle: Handle, timeout: float) -> None:
        with self._lock:
            try:
                container = self._get("stop", handle)
            except ReplicaGoneError:
                return
            if container.state is ReplicaState.RUNNING:
                container.state = ReplicaState.EXITED
                container.exit_code = STOP_EXIT_CODE
                container.finished_at = self._now()

    def destroy(self, handle: Handle) -> None:
        with self._lock:
            self._enter("destroy", handle.name)
            self._containers.pop(handle.id, None)

    def recover(self, handle: Handle) -> ReplicaStatus | None:
        try:
            return self.inspect(handle)
        except ReplicaGoneError:
            return None

    def list_owned(self, selector: Mapping[str, str]) -> list[ReplicaStatus]:
        with self._lock:
            self._enter("list", "")
            wanted = {LABEL_MANAGED: "true", **selector}
            return [
                self._status(c, details=self.list_details)
                for c in self.containers()
                if all(c.labels.get(k) == v for k, v in wanted.items())
            ]

    def image_present(self, image: str) -> bool:
        self._enter("image_present", image)
        return self.images is None or image in self.images

    # --- Executor and LogSource ---------------------------------------------

    def exec(self, handle: Handle, command: list[str], timeout: float = 30.0) -> ExecResult:
        with self._lock:
            container = self._get("exec", handle)
            if container.state is not ReplicaState.RUNNING:
                raise PermanentDriverError(self.target, f"{container.name} is not running")
            return self.exec_results.get(container.id, self.exec_default)

    def logs(
        self,
        handle: Handle,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        with self._lock:
            lines = list(self._get("logs", handle).logs)
        if since is not None:
            lines = [line for line in lines if line.timestamp and line.timestamp >= since]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return iter(lines)

    # --- internals ------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _enter(self, operation: str, name: str) -> None:
        if self.unavailable:
            raise TargetUnavailableError(self.target, f"{operation}: engine unreachable")
        error = self.failures.get(operation)
        if error is not None:
            raise error
        self.calls.append((operation, name))

    def _get(self, operation: str, handle: Handle) -> FakeContainer:
        self._enter(operation, handle.name)
        if handle.driver != DRIVER_NAME or handle.target != self.target:
            raise PermanentDriverError(self.target, f"handle {handle} is not ours")
        container = self._containers.get(handle.id)
        if container is None:
            raise ReplicaGoneError(self.target, f"{operation} {handle.name}: no such container")
        return container

    def _new(self, request: ReplicaRequest, name: str) -> FakeContainer:
        ports = []
        for port in request.spec.ports:
            protocol = str(port.protocol)
            host_port = request.host_port(port.container_port, protocol)
            if host_port is None:
                host_port = next(self._ephemeral)
            ports.append(PublishedPort(port.container_port, protocol, port.host_ip, host_port))
        container = FakeContainer(
            id=f"{next(self._ids):012x}",
            name=name,
            labels=request.labels(self.target),
            image=request.spec.image,
            created_at=self._now(),
            ports=tuple(ports),
        )
        self._containers[container.id] = container
        return container

    def _handle(self, container: FakeContainer) -> Handle:
        return Handle(DRIVER_NAME, self.target, container.id, container.name)

    def _status(self, container: FakeContainer, *, details: bool) -> ReplicaStatus:
        return ReplicaStatus(
            handle=self._handle(container),
            labels=dict(container.labels),
            state=container.state,
            exit_code=container.exit_code if container.state is ReplicaState.EXITED else None,
            oom_killed=container.oom_killed if details else False,
            error=container.error if details else "",
            created_at=container.created_at,
            started_at=container.started_at if details else None,
            finished_at=container.finished_at if details else None,
            ports=container.ports,
            image=container.image,
        )
