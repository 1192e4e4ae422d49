"""Which OCI runtimes an engine offers, and which isolation tier each runs.

Shared by the Docker and Podman drivers (both name their runtimes the way
runc does: a handler name mapped to a binary). Pure functions: the drivers
fetch the engine's answer or the host's files and hand them in, so parsing is
testable without an engine.

A runtime is the ``sandboxed`` handler when it is gVisor's ``runsc``: by its
name, by its binary, or by a wrapper whose name or arguments say runsc (the
podman target runs ``runsc-hostnet``, a script that adds ``--network=host``).
Nothing else is guessed: a target without runsc never claims the tier.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portway.capabilities.vocabulary import ISOLATION_FEATURES, Feature
from portway.drivers.base import RuntimeHandler
from portway.spec.model import Isolation, WorkloadSpec

#: gVisor's own words; a runtime is runsc if one of its name, binary or
#: arguments contains one of them as a word ("runsc-hostnet", "io.containerd.runsc.v1")
_GVISOR_WORDS = frozenset({"runsc", "gvisor"})
_WORD_RE = re.compile(r"[A-Za-z0-9]+")

# What one gVisor sandbox costs beyond the workload's own limits. Measured
# with bench/sandbox_overhead.py (3 rounds, medians) on the reference host (2
# cores, cgroup v1, runsc 20221219 --network=host, Docker 20.10.24, Podman
# 4.3.1): an idle busybox httpd replica, summing the PSS of every host process
# under the container's shim (docker) or conmon (podman): under runc the init
# and httpd, under runsc the Sentry, gofer and runsc helpers.
#   docker: runc 8.9 MiB, runsc 24.9 MiB -> +16.0 MiB; CPU idle +0.10 % of a core
#   podman: runc 2.5 MiB, runsc 22.9 MiB -> +20.4 MiB; CPU idle +0.05 % of a core
# Rounded up with room for the Sentry's caches once the workload does work:
# 32 MiB and 0.01 cores. (The sandbox sits in the container's cgroup, so under
# runsc this memory also counts against the replica's own memory limit.)
SANDBOX_OVERHEAD_MEMORY = 32 * 1024 * 1024  # bytes
SANDBOX_OVERHEAD_CPU = 0.01  # cores

# Features declared for the standard tier that do not hold under gVisor, on
# Docker and Podman alike: found by running the conformance suite with --tier
# sandboxed on both (runsc 20221219 with --network=host, as scripts/engines.sh
# and scripts/gvisor.sh configure it) and checked by hand. Memory and CPU
# limits are not here: they are enforced on the sandbox's cgroup from outside
# (OOM kills happen; `docker stats` shows 0.5 cores for --cpus 0.5), only
# gVisor shows no cgroupfs inside. Host access (privileged, host namespaces,
# seccomp, sysctls) is excluded for every driver in capabilities.tiers.EXCLUDED.
_GVISOR_HOSTINET = (
    "under runsc --network=host a blocking read on an accepted TCP socket can fail with "
    "EAGAIN, so a server such as busybox httpd drops a connection whose request has not "
    "arrived yet"
)
GVISOR_GAPS: Mapping[Feature, str] = {
    Feature.PROBES_TCP: (
        f"{_GVISOR_HOSTINET}: every idle probe connection through the published port "
        "is closed at once, so a TCP probe never sees a listener"
    ),
    Feature.PROBES_HTTP: (
        f"{_GVISOR_HOSTINET}: 2 to 9 of 30 HTTP requests through the published port "
        "were closed without an answer in our runs, so readiness flaps"
    ),
    Feature.PORTS_UDP: (
        "not proven: the conformance UDP server (udhcpd) answers through a raw socket, "
        "which runsc disables (no --net-raw), and no datagram through the published port "
        "reached it"
    ),
    Feature.RESOURCES_PIDS: (
        "runsc's own Sentry and gofer threads count in the replica's pids cgroup (a limit "
        "of 16 keeps the sandbox from starting) and the workload's processes are Sentry "
        "tasks, not host processes, so no limit bounds them as under runc (the driver "
        "leaves the limit out of a sandboxed replica)"
    ),
    Feature.SECURITY_CAP_ADD: (
        "gVisor grants an added capability but implements few of the privileged "
        "operations it allows (NET_ADMIN: setting an MTU fails with ENOTTY)"
    ),
    Feature.SECURITY_NO_NEW_PRIVILEGES: (
        "gVisor's /proc/self/status has no NoNewPrivs field, so the setting cannot be "
        "observed in the replica (runsc 20221219)"
    ),
    Feature.SECRETS_FILES: (
        "the secret file stays on the host's tmpfs, but gVisor serves a bind mount through "
        "its gofer, so in the sandbox it is a 9p mount, not tmpfs, and the Sentry may cache "
        "the value (runsc 20221219)"
    ),
}


# Podman's containers.conf files, in the order Podman 4.x (containers/common)
# reads them: later files override earlier ones key by key; drop-ins in
# lexical order. CONTAINERS_CONF in the service's own environment would
# replace all of them; we cannot see that environment from here.
PODMAN_SYSTEM_CONF = Path("/usr/share/containers/containers.conf")
PODMAN_OVERRIDE_CONF = Path("/etc/containers/containers.conf")
PODMAN_DROP_IN_DIR = Path("/etc/containers/containers.conf.d")
# Podman's compiled-in [engine.runtimes] for the runtimes portway cares about
# (the system file lists them, commented out): a host with /usr/bin/runsc can
# run gVisor under Podman without any configuration.
PODMAN_BUILTIN_RUNTIMES: Mapping[str, tuple[str, ...]] = {
    "runc": (
        "/usr/bin/runc",
        "/usr/sbin/runc",
        "/usr/local/bin/runc",
        "/usr/local/sbin/runc",
        "/sbin/runc",
        "/bin/runc",
        "/usr/lib/cri-o-runc/sbin/runc",
    ),
    "runsc": (
        "/usr/bin/runsc",
        "/usr/sbin/runsc",
        "/usr/local/bin/runsc",
        "/usr/local/sbin/runsc",
        "/bin/runsc",
        "/sbin/runsc",
        "/run/current-system/sw/bin/runsc",
    ),
}


@dataclass(frozen=True)
class Runtime:
    """One runtime an engine knows: its handler name, binary and extra arguments."""

    name: str
    path: str = ""
    args: tuple[str, ...] = ()


def is_gvisor(runtime: Runtime) -> bool:
    words: set[str] = set()
    for text in (runtime.name, Path(runtime.path).name, *runtime.args):
        words.update(w.lower() for w in _WORD_RE.findall(text))
    return not words.isdisjoint(_GVISOR_WORDS)


def handlers_for(default: str, runtimes: Iterable[Runtime]) -> tuple[RuntimeHandler, ...]:
    """``standard`` -> the engine's default runtime (or runc if the default is
    itself gVisor); ``sandboxed`` -> a gVisor runtime, ``runsc`` by preference."""
    known = {r.name: r for r in runtimes}
    sandboxes = sorted((r for r in known.values() if is_gvisor(r)), key=_sandbox_preference)
    out: list[RuntimeHandler] = []
    standard = default
    if default in known and is_gvisor(known[default]):
        standard = "runc" if "runc" in known else ""
    if standard:
        out.append(RuntimeHandler(Isolation.STANDARD.value, standard))
    if sandboxes:
        out.append(
            RuntimeHandler(
                Isolation.SANDBOXED.value,
                sandboxes[0].name,
                overhead_memory=SANDBOX_OVERHEAD_MEMORY,
                overhead_cpu=SANDBOX_OVERHEAD_CPU,
            )
        )
    return tuple(out)


def pids_limit(spec: WorkloadSpec) -> int | None:
    """The pids limit to give the engine: none for a sandboxed replica, where it
    would count gVisor's own threads and stop the sandbox (GVISOR_GAPS)."""
    return None if spec.isolation is Isolation.SANDBOXED else spec.resources.pids


