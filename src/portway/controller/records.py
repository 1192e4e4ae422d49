"""How workloads, replicas and targets are laid out in the store.

The store holds plain JSON; this module is the one place that knows its
shape, so the controller, the service layer and later the API agree on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from portway.controller.plan import ReplicaMemory
from portway.drivers.base import Handle, ReplicaStatus
from portway.errors import AlreadyExistsError
from portway.spec.model import Workload
from portway.store import Record, Store

KIND_WORKLOAD = "Workload"
KIND_REPLICA = "Replica"
KIND_TARGET = "Target"
KIND_CLUSTER = "Cluster"
#: sealed values only (portway.secrets.stored); never a plaintext
KIND_SECRET = "Secret"  # noqa: S105 (a record kind, not a password)
#: targets are cluster-wide; they live in this pseudo-namespace
CLUSTER_NAMESPACE = "_cluster"


# --- identity ------------------------------------------------------------


def cluster_id(store: Store) -> str:
    """This installation's id, made on first use and kept in the store."""
    record = store.get(KIND_CLUSTER, CLUSTER_NAMESPACE, "identity")
    if record is None:
        try:
            record = store.create(
                KIND_CLUSTER, CLUSTER_NAMESPACE, "identity", {"id": uuid.uuid4().hex[:12]}
            )
        except AlreadyExistsError:
            record = store.require(KIND_CLUSTER, CLUSTER_NAMESPACE, "identity")
    return str(record.spec["id"])


# --- workloads -----------------------------------------------------------


