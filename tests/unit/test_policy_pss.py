"""Pod Security Standards, image and tier rules over specs (no engine)."""

from __future__ import annotations

from typing import Any

import pytest

from portway.policy import evaluate_spec, resolved
from portway.policy.isolation import handler_tier, isolation_given
from portway.policy.pss import mounts_engine_socket
from portway.spec.model import Isolation, Workload, WorkloadSpec
from portway.spec.namespace import NamespacePolicySpec, PodSecurityLevel

IMAGE = "portway/busybox:latest"
DIGEST = "portway/busybox@sha256:" + "a" * 64

#: a spec that passes restricted: the base every case below breaks one way
COMPLIANT: dict[str, Any] = {
    "image": IMAGE,
    "security": {
        "user": "65534",
        "noNewPrivileges": True,
        "capabilities": {"drop": ["ALL"]},
    },
}


def spec(**changes: Any) -> WorkloadSpec:
    data = {**COMPLIANT, "security": {**COMPLIANT["security"]}}
    for key, value in changes.items():
        if key == "security":
            data["security"].update(value)
        else:
            data[key] = value
    return WorkloadSpec.model_validate(data)


def policy(level: str, **more: Any) -> NamespacePolicySpec:
    return NamespacePolicySpec.model_validate({"podSecurity": level, **more})


def rules(s: WorkloadSpec, level: str, **more: Any) -> set[tuple[str, str]]:
    return {(v.rule, v.path) for v in evaluate_spec(s, policy(level, **more)).violations}


BIND = {"name": "src", "type": "bind", "source": "/srv/app", "mountPath": "/app"}

