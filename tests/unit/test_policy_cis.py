"""CIS Docker Benchmark section 5 checks over hand-built SecurityFacts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from portway.drivers.base import MountFact, SecurityFacts
from portway.policy.cis import TITLES, Level, audit_replica, worst
from portway.spec.model import WorkloadSpec

HARDENED = SecurityFacts(
    user="65534",
    cap_drop=("ALL",),
    read_only_rootfs=True,
    no_new_privileges=True,
    runtime="runc",
    memory_limit=64 * 1024 * 1024,
    cpu_limit=0.5,
    pids_limit=64,
    published=(("127.0.0.1", 18080, 8080, "tcp"),),
    mounts=(MountFact("pw-data", "/data", "volume"),),
    healthcheck=True,
)


def levels(facts: SecurityFacts, spec: WorkloadSpec | None = None) -> dict[str, Level]:
    return {f.rule: f.level for f in audit_replica(facts, spec)}


def test_hardened_replica_passes_every_rule() -> None:
    found = audit_replica(HARDENED)
    assert [f.rule for f in found] == list(TITLES)
    assert {f.level for f in found} == {Level.PASS}
    assert worst(found) is Level.PASS
    assert all(f.title == TITLES[f.rule] and f.detail for f in found)


BAD_MOUNT = MountFact("/etc", "/host-etc", "bind", read_write=False)
SOCKET = MountFact("/var/run/docker.sock", "/var/run/docker.sock", "bind")
SHARED = MountFact("/srv/x", "/x", "bind", propagation="rshared")


@pytest.mark.parametrize(
    ("rule", "change", "level"),
    [
        ("5.3", {"cap_add": ("SYS_ADMIN",)}, Level.FAIL),
        ("5.3", {"cap_drop": ()}, Level.WARN),
        ("5.4", {"privileged": True}, Level.FAIL),
        ("5.5", {"mounts": (BAD_MOUNT,)}, Level.FAIL),
        ("5.7", {"published": (("127.0.0.1", 80, 80, "tcp"),)}, Level.FAIL),
        ("5.9", {"network_mode": "host"}, Level.FAIL),
        ("5.10", {"memory_limit": 0}, Level.WARN),
        ("5.11", {"cpu_limit": 0.0}, Level.WARN),
        ("5.12", {"read_only_rootfs": False}, Level.WARN),
        ("5.13", {"published": (("0.0.0.0", 18080, 8080, "tcp"),)}, Level.WARN),
        ("5.14", {"restart_policy": "always"}, Level.WARN),
        ("5.15", {"pid_mode": "host"}, Level.FAIL),
        ("5.16", {"ipc_mode": "host"}, Level.FAIL),
        ("5.17", {"devices": ("/dev/kvm",)}, Level.FAIL),
        ("5.19", {"mounts": (SHARED,)}, Level.FAIL),
        ("5.20", {"uts_mode": "host"}, Level.FAIL),
        ("5.21", {"seccomp": "unconfined"}, Level.FAIL),
        ("5.25", {"no_new_privileges": False}, Level.WARN),
        ("5.26", {"healthcheck": False}, Level.WARN),
        ("5.28", {"pids_limit": 0}, Level.WARN),
        ("5.30", {"userns_mode": "host"}, Level.FAIL),
        ("5.31", {"mounts": (SOCKET,)}, Level.FAIL),
    ],
)
def test_each_rule_flags_its_setting(rule: str, change: dict[str, object], level: Level) -> None:
    found = levels(replace(HARDENED, **change))  # type: ignore[arg-type]
    assert found[rule] is level
    others = {r: lv for r, lv in found.items() if r != rule and lv is not Level.PASS}
    assert not others  # each setting trips its own rule only


def test_portway_probes_count_as_health_check() -> None:
    spec = WorkloadSpec.model_validate(
        {
            "image": "portway/busybox:latest",
            "ports": [{"containerPort": 8080}],
            "probes": {"readiness": {"tcp": {"port": 8080}}},
        }
    )
    facts = replace(HARDENED, healthcheck=False)
    [health] = [f for f in audit_replica(facts, spec) if f.rule == "5.26"]
    assert health.level is Level.PASS
    assert "portway runs readiness probes" in health.detail


def test_restart_policy_on_failure_five_passes_and_controller_restarts_pass() -> None:
    assert levels(replace(HARDENED, restart_policy="on-failure", restart_max=5))["5.14"] is (
        Level.PASS
    )
    assert levels(replace(HARDENED, restart_policy="on-failure", restart_max=0))["5.14"] is (
        Level.WARN
    )
    assert levels(replace(HARDENED, restart_policy="no"))["5.14"] is Level.PASS


def test_worst_level_orders_fail_over_warn() -> None:
    found = audit_replica(replace(HARDENED, privileged=True, memory_limit=0))
    assert worst(found) is Level.FAIL
    assert worst(audit_replica(replace(HARDENED, memory_limit=0))) is Level.WARN
