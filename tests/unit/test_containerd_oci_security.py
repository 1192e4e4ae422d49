"""The OCI runtime spec the containerd driver builds for the security fields:
privileged, host namespaces, sysctls, and its own RuntimeDefault seccomp filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from portway.drivers.containerd import _oci, _seccomp
from portway.spec.model import WorkloadSpec

_IMAGE = _oci.ImageConfig(
    entrypoint=[], cmd=["sh"], env=[], working_dir="/", user="", diff_ids=["sha256:a"]
)


def _runtime_spec(security: dict[str, Any], **inputs: Any) -> dict[str, Any]:
    spec = WorkloadSpec.model_validate({"image": "portway/busybox", "security": security})
    inp = _oci.SpecInput(
        container_id="c1",
        spec=spec,
        image=_IMAGE,
        user=_oci.User(0, 0),
        netns_path="/var/run/netns/c1",
        cgroups_path="/portway/c1",
        **inputs,
    )
    return _oci.runtime_spec(inp)


def _namespace_types(runtime_spec: dict[str, Any]) -> list[str]:
    return [n["type"] for n in runtime_spec["linux"]["namespaces"]]


def _mount(runtime_spec: dict[str, Any], destination: str) -> dict[str, Any]:
    return next(m for m in runtime_spec["mounts"] if m["destination"] == destination)


def test_default_replica_is_confined() -> None:
    runtime_spec = _runtime_spec({})
    assert _namespace_types(runtime_spec) == ["pid", "ipc", "uts", "mount", "network"]
    assert runtime_spec["linux"]["maskedPaths"]
    assert "/proc/sys" in runtime_spec["linux"]["readonlyPaths"]
    assert runtime_spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert "ro" in _mount(runtime_spec, "/sys")["options"]
    assert "devices" not in runtime_spec["linux"]
    assert "sysctl" not in runtime_spec["linux"]
    assert runtime_spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    assert not _oci.shares_host_network(runtime_spec)


def test_privileged_gets_the_given_caps_devices_and_nothing_hidden() -> None:
    device = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}
    runtime_spec = _runtime_spec(
        {"privileged": True, "capabilities": {"drop": ["ALL"]}},
        privileged_capabilities=("CAP_CHOWN", "CAP_SYS_ADMIN"),
        host_devices=[device],
    )
    caps = runtime_spec["process"]["capabilities"]
    # as Docker: capabilities.drop does not apply to a privileged replica
    assert caps["bounding"] == caps["effective"] == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    assert runtime_spec["linux"]["maskedPaths"] == []
    assert runtime_spec["linux"]["readonlyPaths"] == []
    assert "seccomp" not in runtime_spec["linux"]
    assert runtime_spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert runtime_spec["linux"]["devices"] == [device]
    assert "ro" not in _mount(runtime_spec, "/sys")["options"]
    assert "ro" not in _mount(runtime_spec, "/sys/fs/cgroup")["options"]


def test_host_namespaces_are_left_out() -> None:
    runtime_spec = _runtime_spec({"hostPid": True, "hostIpc": True, "hostNetwork": True})
    assert _namespace_types(runtime_spec) == ["uts", "mount"]
    assert _oci.shares_host_network(runtime_spec)


def test_sysctls_go_to_linux_sysctl() -> None:
    runtime_spec = _runtime_spec({"sysctls": {"net.ipv4.ip_unprivileged_port_start": "80"}})
    assert runtime_spec["linux"]["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "80"}


def test_bounding_capabilities_from_status() -> None:
    # bits 0 (CHOWN), 21 (SYS_ADMIN) and 40 (CHECKPOINT_RESTORE)
    mask = (1 << 0) | (1 << 21) | (1 << 40)
    status = f"Name:\tpython\nCapBnd:\t{mask:016x}\nCapAmb:\t0000000000000000\n"
    assert _oci.bounding_capabilities(status) == (
        "CAP_CHOWN",
        "CAP_SYS_ADMIN",
        "CAP_CHECKPOINT_RESTORE",
    )


def test_bounding_capabilities_of_a_host_missing_one() -> None:
    # a VM whose root lacks CAP_SYS_RESOURCE (bit 24), as our CI host
    status = "CapBnd:\t000001fffeffffff\n"
    caps = _oci.bounding_capabilities(status)
    assert "CAP_SYS_RESOURCE" not in caps
    assert len(caps) == len(_oci.ALL_CAPABILITIES) - 1


def test_host_devices_lists_char_and_block_devices_only(tmp_path: Path) -> None:
    (tmp_path / "not-a-device").write_text("x")
    (tmp_path / "pts").mkdir()
    assert _oci.host_devices(tmp_path) == []
    found = _oci.host_devices(Path("/dev"))
    assert found, "the host has devices"
    assert all(d["type"] in ("c", "b") for d in found)
    paths = {d["path"] for d in found}
    assert "/dev/null" not in paths  # runc makes its own
    assert not any(p.startswith("/dev/pts/") for p in paths)


def test_facts_read_back_the_runtime_spec() -> None:
    runtime_spec = _runtime_spec(
        {
            "readOnlyRootFilesystem": True,
            "noNewPrivileges": True,
            "capabilities": {"drop": ["CHOWN"], "add": ["NET_ADMIN"]},
            "hostPid": True,
            "sysctls": {"kernel.shm_rmid_forced": "1"},
        }
    )
    facts = _oci.facts_from_runtime_spec(
        runtime_spec, "io.containerd.runc.v2", [("127.0.0.1", 18080, 8080, "tcp")]
    )
    assert facts.privileged is False
    assert facts.user == "0:0"
    assert (facts.cap_add, facts.cap_drop) == (("NET_ADMIN",), ("CHOWN",))
    assert facts.read_only_rootfs and facts.no_new_privileges
    assert facts.seccomp == ""  # the default filter
    assert (facts.pid_mode, facts.ipc_mode, facts.network_mode) == ("host", "", "")
    assert facts.userns_mode == "host"  # no user namespace of its own
    assert facts.sysctls == {"kernel.shm_rmid_forced": "1"}
    assert facts.ulimits == ("nofile=1024:1024",)
    assert facts.published == (("127.0.0.1", 18080, 8080, "tcp"),)
    assert facts.runtime == "io.containerd.runc.v2"


def test_facts_of_a_privileged_runtime_spec() -> None:
    device = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}
    runtime_spec = _runtime_spec({"privileged": True}, host_devices=[device])
    facts = _oci.facts_from_runtime_spec(runtime_spec, "io.containerd.runc.v2")
    assert facts.privileged is True
    assert facts.devices == ("/dev/fuse:/dev/fuse:rwm",)
    assert "SYS_ADMIN" in facts.cap_add


def _denied(profile: dict[str, Any]) -> set[str]:
    """Calls refused outright (rules without argument conditions)."""
    return {n for rule in profile["syscalls"] if "args" not in rule for n in rule["names"]}


def test_unconfined_has_no_filter() -> None:
    runtime_spec = _runtime_spec({"seccompProfile": "Unconfined"})
    assert "seccomp" not in runtime_spec["linux"]
    facts = _oci.facts_from_runtime_spec(runtime_spec, "io.containerd.runc.v2")
    assert facts.seccomp == "unconfined"


def test_default_filter_refuses_new_namespaces_and_host_administration() -> None:
    profile = _seccomp.default_profile(_oci.DEFAULT_CAPABILITIES, machine="x86_64")
    assert profile["architectures"][0] == "SCMP_ARCH_X86_64"
    denied = _denied(profile)
    assert {"mount", "keyctl", "bpf", "init_module", "reboot", "clone3"} <= denied
    assert "ptrace" not in denied and "read" not in denied
    flagged = [r for r in profile["syscalls"] if "args" in r]
    user_ns = 0x10000000
    assert any(
        r["names"] == ["clone", "unshare"] and r["args"][0]["value"] == user_ns for r in flagged
    )


def test_a_granted_capability_allows_its_calls() -> None:
    caps = [*_oci.DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"]
    profile = _seccomp.default_profile(caps, machine="x86_64")
    denied = _denied(profile)
    assert "mount" not in denied and "clone3" not in denied
    assert not any("args" in r for r in profile["syscalls"])  # namespaces allowed
    assert "keyctl" in denied  # refused whatever the capabilities


def test_unknown_architecture_leaves_the_native_one() -> None:
    assert "architectures" not in _seccomp.default_profile((), machine="riscv64")
