"""The portable workload model, ``portway.dev/v1`` kind ``Workload``.

Field names in files are camelCase, as Kubernetes users expect; Python code
uses snake_case attributes. Every model forbids unknown fields so a typo is an
error (the loader suggests the closest valid name), never a silent drop.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

API_VERSION = "portway.dev/v1"
KIND_WORKLOAD = "Workload"

# DNS-1123 label: what Kubernetes accepts for names, and safe inside
# container names and label values on every backend.
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 63

# Docker's reference grammar, simplified: [host[:port]/]path[:tag][@digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*(?::[0-9]+)?/)?"
IMAGE_RE = re.compile(
    rf"^{_HOST}{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}})?$"
)

#: ``file:///abs/path.wasm``: a WebAssembly module on the host (isolation wasm only)
FILE_IMAGE_PREFIX = "file://"

SIZE_MAX = 2**63 - 1

_QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGT]i?|[kmgt]i?|[Bb])?$")
_UNITS = {
    None: 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}


def parse_bytes(value: int | float | str) -> int:
    """``64Mi`` -> 67108864; plain numbers are bytes. Raises ValueError."""
    # Validators call this with whatever the file held: only ValueError may leave.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a size such as 64Mi, 1G or a number of bytes")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a size must be a finite number")
        if value < 0:
            raise ValueError("a size cannot be negative")
        size = int(value)
    else:
        match = _QUANTITY_RE.match(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not a size; expected e.g. 64Mi, 512M, 1Gi or bytes")
        number, unit = match.groups()
        amount = float(number) * _UNITS[unit.lower() if unit else None]
        if not math.isfinite(amount):
            raise ValueError(f"{value!r} is too large")
        size = int(amount)
    if size > SIZE_MAX:
        raise ValueError("a size must be below 8Ei (2**63 bytes)")
    return size


def parse_cpu(value: int | float | str) -> float:
    """``500m`` -> 0.5 cores; plain numbers are cores. Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected cores such as 0.5 or 500m")
    if isinstance(value, str):
        text = value.strip()
        try:
            cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a CPU amount; expected e.g. 0.5 or 500m") from None
    else:
        try:
            cores = float(value)
        except OverflowError:  # an int beyond the float range
            cores = math.inf
    if not cores > 0 or cores > 1024:
        raise ValueError("cpu must be more than 0 and at most 1024 cores")
    return cores


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        str_strip_whitespace=False,
    )


def _check_name(value: str, what: str) -> str:
    if len(value) > NAME_MAX or not NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is invalid: use at most {NAME_MAX} lowercase letters, "
            "digits and '-', starting and ending with a letter or digit"
        )
    return value


