"""Pure helpers: image references, image config, chain ids, the OCI runtime spec.

Nothing here talks to containerd; the driver feeds it what it read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portway.drivers.base import MountFact, SecurityFacts
from portway.drivers.containerd import _seccomp
from portway.spec.model import SeccompProfile, VolumeType, WorkloadSpec

# What Docker and containerd give a container unless told otherwise.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
# Every capability by number (linux/capability.h), for "all of them".
ALL_CAPABILITIES = tuple(
    f"CAP_{name}"
    for name in [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ]
)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_US = 100_000
INIT_PATH = "/dev/init"  # where the init binary is bind-mounted (on the /dev tmpfs)

_MASKED = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
_READONLY = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]

MEDIA_INDEX = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MEDIA_MANIFEST = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

_REF_RE = re.compile(r"^[a-z0-9]+(?:[._/:@-][A-Za-z0-9_.+=:-]+)*$")


def normalize_reference(image: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest``;
    ``portway/busybox:v2`` -> ``docker.io/portway/busybox:v2``; a reference that
    names a registry (a first part with '.' or ':' or ``localhost``) keeps it."""
    ref = image.strip()
    name, at, digest = ref.partition("@")
    first, slash, _rest = name.partition("/")
    if not slash:
        name = f"docker.io/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
        name = f"docker.io/{name}"
    last = name.rsplit("/", 1)[-1]
    if not at and ":" not in last:
        name += ":latest"
    return f"{name}{at}{digest}"


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The OCI identity of each layer stack: chain(n) = sha256(chain(n-1) + " " + diff(n))."""
    chains: list[str] = []
    for diff in diff_ids:
        if not chains:
            chains.append(diff)
        else:
            digest = hashlib.sha256(f"{chains[-1]} {diff}".encode()).hexdigest()
            chains.append(f"sha256:{digest}")
    return chains


def pick_manifest(index: Mapping[str, Any], arch: str = "amd64") -> Mapping[str, Any] | None:
    """The linux/``arch`` entry of an image index (the first one as a fallback)."""
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    for manifest in manifests:
        platform = manifest.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == arch:
            return manifest
    return manifests[0] if manifests else None


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    working_dir: str
    user: str
    diff_ids: list[str]

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        doc = json.loads(raw)
        config = doc.get("config") or {}
        rootfs = doc.get("rootfs") or {}

        def strings(value: Any) -> list[str]:
            return [str(v) for v in value] if isinstance(value, list) else []

        return cls(
            entrypoint=strings(config.get("Entrypoint")),
            cmd=strings(config.get("Cmd")),
            env=strings(config.get("Env")),
            working_dir=str(config.get("WorkingDir") or "/"),
            user=str(config.get("User") or ""),
            diff_ids=strings(rootfs.get("diff_ids")),
        )


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()


def _passwd_lookup(lines: str, key: str, by_index: int) -> list[str] | None:
    for line in lines.splitlines():
        fields = line.split(":")
        if len(fields) > by_index and fields[by_index] == key:
            return fields
    return None


def resolve_user(user: str, read_file: Any) -> User:
    """``uid``, ``uid:gid``, ``name`` or ``name:group`` -> numeric ids, looking
    names up in the image's /etc/passwd and /etc/group (``read_file(path)``
    returns the text or None). Raises ValueError for an unknown name."""
    if not user:
        return User(0, 0)
    name, _, group = user.partition(":")
    passwd: str | None = None
    if name.isdigit():
        uid = int(name)
        passwd = read_file("/etc/passwd") or ""
        entry = _passwd_lookup(passwd, name, 2)
        gid = int(entry[3]) if entry and len(entry) > 3 and entry[3].isdigit() else 0
    else:
        passwd = read_file("/etc/passwd") or ""
        entry = _passwd_lookup(passwd, name, 0)
        if entry is None or len(entry) < 4 or not entry[2].isdigit():
            raise ValueError(f"user {name!r} is not in the image's /etc/passwd")
        uid, gid = int(entry[2]), int(entry[3]) if entry[3].isdigit() else 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found = _passwd_lookup(read_file("/etc/group") or "", group, 0)
            if found is None or len(found) < 3 or not found[2].isdigit():
                raise ValueError(f"group {group!r} is not in the image's /etc/group")
            gid = int(found[2])
    return User(uid, gid)


def bounding_capabilities(status: str) -> tuple[str, ...]:
    """The capabilities in the CapBnd line of a /proc/<pid>/status text: what a
    privileged replica can get, as runc refuses to grant one the host lacks."""
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split(":", 1)[1].strip(), 16)
            return tuple(name for bit, name in enumerate(ALL_CAPABILITIES) if mask >> bit & 1)
    return ALL_CAPABILITIES


# Left to runc: the devices it creates in every container, and directories of
# pseudo-filesystems mounted there anyway.
_RUNC_DEVICES = frozenset({"null", "zero", "full", "random", "urandom", "tty", "ptmx", "console"})
_SKIP_DEV_DIRS = frozenset({"pts", "shm", "mqueue", "fd"})


def host_devices(root: Path = Path("/dev")) -> list[dict[str, Any]]:
    """Every character and block device under ``root``, as OCI ``linux.devices``
    entries (what ``--privileged`` gives a Docker container)."""
    found: list[dict[str, Any]] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(
            d for d in subdirs if not (directory == str(root) and d in _SKIP_DEV_DIRS)
        )
        for name in sorted(files):
            if directory == str(root) and name in _RUNC_DEVICES:
                continue
            path = Path(directory) / name
            try:
                info = path.lstat()
            except OSError:
                continue  # gone since the listing
            if stat.S_ISCHR(info.st_mode):
                kind = "c"
            elif stat.S_ISBLK(info.st_mode):
                kind = "b"
            else:
                continue
            found.append(
                {
                    "path": str(path),
                    "type": kind,
                    "major": os.major(info.st_rdev),
                    "minor": os.minor(info.st_rdev),
                    "fileMode": stat.S_IMODE(info.st_mode),
                    "uid": info.st_uid,
                    "gid": info.st_gid,
                }
            )
    return found


@dataclass
class SpecInput:
    """Everything the OCI spec is made of, resolved by the driver."""

    container_id: str
    spec: WorkloadSpec
    image: ImageConfig
    user: User
    netns_path: str
    cgroups_path: str
    init_binary: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: for a privileged replica: the capabilities it gets (the host's bounding
    #: set) and the host devices it sees
    privileged_capabilities: tuple[str, ...] = ALL_CAPABILITIES
    host_devices: Sequence[Mapping[str, Any]] = ()


def process_args(spec: WorkloadSpec, image: ImageConfig) -> list[str]:
    """Docker's rule: ``command`` replaces the entrypoint (and drops the image
    CMD), ``args`` replaces the CMD."""
    if spec.command is not None:
        return [*spec.command, *(spec.args or [])]
    return [*image.entrypoint, *(image.cmd if spec.args is None else spec.args)]


def merge_env(image_env: Sequence[str], env: Mapping[str, str]) -> list[str]:
    merged: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update(env)
    merged.setdefault("PATH", DEFAULT_PATH)
    return [f"{k}={v}" for k, v in merged.items()]


def capabilities(add: Sequence[str], drop: Sequence[str]) -> list[str]:
    caps = list(DEFAULT_CAPABILITIES)
    drop_set = {f"CAP_{c}" for c in drop}
    if "CAP_ALL" in drop_set:
        caps = []
    caps = [c for c in caps if c not in drop_set]
    for cap in add:
        name = f"CAP_{cap}"
        if name == "CAP_ALL":
            raise ValueError("capabilities.add: ALL is not supported by the containerd driver")
        if name not in caps:
            caps.append(name)
    return caps


def process_spec(inp: SpecInput, args: list[str]) -> dict[str, Any]:
    spec = inp.spec
    if spec.security.privileged:  # as Docker: add and drop do not apply
        caps = list(inp.privileged_capabilities)
    else:
        caps = capabilities(spec.security.capabilities.add, spec.security.capabilities.drop)
    if not args:
        raise ValueError("the image has no entrypoint or command and the spec sets none")
    user: dict[str, Any] = {"uid": inp.user.uid, "gid": inp.user.gid}
    if inp.user.additional_gids:
        user["additionalGids"] = list(inp.user.additional_gids)
    return {
        "terminal": False,
        "user": user,
        "args": args,
        "env": merge_env(
            [*inp.image.env, *(f"{k}={v}" for k, v in inp.extra_env.items())], spec.env
        ),
        "cwd": inp.image.working_dir or "/",
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": spec.security.no_new_privileges,
    }


def _mounts(inp: SpecInput) -> list[dict[str, Any]]:
    # a privileged replica may write /sys and its cgroups, as with Docker
    system_mode = [] if inp.spec.security.privileged else ["ro"]
    mounts: list[dict[str, Any]] = [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",  # noqa: S108 - the container's own /dev/shm
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", *system_mode],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", *system_mode],
        },
    ]
    if inp.init_binary:
        mounts.append(
            {
                "destination": INIT_PATH,
                "type": "bind",
                "source": inp.init_binary,
                "options": ["rbind", "ro", "nosuid", "nodev"],
            }
        )
    for volume in inp.spec.volumes:
        mode = "ro" if volume.read_only else "rw"
        if volume.type is VolumeType.TMPFS:
            options = ["nosuid", "nodev", mode, "mode=1777"]
            if volume.size_limit is not None:
                options.append(f"size={volume.size_limit}")
            mounts.append(
                {
                    "destination": volume.mount_path,
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": options,
                }
            )
        else:
            assert volume.source is not None
            mounts.append(
                {
                    "destination": volume.mount_path,
                    "type": "bind",
                    "source": volume.source,
                    "options": ["rbind", "rprivate", mode],
                }
            )
    return mounts


def _resources(spec: WorkloadSpec) -> dict[str, Any]:
    every_device = spec.security.privileged
    resources: dict[str, Any] = {"devices": [{"allow": every_device, "access": "rwm"}]}
    limits = spec.resources
    if limits.memory is not None:
        resources["memory"] = {"limit": limits.memory, "swap": limits.memory}
    if limits.cpu is not None:
        resources["cpu"] = {
            "quota": max(1000, round(limits.cpu * CPU_PERIOD_US)),
            "period": CPU_PERIOD_US,
        }
    if limits.pids is not None:
        resources["pids"] = {"limit": limits.pids}
    return resources


def _namespaces(inp: SpecInput) -> list[dict[str, Any]]:
    """The namespaces of the replica's own; one it shares with the host is left
    out, which is how OCI says "stay in the runtime's (the host's)"."""
    security = inp.spec.security
    namespaces: list[dict[str, Any]] = []
    if not security.host_pid:
        namespaces.append({"type": "pid"})
    if not security.host_ipc:
        namespaces.append({"type": "ipc"})
    namespaces += [{"type": "uts"}, {"type": "mount"}]
    if not security.host_network:
        namespaces.append({"type": "network", "path": inp.netns_path})
    return namespaces


def shares_host_network(runtime_spec: Mapping[str, Any]) -> bool:
    """Whether a runtime spec (as stored with a container) has no network
    namespace of its own: then there is no CNI network to set up or tear down."""
    namespaces = (runtime_spec.get("linux") or {}).get("namespaces") or []
    return not any(isinstance(n, dict) and n.get("type") == "network" for n in namespaces)


def runtime_spec(inp: SpecInput) -> dict[str, Any]:
    """The OCI runtime spec (1.0.2) for one replica, as runc takes it."""
    security = inp.spec.security
    args = process_args(inp.spec, inp.image)
    if inp.init_binary:
        args = [INIT_PATH, "--", *args]
    process = process_spec(inp, args)
    linux: dict[str, Any] = {
        "resources": _resources(inp.spec),
        "cgroupsPath": inp.cgroups_path,
        "namespaces": _namespaces(inp),
        # privileged: nothing of /proc or /sys hidden or read-only, host devices
        "maskedPaths": [] if security.privileged else list(_MASKED),
        "readonlyPaths": [] if security.privileged else list(_READONLY),
    }
    if security.privileged and inp.host_devices:
        linux["devices"] = [dict(d) for d in inp.host_devices]
    if security.sysctls:
        linux["sysctl"] = dict(security.sysctls)
    # privileged means no filter, as with Docker
    if security.seccomp_profile is SeccompProfile.RUNTIME_DEFAULT and not security.privileged:
        linux["seccomp"] = _seccomp.default_profile(process["capabilities"]["bounding"])
    return {
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": "rootfs", "readonly": security.read_only_root_filesystem},
        "hostname": inp.container_id[:63].rstrip("-."),
        "mounts": _mounts(inp),
        "linux": linux,
    }


def overlay_read_file(mounts: Sequence[Any]) -> Any:
    """A ``read_file(path)`` that reads through overlay mount options (upper
    dir first, then lower dirs top-down) without mounting anything."""
    dirs: list[str] = []
    for mount in mounts:
        options = list(getattr(mount, "options", []))
        for option in options:
            if option.startswith("upperdir="):
                dirs.append(option.removeprefix("upperdir="))
        for option in options:
            if option.startswith("lowerdir="):
                dirs.extend(option.removeprefix("lowerdir=").split(":"))
        if getattr(mount, "type", "") == "bind" and getattr(mount, "source", ""):
            dirs.append(str(mount.source))

    def read_file(path: str) -> str | None:
        for base in dirs:
            candidate = Path(base) / path.lstrip("/")
            try:
                return candidate.read_text(errors="replace")
            except OSError:
                continue
        return None

    return read_file


# Mounts every replica gets; an audit cares about the others (its volumes).
_SYSTEM_MOUNTS = frozenset(
    {
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",  # noqa: S108 - the container's own /dev/shm
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
        INIT_PATH,
    }
)


def _spec_mounts(mounts: Sequence[Any]) -> tuple[MountFact, ...]:
    found = []
    for mount in mounts:
        if not isinstance(mount, dict) or mount.get("destination") in _SYSTEM_MOUNTS:
            continue
        options = [str(o) for o in mount.get("options") or []]
        kind = str(mount.get("type") or "")
        propagation = next((o for o in options if o.endswith(("private", "shared", "slave"))), "")
        found.append(
            MountFact(
                source="tmpfs" if kind == "tmpfs" else str(mount.get("source") or ""),
                destination=str(mount.get("destination") or ""),
                kind=kind,
                read_write="ro" not in options,
                propagation=propagation,
            )
        )
    return tuple(sorted(found, key=lambda m: m.destination))


def facts_from_runtime_spec(
    runtime_spec: Mapping[str, Any],
    runtime: str,
    published: Sequence[tuple[str, int, int, str]] = (),
) -> SecurityFacts:
    """``SecurityFacts`` from the OCI spec containerd stores with a container:
    what runc is told to do, which is all containerd knows. ``privileged``
    means what it does for Docker: every device allowed, nothing of /proc
    masked; ``seccomp`` is "unconfined" unless the spec carries a filter."""
    process = runtime_spec.get("process") or {}
    linux = runtime_spec.get("linux") or {}
    resources = linux.get("resources") or {}
    user = process.get("user") or {}
    caps = set((process.get("capabilities") or {}).get("bounding") or [])
    default = set(DEFAULT_CAPABILITIES)
    namespaces = {n.get("type") for n in linux.get("namespaces") or [] if isinstance(n, dict)}
    devices_rules = resources.get("devices") or []
    every_device = any(
        isinstance(r, dict) and r.get("allow") and not r.get("type") and not r.get("major")
        for r in devices_rules
    )
    cpu = resources.get("cpu") or {}
    quota, period = cpu.get("quota") or 0, cpu.get("period") or CPU_PERIOD_US
    pids = (resources.get("pids") or {}).get("limit") or 0

    def mode(kind: str) -> str:
        return "" if kind in namespaces else "host"

    return SecurityFacts(
        privileged=every_device and not linux.get("maskedPaths"),
        user=f"{user.get('uid', 0)}:{user.get('gid', 0)}",
        cap_add=tuple(sorted(c.removeprefix("CAP_") for c in caps - default)),
        cap_drop=tuple(sorted(c.removeprefix("CAP_") for c in default - caps)),
        read_only_rootfs=bool((runtime_spec.get("root") or {}).get("readonly")),
        no_new_privileges=bool(process.get("noNewPrivileges")),
        seccomp="" if linux.get("seccomp") else "unconfined",
        apparmor=str(process.get("apparmorProfile") or ""),
        runtime=runtime,
        network_mode=mode("network"),
        pid_mode=mode("pid"),
        ipc_mode=mode("ipc"),
        uts_mode=mode("uts"),
        userns_mode="" if "user" in namespaces else "host",
        memory_limit=int((resources.get("memory") or {}).get("limit") or 0),
        cpu_limit=quota / period if quota > 0 else 0.0,
        pids_limit=int(pids) if pids > 0 else 0,
        published=tuple(sorted(published)),
        mounts=_spec_mounts(runtime_spec.get("mounts") or []),
        devices=tuple(
            f"{d.get('path')}:{d.get('path')}:rwm"
            for d in linux.get("devices") or []
            if isinstance(d, dict)
        ),
        sysctls={str(k): str(v) for k, v in (linux.get("sysctl") or {}).items()},
        ulimits=tuple(
            sorted(
                f"{str(r.get('type', '')).lower().removeprefix('rlimit_')}"
                f"={r.get('soft', 0)}:{r.get('hard', 0)}"
                for r in process.get("rlimits") or []
                if isinstance(r, dict)
            )
        ),
    )
