"""The driver contract: what every backend offers portway.

Modelled on Nomad's task-driver plugin API: one small protocol, a fixed
``Capabilities`` value per driver, and optional features as separate small
protocols (``LogSource``, ``Executor``, ``StatsSource``, ``EventSource``), so a
caller learns what a driver supports before calling, not by failing.

We split Nomad's StartTask into ``create`` and ``start``: creating first
validates the image and configuration of a new revision while the old replica
still runs, which is what lets a failed rollout leave the previous state
running. Both are idempotent: ``create`` of a replica that already exists
returns the existing handle (that is how a restarted controller avoids
duplicates), ``start`` of a running replica does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from portway.capabilities.tiers import EXCLUDED
from portway.capabilities.vocabulary import Feature
from portway.drivers.secret_files import SecretFile
from portway.spec.model import Isolation, WorkloadSpec

# Owner labels: every object a driver creates carries them. Drivers list and
# adopt by these labels only; the controller never tracks anything else.
LABEL_PREFIX = "portway.dev/"
LABEL_MANAGED = LABEL_PREFIX + "managed"  # always "true"
LABEL_NAMESPACE = LABEL_PREFIX + "namespace"
LABEL_WORKLOAD = LABEL_PREFIX + "workload"
LABEL_REPLICA = LABEL_PREFIX + "replica"  # replica index, decimal
LABEL_GENERATION = LABEL_PREFIX + "generation"  # template generation, decimal
LABEL_TEMPLATE = LABEL_PREFIX + "template"  # template hash, for humans and audits
#: placement epoch of the replica index, decimal: bumps each time the index
#: moves to another target, so a copy found on a target the index left is stale
LABEL_EPOCH = LABEL_PREFIX + "epoch"
LABEL_TARGET = LABEL_PREFIX + "target"
# Which portway installation (state store) owns the object: two stores that
# share one engine must never adopt or garbage-collect each other's replicas.
LABEL_CLUSTER = LABEL_PREFIX + "cluster"


class Health(StrEnum):
    UNDETECTED = "undetected"  # no engine answers at the address
    UNHEALTHY = "unhealthy"  # it answers but cannot run work
    HEALTHY = "healthy"


class ReplicaState(StrEnum):
    """Shared across all backends; drivers map their engine's states onto it."""

    CREATED = "created"  # exists, never started or not started yet
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"  # the engine itself is restarting it
    EXITED = "exited"
    REMOVING = "removing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Fingerprint:
    health: Health
    detail: str = ""  # why unhealthy/undetected; engine name when healthy
    version: str = ""
    runtime_handlers: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeHandler:
    """How one target runs one isolation tier, like a Kubernetes RuntimeClass:
    the engine's name for the runtime, and what the sandbox itself costs beyond
    the workload's own limits (RuntimeClass ``overhead``), which placement adds
    when checking that a replica fits."""

    tier: str  # "standard", "sandboxed", "wasm", "microvm"
    handler: str  # the engine's own name: "runc", "runsc", "wasmtime", ...
    overhead_memory: int = 0  # bytes
    overhead_cpu: float = 0.0  # cores