# Kubernetes label syntax: keys are [prefix/]name, values are empty or a name.
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        prefix, slash, name = key.rpartition("/")
        if (
            len(name) > NAME_MAX
            or not _LABEL_NAME_RE.match(name)
            or (slash and (len(prefix) > 253 or not _LABEL_PREFIX_RE.match(prefix)))
        ):
            raise ValueError(
                f"label key {key!r} is invalid: use [prefix/]name where name has at most "
                f"{NAME_MAX} letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit, and prefix is a DNS subdomain"
            )
        if value and (len(value) > NAME_MAX or not _LABEL_NAME_RE.match(value)):
            raise ValueError(
                f"label value {value!r} (key {key!r}) is invalid: use at most {NAME_MAX} "
                "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
    return labels


class Metadata(_Model):
    name: str = Field(description="Workload name, a DNS-1123 label.")
    namespace: str = Field(default="default", description="Namespace, a DNS-1123 label.")
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "name")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return _check_name(v, "namespace")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class Port(_Model):
    name: str | None = None
    container_port: int = Field(ge=1, le=65535)
    protocol: Protocol = Protocol.TCP
    host_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description=(
            "Host port of replica 0; replica i listens on hostPort + i. "
            "Omitted: an ephemeral port chosen by the engine."
        ),
    )
    host_ip: str = Field(default="127.0.0.1", description="Address the port is published on.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v is None else _check_name(v, "port name")

    @field_validator("host_ip")
    @classmethod
    def _host_ip(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(
                f"hostIp {v!r} is not an IP address; expected e.g. 127.0.0.1, 0.0.0.0 or ::1"
            ) from None


class Resources(_Model):
    cpu: float | None = Field(default=None, description="Cores, e.g. 0.5 or '500m'.")
    memory: int | None = Field(default=None, description="Bytes, e.g. '64Mi'.")
    pids: int | None = Field(default=None, ge=1, description="Maximum number of processes.")

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: Any) -> Any:
        return None if v is None else parse_cpu(v)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if v is None:
            return None
        size = parse_bytes(v)
        if size < 4 * 1024 * 1024:
            raise ValueError("memory must be at least 4Mi (engines refuse less)")
        return size


class RestartPolicyName(StrEnum):
    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class Restart(_Model):
    policy: RestartPolicyName = RestartPolicyName.ALWAYS
    max_retries: int | None = Field(
        default=None, ge=0, description="on-failure only: give up after this many restarts."
    )
    initial_backoff_seconds: float = Field(default=1.0, ge=0, le=3600)
    max_backoff_seconds: float = Field(default=300.0, ge=0, le=86400)

    @model_validator(mode="after")
    def _consistent(self) -> Restart:
        if self.max_retries is not None and self.policy is not RestartPolicyName.ON_FAILURE:
            raise ValueError("maxRetries applies only to policy 'on-failure'")
        if self.max_backoff_seconds < self.initial_backoff_seconds:
            raise ValueError("maxBackoffSeconds must be >= initialBackoffSeconds")
        return self


class ExecAction(_Model):
    command: list[str] = Field(min_length=1)


class HttpAction(_Model):
    port: int = Field(ge=1, le=65535, description="Container port.")
    path: str = "/"
    scheme: Literal["http"] = "http"

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("path must start with '/'")
        return v


class TcpAction(_Model):
    port: int = Field(ge=1, le=65535, description="Container port.")


class Probe(_Model):
    exec: ExecAction | None = None
    http: HttpAction | None = None
    tcp: TcpAction | None = None
    initial_delay_seconds: float = Field(default=0, ge=0, le=3600)
    period_seconds: float = Field(default=10, gt=0, le=3600)
    timeout_seconds: float = Field(default=1, gt=0, le=600)
    failure_threshold: int = Field(default=3, ge=1)
    success_threshold: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _one_action(self) -> Probe:
        given = [n for n in ("exec", "http", "tcp") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "a probe needs exactly one of exec, http or tcp"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def port(self) -> int | None:
        if self.http is not None:
            return self.http.port
        if self.tcp is not None:
            return self.tcp.port
        return None


class Probes(_Model):
    liveness: Probe | None = None
    readiness: Probe | None = None


class VolumeType(StrEnum):
    TMPFS = "tmpfs"
    NAMED = "named"
    BIND = "bind"


class VolumeRetention(StrEnum):
    """What deleting the workload does to its named volumes (Compose and
    Docker keep them; so does portway unless told otherwise)."""

    KEEP = "keep"
    DELETE = "delete"


#: Volume fields added after workloads were stored: (name, alias, default as dumped)
_VOLUME_LATE_FIELDS = (
    ("claim", "claim", None),
    ("retention", "retention", "keep"),
    ("per_replica", "perReplica", False),
)


class Volume(_Model):
    name: str
    type: VolumeType
    mount_path: str
    source: str | None = Field(
        default=None,
        description="named: the engine volume name (default: <namespace>-<workload>-<name>); "
        "bind: an absolute host path.",
    )
    claim: str | None = Field(
        default=None,
        description="named: a Volume object (portway volume create) of the workload's "
        "namespace to mount instead of the workload's own volume.",
    )
    read_only: bool = False
    size_limit: int | None = Field(default=None, description="tmpfs only, bytes or e.g. '16Mi'.")
    retention: VolumeRetention = Field(
        default=VolumeRetention.KEEP,
        description="named: keep the volume when the workload is deleted, or delete it "
        "once the workload's replicas are gone.",
    )
    per_replica: bool = Field(
        default=False,
        description="named: replica index i gets its own volume <name>-<i>, kept across "
        "restarts, replacements and scale-down (StatefulSet volume claims).",
    )

    @field_validator("size_limit", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return None if v is None else parse_bytes(v)

    @model_serializer(mode="wrap")
    def _without_new_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Leave claim, retention and perReplica out while they are at their
        defaults: the template hash (a dump of the spec) of a workload written
        before they existed stays the same, so an upgrade replaces nothing."""
        data = handler(self)
        if isinstance(data, dict):
            for snake, camel, default in _VOLUME_LATE_FIELDS:
                for key in (snake, camel):
                    if key in data and data[key] == default:
                        del data[key]
        return data

    @field_validator("mount_path")
    @classmethod
    def _mount(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("mountPath must be an absolute path")
        return v

    @model_validator(mode="after")
    def _by_type(self) -> Volume:
        _check_name(self.name, "volume name")
        if self.type is VolumeType.BIND and not (self.source and self.source.startswith("/")):
            raise ValueError("a bind volume needs 'source', an absolute host path")
        if self.type is VolumeType.TMPFS and self.source is not None:
            raise ValueError("a tmpfs volume takes no 'source'")
        if self.size_limit is not None and self.type is not VolumeType.TMPFS:
            raise ValueError("sizeLimit applies only to tmpfs volumes")
        named_only = {
            "claim": self.claim is not None,
            "retention": self.retention is not VolumeRetention.KEEP,
            "perReplica": self.per_replica,
        }
        if self.type is not VolumeType.NAMED:
            misplaced = [field for field, used in named_only.items() if used]
            if misplaced:
                raise ValueError(f"{', '.join(misplaced)} applies only to named volumes")
        if self.claim is not None:
            _check_name(self.claim, "volume claim")
            if self.source is not None:
                raise ValueError(
                    "a named volume takes 'source' (an engine volume) or 'claim' "
                    "(a portway Volume object), not both"
                )
        if self.source is not None and self.retention is VolumeRetention.DELETE:
            raise ValueError(
                "retention: delete applies only to the workload's own volumes, "
                "not to an engine volume named by 'source'"
            )
        if self.claim is not None and self.retention is VolumeRetention.DELETE:
            raise ValueError(
                "retention: delete applies only to the workload's own volumes, "
                "not to a Volume object named by 'claim' (remove it with "
                "portway volume rm)"
            )
        return self


#: a secret's key names, as in Kubernetes Secrets (each may become a file name)
SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _file_mode(value: Any) -> Any:
    """0400 in YAML is already the integer 256; "0400" or "400" as text is octal."""
    if isinstance(value, str):
        text = value.strip()
        if not re.match(r"^0?o?[0-7]{1,4}$", text):
            raise ValueError(f"mode {value!r} is not an octal file mode such as 0400")
        return int(text.lstrip("0o") or "0", 8)
    return value


class SecretRef(_Model):
    """One value of a stored secret (``portway secret create``), delivered
    into each replica as a read-only file on tmpfs, and, only when ``env``
    names a variable, as an environment variable too (which shows in the
    engine's inspect output: see docs/secrets.md)."""

    secret: str = Field(description="Name of a secret in the workload's namespace.")
    key: str = Field(description="Which of the secret's keys.")
    mount_path: str | None = Field(
        default=None,
        description="Absolute path of the file in the replica, e.g. /run/secrets/db. "
        "Omit only together with env.",
    )
    mode: Annotated[
        int,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 0, "maximum": 0o777},
                    {"type": "string", "pattern": "^0?o?[0-7]{1,4}$"},
                ]
            }
        ),
    ] = Field(default=0o400, description="File mode, octal (default 0400: owner read only).")
    env: str | None = Field(
        default=None,
        description="Also deliver the value as this environment variable (explicit opt-in: "
        "environment variables show in inspect output and /proc).",
    )

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        return _check_name(v, "secret name")

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not SECRET_KEY_RE.match(v) or v in (".", ".."):
            raise ValueError(
                f"secret key {v!r} is invalid: use 1-253 letters, digits, '-', '_' or '.'"
            )
        return v

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_text(cls, v: Any) -> Any:
        return _file_mode(v)

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: int) -> int:
        if not 0 <= v <= 0o777:
            raise ValueError(f"mode {v:#o} is beyond 0777 (no setuid, setgid or sticky bits)")
        if not v & 0o444:
            raise ValueError(f"mode {v:#o} lets nobody read the file; use e.g. 0400")
        return v

    @field_validator("mount_path")
    @classmethod
    def _mount(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith("/") or v.endswith("/") or "\0" in v:
            raise ValueError(f"mountPath {v!r} must be an absolute file path, e.g. /run/secrets/db")
        parts = v.split("/")[1:]
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"mountPath {v!r} must be a plain path (no '.', '..' or '//')")
        if parts[0] in ("proc", "sys", "dev"):
            raise ValueError(f"mountPath {v!r} is inside /{parts[0]}, which the runtime owns")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME_RE.match(v):
            raise ValueError(f"environment variable name {v!r} is invalid")
        return v

    @model_validator(mode="after")
    def _delivered(self) -> SecretRef:
        if self.mount_path is None and self.env is None:
            raise ValueError(
                f"secret {self.secret!r} key {self.key!r}: give mountPath (a file on tmpfs) "
                "or env (an environment variable), or both"
            )
        return self


