"""Kubernetes' Pod Security Standards, mapped onto portway's spec.

The checks and allowed values follow the Pod Security Standards page
(kubernetes.io/docs/concepts/security/pod-security-standards, as of
Kubernetes 1.29). Where portway's model differs from a Pod's:

- a bind volume is portway's hostPath volume;
- ``noNewPrivileges: true`` is ``allowPrivilegeEscalation: false``;
- ``seccompProfile`` defaults to RuntimeDefault (the engine's filter) rather
  than being unset, so restricted accepts the default;
- host ports are judged against the namespace's allowed ranges
  (Kubernetes lets the admission policy keep a known list).

Every check returns all its violations; nothing stops at the first.
"""

from __future__ import annotations

from collections.abc import Sequence

from portway.spec.loader import format_path
from portway.spec.model import SeccompProfile, VolumeType, WorkloadSpec
from portway.spec.namespace import PodSecurityLevel

from .violations import Violation

#: Capabilities baseline lets a workload add (Docker's default set, less NET_RAW).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
#: The only capability restricted lets a workload add back after dropping ALL.
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})

#: Sysctls baseline allows: namespaced in the container and isolated from
#: other workloads on the host (the "safe" set of the Pod Security Standards).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)

#: Volume types restricted allows: ephemeral and engine-managed storage.
#: (secret and config volumes join when the model has them.)
RESTRICTED_VOLUME_TYPES = frozenset({VolumeType.TMPFS, VolumeType.NAMED})

#: Where container engines keep their API sockets. Whoever can talk to one can
#: start a privileged container, i.e. owns the host.
ENGINE_SOCKET_PATHS = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd",
    "/var/run/containerd",
    "/run/podman",
    "/var/run/podman",
    "/run/crio",
    "/var/run/crio",
    "/var/run/cri-dockerd.sock",
    "/run/buildkit",
)
_SOCKET_NAMES = ("docker.sock", "podman.sock", "containerd.sock", "crio.sock")


def _path(*parts: str | int) -> str:
    return format_path(parts)


def mounts_engine_socket(source: str) -> bool:
    """Whether a host path is, holds or lies inside an engine's API socket
    (``/var/run`` holds docker.sock just as much as the socket itself)."""
    clean = "/" + source.strip("/")
    if clean.rsplit("/", 1)[-1] in _SOCKET_NAMES:
        return True
    if clean.startswith("/run/user/") and "/podman" in clean:  # rootless Podman
        return True
    for socket in ENGINE_SOCKET_PATHS:
        if clean == socket or clean.startswith(socket + "/"):
            return True
        if clean == "/" or socket.startswith(clean + "/"):
            return True
    return False


def check_engine_socket(spec: WorkloadSpec, level: PodSecurityLevel) -> list[Violation]:
    """Refused at every level but privileged, under its own rule name."""
    if level is PodSecurityLevel.PRIVILEGED:
        return []
    return [
        Violation(
            _path("spec", "volumes", i, "source"),
            "engine-socket",
            f"bind volume {volume.name!r} mounts {volume.source}, which exposes a container "
            "engine's API socket (whoever holds it controls the host); only a privileged "
            "namespace may do that",
        )
        for i, volume in enumerate(spec.volumes)
        if volume.type is VolumeType.BIND and mounts_engine_socket(volume.source or "")
    ]