@dataclass(frozen=True)
class DriverCapabilities:
    """What a driver implements, in the shared feature vocabulary (like
    Nomad's ``Capabilities``). Fixed per driver, except the isolation tiers,
    which come from the runtime handlers its fingerprint found. A declaration
    is a claim: the conformance suite proves it against the real engine before
    the planner calls a field "honored"."""

    features: frozenset[Feature]
    #: one per isolation tier this target offers (empty: standard only, unnamed)
    handlers: tuple[RuntimeHandler, ...] = ()
    #: features declared for the standard tier that a tier does not offer,
    #: with the reason (e.g. gVisor implements no cgroup OOM accounting):
    #: tier -> feature -> why
    tier_gaps: Mapping[str, Mapping[Feature, str]] = field(default_factory=dict)
    #: what the engine does to a feature it honors that no conformance run can
    #: rule out (measured, with figures): ``plan`` says it wherever it calls
    #: the feature honored on this driver
    caveats: Mapping[Feature, str] = field(default_factory=dict)

    def supports(self, feature: Feature) -> bool:
        return feature in self.features

    def handler_for(self, tier: str) -> RuntimeHandler | None:
        return next((h for h in self.handlers if h.tier == tier), None)

    def features_for(self, tier: str) -> frozenset[Feature]:
        """What the driver claims for a replica run in ``tier``."""
        gaps = self.gaps_in(tier)
        return frozenset(f for f in self.features if f not in gaps)

    def gaps_in(self, tier: str) -> dict[Feature, str]:
        """Declared features a replica in ``tier`` does not get, with why: what
        no engine offers in that tier, then what this driver's engine lacks."""
        return {**EXCLUDED.get(tier, {}), **self.tier_gaps.get(tier, {})}

    @property
    def isolation_tiers(self) -> frozenset[str]:
        prefix = "isolation."
        return frozenset(
            f.value.removeprefix(prefix) for f in self.features if f.startswith(prefix)
        )


@dataclass(frozen=True)
class Handle:
    """Opaque to everyone but the driver that made it; stored so a restarted
    controller can hand it back to ``recover``."""

    driver: str
    target: str
    id: str
    name: str
    version: int = 1  # format version of this handle


@dataclass(frozen=True)
class ReplicaRequest:
    """Everything a driver needs to create one replica."""

    namespace: str
    workload: str
    index: int
    generation: int
    template_hash: str
    spec: WorkloadSpec
    cluster: str = ""
    epoch: int = 0
    #: names this replica answers to on its namespace network (services.dns):
    #: ``(workload, "workload.namespace")`` for a service, ``()`` otherwise.
    #: Drivers that support ``Feature.SERVICES_DNS`` attach every replica to
    #: the namespace network and give it these aliases; others ignore them.
    aliases: tuple[str, ...] = ()
    #: secret values to place as read-only tmpfs files (``secrets.files``),
    #: resolved and decrypted by the controller for this create only
    secret_files: tuple[SecretFile, ...] = ()

    @property
    def name(self) -> str:
        """Deterministic, so a repeated create finds the first one. The cluster
        prefix keeps two installations sharing an engine from colliding; the
        epoch keeps an index that moved between two targets on one engine
        from finding its old copy."""
        prefix = f"pw{self.cluster[:6]}" if self.cluster else "pw"
        suffix = f"e{self.epoch}" if self.epoch else ""
        return f"{prefix}-{self.namespace}-{self.workload}-{self.index}-g{self.generation}{suffix}"

    def labels(self, target: str) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_CLUSTER: self.cluster,
            LABEL_NAMESPACE: self.namespace,
            LABEL_WORKLOAD: self.workload,
            LABEL_REPLICA: str(self.index),
            LABEL_GENERATION: str(self.generation),
            LABEL_TEMPLATE: self.template_hash,
            LABEL_TARGET: target,
            LABEL_EPOCH: str(self.epoch),
        }

    def host_port(self, container_port: int, protocol: str) -> int | None:
        """Replica i publishes on hostPort + i (None: ephemeral)."""
        for port in self.spec.ports:
            if port.container_port == container_port and str(port.protocol) == protocol:
                return None if port.host_port is None else port.host_port + self.index
        return None


@dataclass(frozen=True)
class PublishedPort:
    container_port: int
    protocol: str
    host_ip: str
    host_port: int