class Capabilities(_Model):
    add: list[str] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)

    @field_validator("add", "drop")
    @classmethod
    def _caps(cls, v: list[str]) -> list[str]:
        out = []
        for cap in v:
            name = cap.upper().removeprefix("CAP_")
            if not re.match(r"^[A-Z_]+$", name):
                raise ValueError(f"{cap!r} is not a Linux capability name")
            out.append(name)
        return out


#: sysctls of the IPC namespace (besides fs.mqueue.*), as runc and Docker list them
IPC_SYSCTLS = (
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
)


def is_network_sysctl(key: str) -> bool:
    return key.startswith("net.")


def is_ipc_sysctl(key: str) -> bool:
    return key in IPC_SYSCTLS or key.startswith("fs.mqueue.")


class SeccompProfile(StrEnum):
    RUNTIME_DEFAULT = "RuntimeDefault"  # the engine's default filter
    UNCONFINED = "Unconfined"  # no filter at all


class Security(_Model):
    """The replica's security context. Everything that weakens isolation
    (privileged, host namespaces, unconfined seccomp, sysctls, added
    capabilities) is what namespace policy (Pod Security levels) judges."""

    user: str | None = Field(default=None, description="uid, uid:gid or a user name.")
    read_only_root_filesystem: bool = False
    capabilities: Capabilities = Field(default_factory=Capabilities)
    no_new_privileges: bool = False
    run_as_non_root: bool = Field(
        default=False,
        description="Refuse to start unless the replica runs as a uid other than 0.",
    )
    privileged: bool = Field(
        default=False, description="Every capability, every device, no confinement."
    )
    host_network: bool = Field(default=False, description="Share the host's network namespace.")
    host_pid: bool = Field(default=False, description="Share the host's PID namespace.")
    host_ipc: bool = Field(default=False, description="Share the host's IPC namespace.")
    seccomp_profile: SeccompProfile = SeccompProfile.RUNTIME_DEFAULT
    sysctls: dict[str, str] = Field(
        default_factory=dict, description="Namespaced kernel parameters, e.g. net.ipv4.ip_forward."
    )

    @field_validator("sysctls")
    @classmethod
    def _sysctls(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.match(r"^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$", key):
                raise ValueError(f"{key!r} is not a sysctl name (e.g. net.ipv4.ip_forward)")
            if not (is_network_sysctl(key) or is_ipc_sysctl(key)):
                # the runtimes (runc, Docker) refuse the rest: they are host-wide
                raise ValueError(
                    f"{key!r} is not a namespaced sysctl: only net.*, fs.mqueue.* and "
                    f"{', '.join(IPC_SYSCTLS)} can be set for one replica"
                )
        return v


class Trust(StrEnum):
    """What a workload says of itself instead of naming a tier: untrusted work
    needs at least the sandboxed tier."""

    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"


class Isolation(StrEnum):
    STANDARD = "standard"
    SANDBOXED = "sandboxed"
    MICROVM = "microvm"
    WASM = "wasm"


class Portability(StrEnum):
    STRICT = "strict"  # refuse a target that would drop any field
    LENIENT = "lenient"  # deploy anyway; every degradation is recorded on the workload


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"


class TolerationOperator(StrEnum):
    EQUAL = "Equal"
    EXISTS = "Exists"


class Toleration(_Model):
    """Lets replicas go to targets with a matching taint (Kubernetes semantics)."""

    key: str = Field(default="", description="Taint key; empty with Exists tolerates every taint.")
    operator: TolerationOperator = TolerationOperator.EQUAL
    value: str = ""
    effect: TaintEffect | None = Field(default=None, description="Empty: every effect.")

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator is TolerationOperator.EXISTS and self.value:
            raise ValueError("operator Exists takes no value")
        if not self.key and self.operator is not TolerationOperator.EXISTS:
            raise ValueError("an empty key needs operator Exists")
        return self


class WhenUnsatisfiable(StrEnum):
    DO_NOT_SCHEDULE = "DoNotSchedule"
    SCHEDULE_ANYWAY = "ScheduleAnyway"


class Spread(_Model):
    """Spread replicas over the values of a target label (``zone``, ``region``,
    ``cloud``, or ``portway.dev/target`` for one domain per target)."""

    topology_key: str = Field(description="Target label whose values are the domains.")
    max_skew: int = Field(default=1, ge=1, le=10000)
    when_unsatisfiable: WhenUnsatisfiable = WhenUnsatisfiable.DO_NOT_SCHEDULE


class AffinityTerm(_Model):
    """Replicas of other workloads (same namespace) this one wants near, or away from."""

    workload: str | None = Field(default=None, description="A workload's name.")
    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Or: labels of the workloads to match."
    )
    topology_key: str = Field(
        default="portway.dev/target",
        description="Target label that defines 'near'; default: the same target.",
    )
    weight: int = Field(default=100, ge=1, le=100, description="For preferred terms only.")

    @model_validator(mode="after")
    def _names_something(self) -> AffinityTerm:
        if not self.workload and not self.match_labels:
            raise ValueError("give workload or matchLabels")
        return self


