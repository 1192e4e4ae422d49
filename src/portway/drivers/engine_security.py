"""A workload's security section for engines that speak Docker's vocabulary
(Docker, Podman), in one place so both drivers honour and report the same
things: the create options that weaken or tighten isolation, the
runAsNonRoot check made before create, and ``SecurityFacts`` read back from
the engine's inspect output (whose HostConfig both engines fill alike).

The spec model already refuses combinations no engine can honour (hostNetwork
with published ports or ``net.*`` sysctls).
"""

from __future__ import annotations

from typing import Any

from portway.drivers.base import MountFact, SecurityFacts
from portway.drivers.engine_common import Json, obj, text
from portway.spec.model import SeccompProfile, Security

HOST = "host"  # the namespace mode both engines use for "share the host's"
SECCOMP_UNCONFINED = "unconfined"
_NO_NEW_PRIVILEGES = "no-new-privileges"
PODMAN_SECCOMP_ANNOTATION = "io.podman.annotations.seccomp"


# --- create options --------------------------------------------------------


def docker_security_options(security: Security) -> dict[str, Any]:
    """Keyword arguments for the Docker SDK's ``create_host_config``; only the
    settings the spec asks for, so the engine's defaults stay otherwise."""
    options: dict[str, Any] = {}
    security_opt: list[str] = []
    if security.no_new_privileges:
        security_opt.append(f"{_NO_NEW_PRIVILEGES}:true")
    if security.seccomp_profile is SeccompProfile.UNCONFINED:
        security_opt.append(f"seccomp={SECCOMP_UNCONFINED}")
    if security_opt:
        options["security_opt"] = security_opt
    if security.privileged:
        options["privileged"] = True
    if security.host_network:
        options["network_mode"] = HOST
    if security.host_pid:
        options["pid_mode"] = HOST
    if security.host_ipc:
        options["ipc_mode"] = HOST
    if security.sysctls:
        options["sysctls"] = dict(security.sysctls)
    return options


def libpod_security_options(security: Security) -> Json:
    """The same settings as fields of Podman's libpod SpecGenerator."""
    body: Json = {}
    if security.no_new_privileges:
        body["no_new_privileges"] = True
    if security.seccomp_profile is SeccompProfile.UNCONFINED:
        body["seccomp_profile_path"] = SECCOMP_UNCONFINED
        # Podman's inspect shows seccomp in SecurityOpt only from this
        # annotation, which its own CLI sets; without it an audit would read
        # the default filter on a replica that runs without one
        body["annotations"] = {PODMAN_SECCOMP_ANNOTATION: SECCOMP_UNCONFINED}
    if security.privileged:
        body["privileged"] = True
    for field, wanted in (
        ("netns", security.host_network),
        ("pidns", security.host_pid),
        ("ipcns", security.host_ipc),
    ):
        if wanted:
            body[field] = {"nsmode": HOST}
    if security.host_pid:
        # Podman refuses an init process outside a private PID namespace, and
        # it is not needed there: the command is not PID 1, so the kernel's
        # PID-1 signal rules do not apply to it
        body["init"] = False
    if security.sysctls:
        body["sysctl"] = dict(security.sysctls)
    return body


# --- runAsNonRoot ------------------------------------------------------------


def non_root_refusal(spec_user: str | None, image_user: str) -> str | None:
    """Why a replica with ``runAsNonRoot`` must not start (None: it may).

    As the kubelet decides: the effective user is ``spec.security.user``, else
    the image's configured User; it must be a numeric uid other than 0. A name
    is refused, because only the image's /etc/passwd could say which uid it
    means and a name may well be root's.
    """
    source = "spec.security.user" if spec_user else "the image's User"
    user = spec_user or image_user
    if not user:
        return (
            "security.runAsNonRoot: the image configures no User, so the replica would run "
            'as root; set spec.security.user to a non-zero uid (e.g. "1000")'
        )
    uid = user.partition(":")[0]
    if not uid.isdigit():
        return (
            f"security.runAsNonRoot: {source} is {user!r}, a name, not a uid: portway cannot "
            'prove it is not root; give a numeric uid in spec.security.user (e.g. "1000")'
        )
    if int(uid) == 0:
        return (
            f"security.runAsNonRoot: {source} is {user!r}, which is root (uid 0); set "
            'spec.security.user to a non-zero uid (e.g. "1000")'
        )
    return None


# --- SecurityFacts from inspect output ------------------------------------------


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _capabilities(value: Any) -> tuple[str, ...]:
    """As the spec spells them (``NET_ADMIN``): Podman reports ``CAP_NET_ADMIN``."""
    return tuple(sorted(c.upper().removeprefix("CAP_") for c in _strings(value)))


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _security_opt(options: tuple[str, ...], key: str) -> str | None:
    """The value of ``key=value`` or ``key:value`` in a SecurityOpt list."""
    for option in options:
        name, sep, value = option.replace(":", "=", 1).partition("=")
        if name == key:
            return value if sep else ""
    return None


def _no_new_privileges(options: tuple[str, ...]) -> bool:
    value = _security_opt(options, _NO_NEW_PRIVILEGES)
    return value is not None and value in ("", "true", "1")