def tier_features(handlers: Sequence[RuntimeHandler]) -> frozenset[Feature]:
    """The isolation features a target with these handlers offers: standard
    always (the engine's default runtime), sandboxed only with a gVisor handler."""
    offered = {Feature.ISOLATION_STANDARD}
    if any(h.tier == Isolation.SANDBOXED.value for h in handlers):
        offered.add(Feature.ISOLATION_SANDBOXED)
    return frozenset(offered)


def without_tiers(features: Iterable[Feature]) -> frozenset[Feature]:
    return frozenset(f for f in features if f not in ISOLATION_FEATURES)


class TierRefused(ValueError):
    """The replica cannot run in its tier on this target; the message says why."""


def runtime_for(
    isolation: Isolation,
    extension_runtime: str | None,
    handlers: Sequence[RuntimeHandler],
    driver: str,
) -> str | None:
    """The engine runtime to create a replica with (None: the engine's default).

    ``extensions.<driver>.runtime`` stays the escape hatch for standard
    replicas; a sandboxed replica runs on the sandboxed handler and may not
    name another runtime (a workload may not weaken its tier by an extension).
    Raises ``TierRefused``."""
    if isolation is Isolation.STANDARD:
        return extension_runtime
    if isolation is not Isolation.SANDBOXED:
        raise TierRefused(
            f"isolation {isolation.value!r} is not offered by the {driver} driver "
            "(it offers 'standard', and 'sandboxed' where gVisor's runsc is configured); "
            "place the workload on a target that offers it"
        )
    handler = next((h for h in handlers if h.tier == isolation.value), None)
    if handler is None:
        raise TierRefused(
            f"isolation 'sandboxed' needs gVisor, and this {driver} engine has no runsc "
            "runtime configured; place the workload on a target that offers the tier"
        )
    problem = extension_conflict(isolation, extension_runtime, handlers, driver)
    if problem:
        raise TierRefused(problem)
    return handler.handler


