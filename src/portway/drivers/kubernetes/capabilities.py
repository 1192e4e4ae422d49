"""What the Kubernetes driver claims, and why each feature it leaves out is left out.

A claim is proven by the conformance suite on a live cluster
(``scripts/test-kubernetes.sh``); until a run is kept in the capability
matrix, the planner treats the claims as declared but unproven.
"""

from __future__ import annotations

from collections.abc import Mapping

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import DriverCapabilities, RuntimeHandler
from portway.drivers.runtime_handlers import GVISOR_GAPS
from portway.spec.model import Isolation

#: what a Pod of portway's gets from any conforming cluster
BASE: frozenset[Feature] = frozenset(
    {
        Feature.COMMAND,
        Feature.ARGS,
        Feature.ENV,
        Feature.PORTS_TCP,
        Feature.PORTS_UDP,
        Feature.RESOURCES_CPU,
        Feature.RESOURCES_MEMORY,
        Feature.OOM_REPORTED,
        Feature.RESTART_ALWAYS,
        Feature.RESTART_ON_FAILURE,
        Feature.RESTART_NEVER,
        Feature.PROBES_EXEC,
        Feature.PROBES_HTTP,
        Feature.PROBES_TCP,
        Feature.VOLUMES_TMPFS,
        Feature.VOLUMES_TMPFS_SIZE,
        Feature.VOLUMES_READ_ONLY,
        Feature.SECURITY_USER,
        Feature.SECURITY_READ_ONLY_ROOTFS,
        Feature.SECURITY_CAP_DROP,
        Feature.SECURITY_NO_NEW_PRIVILEGES,
        Feature.SECURITY_RUN_AS_NON_ROOT,
        Feature.ISOLATION_STANDARD,
        Feature.EXEC,
        Feature.LOGS,
        Feature.LOGS_FOLLOW,
    }
)

#: allowed by Pod Security "privileged" only; "baseline" and "restricted"
#: forbid host ports, host namespaces, privileged containers, added
#: capabilities beyond a default set, unconfined seccomp and unsafe sysctls
HOST_ACCESS: frozenset[Feature] = frozenset(
    {
        Feature.PORTS_HOST_PORT,
        Feature.SECURITY_CAP_ADD,
        Feature.SECURITY_PRIVILEGED,
        Feature.SECURITY_HOST_NETWORK,
        Feature.SECURITY_HOST_PID,
        Feature.SECURITY_HOST_IPC,
        Feature.SECURITY_SECCOMP_UNCONFINED,
        Feature.SECURITY_SYSCTLS,
    }
)

#: left out on every cluster, with why (docs/kubernetes-driver.md repeats them)
NOT_CLAIMED: Mapping[Feature, str] = {
    Feature.SERVICES_DNS: "needs a Service per workload; the driver makes only Pods",
    Feature.SERVICES_ENV: "follows services.dns",
    Feature.NETWORKS_NAMED: (
        "Pods of a namespace share the cluster network; keeping them apart would need "
        "NetworkPolicies the driver does not make"
    ),
    Feature.RESOURCES_PIDS: "Kubernetes has no per-Pod PID limit (only the kubelet's podPidsLimit)",
    Feature.VOLUMES_NAMED: (
        "a named volume would be a PersistentVolumeClaim the driver does not make"
    ),
    Feature.VOLUMES_PER_REPLICA: "follows volumes.named",
    Feature.VOLUMES_SNAPSHOTS: "follows volumes.named",
    Feature.VOLUMES_SIZE_LIMIT: "follows volumes.named",
    Feature.VOLUMES_BIND: "a hostPath is a directory of whichever node runs the Pod, not this host",
    Feature.SECRETS_FILES: "would need a Kubernetes Secret per replica; not built yet",
    Feature.STATS: "needs metrics-server (metrics.k8s.io), which a cluster may not have",
    Feature.ISOLATION_WASM: "portway's wasm tier runs its own artifact store, not images",
}

#: a sandboxed Pod (gVisor RuntimeClass) lacks what gVisor lacks anywhere;
#: the gaps measured with runsc --network=host (probes, UDP) do not apply to
#: gVisor's own network stack, which Kubernetes' runsc uses
TIER_GAPS: Mapping[str, Mapping[Feature, str]] = {
    Isolation.SANDBOXED.value: {
        f: why
        for f, why in GVISOR_GAPS.items()
        if f in (Feature.SECURITY_CAP_ADD, Feature.SECURITY_NO_NEW_PRIVILEGES)
    },
}

_TIERS = {
    Isolation.SANDBOXED.value: Feature.ISOLATION_SANDBOXED,
    Isolation.MICROVM.value: Feature.ISOLATION_MICROVM,
}


def capabilities_for(pod_security: str, handlers: tuple[RuntimeHandler, ...]) -> DriverCapabilities:
    """``pod_security``: the namespace's enforced level; "" (could not be
    read) claims no host access, the cautious answer."""
    features = set(BASE)
    if pod_security == "privileged":
        features |= HOST_ACCESS
    features |= {_TIERS[h.tier] for h in handlers if h.tier in _TIERS}
    return DriverCapabilities(frozenset(features), handlers=handlers, tier_gaps=TIER_GAPS)
