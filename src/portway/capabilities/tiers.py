"""Isolation tiers: what each means, and which are planned but not buildable yet.

A workload asks for a tier; each target maps the tiers it offers to runtime
handlers found by fingerprinting (docker/podman: runc, runsc; containerd: the
runc shim running runc or runsc; the wasm driver: wasmtime). A workload never
names a handler itself, except through an explicit extension.
"""

from __future__ import annotations

from collections.abc import Mapping

from portway.capabilities.vocabulary import Feature
from portway.spec.model import Isolation

#: what each tier gives the workload, for plans and ``get targets -o wide``
MEANING: Mapping[str, str] = {
    Isolation.STANDARD.value: "Linux namespaces and cgroups on the host kernel (runc)",
    Isolation.SANDBOXED.value: "a user-space kernel between the workload and the host (gVisor)",
    Isolation.MICROVM.value: "a hardware-virtualised guest kernel per replica",
    Isolation.WASM.value: "a WebAssembly module with only the capabilities WASI grants",
}

#: tiers the model knows but no driver can offer yet, with the reason
PLANNED: Mapping[str, str] = {
    Isolation.MICROVM.value: (
        "no micro-VM handler exists yet: it needs Firecracker or Kata Containers and a "
        "KVM host that runs standard guest kernels (see docs/isolation.md)"
    ),
}


def unavailable(offered: frozenset[str] | set[str]) -> dict[str, str]:
    """Known tiers a target does not offer, each with why."""
    out: dict[str, str] = {}
    for tier in Isolation:
        if tier.value in offered:
            continue
        out[tier.value] = PLANNED.get(tier.value, "no runtime handler for it on this target")
    return out


#: features no driver can offer in a tier, whatever its engine, with the reason
#: (a driver's own ``tier_gaps`` add what its engine lacks on top of these)
EXCLUDED: Mapping[str, Mapping[Feature, str]] = {
    Isolation.SANDBOXED.value: {
        Feature.SECURITY_PRIVILEGED: (
            "a sandbox cannot be privileged: gVisor's kernel mediates every device and "
            "capability, which is the point of the tier"
        ),
        Feature.SECURITY_HOST_PID: "the sandbox has its own kernel and so its own PID namespace",
        Feature.SECURITY_HOST_IPC: "the sandbox has its own kernel and so its own IPC namespace",
        Feature.SECURITY_HOST_NETWORK: (
            "the sandboxed tier keeps the replica out of the host's namespaces; gVisor only "
            "uses the network namespace the engine made for the replica"
        ),
        Feature.SECURITY_SECCOMP_UNCONFINED: (
            "runsc filters the sandbox's own system calls and ignores the OCI seccomp profile: "
            "a replica can neither choose a profile nor run unconfined"
        ),
        Feature.SECURITY_SYSCTLS: (
            "gVisor implements only a few sysctls (e.g. not net.ipv4.ip_unprivileged_port_start)"
        ),
    },
}