# (case, spec changes, rule, path, refused at baseline too)
CASES: list[tuple[str, dict[str, Any], str, str, bool]] = [
    ("privileged", {"security": {"privileged": True}}, "baseline/privileged",
     "spec.security.privileged", True),
    ("host network", {"security": {"hostNetwork": True}}, "baseline/host-namespaces",
     "spec.security.hostNetwork", True),
    ("host pid", {"security": {"hostPid": True}}, "baseline/host-namespaces",
     "spec.security.hostPid", True),
    ("host ipc", {"security": {"hostIpc": True}}, "baseline/host-namespaces",
     "spec.security.hostIpc", True),
    ("capability outside baseline",
     {"security": {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}},
     "baseline/capabilities", "spec.security.capabilities.add[0]", True),
    ("bind volume", {"volumes": [BIND]}, "baseline/host-path-volumes",
     "spec.volumes[0].source", True),
    ("privileged host port",
     {"ports": [{"containerPort": 80, "hostPort": 80}]}, "baseline/host-ports",
     "spec.ports[0].hostPort", True),
    ("unsafe sysctl", {"security": {"sysctls": {"net.ipv4.ip_forward": "1"}}},
     "baseline/sysctls", 'spec.security.sysctls["net.ipv4.ip_forward"]', True),
    ("seccomp unconfined", {"security": {"seccompProfile": "Unconfined"}},
     "baseline/seccomp", "spec.security.seccompProfile", True),
    ("engine socket",
     {"volumes": [{"name": "s", "type": "bind", "source": "/var/run/docker.sock",
                   "mountPath": "/var/run/docker.sock"}]},
     "engine-socket", "spec.volumes[0].source", True),
    ("may run as root", {"security": {"user": None}}, "restricted/run-as-non-root",
     "spec.security.runAsNonRoot", False),
    ("root user", {"security": {"user": "0", "runAsNonRoot": True}},
     "restricted/run-as-user", "spec.security.user", False),
    ("no drop ALL", {"security": {"capabilities": {"drop": ["NET_RAW"]}}},
     "restricted/capabilities", "spec.security.capabilities.drop", False),
    ("baseline capability added",
     {"security": {"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}},
     "restricted/capabilities", "spec.security.capabilities.add[0]", False),
    ("privilege escalation", {"security": {"noNewPrivileges": False}},
     "restricted/privilege-escalation", "spec.security.noNewPrivileges", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "rule", "path", "baseline_too"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_each_check_refuses_at_its_level_and_privileged_accepts(
    changes: dict[str, Any], rule: str, path: str, baseline_too: bool
) -> None:
    s = spec(**changes)
    assert (rule, path) in rules(s, "restricted")
    assert ((rule, path) in rules(s, "baseline")) is baseline_too
    assert rules(s, "privileged") == set()


def test_compliant_spec_passes_every_level() -> None:
    for level in PodSecurityLevel:
        assert rules(spec(), level.value) == set()


def test_default_spec_passes_baseline_but_not_restricted() -> None:
    plain = WorkloadSpec(image=IMAGE)
    assert rules(plain, "baseline") == set()
    assert {r for r, _ in rules(plain, "restricted")} == {
        "restricted/run-as-non-root",
        "restricted/capabilities",
        "restricted/privilege-escalation",
    }


def test_safe_sysctls_and_baseline_capabilities_pass_baseline() -> None:
    s = spec(
        security={
            "sysctls": {"net.ipv4.tcp_keepalive_time": "60", "kernel.shm_rmid_forced": "1"},
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        }
    )
    assert rules(s, "restricted") == set()
    chown = spec(security={"capabilities": {"add": ["CHOWN", "SYS_CHROOT"]}})
    assert not any(r == "baseline/capabilities" for r, _ in rules(chown, "baseline"))


def test_runasnonroot_or_numeric_user_satisfies_restricted() -> None:
    assert rules(spec(security={"user": None, "runAsNonRoot": True}), "restricted") == set()
    named = spec(security={"user": "nobody"})
    assert ("restricted/run-as-non-root", "spec.security.runAsNonRoot") in rules(
        named, "restricted"
    )


def test_every_violation_is_reported_at_once() -> None:
    s = spec(
        security={"privileged": True, "hostNetwork": True, "seccompProfile": "Unconfined"},
        volumes=[BIND],
    )
    found = {r for r, _ in rules(s, "baseline")}
    assert found == {
        "baseline/privileged",
        "baseline/host-namespaces",
        "baseline/seccomp",
        "baseline/host-path-volumes",
    }
    messages = [v.message for v in evaluate_spec(s, policy("baseline")).violations]
    assert all("expected" in m for m in messages)


def test_host_ports_follow_the_namespace_ranges_for_every_replica() -> None:
    ports = [{"containerPort": 8080, "hostPort": 8999}]
    inside = spec(ports=ports, replicas=1)
    spills = spec(ports=ports, replicas=2)  # replica 1 would use 9000
    allowed = {"hostPorts": ["8000-8999"]}
    assert rules(inside, "baseline", **allowed) == set()
    assert ("baseline/host-ports", "spec.ports[0].hostPort") in rules(spills, "baseline", **allowed)
    assert rules(spec(ports=[{"containerPort": 8080}]), "baseline", hostPorts=[]) == set()


@pytest.mark.parametrize(
    "source",
    ["/var/run/docker.sock", "/run/containerd/containerd.sock", "/run/containerd",
     "/run/podman/podman.sock", "/var/run", "/", "/home/me/docker.sock",
     "/run/user/1000/podman/podman.sock"],
)  # fmt: skip
def test_engine_sockets_are_recognised(source: str) -> None:
    assert mounts_engine_socket(source)


@pytest.mark.parametrize("source", ["/srv/app", "/run/lock", "/var/lib/data", "/runner"])
def test_ordinary_paths_are_not_engine_sockets(source: str) -> None:
    assert not mounts_engine_socket(source)


# --- images ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "prefixes", "ok"),
    [
        (IMAGE, ["portway/"], True),
        (IMAGE, ["docker.io/portway/"], True),
        ("busybox:1", ["docker.io/library/"], True),
        ("evil/busybox:1", ["portway/"], False),
        ("registry.example.com:5000/team/app:1", ["registry.example.com:5000/team/"], True),
        ("registry.example.com:5000/other/app:1", ["registry.example.com:5000/team/"], False),
        ("anything/at:all", [], True),
    ],
)
def test_image_prefixes(image: str, prefixes: list[str], ok: bool) -> None:
    found = rules(spec(image=image), "privileged", images={"allowedPrefixes": prefixes})
    assert (found == set()) is ok
    if not ok:
        assert found == {("image/registry", "spec.image")}


def test_require_digest() -> None:
    need = {"images": {"requireDigest": True}}
    assert rules(spec(image=IMAGE), "privileged", **need) == {("image/digest", "spec.image")}
    assert rules(spec(image=DIGEST), "privileged", **need) == set()


# --- isolation tiers -----------------------------------------------------------


def test_workload_without_isolation_gets_the_namespace_default() -> None:
    s = spec()
    assert not isolation_given(s)
    decision = evaluate_spec(s, policy("baseline", isolation={"default": "sandboxed"}))
    assert decision.tier is Isolation.SANDBOXED
    assert decision.allowed


def test_explicit_isolation_wins_over_the_default() -> None:
    s = spec(isolation="standard")
    assert isolation_given(s)
    assert evaluate_spec(s, policy("baseline", isolation={"default": "sandboxed"})).tier is (
        Isolation.STANDARD
    )


def test_minimum_tier_refuses_weaker_workloads() -> None:
    minimum = {"isolation": {"default": "sandboxed", "minimum": "sandboxed"}}
    assert rules(spec(isolation="standard"), "privileged", **minimum) == {
        ("isolation/minimum-tier", "spec.isolation")
    }
    for tier in ("sandboxed", "microvm", "wasm"):
        assert rules(spec(isolation=tier), "privileged", **minimum) == set()
    assert rules(spec(), "privileged", **minimum) == set()  # takes the default


def test_untrusted_selects_sandboxed_and_refuses_standard() -> None:
    untrusted = spec(trust="untrusted")
    assert evaluate_spec(untrusted, policy("baseline")).tier is Isolation.SANDBOXED
    wasm_default = evaluate_spec(untrusted, policy("baseline", isolation={"default": "wasm"}))
    assert wasm_default.tier is Isolation.WASM
    assert rules(spec(trust="untrusted", isolation="standard"), "privileged") == {
        ("isolation/untrusted", "spec.isolation")
    }
    assert rules(spec(trust="trusted"), "privileged") == set()


def test_namespace_default_may_not_be_below_its_minimum() -> None:
    with pytest.raises(ValueError, match="weaker than"):
        policy("baseline", isolation={"default": "standard", "minimum": "sandboxed"})


def test_extension_runtime_may_not_weaken_the_tier() -> None:
    weak = spec(isolation="sandboxed", extensions={"docker": {"runtime": "runc"}})
    assert rules(weak, "privileged") == {
        ("isolation/extension-runtime", "spec.extensions.docker.runtime")
    }
    same = spec(isolation="sandboxed", extensions={"podman": {"runtime": "runsc"}})
    assert rules(same, "privileged") == set()
    standard = spec(isolation="standard", extensions={"docker": {"runtime": "crun"}})
    assert rules(standard, "privileged") == set()


def test_handler_tiers_by_name() -> None:
    assert handler_tier("runsc") is Isolation.SANDBOXED
    assert handler_tier("io.containerd.runsc.v1") is Isolation.SANDBOXED
    assert handler_tier("kata-fc") is Isolation.MICROVM
    assert handler_tier("runc") is Isolation.STANDARD


def test_resolved_workload_carries_the_tier_into_its_template_hash() -> None:
    workload = Workload.model_validate(
        {
            "apiVersion": "portway.dev/v1",
            "kind": "Workload",
            "metadata": {"name": "w"},
            "spec": {"image": IMAGE},
        }
    )
    sandboxed = resolved(workload, Isolation.SANDBOXED)
    assert sandboxed.spec.isolation is Isolation.SANDBOXED
    assert sandboxed.spec.template_hash() != workload.spec.template_hash()
    assert resolved(workload, Isolation.STANDARD).spec.template_hash() == (
        workload.spec.template_hash()
    )
