"""The security section in Docker's and Podman's vocabulary, the runAsNonRoot
decision, SecurityFacts read from an inspect document, and the spec's refusal
of settings no engine can honour with hostNetwork."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from portway.drivers.base import MountFact
from portway.drivers.engine_security import (
    docker_security_options,
    facts_from_inspect,
    libpod_security_options,
    non_root_refusal,
)
from portway.spec.model import Security, WorkloadSpec


def _security(**fields: Any) -> Security:
    return Security.model_validate(fields)


def test_defaults_ask_the_engines_for_nothing() -> None:
    assert docker_security_options(_security()) == {}
    assert libpod_security_options(_security()) == {}


def test_docker_options_for_every_weakening_setting() -> None:
    security = _security(
        privileged=True,
        hostNetwork=True,
        hostPid=True,
        hostIpc=True,
        seccompProfile="Unconfined",
        noNewPrivileges=True,
        sysctls={"kernel.shm_rmid_forced": "1"},
    )
    assert docker_security_options(security) == {
        "privileged": True,
        "network_mode": "host",
        "pid_mode": "host",
        "ipc_mode": "host",
        "security_opt": ["no-new-privileges:true", "seccomp=unconfined"],
        "sysctls": {"kernel.shm_rmid_forced": "1"},
    }


def test_libpod_options_for_every_weakening_setting() -> None:
    security = _security(
        privileged=True,
        hostNetwork=True,
        hostPid=True,
        hostIpc=True,
        seccompProfile="Unconfined",
        sysctls={"net.ipv4.ip_unprivileged_port_start": "80"},
    )
    assert libpod_security_options(security) == {
        "privileged": True,
        "netns": {"nsmode": "host"},
        "pidns": {"nsmode": "host"},
        "ipcns": {"nsmode": "host"},
        "seccomp_profile_path": "unconfined",
        "annotations": {"io.podman.annotations.seccomp": "unconfined"},
        "init": False,  # podman refuses an init outside a private PID namespace
        "sysctl": {"net.ipv4.ip_unprivileged_port_start": "80"},
    }


@pytest.mark.parametrize(
    ("spec_user", "image_user"),
    [("1000", ""), ("1000:1000", "root"), (None, "65534"), (None, "65534:0"), ("", "10")],
)
def test_non_root_allows_a_nonzero_uid(spec_user: str | None, image_user: str) -> None:
    assert non_root_refusal(spec_user, image_user) is None


@pytest.mark.parametrize(
    ("spec_user", "image_user", "words"),
    [
        (None, "", "configures no User"),
        (None, "0", "spec.security.user"),  # the advice names the field to set
        ("0", "1000", "uid 0"),
        ("0:1000", "", "uid 0"),
        (None, "root", "a name, not a uid"),
        ("nobody", "", "a name, not a uid"),
    ],
)
def test_non_root_refuses_root_or_unprovable(
    spec_user: str | None, image_user: str, words: str
) -> None:
    refusal = non_root_refusal(spec_user, image_user)
    assert refusal is not None
    assert refusal.startswith("security.runAsNonRoot: ")
    assert words in refusal


def test_refusal_says_where_the_user_came_from() -> None:
    assert "the image's User is 'root'" in (non_root_refusal(None, "root") or "")
    assert "spec.security.user is '0'" in (non_root_refusal("0", "") or "")


_INSPECT: dict[str, Any] = {
    "AppArmorProfile": "docker-default",
    "Config": {
        "User": "1000:1000",
        "Healthcheck": {"Test": ["CMD-SHELL", "true"]},
    },
    "HostConfig": {
        "Privileged": True,
        "CapAdd": ["NET_ADMIN"],
        "CapDrop": ["ALL"],
        "ReadonlyRootfs": True,
        "SecurityOpt": ["no-new-privileges:true", "seccomp=unconfined"],
        "Runtime": "runsc",
        "NetworkMode": "host",
        "PidMode": "host",
        "IpcMode": "shareable",
        "UTSMode": "",
        "UsernsMode": "",
        "Memory": 64 * 1024 * 1024,
        "NanoCpus": 500_000_000,
        "PidsLimit": -1,
        "PortBindings": {
            "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}],
            "53/udp": [{"HostIp": "", "HostPort": ""}],
        },
        "Tmpfs": {"/run": "rw,mode=1777", "/ro": "ro"},
        "Devices": [
            {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}
        ],
        "Sysctls": {"net.ipv4.ip_forward": "1"},
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
    },
    "Mounts": [
        {
            "Type": "bind",
            "Source": "/srv/data",
            "Destination": "/data",
            "RW": False,
            "Propagation": "rprivate",
        },
        {
            "Type": "volume",
            "Name": "cache",
            "Source": "/var/lib/docker/volumes/cache/_data",
            "Destination": "/cache",
            "RW": True,
            "Propagation": "",
        },
    ],
}


def test_facts_from_a_docker_inspect_document() -> None:
    facts = facts_from_inspect(_INSPECT)
    assert facts.privileged is True
    assert facts.user == "1000:1000"
    assert facts.cap_add == ("NET_ADMIN",)
    assert facts.cap_drop == ("ALL",)
    assert facts.read_only_rootfs is True
    assert facts.no_new_privileges is True
    assert facts.seccomp == "unconfined"
    assert facts.apparmor == "docker-default"
    assert facts.runtime == "runsc"
    assert (facts.network_mode, facts.pid_mode, facts.ipc_mode) == ("host", "host", "shareable")
    assert facts.memory_limit == 64 * 1024 * 1024
    assert facts.cpu_limit == pytest.approx(0.5)
    assert facts.pids_limit == 0  # -1: unlimited
    assert facts.published == (("", 0, 53, "udp"), ("127.0.0.1", 18080, 8080, "tcp"))
    assert facts.mounts == (
        MountFact("cache", "/cache", "volume", True, ""),
        MountFact("/srv/data", "/data", "bind", False, "rprivate"),
        MountFact("tmpfs", "/ro", "tmpfs", False),
        MountFact("tmpfs", "/run", "tmpfs", True),
    )
    assert facts.devices == ("/dev/fuse:/dev/fuse:rwm",)
    assert facts.sysctls == {"net.ipv4.ip_forward": "1"}
    assert facts.ulimits == ("nofile=1024:2048",)
    assert (facts.restart_policy, facts.restart_max) == ("on-failure", 3)
    assert facts.healthcheck is True


def test_facts_spell_podman_capabilities_and_ulimits_as_docker_does() -> None:
    facts = facts_from_inspect(
        {
            "HostConfig": {
                "CapAdd": ["CAP_NET_ADMIN"],
                "CapDrop": ["CAP_MKNOD", "CAP_AUDIT_WRITE"],
                "Ulimits": [{"Name": "RLIMIT_NOFILE", "Soft": 20000, "Hard": 20000}],
            }
        }
    )
    assert facts.cap_add == ("NET_ADMIN",)
    assert facts.cap_drop == ("AUDIT_WRITE", "MKNOD")
    assert facts.ulimits == ("nofile=20000:20000",)


def test_facts_of_a_default_container_are_the_defaults() -> None:
    facts = facts_from_inspect(
        {
            "HostConfig": {"SecurityOpt": None, "CpuShares": 1024, "PidsLimit": None},
            "Config": {"Healthcheck": {"Test": ["NONE"]}},
        }
    )
    assert facts.privileged is False
    assert facts.no_new_privileges is False
    assert facts.seccomp == ""
    assert facts.cpu_limit == 0.0  # default shares are a weight, not a limit
    assert facts.healthcheck is False
    assert facts.mounts == ()


def test_published_ports_of_a_running_replica_are_the_bound_ones() -> None:
    facts = facts_from_inspect(
        {
            "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}},
            "NetworkSettings": {
                "Ports": {
                    "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}],
                    "9090/tcp": None,  # exposed by the image, not published
                }
            },
        }
    )
    assert facts.published == (("127.0.0.1", 49153, 8080, "tcp"),)


def test_cpu_limit_from_quota_and_shares() -> None:
    quota = facts_from_inspect({"HostConfig": {"CpuQuota": 150_000, "CpuPeriod": 100_000}})
    assert quota.cpu_limit == pytest.approx(1.5)
    shares = facts_from_inspect({"HostConfig": {"CpuShares": 512}})
    assert shares.cpu_limit == pytest.approx(0.5)


def test_apparmor_from_security_opt_wins() -> None:
    facts = facts_from_inspect(
        {"AppArmorProfile": "", "HostConfig": {"SecurityOpt": ["apparmor=unconfined"]}}
    )
    assert facts.apparmor == "unconfined"


def test_host_network_refuses_published_ports() -> None:
    with pytest.raises(ValidationError, match="cannot be published"):
        WorkloadSpec.model_validate(
            {
                "image": "x",
                "ports": [{"containerPort": 8080}],
                "security": {"hostNetwork": True},
            }
        )


def test_host_network_refuses_net_sysctls() -> None:
    with pytest.raises(ValidationError, match=r"net\.ipv4\.ip_forward would change the host"):
        WorkloadSpec.model_validate(
            {
                "image": "x",
                "security": {"hostNetwork": True, "sysctls": {"net.ipv4.ip_forward": "1"}},
            }
        )


@pytest.mark.parametrize("key", ["kernel.shm_rmid_forced", "fs.mqueue.msg_max"])
def test_host_ipc_refuses_ipc_sysctls(key: str) -> None:
    with pytest.raises(ValidationError, match="with hostIpc"):
        WorkloadSpec.model_validate(
            {"image": "x", "security": {"hostIpc": True, "sysctls": {key: "1"}}}
        )


@pytest.mark.parametrize("key", ["vm.swappiness", "kernel.hostname", "fs.file-max"])
def test_host_wide_sysctls_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match="not a namespaced sysctl"):
        WorkloadSpec.model_validate({"image": "x", "security": {"sysctls": {key: "1"}}})


def test_host_network_alone_and_other_sysctls_are_fine() -> None:
    spec = WorkloadSpec.model_validate(
        {
            "image": "x",
            "security": {"hostNetwork": True, "sysctls": {"kernel.shm_rmid_forced": "1"}},
        }
    )
    assert spec.security.host_network is True