def extension_conflict(
    isolation: Isolation,
    extension_runtime: str | None,
    handlers: Sequence[RuntimeHandler],
    driver: str,
) -> str | None:
    """Why ``extensions.<driver>.runtime`` contradicts the replica's tier, or None."""
    if extension_runtime is None or isolation is Isolation.STANDARD:
        return None
    handler = next((h for h in handlers if h.tier == isolation.value), None)
    if handler is None or extension_runtime == handler.handler:
        return None
    return (
        f"extensions.{driver}.runtime {extension_runtime!r} contradicts isolation "
        f"{isolation.value!r}, which runs on runtime {handler.handler!r} on this target; "
        f"remove extensions.{driver}.runtime (a workload may not change its tier's runtime)"
    )


def _sandbox_preference(runtime: Runtime) -> tuple[bool, str]:
    return (runtime.name != "runsc", runtime.name)


# --- Docker -------------------------------------------------------------------


def docker_runtimes(info: Mapping[str, Any]) -> tuple[str, tuple[Runtime, ...]]:
    """(default runtime, every runtime) from ``GET /info``: ``Runtimes`` maps a
    name to ``{"path": ..., "runtimeArgs": [...]}`` (or ``runtimeType`` for a
    containerd shim), ``DefaultRuntime`` names one of them."""
    table = info.get("Runtimes")
    runtimes: list[Runtime] = []
    for name, raw in sorted(table.items()) if isinstance(table, dict) else []:
        entry = raw if isinstance(raw, dict) else {}
        path = entry.get("path") or entry.get("runtimeType") or ""
        args = entry.get("runtimeArgs")
        runtimes.append(
            Runtime(
                str(name),
                path if isinstance(path, str) else "",
                tuple(a for a in args if isinstance(a, str)) if isinstance(args, list) else (),
            )
        )
    default = info.get("DefaultRuntime")
    return (default if isinstance(default, str) and default else "runc"), tuple(runtimes)


# --- Podman -------------------------------------------------------------------


def podman_conf_files(
    system: Path = PODMAN_SYSTEM_CONF,
    override: Path = PODMAN_OVERRIDE_CONF,
    drop_ins: Path = PODMAN_DROP_IN_DIR,
) -> list[Path]:
    """The containers.conf files that exist, in the order Podman reads them."""
    files = [p for p in (system, override) if p.is_file()]
    if drop_ins.is_dir():
        files.extend(sorted(p for p in drop_ins.iterdir() if p.suffix == ".conf" and p.is_file()))
    return files


@dataclass(frozen=True)
class PodmanEngineConf:
    """What the merged ``[engine]`` tables say about runtimes."""

    default: str = ""  # ``engine.runtime``; "" if no file sets it
    #: ``[engine.runtimes]``: handler name -> candidate binaries, first existing wins
    runtimes: Mapping[str, tuple[str, ...]] | None = None


def parse_podman_conf(texts: Sequence[tuple[str, str]]) -> PodmanEngineConf:
    """Merge ``(file name, TOML text)`` pairs in reading order. Raises
    ValueError naming the file when one is not valid TOML."""
    default = ""
    runtimes: dict[str, tuple[str, ...]] = dict(PODMAN_BUILTIN_RUNTIMES)
    for name, text in texts:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{name}: not valid TOML ({exc})") from None
        engine = document.get("engine")
        if not isinstance(engine, dict):
            continue
        if isinstance(engine.get("runtime"), str):
            default = engine["runtime"]
        table = engine.get("runtimes")
        if isinstance(table, dict):
            for handler, paths in table.items():
                if isinstance(paths, list):
                    runtimes[handler] = tuple(p for p in paths if isinstance(p, str))
    return PodmanEngineConf(default, runtimes)


def podman_runtimes(
    conf: PodmanEngineConf, exists: Callable[[str], bool] = os.path.exists
) -> tuple[Runtime, ...]:
    """Runtimes whose binary is present, as Podman resolves them (the first
    existing path of the list). A name whose binaries are all missing is left
    out: the service would fail every container asking for it."""
    out: list[Runtime] = []
    for name, paths in sorted((conf.runtimes or {}).items()):
        found = next((p for p in paths if exists(p)), None)
        if found is not None:
            out.append(Runtime(name, found))
    return tuple(out)


def read_podman_conf(files: Sequence[Path] | None = None) -> PodmanEngineConf:
    """The host's merged containers.conf; unreadable or invalid files count as
    absent (the service itself would have refused to start with them)."""
    texts: list[tuple[str, str]] = []
    for path in podman_conf_files() if files is None else files:
        try:
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except OSError:
            continue
    good: list[tuple[str, str]] = []
    for item in texts:
        try:
            parse_podman_conf([item])
        except ValueError:
            continue
        good.append(item)
    return parse_podman_conf(good)