class Affinity(_Model):
    required: list[AffinityTerm] = Field(default_factory=list)
    preferred: list[AffinityTerm] = Field(default_factory=list)


class PlacementStrategy(StrEnum):
    SPREAD = "spread"
    BINPACK = "binpack"


class PreemptionPolicy(StrEnum):
    PREEMPT_LOWER_PRIORITY = "PreemptLowerPriority"
    NEVER = "Never"


class Placement(_Model):
    """Where replicas may run and how they are spread. Changing it never
    restarts replicas that still fit; the scheduler only places what moves."""

    target_selector: dict[str, str] = Field(
        default_factory=dict, description="Labels a target must carry."
    )
    targets: list[str] = Field(
        default_factory=list, description="If set, only these targets (by name) are eligible."
    )
    tolerations: list[Toleration] = Field(default_factory=list)
    spread: list[Spread] = Field(default_factory=list)
    affinity: Affinity = Field(default_factory=Affinity)
    anti_affinity: Affinity = Field(default_factory=Affinity)
    strategy: PlacementStrategy = Field(
        default=PlacementStrategy.SPREAD,
        description="spread: prefer the least-allocated target; binpack: the most allocated.",
    )
    priority: int = Field(
        default=50,
        ge=0,
        le=1000,
        description="Higher runs first; when capacity is short, a workload may evict "
        "replicas of lower priority (Nomad-style, default 50).",
    )
    preemption_policy: PreemptionPolicy = PreemptionPolicy.PREEMPT_LOWER_PRIORITY


