"""One verdict on one workload in one namespace: the tier it runs in and
every rule it breaks."""

from __future__ import annotations

from dataclasses import dataclass

from portway.spec.model import Isolation, Workload, WorkloadSpec
from portway.spec.namespace import NamespacePolicySpec

from .images import check_image
from .isolation import check_extension_runtimes, check_tier, isolation_given, resolve_tier
from .pss import check_pod_security
from .violations import Violation


@dataclass(frozen=True)
class Decision:
    tier: Isolation  # the resolved tier, what placement and the drivers see
    violations: tuple[Violation, ...]

    @property
    def allowed(self) -> bool:
        return not self.violations


def evaluate_spec(
    spec: WorkloadSpec, policy: NamespacePolicySpec, *, given: bool | None = None
) -> Decision:
    """Judge ``spec`` against a namespace's policy. ``given`` says whether the
    file chose a tier (default: read from the spec's set fields)."""
    chose = isolation_given(spec) if given is None else given
    tier = resolve_tier(spec, policy.isolation, given=chose)
    found: list[Violation] = []
    found += check_pod_security(spec, policy.pod_security, policy.port_ranges())
    found += check_image(spec.image, policy.images)
    found += check_tier(tier, spec, policy.isolation)
    found += check_extension_runtimes(tier, spec.extensions)
    return Decision(tier, tuple(found))


def resolved(workload: Workload, tier: Isolation) -> Workload:
    """The workload with its tier written in, as the store keeps it (so the
    template hash, placement and the drivers all see the same tier)."""
    if workload.spec.isolation is tier and isolation_given(workload.spec):
        return workload
    spec = workload.spec.model_copy(update={"isolation": tier})
    return workload.model_copy(update={"spec": spec})