@dataclass(frozen=True)
class ReplicaStatus:
    """One observation of one replica, as the engine reports it."""

    handle: Handle
    labels: Mapping[str, str]
    state: ReplicaState
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""  # engine's message for a failed start, if any
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    ports: tuple[PublishedPort, ...] = ()
    image: str = ""

    @property
    def index(self) -> int:
        return int(self.labels.get(LABEL_REPLICA, "-1"))

    @property
    def generation(self) -> int:
        return int(self.labels.get(LABEL_GENERATION, "-1"))

    @property
    def epoch(self) -> int:
        """Placement epoch (0 for replicas made before epochs existed)."""
        try:
            return int(self.labels.get(LABEL_EPOCH, "0"))
        except ValueError:
            return -1

    @property
    def workload_key(self) -> str:
        return f"{self.labels.get(LABEL_NAMESPACE, '')}/{self.labels.get(LABEL_WORKLOAD, '')}"

    def host_port_for(self, container_port: int, protocol: str = "tcp") -> PublishedPort | None:
        for port in self.ports:
            if port.container_port == container_port and port.protocol == protocol:
                return port
        return None


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: bytes  # stdout and stderr interleaved as the engine delivers them


class LogLine(NamedTuple):
    """One line of a replica's output. A named tuple, not a dataclass: a
    follow of a chatty replica makes tens of thousands a second, and a
    frozen dataclass costs twice as much to build."""

    timestamp: datetime | None
    stream: str  # "stdout" | "stderr"
    text: str


@dataclass(frozen=True)
class Stats:
    """One resource sample of one replica, in the same units on every engine
    (docs/metrics.md says what each engine's figure is made of)."""

    cpu_seconds: float  # cumulative CPU time
    memory_bytes: int  # working set: usage less inactive page cache where the engine says
    memory_limit_bytes: int | None
    pids: int | None
    #: bytes received / sent on the replica's own network interfaces since it
    #: started (None: it has none of its own, e.g. host network or wasm)
    network_rx_bytes: int | None = None
    network_tx_bytes: int | None = None


@dataclass(frozen=True)
class DriverEvent:
    """A hint that something changed; the controller re-reads state anyway."""

    labels: Mapping[str, str]
    action: str  # engine's word: "die", "start", "destroy", "oom", ...
    handle_id: str


@runtime_checkable
class Driver(Protocol):
    """The core every backend implements. Calls may block; they are made from
    worker threads, never from the reconcile loop's own thread."""

    name: str  # driver name, e.g. "docker"
    target: str  # the configured target this instance talks to

    def fingerprint(self) -> Fingerprint: ...

    def capabilities(self) -> DriverCapabilities: ...

    def create(self, request: ReplicaRequest) -> Handle: ...

    def start(self, handle: Handle) -> None: ...

    def inspect(self, handle: Handle) -> ReplicaStatus: ...

    def stop(self, handle: Handle, timeout: float) -> None: ...

    def destroy(self, handle: Handle) -> None: ...

    def recover(self, handle: Handle) -> ReplicaStatus | None:
        """Re-attach to a replica after a controller restart; None if gone."""
        ...

    def list_owned(self, selector: Mapping[str, str]) -> list[ReplicaStatus]:
        """Every replica whose labels include ``selector`` (plus managed=true)."""
        ...

    def image_present(self, image: str) -> bool: ...


@runtime_checkable
class Pinger(Protocol):
    def ping(self) -> None:
        """A cheap liveness check between full fingerprints; raises
        ``TargetUnavailableError`` (or another ``DriverError``) on failure."""
        ...


@runtime_checkable
class ExtensionChecker(Protocol):
    def check_extension(self, settings: Mapping[str, Any]) -> list[str]:
        """Problems with ``extensions.<this driver>`` (empty: fine), found
        without calling the engine, so ``apply`` can refuse before writing."""
        ...


@runtime_checkable
class TierExtensionChecker(Protocol):
    def check_tier_extension(self, settings: Mapping[str, Any], isolation: Isolation) -> list[str]:
        """Problems of ``extensions.<this driver>`` together with the replica's
        isolation tier (empty: fine), e.g. a runtime that would take a
        sandboxed replica out of its sandbox: a workload may not weaken its
        tier through an extension. Found without creating anything."""
        ...


@runtime_checkable
class LogSource(Protocol):
    def logs(
        self,
        handle: Handle,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]: ...