class IngressMode(StrEnum):
    HTTP = "http"
    TCP = "tcp"


class Ingress(_Model):
    """Publish a named port of the workload's service through portway's
    load balancer (HAProxy), balanced over every ready replica on every
    target. Several workloads may share one HTTP listener, routed by host
    and path prefix."""

    port: str = Field(description="A named port of this workload (ports[].name).")
    listen: int = Field(ge=1, le=65535, description="Port the load balancer listens on.")
    host_ip: str = Field(default="127.0.0.1", description="Address it listens on.")
    mode: IngressMode = IngressMode.HTTP
    host: str | None = Field(default=None, description="HTTP only: route by Host header.")
    path_prefix: str | None = Field(default=None, description="HTTP only: route by path prefix.")
    drain_seconds: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="A replica being replaced or removed gets no new connections for this long "
        "before it is stopped; open ones finish.",
    )

    @model_validator(mode="after")
    def _routing_is_http(self) -> Ingress:
        if self.mode is IngressMode.TCP and (self.host or self.path_prefix):
            raise ValueError("host and pathPrefix route HTTP requests; mode tcp takes neither")
        if self.path_prefix is not None and not self.path_prefix.startswith("/"):
            raise ValueError(f"pathPrefix {self.path_prefix!r} must start with '/'")
        if self.host is not None and not re.match(r"^[A-Za-z0-9.-]+$", self.host):
            raise ValueError(f"host {self.host!r}: expected a host name such as web.example")
        return self

    @property
    def listen_address(self) -> str:
        return f"{self.host_ip}:{self.listen}"