def _baseline(spec: WorkloadSpec, host_ports: Sequence[tuple[int, int]]) -> list[Violation]:
    found: list[Violation] = []
    sec = spec.security
    if sec.privileged:
        found.append(
            Violation(
                _path("spec", "security", "privileged"),
                "baseline/privileged",
                "privileged replicas turn off most isolation; expected false",
            )
        )
    for field, on in (
        ("hostNetwork", sec.host_network),
        ("hostPid", sec.host_pid),
        ("hostIpc", sec.host_ipc),
    ):
        if on:
            found.append(
                Violation(
                    _path("spec", "security", field),
                    "baseline/host-namespaces",
                    f"sharing the host's namespaces is not allowed; expected {field}: false",
                )
            )
    for i, cap in enumerate(sec.capabilities.add):
        if cap not in BASELINE_CAPABILITIES:
            found.append(
                Violation(
                    _path("spec", "security", "capabilities", "add", i),
                    "baseline/capabilities",
                    f"capability {cap} may not be added; expected only "
                    + ", ".join(sorted(BASELINE_CAPABILITIES)),
                )
            )
    for i, volume in enumerate(spec.volumes):
        if volume.type is VolumeType.BIND:
            found.append(
                Violation(
                    _path("spec", "volumes", i, "source"),
                    "baseline/host-path-volumes",
                    f"bind volume {volume.name!r} mounts host path {volume.source}; expected a "
                    "tmpfs or named volume",
                )
            )
    for i, port in enumerate(spec.ports):
        if port.host_port is None:
            continue
        last = port.host_port + max(spec.replicas, 1) - 1
        if not any(lo <= port.host_port and last <= hi for lo, hi in host_ports):
            allowed = ", ".join(f"{lo}-{hi}" for lo, hi in host_ports) or "none"
            span = str(port.host_port) if last == port.host_port else f"{port.host_port}-{last}"
            found.append(
                Violation(
                    _path("spec", "ports", i, "hostPort"),
                    "baseline/host-ports",
                    f"host port(s) {span} are outside the namespace's allowed host ports "
                    f"({allowed})",
                )
            )
    for name in sec.sysctls:
        if name not in SAFE_SYSCTLS:
            found.append(
                Violation(
                    _path("spec", "security", "sysctls", name),
                    "baseline/sysctls",
                    f"sysctl {name} is not in the safe set; expected only "
                    + ", ".join(sorted(SAFE_SYSCTLS)),
                )
            )
    if sec.seccomp_profile is SeccompProfile.UNCONFINED:
        found.append(
            Violation(
                _path("spec", "security", "seccompProfile"),
                "baseline/seccomp",
                "seccomp Unconfined turns off the system-call filter; expected RuntimeDefault",
            )
        )
    return found


def _is_root_user(user: str) -> bool:
    name = user.split(":", 1)[0]
    return name in ("0", "root")


def _non_root_uid(user: str | None) -> bool:
    if user is None:
        return False
    name = user.split(":", 1)[0]
    return name.isdigit() and int(name) != 0


def _restricted(spec: WorkloadSpec) -> list[Violation]:
    found: list[Violation] = []
    sec = spec.security
    for i, volume in enumerate(spec.volumes):
        if volume.type not in RESTRICTED_VOLUME_TYPES and volume.type is not VolumeType.BIND:
            # bind is already refused by baseline/host-path-volumes
            found.append(
                Violation(
                    _path("spec", "volumes", i, "type"),
                    "restricted/volume-types",
                    f"volume type {volume.type.value} is not allowed; expected tmpfs or named",
                )
            )
    if sec.user is not None and _is_root_user(sec.user):
        found.append(
            Violation(
                _path("spec", "security", "user"),
                "restricted/run-as-user",
                f"user {sec.user!r} is root; expected a non-zero uid",
            )
        )
    elif not sec.run_as_non_root and not _non_root_uid(sec.user):
        found.append(
            Violation(
                _path("spec", "security", "runAsNonRoot"),
                "restricted/run-as-non-root",
                "the replica may run as root; expected runAsNonRoot: true or a numeric "
                "non-zero user",
            )
        )
    if "ALL" not in sec.capabilities.drop:
        found.append(
            Violation(
                _path("spec", "security", "capabilities", "drop"),
                "restricted/capabilities",
                "capabilities.drop must contain ALL",
            )
        )
    for i, cap in enumerate(sec.capabilities.add):
        if cap not in RESTRICTED_CAPABILITIES and cap in BASELINE_CAPABILITIES:
            # caps outside the baseline set are already refused by baseline
            found.append(
                Violation(
                    _path("spec", "security", "capabilities", "add", i),
                    "restricted/capabilities",
                    f"capability {cap} may not be added; expected only NET_BIND_SERVICE",
                )
            )
    if not sec.no_new_privileges:
        found.append(
            Violation(
                _path("spec", "security", "noNewPrivileges"),
                "restricted/privilege-escalation",
                "privilege escalation (setuid binaries, file capabilities) is allowed; "
                "expected noNewPrivileges: true",
            )
        )
    return found


def check_pod_security(
    spec: WorkloadSpec, level: PodSecurityLevel, host_ports: Sequence[tuple[int, int]]
) -> list[Violation]:
    """Every Pod Security Standards violation of ``spec`` at ``level``,
    plus the engine-socket rule. ``host_ports`` are the allowed ranges."""
    if level is PodSecurityLevel.PRIVILEGED:
        return []
    found = check_engine_socket(spec, level) + _baseline(spec, host_ports)
    if level is PodSecurityLevel.RESTRICTED:
        found += _restricted(spec)
    return found
