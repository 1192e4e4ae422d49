"""Isolation tiers as policy: which tier a workload runs in, and whether the
namespace lets it.

A workload that names no tier gets the namespace's default; ``trust:
untrusted`` asks for at least the sandboxed tier. The namespace's minimum is a
floor nobody passes below, and an extension that names a runtime handler may
not quietly weaken the tier it runs in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portway.spec.loader import format_path
from portway.spec.model import Isolation, Trust, WorkloadSpec
from portway.spec.namespace import IsolationPolicy, tier_strength

from .violations import Violation

#: What an untrusted workload needs at least.
UNTRUSTED_MINIMUM = Isolation.SANDBOXED

#: Extension keys by which a backend block names its runtime handler.
RUNTIME_KEYS = ("runtime", "runtimeHandler", "runtimeClassName")


def isolation_given(spec: WorkloadSpec) -> bool:
    """Whether the file set ``spec.isolation`` (pydantic records which fields
    were given; the default ``standard`` is not a choice the user made)."""
    return "isolation" in spec.model_fields_set


def resolve_tier(spec: WorkloadSpec, policy: IsolationPolicy, *, given: bool) -> Isolation:
    """The tier the workload runs in: its own choice, else the namespace's
    default raised to what its trust level needs."""
    if given:
        return spec.isolation
    tier = policy.default
    if spec.trust is Trust.UNTRUSTED and tier_strength(tier) < tier_strength(UNTRUSTED_MINIMUM):
        tier = UNTRUSTED_MINIMUM
    return tier


def check_tier(tier: Isolation, spec: WorkloadSpec, policy: IsolationPolicy) -> list[Violation]:
    found: list[Violation] = []
    minimum = policy.minimum
    if minimum is not None and tier_strength(tier) < tier_strength(minimum):
        found.append(
            Violation(
                "spec.isolation",
                "isolation/minimum-tier",
                f"isolation {tier.value} is weaker than the namespace's minimum tier "
                f"{minimum.value}; expected {minimum.value} or stronger",
            )
        )
    if spec.trust is Trust.UNTRUSTED and tier_strength(tier) < tier_strength(UNTRUSTED_MINIMUM):
        found.append(
            Violation(
                "spec.isolation",
                "isolation/untrusted",
                f"an untrusted workload may not run in isolation {tier.value}; expected "
                f"{UNTRUSTED_MINIMUM.value} or stronger",
            )
        )
    return found


def handler_tier(handler: str) -> Isolation:
    """The tier a runtime handler gives, judged by its name: gVisor's runsc
    sandboxes, Kata and Firecracker are micro-VMs, wasm runtimes are wasm;
    anything else (runc, crun, youki, unknown names) counts as standard."""
    name = handler.lower()
    if "runsc" in name or "gvisor" in name:
        return Isolation.SANDBOXED
    if "kata" in name or "firecracker" in name:
        return Isolation.MICROVM
    if "wasm" in name or "spin" in name:
        return Isolation.WASM
    return Isolation.STANDARD


def check_extension_runtimes(
    tier: Isolation, extensions: Mapping[str, Mapping[str, Any]]
) -> list[Violation]:
    """An ``extensions.<driver>`` runtime handler weaker than the tier would
    run the replica with less isolation than asked for, invisibly."""
    found: list[Violation] = []
    for driver, block in sorted(extensions.items()):
        for key in RUNTIME_KEYS:
            handler = block.get(key) if isinstance(block, Mapping) else None
            if not isinstance(handler, str) or not handler:
                continue
            gives = handler_tier(handler)
            if tier_strength(gives) < tier_strength(tier):
                found.append(
                    Violation(
                        format_path(("spec", "extensions", driver, key)),
                        "isolation/extension-runtime",
                        f"runtime handler {handler!r} gives isolation {gives.value}, weaker "
                        f"than the workload's tier {tier.value}; remove the extension or "
                        f"name the {tier.value} tier's handler",
                    )
                )
    return found
