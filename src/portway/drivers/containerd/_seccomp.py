"""The seccomp filter behind ``seccompProfile: RuntimeDefault`` on containerd.

containerd applies no filter of its own when talking to its API directly (the
CRI plugin and nerdctl add one), so this driver brings one. It is a deny list
of our own, narrower than Docker's allow list: everything is allowed except
the system calls that reach past a container's namespaces or widen the
kernel's attack surface without needing a capability (new user namespaces,
the kernel keyring, BPF, userfaultfd, perf events), plus those that only
matter to the host's administrator. A group is allowed again when the
replica is granted the capability that the kernel checks for it anyway
(``capabilities.add: [SYS_ADMIN]`` may mount), as Docker's profile does.
"""

from __future__ import annotations

import platform
from collections.abc import Collection
from typing import Any

EPERM = 1
ENOSYS = 38

# CLONE_NEW* flags (linux/sched.h): a new namespace of each kind
_CLONE_NAMESPACES = (
    0x00020000,  # NEWNS (mount)
    0x02000000,  # NEWCGROUP
    0x04000000,  # NEWUTS
    0x08000000,  # NEWIPC
    0x10000000,  # NEWUSER
    0x20000000,  # NEWPID
    0x40000000,  # NEWNET
)

#: refused whatever the replica's capabilities: host administration and
#: interfaces with a long record of kernel bugs reachable without privilege
_ALWAYS = (
    "acct",
    "add_key",
    "adjtimex",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "nfsservctl",
    "query_module",
    "reboot",
    "request_key",
    "settimeofday",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
)

#: allowed only with the capability named
_BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": (
        "bpf",
        "fanotify_init",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "lookup_dcookie",
        "mount",
        "mount_setattr",
        "move_mount",
        "open_tree",
        "pivot_root",
        "quotactl",
        "setns",
        "umount",
        "umount2",
    ),
    # ptrace itself stays allowed (as Docker's profile does on kernels >= 4.8)
    "CAP_SYS_PTRACE": ("kcmp", "process_vm_readv", "process_vm_writev"),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYSLOG": ("syslog",),
    "CAP_PERFMON": ("perf_event_open",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "move_pages"),
}

_ARCHITECTURES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def _deny(names: Collection[str], errno: int = EPERM, **rule: Any) -> dict[str, Any]:
    return {"names": sorted(names), "action": "SCMP_ACT_ERRNO", "errnoRet": errno, **rule}


def default_profile(capabilities: Collection[str], machine: str | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` section for a replica holding ``capabilities``
    (``CAP_*`` names) on a host of architecture ``machine`` (default: this one)."""
    granted = set(capabilities)
    denied = list(_ALWAYS)
    for capability, names in _BY_CAPABILITY.items():
        if capability not in granted:
            denied.extend(names)
    rules = [_deny(denied)]
    if "CAP_SYS_ADMIN" not in granted:
        # new namespaces: one rule per flag (rules for one call are OR-ed).
        # unshare's flags are its first argument, clone's too on x86 and arm.
        for flag in _CLONE_NAMESPACES:
            masked = {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
            rules.append(_deny(("clone", "unshare"), args=[masked]))
        # clone3 passes its flags in memory, where a filter cannot look:
        # ENOSYS makes the C library fall back to clone, which is filtered
        rules.append(_deny(("clone3",), errno=ENOSYS))
    profile: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
    architectures = _ARCHITECTURES.get(machine or platform.machine())
    if architectures:
        profile["architectures"] = architectures
    return profile
