"""CIS Docker Benchmark section 5 (container runtime) over what the engine
reports about a running replica.

Pure: the facts come from a driver's ``SecurityInspector`` (they are what the
engine says, not what the spec asked for), the spec from the store. Only the
rules such facts can show are here; rule numbers and titles follow the
benchmark's v1.6.0 numbering.

Levels: ``fail`` for settings that hand a replica part of the host
(privileges, host namespaces, devices, sensitive mounts, engine sockets,
unconfined seccomp, shared propagation, privileged ports); ``warn`` for
missing hardening (limits, read-only root, no-new-privileges, health
checks, all-interface binds); ``pass`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from portway.spec.model import WorkloadSpec

from .pss import BASELINE_CAPABILITIES, mounts_engine_socket


class MountView(Protocol):
    """What the checks read of one mount (``drivers.base.MountFact``)."""

    @property
    def source(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def read_write(self) -> bool: ...
    @property
    def propagation(self) -> str: ...


class FactsView(Protocol):
    """What the checks read of a replica's facts (``drivers.base.SecurityFacts``;
    a protocol here because policy may not import drivers)."""

    @property
    def privileged(self) -> bool: ...
    @property
    def cap_add(self) -> tuple[str, ...]: ...
    @property
    def cap_drop(self) -> tuple[str, ...]: ...
    @property
    def read_only_rootfs(self) -> bool: ...
    @property
    def no_new_privileges(self) -> bool: ...
    @property
    def seccomp(self) -> str: ...
    @property
    def network_mode(self) -> str: ...
    @property
    def pid_mode(self) -> str: ...
    @property
    def ipc_mode(self) -> str: ...
    @property
    def uts_mode(self) -> str: ...
    @property
    def userns_mode(self) -> str: ...
    @property
    def memory_limit(self) -> int: ...
    @property
    def cpu_limit(self) -> float: ...
    @property
    def pids_limit(self) -> int: ...
    @property
    def published(self) -> tuple[tuple[str, int, int, str], ...]: ...
    @property
    def mounts(self) -> Sequence[MountView]: ...
    @property
    def devices(self) -> tuple[str, ...]: ...
    @property
    def ulimits(self) -> tuple[str, ...]: ...
    @property
    def restart_policy(self) -> str: ...
    @property
    def restart_max(self) -> int: ...
    @property
    def healthcheck(self) -> bool: ...


class Level(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    rule: str  # "5.4"
    title: str
    level: Level
    detail: str


TITLES: Mapping[str, str] = {
    "5.3": "Ensure that Linux kernel capabilities are restricted within containers",
    "5.4": "Ensure that privileged containers are not used",
    "5.5": "Ensure sensitive host system directories are not mounted on containers",
    "5.7": "Ensure privileged ports are not mapped within containers",
    "5.9": "Ensure that the host's network namespace is not shared",
    "5.10": "Ensure that the memory usage for containers is limited",
    "5.11": "Ensure that CPU priority is set appropriately on containers",
    "5.12": "Ensure that the container's root filesystem is mounted as read only",
    "5.13": "Ensure that incoming container traffic is bound to a specific host interface",
    "5.14": "Ensure that the 'on-failure' container restart policy is set to '5'",
    "5.15": "Ensure that the host's process namespace is not shared",
    "5.16": "Ensure that the host's IPC namespace is not shared",
    "5.17": "Ensure that host devices are not directly exposed to containers",
    "5.18": "Ensure that the default ulimit is overwritten at runtime if needed",
    "5.19": "Ensure mount propagation mode is not set to shared",
    "5.20": "Ensure that the host's UTS namespace is not shared",
    "5.21": "Ensure the default seccomp profile is not Disabled",
    "5.25": "Ensure that the container is restricted from acquiring additional privileges",
    "5.26": "Ensure that container health is checked at runtime",
    "5.28": "Ensure that the PIDs cgroup limit is used",
    "5.30": "Ensure that the host's user namespaces are not shared",
    "5.31": "Ensure that the Docker socket is not mounted inside any containers",
}

#: Host directories CIS 5.5 names as sensitive.
SENSITIVE_HOST_DIRS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")
_WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 - we look for them, we do not bind


def _finding(rule: str, level: Level, detail: str) -> Finding:
    return Finding(rule, TITLES[rule], level, detail)


def _yes_no(rule: str, bad: bool, level: Level, bad_detail: str, good_detail: str) -> Finding:
    return _finding(rule, level if bad else Level.PASS, bad_detail if bad else good_detail)


def _capabilities(facts: FactsView) -> Finding:
    added = sorted(c.upper() for c in facts.cap_add)
    extra = [c for c in added if c not in BASELINE_CAPABILITIES]
    dropped = {c.upper() for c in facts.cap_drop}
    if extra:
        return _finding("5.3", Level.FAIL, f"adds capabilities {', '.join(extra)}")
    if "ALL" in dropped or "NET_RAW" in dropped:
        kept = f"; adds back {', '.join(added)}" if added else ""
        return _finding("5.3", Level.PASS, f"drops {', '.join(sorted(dropped))}{kept}")
    return _finding(
        "5.3", Level.WARN, "keeps the engine's default capability set (NET_RAW included)"
    )


def _sensitive_mounts(facts: FactsView) -> Finding:
    found = []
    for m in facts.mounts:
        if m.kind != "bind":
            continue
        src = "/" + m.source.strip("/")
        for d in SENSITIVE_HOST_DIRS:
            if src == d or (d != "/" and src.startswith(d + "/")):
                found.append(f"{m.source} ({'rw' if m.read_write else 'ro'})")
                break
    if not found:
        return _finding("5.5", Level.PASS, "no sensitive host directory mounted")
    return _finding("5.5", Level.FAIL, "mounts " + ", ".join(found))


def _ports(facts: FactsView) -> list[Finding]:
    low = sorted({p[1] for p in facts.published if 0 < p[1] < 1024})
    wide = sorted({f"{p[0] or '*'}:{p[1]}" for p in facts.published if p[0] in _WILDCARDS})
    return [
        _yes_no(
            "5.7",
            bool(low),
            Level.FAIL,
            f"publishes privileged host ports {', '.join(map(str, low))}",
            "no host port below 1024",
        ),
        _yes_no(
            "5.13",
            bool(wide),
            Level.WARN,
            f"published on every interface: {', '.join(wide)}",
            "every published port is bound to a specific address"
            if facts.published
            else "publishes no ports",
        ),
    ]


def _namespace(rule: str, mode: str, what: str) -> Finding:
    shared = mode == "host"
    return _yes_no(
        rule, shared, Level.FAIL, f"shares the host's {what} namespace", f"own {what} namespace"
    )


def _restart(facts: FactsView) -> Finding:
    policy = facts.restart_policy or "no"
    if policy == "no":
        return _finding(
            "5.14",
            Level.PASS,
            "no engine restart policy: portway's controller restarts replicas with backoff "
            "per spec.restart",
        )
    if policy == "on-failure" and 0 < facts.restart_max <= 5:
        return _finding("5.14", Level.PASS, f"on-failure:{facts.restart_max}")
    shown = f"{policy}:{facts.restart_max}" if facts.restart_max else policy
    return _finding("5.14", Level.WARN, f"engine restart policy {shown} restarts without bound")


def _health(facts: FactsView, spec: WorkloadSpec | None) -> Finding:
    probes = spec.probes if spec is not None else None
    kinds = [k for k in ("readiness", "liveness") if probes and getattr(probes, k) is not None]
    if facts.healthcheck:
        return _finding("5.26", Level.PASS, "the engine runs a health check")
    if kinds:
        return _finding(
            "5.26",
            Level.PASS,
            f"portway runs {' and '.join(kinds)} probes (they count as the health check)",
        )
    return _finding("5.26", Level.WARN, "no engine health check and no portway probe")


def _propagation(facts: FactsView) -> Finding:
    shared = [m.destination for m in facts.mounts if m.propagation in ("shared", "rshared")]
    return _yes_no(
        "5.19",
        bool(shared),
        Level.FAIL,
        f"shared mount propagation at {', '.join(shared)}",
        "no shared mount propagation",
    )


def _engine_socket(facts: FactsView) -> Finding:
    sockets = [
        m.source for m in facts.mounts if m.kind == "bind" and mounts_engine_socket(m.source)
    ]
    return _yes_no(
        "5.31",
        bool(sockets),
        Level.FAIL,
        f"mounts a container engine socket: {', '.join(sockets)}",
        "no engine socket mounted",
    )


def audit_replica(facts: FactsView, spec: WorkloadSpec | None = None) -> list[Finding]:
    """Every CIS section 5 finding for one replica, in rule order."""
    seccomp = facts.seccomp.lower()
    return [
        _capabilities(facts),
        _yes_no("5.4", facts.privileged, Level.FAIL, "runs privileged", "not privileged"),
        _sensitive_mounts(facts),
        *_ports(facts)[:1],
        _namespace("5.9", facts.network_mode, "network"),
        _yes_no(
            "5.10",
            facts.memory_limit <= 0,
            Level.WARN,
            "no memory limit",
            f"memory limited to {facts.memory_limit} bytes",
        ),
        _yes_no(
            "5.11",
            facts.cpu_limit <= 0,
            Level.WARN,
            "no CPU limit",
            f"CPU limited to {facts.cpu_limit:g} cores",
        ),
        _yes_no(
            "5.12",
            not facts.read_only_rootfs,
            Level.WARN,
            "root filesystem is writable",
            "root filesystem is read-only",
        ),
        *_ports(facts)[1:],
        _restart(facts),
        _namespace("5.15", facts.pid_mode, "PID"),
        _namespace("5.16", facts.ipc_mode, "IPC"),
        _yes_no(
            "5.17",
            bool(facts.devices),
            Level.FAIL,
            f"host devices exposed: {', '.join(facts.devices)}",
            "no host devices",
        ),
        _finding(
            "5.18",
            Level.PASS,
            f"ulimits set: {', '.join(facts.ulimits)}"
            if facts.ulimits
            else "the engine's default ulimits (override only where needed)",
        ),
        _propagation(facts),
        _namespace("5.20", facts.uts_mode, "UTS"),
        _yes_no(
            "5.21",
            seccomp == "unconfined",
            Level.FAIL,
            "seccomp is unconfined",
            f"seccomp profile {facts.seccomp or 'default'}",
        ),
        _yes_no(
            "5.25",
            not facts.no_new_privileges,
            Level.WARN,
            "no-new-privileges is not set",
            "no-new-privileges is set",
        ),
        _health(facts, spec),
        _yes_no(
            "5.28",
            facts.pids_limit <= 0,
            Level.WARN,
            "no PIDs limit",
            f"PIDs limited to {facts.pids_limit}",
        ),
        _namespace("5.30", facts.userns_mode, "user"),
        _engine_socket(facts),
    ]


def worst(findings: Sequence[Finding]) -> Level:
    levels = {f.level for f in findings}
    for level in (Level.FAIL, Level.WARN):
        if level in levels:
            return level
    return Level.PASS