@runtime_checkable
class LogBatchSource(Protocol):
    """Optional, for throughput: the same lines as ``LogSource.logs``, a list
    per read from the engine, so a reader pays per read instead of per line."""

    def log_batches(
        self,
        handle: Handle,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[list[LogLine]]: ...


@runtime_checkable
class Executor(Protocol):
    def exec(self, handle: Handle, command: list[str], timeout: float = 30.0) -> ExecResult: ...


@runtime_checkable
class StatsSource(Protocol):
    def stats(self, handle: Handle) -> Stats: ...


@runtime_checkable
class BatchStatsSource(Protocol):
    def stats_many(self, handles: list[Handle]) -> dict[str, Stats]:
        """Stats of many replicas in one engine call, by handle id; a replica
        that is gone is left out rather than failing the batch."""
        ...


@runtime_checkable
class EventSource(Protocol):
    def events(self, stop: threading.Event) -> Iterator[DriverEvent]:
        """Engine events for owned objects until ``stop`` is set or the engine
        goes away (then the iterator ends; the caller reconnects)."""
        ...


@dataclass(frozen=True)
class MountFact:
    source: str  # host path, volume name or "tmpfs"
    destination: str
    kind: str  # "bind", "volume", "tmpfs"
    read_write: bool = True
    propagation: str = ""  # "", "private", "rprivate", "shared", "rshared", ...


@dataclass(frozen=True)
class SecurityFacts:
    """What the engine itself reports about a replica's security settings: the
    ground truth ``portway audit`` judges (CIS Docker Benchmark section 5), not
    what the spec asked for. Empty strings mean "the engine's default"."""

    privileged: bool = False
    user: str = ""  # "" = the image's user (root unless the image says otherwise)
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    read_only_rootfs: bool = False
    no_new_privileges: bool = False
    seccomp: str = ""  # "" default filter, "unconfined", or a profile name
    apparmor: str = ""  # "" none/default, "unconfined", or a profile name
    runtime: str = ""  # e.g. "runc", "runsc"
    network_mode: str = ""  # "host" when sharing the host's network
    pid_mode: str = ""
    ipc_mode: str = ""
    uts_mode: str = ""
    userns_mode: str = ""
    memory_limit: int = 0  # bytes, 0 = none
    cpu_limit: float = 0.0  # cores (or relative shares turned into cores), 0 = none
    pids_limit: int = 0  # 0 = none
    #: (host ip, host port, container port, protocol) for each published port
    published: tuple[tuple[str, int, int, str], ...] = ()
    mounts: tuple[MountFact, ...] = ()
    devices: tuple[str, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    ulimits: tuple[str, ...] = ()  # "nofile=1024:2048" set on the replica itself
    restart_policy: str = ""  # the engine's own restart policy ("" or "no": none)
    restart_max: int = 0
    healthcheck: bool = False  # the engine has a health check for it


@runtime_checkable
class SecurityInspector(Protocol):
    def security_facts(self, handle: Handle) -> SecurityFacts:
        """The replica's security settings as the engine reports them."""
        ...


@dataclass(frozen=True)
class Artifact:
    """One module in a target's own artifact store."""

    name: str  # an image reference, e.g. portway/hello:1
    digest: str  # "sha256:..."
    size: int  # bytes
    imported_at: datetime | None = None


@runtime_checkable
class ArtifactImporter(Protocol):
    """A target whose workloads run artifacts from a store of its own (the
    wasm tier), filled by ``portway artifact import`` instead of an image
    registry."""

    def import_artifact(self, name: str, path: Path) -> Artifact:
        """Store the file at ``path`` under ``name`` (replacing what that name
        pointed at); raises ``InputError`` if it is not a valid artifact."""
        ...

    def list_artifacts(self) -> list[Artifact]: ...

    def remove_artifact(self, name: str) -> Artifact | None:
        """Forget ``name``; None if the store has no such name."""
        ...