def _cpu_limit(host: Json) -> float:
    nano = _number(host.get("NanoCpus"))
    if nano > 0:
        return nano / 1e9
    quota, period = _number(host.get("CpuQuota")), _number(host.get("CpuPeriod")) or 100_000
    if quota > 0:
        return quota / period
    shares = _number(host.get("CpuShares"))
    # 1024 shares is one core's weight and the engines' default, not a limit
    return shares / 1024 if shares and shares != 1024 else 0.0


def _published(info: Json, host: Json) -> tuple[tuple[str, int, int, str], ...]:
    # the ports bound now (a running replica's ephemeral ports are known only
    # there), else the configured ones, where 0 stands for "ephemeral"
    bound = obj(obj(info.get("NetworkSettings")).get("Ports"))
    if not any(isinstance(b, list) and b for b in bound.values()):
        bound = obj(host.get("PortBindings"))
    found: list[tuple[str, int, int, str]] = []
    for key, bindings in bound.items():
        number, _, protocol = str(key).partition("/")
        if not number.isdigit():
            continue
        for binding in bindings if isinstance(bindings, list) else []:
            entry = obj(binding)
            port = text(entry.get("HostPort"))
            found.append(
                (
                    text(entry.get("HostIp")),
                    int(port) if port.isdigit() else 0,  # 0: an ephemeral port
                    int(number),
                    protocol or "tcp",
                )
            )
    return tuple(sorted(found))


def _mounts(info: Json, host: Json) -> tuple[MountFact, ...]:
    found: list[MountFact] = []
    for raw in info.get("Mounts") or []:
        mount = obj(raw)
        kind = text(mount.get("Type"))
        source = text(mount.get("Name")) if kind == "volume" else text(mount.get("Source"))
        found.append(
            MountFact(
                source=source or kind,
                destination=text(mount.get("Destination")),
                kind=kind,
                read_write=mount.get("RW") is not False,
                propagation=text(mount.get("Propagation")),
            )
        )
    # Docker lists --tmpfs mounts only here; Podman lists them in both places
    listed = {m.destination for m in found}
    for destination, options in obj(host.get("Tmpfs")).items():
        if destination not in listed:
            read_only = "ro" in text(options).split(",")
            found.append(MountFact("tmpfs", str(destination), "tmpfs", read_write=not read_only))
    return tuple(sorted(found, key=lambda m: m.destination))


def _devices(host: Json) -> tuple[str, ...]:
    found = []
    for raw in host.get("Devices") or []:
        device = obj(raw)
        found.append(
            f"{text(device.get('PathOnHost'))}:{text(device.get('PathInContainer'))}"
            f":{text(device.get('CgroupPermissions'))}"
        )
    return tuple(found)


def _ulimits(host: Json) -> tuple[str, ...]:
    found = []
    for raw in host.get("Ulimits") or []:
        limit = obj(raw)
        # Docker says "nofile", Podman "RLIMIT_NOFILE"
        name = text(limit.get("Name")).lower().removeprefix("rlimit_")
        found.append(f"{name}={_number(limit.get('Soft'))}:{_number(limit.get('Hard'))}")
    return tuple(sorted(found))


def _healthcheck(config: Json) -> bool:
    test = _strings(obj(config.get("Healthcheck")).get("Test"))
    return bool(test) and test[0] != "NONE"


def facts_from_inspect(info: Json) -> SecurityFacts:
    """``SecurityFacts`` from a container's inspect document (Docker's
    ``/containers/{id}/json`` or Podman's libpod one: both carry Docker's
    HostConfig and Config field names)."""
    host = obj(info.get("HostConfig"))
    config = obj(info.get("Config"))
    security_opt = _strings(host.get("SecurityOpt"))
    apparmor = _security_opt(security_opt, "apparmor")
    restart = obj(host.get("RestartPolicy"))
    pids = _number(host.get("PidsLimit"))
    return SecurityFacts(
        privileged=host.get("Privileged") is True,
        user=text(config.get("User")),
        cap_add=_capabilities(host.get("CapAdd")),
        cap_drop=_capabilities(host.get("CapDrop")),
        read_only_rootfs=host.get("ReadonlyRootfs") is True,
        no_new_privileges=_no_new_privileges(security_opt),
        seccomp=_security_opt(security_opt, "seccomp") or "",
        apparmor=apparmor if apparmor is not None else text(info.get("AppArmorProfile")),
        runtime=text(host.get("Runtime")),
        network_mode=text(host.get("NetworkMode")),
        pid_mode=text(host.get("PidMode")),
        ipc_mode=text(host.get("IpcMode")),
        uts_mode=text(host.get("UTSMode")),
        userns_mode=text(host.get("UsernsMode")),
        memory_limit=_number(host.get("Memory")),
        cpu_limit=_cpu_limit(host),
        pids_limit=pids if pids > 0 else 0,
        published=_published(info, host),
        mounts=_mounts(info, host),
        devices=_devices(host),
        sysctls={str(k): str(v) for k, v in obj(host.get("Sysctls")).items()},
        ulimits=_ulimits(host),
        restart_policy=text(restart.get("Name")),
        restart_max=_number(restart.get("MaximumRetryCount")),
        healthcheck=_healthcheck(config),
    )
