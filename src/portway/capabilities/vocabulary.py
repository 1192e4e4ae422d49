"""The shared vocabulary of features, and which spec fields use which.

Every field of the workload spec that a backend might not honor maps to a
named ``Feature``. Drivers declare the features they implement; the
conformance suite proves (or disproves) each declaration against the real
engine; the planner combines both into a verdict per field and target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from portway.spec.model import (
    Isolation,
    Protocol,
    RestartPolicyName,
    SeccompProfile,
    VolumeType,
    WorkloadSpec,
)


class Feature(StrEnum):
    COMMAND = "command"
    ARGS = "args"
    ENV = "env"
    PORTS_TCP = "ports.tcp"
    PORTS_UDP = "ports.udp"
    PORTS_HOST_PORT = "ports.host_port"
    SERVICES_DNS = "services.dns"
    SERVICES_ENV = "services.env"
    NETWORKS_NAMED = "networks.named"
    RESOURCES_CPU = "resources.cpu"
    RESOURCES_MEMORY = "resources.memory"
    RESOURCES_PIDS = "resources.pids"
    RESTART_ALWAYS = "restart.always"
    RESTART_ON_FAILURE = "restart.on_failure"
    RESTART_NEVER = "restart.never"
    PROBES_EXEC = "probes.exec"
    PROBES_HTTP = "probes.http"
    PROBES_TCP = "probes.tcp"
    VOLUMES_TMPFS = "volumes.tmpfs"
    VOLUMES_TMPFS_SIZE = "volumes.tmpfs_size"
    VOLUMES_NAMED = "volumes.named"
    VOLUMES_BIND = "volumes.bind"
    VOLUMES_READ_ONLY = "volumes.read_only"
    SECRETS_FILES = "secrets.files"
    VOLUMES_PER_REPLICA = "volumes.per_replica"
    VOLUMES_SNAPSHOTS = "volumes.snapshots"
    VOLUMES_SIZE_LIMIT = "volumes.size_limit"
    SECURITY_USER = "security.user"
    SECURITY_READ_ONLY_ROOTFS = "security.read_only_rootfs"
    SECURITY_CAP_ADD = "security.cap_add"
    SECURITY_CAP_DROP = "security.cap_drop"
    SECURITY_NO_NEW_PRIVILEGES = "security.no_new_privileges"
    SECURITY_RUN_AS_NON_ROOT = "security.run_as_non_root"
    SECURITY_PRIVILEGED = "security.privileged"
    SECURITY_HOST_NETWORK = "security.host_network"
    SECURITY_HOST_PID = "security.host_pid"
    SECURITY_HOST_IPC = "security.host_ipc"
    SECURITY_SECCOMP_UNCONFINED = "security.seccomp_unconfined"
    SECURITY_SYSCTLS = "security.sysctls"
    ISOLATION_STANDARD = "isolation.standard"
    ISOLATION_SANDBOXED = "isolation.sandboxed"
    ISOLATION_MICROVM = "isolation.microvm"
    ISOLATION_WASM = "isolation.wasm"
    EXEC = "exec"
    LOGS = "logs"
    LOGS_FOLLOW = "logs.follow"
    STATS = "stats"
    OOM_REPORTED = "resources.oom_reported"


class Provider(StrEnum):
    """Who makes a feature work."""

    DRIVER = "driver"  # the engine does it; the driver passes it through
    CONTROLLER = "controller"  # portway's controller does it the same way everywhere


class WhenMissing(StrEnum):
    """What happens to a field whose feature a target lacks."""

    DROP = "drop"  # the replica can run without it (degraded)
    REJECT = "reject"  # running without it would be wrong: refuse


@dataclass(frozen=True)
class FeatureInfo:
    provider: Provider
    when_missing: WhenMissing
    summary: str
    #: for controller-provided features: driver features it relies on
    needs: tuple[Feature, ...] = ()


_D, _C = Provider.DRIVER, Provider.CONTROLLER
_DROP, _REJECT = WhenMissing.DROP, WhenMissing.REJECT

FEATURES: dict[Feature, FeatureInfo] = {
    Feature.COMMAND: FeatureInfo(_D, _REJECT, "replace the image entrypoint"),
    Feature.ARGS: FeatureInfo(_D, _REJECT, "replace the image command"),
    Feature.ENV: FeatureInfo(_D, _REJECT, "set environment variables"),
    Feature.PORTS_TCP: FeatureInfo(_D, _REJECT, "publish a TCP port on the host"),
    Feature.PORTS_UDP: FeatureInfo(_D, _REJECT, "publish a UDP port on the host"),
    Feature.PORTS_HOST_PORT: FeatureInfo(_D, _REJECT, "publish on a fixed host port (+ index)"),
    # A workload with a named port is a service, NAME.NAMESPACE. Without DNS
    # it still runs: only the name does not resolve for the others there.
    Feature.SERVICES_DNS: FeatureInfo(
        _D, _DROP, "resolve a service's name in its namespace to its replicas on the engine"
    ),
    Feature.SERVICES_ENV: FeatureInfo(
        _C,
        _DROP,
        "tell replicas the services of their namespace in NAME_SERVICE_HOST/_PORT variables",
        needs=(Feature.ENV,),
    ),
    # Without it the replica still runs, on its namespace's network: it reaches
    # (and is reached by) every replica there, which the verdict says.
    Feature.NETWORKS_NAMED: FeatureInfo(
        _D,
        _DROP,
        "join named networks of the namespace; no traffic between replicas sharing none",
    ),
    Feature.RESOURCES_CPU: FeatureInfo(_D, _DROP, "limit CPU"),
    Feature.RESOURCES_MEMORY: FeatureInfo(_D, _DROP, "limit memory"),
    Feature.RESOURCES_PIDS: FeatureInfo(_D, _DROP, "limit the number of processes"),
    Feature.RESTART_ALWAYS: FeatureInfo(_C, _REJECT, "restart on any exit, with backoff"),
    Feature.RESTART_ON_FAILURE: FeatureInfo(
        _C, _REJECT, "restart on a non-zero exit, with backoff and a retry limit"
    ),
    Feature.RESTART_NEVER: FeatureInfo(_C, _REJECT, "leave an exited replica exited"),
    Feature.PROBES_EXEC: FeatureInfo(
        _C, _REJECT, "run a command in the replica as a probe", needs=(Feature.EXEC,)
    ),
    Feature.PROBES_HTTP: FeatureInfo(
        _C, _REJECT, "HTTP GET through the published port", needs=(Feature.PORTS_TCP,)
    ),
    Feature.PROBES_TCP: FeatureInfo(
        _C, _REJECT, "TCP connect through the published port", needs=(Feature.PORTS_TCP,)
    ),
    Feature.VOLUMES_TMPFS: FeatureInfo(_D, _REJECT, "mount a tmpfs"),
    Feature.VOLUMES_TMPFS_SIZE: FeatureInfo(_D, _DROP, "limit a tmpfs's size"),
    Feature.VOLUMES_NAMED: FeatureInfo(_D, _REJECT, "mount a named volume that outlives replicas"),
    Feature.VOLUMES_BIND: FeatureInfo(_D, _REJECT, "mount a host directory"),
    Feature.VOLUMES_READ_ONLY: FeatureInfo(_D, _DROP, "mount a volume read-only"),
    # a replica that expects its credentials in a file cannot run without them
    Feature.SECRETS_FILES: FeatureInfo(
        _D, _REJECT, "deliver a secret as a read-only file on tmpfs (host path bind-mounted)"
    ),
    # Sharing one volume between replicas that expect their own would corrupt data.
    Feature.VOLUMES_PER_REPLICA: FeatureInfo(
        _D,
        _REJECT,
        "give each replica index its own named volume, kept across replacement and scale-down",
        needs=(Feature.VOLUMES_NAMED,),
    ),
    Feature.VOLUMES_SNAPSHOTS: FeatureInfo(
        _D,
        _REJECT,
        "copy a named volume to a checksummed archive (writers paused) and restore it",
        needs=(Feature.VOLUMES_NAMED,),
    ),
    Feature.VOLUMES_SIZE_LIMIT: FeatureInfo(
        _D, _REJECT, "limit a named volume's size", needs=(Feature.VOLUMES_NAMED,)
    ),
    Feature.SECURITY_USER: FeatureInfo(_D, _DROP, "run as a given user"),
    Feature.SECURITY_READ_ONLY_ROOTFS: FeatureInfo(_D, _DROP, "make the root filesystem read-only"),
    Feature.SECURITY_CAP_ADD: FeatureInfo(_D, _DROP, "add Linux capabilities"),
    Feature.SECURITY_CAP_DROP: FeatureInfo(_D, _DROP, "drop Linux capabilities"),
    Feature.SECURITY_NO_NEW_PRIVILEGES: FeatureInfo(_D, _DROP, "forbid privilege escalation"),
    Feature.SECURITY_RUN_AS_NON_ROOT: FeatureInfo(
        _D, _REJECT, "refuse to start a replica that would run as root"
    ),
    Feature.SECURITY_PRIVILEGED: FeatureInfo(_D, _REJECT, "run a privileged replica"),
    Feature.SECURITY_HOST_NETWORK: FeatureInfo(_D, _REJECT, "share the host's network namespace"),
    Feature.SECURITY_HOST_PID: FeatureInfo(_D, _REJECT, "share the host's PID namespace"),
    Feature.SECURITY_HOST_IPC: FeatureInfo(_D, _REJECT, "share the host's IPC namespace"),
    Feature.SECURITY_SECCOMP_UNCONFINED: FeatureInfo(_D, _REJECT, "run without a seccomp filter"),
    Feature.SECURITY_SYSCTLS: FeatureInfo(_D, _REJECT, "set namespaced sysctls"),
    Feature.ISOLATION_STANDARD: FeatureInfo(_D, _REJECT, "run with the standard runtime"),
    Feature.ISOLATION_SANDBOXED: FeatureInfo(_D, _REJECT, "run in a sandbox (gVisor)"),
    Feature.ISOLATION_MICROVM: FeatureInfo(_D, _REJECT, "run in a micro-VM"),
    Feature.ISOLATION_WASM: FeatureInfo(_D, _REJECT, "run a WebAssembly module"),
    Feature.EXEC: FeatureInfo(_D, _DROP, "run commands in a replica (portway exec)"),
    Feature.LOGS: FeatureInfo(_D, _DROP, "read a replica's output (portway logs)"),
    Feature.LOGS_FOLLOW: FeatureInfo(_D, _DROP, "stream a replica's output (logs -f)"),
    Feature.STATS: FeatureInfo(_D, _DROP, "report CPU and memory use"),
    Feature.OOM_REPORTED: FeatureInfo(_D, _DROP, "report an out-of-memory kill as OOMKilled"),
}


#: security settings that weaken isolation; a driver declares each only once
#: it implements it (namespace policy decides whether a workload may ask)
HOST_ACCESS_FEATURES: frozenset[Feature] = frozenset(
    {
        Feature.SECURITY_RUN_AS_NON_ROOT,
        Feature.SECURITY_PRIVILEGED,
        Feature.SECURITY_HOST_NETWORK,
        Feature.SECURITY_HOST_PID,
        Feature.SECURITY_HOST_IPC,
        Feature.SECURITY_SECCOMP_UNCONFINED,
        Feature.SECURITY_SYSCTLS,
    }
)


@dataclass(frozen=True)
class Use:
    """One place in a spec that needs one feature."""

    path: str  # camelCase field path, e.g. spec.ports[0].protocol
    feature: Feature


_ISOLATION = {
    Isolation.STANDARD: Feature.ISOLATION_STANDARD,
    Isolation.SANDBOXED: Feature.ISOLATION_SANDBOXED,
    Isolation.MICROVM: Feature.ISOLATION_MICROVM,
    Isolation.WASM: Feature.ISOLATION_WASM,
}
#: each isolation tier (by name) -> the feature a target offering it declares
TIER_FEATURES: Mapping[str, Feature] = {tier.value: f for tier, f in _ISOLATION.items()}
#: every isolation feature
ISOLATION_FEATURES: frozenset[Feature] = frozenset(_ISOLATION.values())
_RESTART = {
    RestartPolicyName.ALWAYS: Feature.RESTART_ALWAYS,
    RestartPolicyName.ON_FAILURE: Feature.RESTART_ON_FAILURE,
    RestartPolicyName.NEVER: Feature.RESTART_NEVER,
}
_VOLUME = {
    VolumeType.TMPFS: Feature.VOLUMES_TMPFS,
    VolumeType.NAMED: Feature.VOLUMES_NAMED,
    VolumeType.BIND: Feature.VOLUMES_BIND,
}


def uses(spec: WorkloadSpec) -> list[Use]:
    """Every feature the spec relies on, with the field that asks for it.

    Fields every backend must take (image, replicas, labels) are not listed:
    they are what a workload is, not a feature a backend may lack.
    """
    found: list[Use] = []
    add = found.append
    if spec.command is not None:
        add(Use("spec.command", Feature.COMMAND))
    if spec.args is not None:
        add(Use("spec.args", Feature.ARGS))
    if spec.env:
        add(Use("spec.env", Feature.ENV))
    for i, port in enumerate(spec.ports):
        proto = Feature.PORTS_UDP if port.protocol is Protocol.UDP else Feature.PORTS_TCP
        add(Use(f"spec.ports[{i}]", proto))
        if port.host_port is not None:
            add(Use(f"spec.ports[{i}].hostPort", Feature.PORTS_HOST_PORT))
    # a named port makes the workload a service: judged once, at its first name
    named = next((i for i, port in enumerate(spec.ports) if port.name is not None), None)
    if named is not None:
        add(Use(f"spec.ports[{named}].name", Feature.SERVICES_DNS))
    if spec.networks:
        add(Use("spec.networks", Feature.NETWORKS_NAMED))
    resources = spec.resources
    if resources.cpu is not None:
        add(Use("spec.resources.cpu", Feature.RESOURCES_CPU))
    if resources.memory is not None:
        add(Use("spec.resources.memory", Feature.RESOURCES_MEMORY))
    if resources.pids is not None:
        add(Use("spec.resources.pids", Feature.RESOURCES_PIDS))
    add(Use("spec.restart.policy", _RESTART[spec.restart.policy]))
    for kind in ("liveness", "readiness"):
        probe = getattr(spec.probes, kind)
        if probe is None:
            continue
        if probe.exec is not None:
            add(Use(f"spec.probes.{kind}.exec", Feature.PROBES_EXEC))
        elif probe.http is not None:
            add(Use(f"spec.probes.{kind}.http", Feature.PROBES_HTTP))
        else:
            add(Use(f"spec.probes.{kind}.tcp", Feature.PROBES_TCP))
    for i, volume in enumerate(spec.volumes):
        add(Use(f"spec.volumes[{i}]", _VOLUME[volume.type]))
        if volume.read_only:
            add(Use(f"spec.volumes[{i}].readOnly", Feature.VOLUMES_READ_ONLY))
        if volume.size_limit is not None:
            add(Use(f"spec.volumes[{i}].sizeLimit", Feature.VOLUMES_TMPFS_SIZE))
        if volume.per_replica:
            add(Use(f"spec.volumes[{i}].perReplica", Feature.VOLUMES_PER_REPLICA))
    for i, ref in enumerate(spec.secrets):
        if ref.mount_path is not None:
            add(Use(f"spec.secrets[{i}].mountPath", Feature.SECRETS_FILES))
        if ref.env is not None:
            add(Use(f"spec.secrets[{i}].env", Feature.ENV))
    security = spec.security
    if security.user is not None:
        add(Use("spec.security.user", Feature.SECURITY_USER))
    if security.read_only_root_filesystem:
        add(Use("spec.security.readOnlyRootFilesystem", Feature.SECURITY_READ_ONLY_ROOTFS))
    if security.capabilities.add:
        add(Use("spec.security.capabilities.add", Feature.SECURITY_CAP_ADD))
    if security.capabilities.drop:
        add(Use("spec.security.capabilities.drop", Feature.SECURITY_CAP_DROP))
    if security.no_new_privileges:
        add(Use("spec.security.noNewPrivileges", Feature.SECURITY_NO_NEW_PRIVILEGES))
    if security.run_as_non_root:
        add(Use("spec.security.runAsNonRoot", Feature.SECURITY_RUN_AS_NON_ROOT))
    if security.privileged:
        add(Use("spec.security.privileged", Feature.SECURITY_PRIVILEGED))
    if security.host_network:
        add(Use("spec.security.hostNetwork", Feature.SECURITY_HOST_NETWORK))
    if security.host_pid:
        add(Use("spec.security.hostPid", Feature.SECURITY_HOST_PID))
    if security.host_ipc:
        add(Use("spec.security.hostIpc", Feature.SECURITY_HOST_IPC))
    if security.seccomp_profile is SeccompProfile.UNCONFINED:
        add(Use("spec.security.seccompProfile", Feature.SECURITY_SECCOMP_UNCONFINED))
    if security.sysctls:
        add(Use("spec.security.sysctls", Feature.SECURITY_SYSCTLS))
    add(Use("spec.isolation", _ISOLATION[spec.isolation]))
    return found