class WorkloadSpec(_Model):
    image: str
    command: list[str] | None = Field(default=None, description="Replaces the image entrypoint.")
    args: list[str] | None = Field(default=None, description="Replaces the image CMD.")
    env: dict[str, str] = Field(default_factory=dict)
    ports: list[Port] = Field(default_factory=list)
    replicas: int = Field(default=1, ge=0, le=10000)
    resources: Resources = Field(default_factory=Resources)
    restart: Restart = Field(default_factory=Restart)
    probes: Probes = Field(default_factory=Probes)
    volumes: list[Volume] = Field(default_factory=list)
    secrets: list[SecretRef] = Field(
        default_factory=list,
        description="Secret values delivered as read-only files on tmpfs (see docs/secrets.md).",
    )
    security: Security = Field(default_factory=Security)
    networks: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="Named networks of the namespace the replicas join (DNS-1123 labels); "
        "replicas reach each other only over a network they share. Empty: the namespace's "
        "own network, which every replica of the namespace joins.",
    )
    isolation: Isolation = Field(
        default=Isolation.STANDARD,
        description="Isolation tier. When not given, the namespace's default tier applies "
        "(standard unless the namespace policy says otherwise).",
    )
    trust: Trust | None = Field(
        default=None, description="untrusted: run in the sandboxed tier or stronger."
    )
    placement: Placement = Field(default_factory=Placement)
    ingress: list[Ingress] = Field(
        default_factory=list,
        description="Named ports published through portway's load balancer (HAProxy).",
    )
    portability: Portability = Field(
        default=Portability.STRICT,
        description="strict: refuse a target that would drop a field; lenient: deploy and "
        "record each degradation (see `portway plan`).",
    )
    extensions: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Backend-specific settings, e.g. extensions.docker; listed by the planner.",
    )

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if v.startswith(FILE_IMAGE_PREFIX):  # a wasm module on the host: see _cross_checks
            path = v.removeprefix(FILE_IMAGE_PREFIX)
            if not path.startswith("/") or path == "/" or "\0" in path:
                raise ValueError(
                    f"{v!r}: a file image needs an absolute path, e.g. file:///opt/app/app.wasm"
                )
            return v
        if len(v) > 255 or not IMAGE_RE.match(v):
            raise ValueError(
                f"{v!r} is not a valid image reference; expected e.g. "
                "'portway/busybox:latest' or 'registry:5000/team/app@sha256:<digest>'"
            )
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", key):
                raise ValueError(f"environment variable name {key!r} is invalid")
        return v

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for name in v:
            if len(name) > 40 or not NAME_RE.match(name):
                raise ValueError(
                    f"network {name!r}: expected a DNS-1123 label of at most 40 characters "
                    "(lower case letters, digits and '-'), e.g. 'backend'"
                )
        dupes = sorted({n for n in v if v.count(n) > 1})
        if dupes:
            raise ValueError(f"network {dupes[0]!r} is listed twice")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> WorkloadSpec:
        if self.image.startswith(FILE_IMAGE_PREFIX) and self.isolation is not Isolation.WASM:
            raise ValueError(
                f"image {self.image!r}: a file:// image (a module on the host) needs "
                f"isolation: wasm; isolation {self.isolation.value!r} runs container images "
                "such as 'portway/busybox:latest'"
            )
        seen_container: set[tuple[int, str]] = set()
        port_names = [p.name for p in self.ports if p.name is not None]
        dupe_names = sorted({n for n in port_names if port_names.count(n) > 1})
        if dupe_names:
            raise ValueError(f"duplicate port name(s): {', '.join(dupe_names)}")
        for port in self.ports:
            key = (port.container_port, str(port.protocol))
            if key in seen_container:
                raise ValueError(
                    f"duplicate port: containerPort {port.container_port}/{port.protocol} "
                    "is listed twice"
                )
            seen_container.add(key)
        ranges: list[tuple[str, str, int, int]] = []
        for port in self.ports:
            if port.host_port is None:
                continue
            last = port.host_port + max(self.replicas, 1) - 1
            if last > 65535:
                raise ValueError(
                    f"hostPort {port.host_port} with {self.replicas} replicas needs ports up to "
                    f"{last}, beyond 65535"
                )
            for ip, proto, lo, hi in ranges:
                same_ip = ip == port.host_ip or "0.0.0.0" in (ip, port.host_ip)  # noqa: S104
                if same_ip and proto == port.protocol and lo <= last and port.host_port <= hi:
                    raise ValueError(
                        f"duplicate port: hostPort range {port.host_port}-{last}/{port.protocol} "
                        f"overlaps {lo}-{hi}/{proto}"
                    )
            ranges.append((port.host_ip, str(port.protocol), port.host_port, last))
        for i, rule in enumerate(self.ingress):
            if rule.port not in port_names:
                known = ", ".join(port_names) or "none: give a port a name"
                raise ValueError(
                    f"ingress[{i}].port {rule.port!r} is not a named port of this workload "
                    f"(named ports: {known})"
                )
            named = next(p for p in self.ports if p.name == rule.port)
            if named.protocol is not Protocol.TCP:
                raise ValueError(
                    f"ingress[{i}]: port {rule.port!r} is UDP; the ingress is TCP/HTTP"
                )
        names = [v.name for v in self.volumes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate volume name(s): {', '.join(dupes)}")
        paths = [v.mount_path for v in self.volumes]
        dupe_paths = sorted({p for p in paths if paths.count(p) > 1})
        if dupe_paths:
            raise ValueError(f"two volumes mount at {', '.join(dupe_paths)}")
        self._check_secrets()
        port_numbers = {p.container_port for p in self.ports if p.protocol is Protocol.TCP}
        for kind in ("liveness", "readiness"):
            probe: Probe | None = getattr(self.probes, kind)
            if probe is None:
                continue
            probe_port = probe.port()
            if probe_port is not None and probe_port not in port_numbers:
                raise ValueError(
                    f"the {kind} probe uses port {probe_port}, which is not in ports "
                    f"(declare it as a tcp containerPort so it can be published on 127.0.0.1)"
                )
        self._check_host_namespaces()
        return self

    def _check_secrets(self) -> None:
        volume_paths = {v.mount_path for v in self.volumes}
        seen_paths: set[str] = set()
        seen_env: set[str] = set()
        for i, ref in enumerate(self.secrets):
            path = ref.mount_path
            if path is not None:
                if path in seen_paths or path in volume_paths:
                    raise ValueError(f"secrets[{i}].mountPath {path!r} is already mounted")
                seen_paths.add(path)
            if ref.env is not None:
                if ref.env in seen_env or ref.env in self.env:
                    raise ValueError(f"secrets[{i}].env {ref.env!r} is already set")
                seen_env.add(ref.env)

    def _check_host_namespaces(self) -> None:
        security = self.security
        # On the host's network a replica listens on the host's ports itself:
        # there is nothing to publish, hostPort + index cannot be honoured, and
        # HTTP/TCP probes (which use the published port) have nothing to reach.
        if security.host_network and self.networks:
            raise ValueError(
                "security.hostNetwork: the replica shares the host's network and joins no "
                "other; remove networks or drop hostNetwork"
            )
        if security.host_network and self.ports:
            raise ValueError(
                "security.hostNetwork: the replica shares the host's network, so its ports "
                "cannot be published (it listens on the host's own ports); remove ports "
                "(and use exec probes) or drop hostNetwork"
            )
        # the runtimes refuse these too: in the host's namespace they would
        # change the host's own settings
        for shared, kind, belongs in (
            (security.host_network, "hostNetwork", is_network_sysctl),
            (security.host_ipc, "hostIpc", is_ipc_sysctl),
        ):
            host_wide = sorted(k for k in security.sysctls if belongs(k))
            if shared and host_wide:
                raise ValueError(
                    f"security.sysctls: {host_wide[0]} would change the host's own setting "
                    f"with {kind}; remove it or drop {kind}"
                )

    def template_hash(self) -> str:
        """Digest of everything that defines a replica: all but replicas, placement,
        ingress and portability.

        A change here starts a rolling replacement; scaling does not.
        """
        data = self.model_dump(
            mode="json", exclude={"replicas", "placement", "ingress", "portability"}
        )
        if not data["networks"]:
            # a field added later: its default must not change the hash of
            # workloads stored before it (that would roll every one of them)
            del data["networks"]
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class Workload(_Model):
    api_version: Literal["portway.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["Workload"]
    metadata: Metadata
    spec: WorkloadSpec

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"


WorkloadList = Annotated[list[Workload], Field(min_length=1)]