def workload_spec_envelope(
    workload: Workload,
    template_generation: int,
    template_hash: str,
    degradations: list[dict[str, str]] | None = None,
    excluded_targets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What ``apply`` writes as a workload's desired state. ``degradations``
    are the fields the planner found dropped on the chosen target, accepted
    in lenient portability mode; ``describe`` shows them. ``excluded_targets``
    are targets the scheduler must not choose, with why."""
    envelope: dict[str, Any] = {
        "workload": workload.model_dump(mode="json", by_alias=True, exclude_none=True),
        "templateGeneration": template_generation,
        "templateHash": template_hash,
    }
    if degradations:
        envelope["degradations"] = degradations
    if excluded_targets:
        envelope["excludedTargets"] = dict(sorted(excluded_targets.items()))
    return envelope


def excluded_targets_of(record: Record) -> dict[str, str]:
    """Targets ``apply`` found unfit for the workload (the drift gate refused
    it there, or its image is missing): target -> short reason."""
    raw = record.spec.get("excludedTargets")
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def workload_of(record: Record) -> Workload:
    return Workload.model_validate(record.spec["workload"])


def template_generation_of(record: Record) -> int:
    return int(record.spec.get("templateGeneration", 1))


def template_hash_of(record: Record) -> str:
    return str(record.spec.get("templateHash", ""))


# --- replicas ------------------------------------------------------------


def replica_name(workload: str, index: int) -> str:
    return f"{workload}-{index}"


@dataclass(frozen=True)
class ReplicaView:
    """A replica as ``get replicas`` shows it (the Replica record's status)."""

    workload: str
    index: int
    target: str = ""
    container_id: str = ""
    container_name: str = ""
    generation: int = 0
    state: str = "pending"
    ready: bool = False
    restart_count: int = 0
    last_exit_code: int | None = None
    last_reason: str = ""
    message: str = ""
    started_at: str | None = None
    #: when the engine created the container: list calls report it on every
    #: engine, StartedAt only an inspect does, so this is the age users see
    created_at: str | None = None
    image: str = ""
    endpoints: list[str] = field(default_factory=list)  # "tcp 80 -> 127.0.0.1:18080"
    memory: dict[str, Any] = field(default_factory=dict)
    #: why the scheduler chose ``target`` ("least-allocated; spread zone=b 1/2")
    placement_reason: str = ""
    #: placement epoch of this index: bumps each time the index moves, and
    #: containers carry it, so a copy left on an old target is known stale
    epoch: int = 0

    def to_status(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> ReplicaView:
        known = {k: v for k, v in status.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def replica_memory(self) -> ReplicaMemory:
        known = {k: v for k, v in self.memory.items() if k in ReplicaMemory.__dataclass_fields__}
        return ReplicaMemory(**known)


def endpoints_of(status: ReplicaStatus) -> list[str]:
    return [
        f"{p.protocol} {p.container_port} -> {p.host_ip}:{p.host_port}"
        for p in sorted(status.ports, key=lambda p: (p.container_port, p.protocol))
    ]


def handle_to_dict(handle: Handle) -> dict[str, Any]:
    return asdict(handle)


# --- targets -------------------------------------------------------------


@dataclass(frozen=True)
class TierHandler:
    handler: str  # the engine's runtime name, e.g. runsc ("" when the driver names none)
    overhead_memory: int = 0  # bytes the sandbox itself costs per replica
    overhead_cpu: float = 0.0  # cores

    @classmethod
    def from_status(cls, value: Mapping[str, Any]) -> TierHandler:
        return cls(
            handler=str(value.get("handler", "")),
            overhead_memory=int(value.get("overheadMemory", 0) or 0),
            overhead_cpu=float(value.get("overheadCpu", 0.0) or 0.0),
        )


@dataclass(frozen=True)
class TargetView:
    name: str
    driver: str
    address: str
    labels: Mapping[str, str]
    health: str = "undetected"
    detail: str = ""
    version: str = ""
    runtime_handlers: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)
    cordoned: bool = False
    checked_at: float = 0.0  # when the last full fingerprint was recorded
    #: isolation tier -> how this target runs it (from its last healthy fingerprint)
    tiers: Mapping[str, TierHandler] = field(default_factory=dict)
    #: ``target drain``: cordoned, and its replicas are moved elsewhere (with a surge)
    draining: bool = False
    #: capacity given with ``target add --capacity`` ("cpu", "memory" in cores
    #: and bytes); overrides the fingerprint's figures
    capacity: Mapping[str, float] = field(default_factory=dict)
    #: [{"key", "value", "effect"}] as given with ``target add --taint``
    taints: tuple[Mapping[str, str], ...] = ()
    #: when the target last changed between healthy and not (epoch seconds)
    health_since: float = 0.0

    @classmethod
    def from_record(cls, record: Record) -> TargetView:
        status = record.status
        return cls(
            name=record.name,
            driver=str(record.spec["driver"]),
            address=str(record.spec["address"]),
            labels=dict(record.spec.get("labels", {})),
            health=str(status.get("health", "undetected")),
            detail=str(status.get("detail", "")),
            version=str(status.get("version", "")),
            runtime_handlers=tuple(status.get("runtimeHandlers", ())),
            attributes=dict(status.get("attributes", {})),
            cordoned=bool(record.spec.get("cordoned", False))
            or bool(record.spec.get("draining", False)),
            draining=bool(record.spec.get("draining", False)),
            capacity={
                str(k): float(v)
                for k, v in dict(record.spec.get("capacity", {})).items()
                if isinstance(v, int | float)
            },
            taints=tuple(
                {str(k): str(v) for k, v in t.items()}
                for t in record.spec.get("taints", ())
                if isinstance(t, dict)
            ),
            health_since=float(status.get("healthSince", 0.0) or 0.0),
            checked_at=float(status.get("checkedAt", 0.0)),
            tiers={
                str(tier): TierHandler.from_status(value)
                for tier, value in dict(status.get("tiers", {})).items()
                if isinstance(value, dict)
            },
        )

    @property
    def isolation_tiers(self) -> frozenset[str]:
        """Tiers placement may choose this target for. A target never
        fingerprinted healthy yet offers only the standard tier."""
        return frozenset(self.tiers) or frozenset({"standard"})

    @property
    def healthy(self) -> bool:
        return self.health == "healthy"
