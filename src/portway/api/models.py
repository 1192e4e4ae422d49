"""Request and response bodies, so that ``/openapi.json`` says exactly what
each route takes and returns. Field names are camelCase like the spec files."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Health(ApiModel):
    status: str


class BindingOut(ApiModel):
    role: str
    namespace: str


class WhoAmI(ApiModel):
    user: str
    token_name: str
    token_id: str
    bindings: list[BindingOut]
    cluster_admin: bool


# --- workloads ----------------------------------------------------------------


class WorkloadOut(ApiModel):
    namespace: str
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    version: int = Field(description="Store version; changes with every write (CAS).")
    generation: int = Field(description="Changes with every change of the desired state.")
    template_generation: int
    created_at: float
    updated_at: float
    spec: dict[str, Any] = Field(description="The workload's spec as stored (tier resolved).")
    status: dict[str, Any]
    deleting: bool
    degradations: list[dict[str, str]] = Field(default_factory=list)


class WorkloadList(ApiModel):
    items: list[WorkloadOut]


class ApplyRequest(ApiModel):
    documents: list[dict[str, Any]] = Field(
        min_length=1, max_length=1000, description="Parsed YAML documents (Workload, Namespace)."
    )
    file: str = Field(
        default="request", max_length=4096, description="Name for messages (the client's file)."
    )
    dry_run: bool = Field(default=False, description="Check everything, write nothing.")


class AppliedNamespace(ApiModel):
    name: str
    outcome: str
    violators: list[str] = Field(default_factory=list)


class AppliedWorkload(ApiModel):
    namespace: str
    name: str
    outcome: str
    generation: int


class ApplyResponse(ApiModel):
    namespaces: list[AppliedNamespace]
    workloads: list[AppliedWorkload]
    excluded_targets: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="workload -> target -> why it was left out"
    )
    dry_run: bool = False
    wait: dict[str, str] | None = Field(
        default=None, description="With ?wait=true: workload -> ready, degraded or timeout."
    )


class DeleteResponse(ApiModel):
    namespace: str
    name: str
    deleting: bool
    wait: str | None = Field(default=None, description="With ?wait=true: deleted or timeout.")


# --- replicas -----------------------------------------------------------------


class ReplicaOut(ApiModel):
    namespace: str
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
    created_at: str | None = Field(default=None, description="When the engine created it.")
    image: str = ""
    endpoints: list[str] = Field(default_factory=list, description='"tcp 80 -> 127.0.0.1:18080"')
    memory: dict[str, Any] = Field(default_factory=dict)
    placement_reason: str = ""
    epoch: int = 0


class ReplicaList(ApiModel):
    items: list[ReplicaOut]


# --- exec / plan --------------------------------------------------------------


class ExecRequest(ApiModel):
    replica: int = Field(default=0, ge=0, le=10_000)
    command: list[str] = Field(min_length=1, max_length=1000)
    timeout: float = Field(default=60.0, gt=0, le=3600)


class ExecResponse(ApiModel):
    exit_code: int
    stdout: str = Field(description="What the command wrote; engines interleave both streams here.")
    stderr: str = Field(description="Empty: the engines deliver one interleaved stream.")
    output: str = Field(description="The raw bytes of stdout, base64-encoded.")


class PlanRequest(ApiModel):
    documents: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    file: str = Field(default="request", max_length=4096)
    targets: list[str] = Field(default_factory=list, max_length=1000)


class PlanResponse(ApiModel):
    items: list[dict[str, Any]]


# --- events -------------------------------------------------------------------


class EventOut(ApiModel):
    id: int
    ts: float
    kind: str
    namespace: str
    name: str
    type: str
    reason: str
    message: str
    replica: int | None = None
    target: str = ""
    count: int = 1
    first_ts: float = 0.0


class EventList(ApiModel):
    items: list[EventOut]


# --- targets, namespaces, conformance --------------------------------------------


class TargetOut(ApiModel):
    name: str
    driver: str
    address: str
    labels: dict[str, str]
    health: str
    status: str = Field(description="Ready, SchedulingDisabled, Draining, ...")
    cordoned: bool
    draining: bool
    capacity: dict[str, dict[str, Any]] = Field(description="cpu/memory: value and source")
    taints: list[dict[str, str]]
    detail: str
    version: str
    runtime_handlers: list[str]
    tiers: dict[str, dict[str, Any]]
    attributes: dict[str, str]
    checked_at: float
    health_since: float


class TargetList(ApiModel):
    items: list[TargetOut]


class TargetCreate(ApiModel):
    name: str = Field(max_length=63, description="A DNS-1123 label.")
    address: str | None = Field(
        default=None, max_length=4096, description="e.g. docker:///var/run/docker.sock"
    )
    driver: str | None = Field(default=None, max_length=64, description="Defaults to the scheme.")
    labels: list[str] = Field(
        default_factory=list, max_length=100, description="KEY=VALUE (as `target add --label`)."
    )
    capacity: list[str] = Field(
        default_factory=list, max_length=10, description="cpu=4, memory=8Gi (as `--capacity`)."
    )
    taints: list[str] = Field(
        default_factory=list, max_length=100, description="KEY[=VALUE]:EFFECT (as `--taint`)."
    )


class TargetPatch(ApiModel):
    labels: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="KEY=VALUE to set, KEY- to remove (as `target set`).",
    )
    capacity: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="cpu=4, memory=8Gi, cpu- (as `target set`).",
    )
    taints: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="KEY[=VALUE]:EFFECT, KEY- (as `target set`).",
    )


class TargetAction(ApiModel):
    name: str
    changed: bool


class TargetRemoved(ApiModel):
    name: str
    replicas: list[str] = Field(description="Replicas recorded on it when it was removed.")


class NamespaceOut(ApiModel):
    name: str
    source: str = Field(description="object (a Namespace was applied) or defaults")
    spec: dict[str, Any]
    workloads: list[str]


class NamespaceList(ApiModel):
    items: list[NamespaceOut]


class Conformance(ApiModel):
    drivers: dict[str, Any]


# --- access -------------------------------------------------------------------------


class TokenOut(ApiModel):
    id: str
    name: str
    user: str
    created_at: float
    expires_at: float | None
    revoked: bool
    expired: bool
    bindings: list[BindingOut]


class TokenList(ApiModel):
    items: list[TokenOut]


class TokenCreate(ApiModel):
    user: str = Field(max_length=63)
    name: str | None = Field(default=None, max_length=63)
    ttl_seconds: float | None = Field(default=None, gt=0, le=10 * 365 * 86400)
    bindings: list[BindingOut] = Field(default_factory=list, max_length=100)


class TokenCreated(ApiModel):
    token: str = Field(description="Shown this once; only its hash is stored.")
    id: str
    info: TokenOut


class RoleBindingOut(ApiModel):
    user: str
    role: str
    namespace: str


class RoleBindingList(ApiModel):
    items: list[RoleBindingOut]


class RoleBindingChange(ApiModel):
    binding: RoleBindingOut
    changed: bool


class AuditEntryOut(ApiModel):
    id: int
    ts: float
    user: str
    token_id: str
    verb: str
    resource: str
    namespace: str
    name: str
    outcome: str
    status: int
    message: str
    remote: str


class AuditList(ApiModel):
    items: list[AuditEntryOut]
