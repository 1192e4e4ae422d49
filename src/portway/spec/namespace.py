"""The namespace policy document, ``portway.dev/v1`` kind ``Namespace``.

A namespace's security policy: its Pod Security Standards level, its
isolation tiers (default and minimum), which images it may run and which host
ports it may publish. Lives in ``spec`` so the loader can read it next to
workloads in one file; ``portway.policy`` judges workloads against it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from portway.spec.model import Isolation, _check_labels, _check_name, _Model

KIND_NAMESPACE = "Namespace"

#: Host ports a namespace may publish when its policy says nothing. Ports
#: below 1024 are where the host's own services live (ssh, dns, http) and need
#: root to bind, so a workload taking one can impersonate a system service (CIS
#: Docker Benchmark 5.7 says the same); 1024-65535 keeps every unprivileged port.
DEFAULT_HOST_PORTS = ("1024-65535",)

_RANGE_RE = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?$")


#: How strongly each tier isolates a replica from the host: a tier may stand
#: in for any weaker one. microvm and wasm are both stronger than a gVisor
#: sandbox but not comparable with each other, so they share a rank.
_TIER_STRENGTH = {
    Isolation.STANDARD: 0,
    Isolation.SANDBOXED: 1,
    Isolation.MICROVM: 2,
    Isolation.WASM: 2,
}


def tier_strength(tier: Isolation) -> int:
    return _TIER_STRENGTH[tier]


class PodSecurityLevel(StrEnum):
    """Kubernetes' Pod Security Standards levels, cumulative."""

    PRIVILEGED = "privileged"  # no restriction at all
    BASELINE = "baseline"  # no known privilege escalation
    RESTRICTED = "restricted"  # current hardening practice

    @property
    def rank(self) -> int:
        return list(PodSecurityLevel).index(self)


def parse_port_range(text: str) -> tuple[int, int]:
    """``"1024-65535"`` -> (1024, 65535); ``"8080"`` -> (8080, 8080). Raises ValueError."""
    match = _RANGE_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a port range; expected e.g. '8080' or '1024-65535'")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"port range {text!r} must be ascending within 1-65535")
    return first, last


class IsolationPolicy(_Model):
    default: Isolation = Field(
        default=Isolation.STANDARD,
        description="Tier of a workload that does not set spec.isolation.",
    )
    minimum: Isolation | None = Field(
        default=None, description="Weakest tier a workload may run in (none: any)."
    )


class ImagePolicy(_Model):
    allowed_prefixes: list[str] = Field(
        default_factory=list,
        description="Image references must start with one of these (empty: any image), "
        "e.g. 'registry.example.com/team/' or 'portway/'.",
    )
    require_digest: bool = Field(
        default=False, description="Images must be pinned by digest (@sha256:...)."
    )

    @field_validator("allowed_prefixes")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        for prefix in v:
            if not prefix or any(c.isspace() for c in prefix):
                raise ValueError(f"{prefix!r} is not an image prefix (e.g. 'portway/')")
        return v


class NamespacePolicySpec(_Model):
    pod_security: PodSecurityLevel = Field(
        default=PodSecurityLevel.BASELINE,
        description="Pod Security Standards level: privileged, baseline or restricted.",
    )
    isolation: IsolationPolicy = Field(default_factory=IsolationPolicy)
    images: ImagePolicy = Field(default_factory=ImagePolicy)
    host_ports: list[str] = Field(
        default_factory=lambda: list(DEFAULT_HOST_PORTS),
        description="Host port ranges workloads may publish, e.g. ['8000-8999'] "
        "(default 1024-65535: never the privileged ports of host services).",
    )

    @field_validator("host_ports")
    @classmethod
    def _host_ports(cls, v: list[str]) -> list[str]:
        for text in v:
            parse_port_range(text)
        return v

    @model_validator(mode="after")
    def _default_meets_minimum(self) -> NamespacePolicySpec:
        minimum = self.isolation.minimum
        if minimum is not None and tier_strength(self.isolation.default) < tier_strength(minimum):
            raise ValueError(
                f"isolation.default {self.isolation.default.value!r} is weaker than "
                f"isolation.minimum {minimum.value!r}"
            )
        return self

    def port_ranges(self) -> list[tuple[int, int]]:
        return [parse_port_range(text) for text in self.host_ports]


class NamespaceMetadata(_Model):
    name: str = Field(description="Namespace name, a DNS-1123 label.")
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "namespace name")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)


class Namespace(_Model):
    api_version: Literal["portway.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["Namespace"]
    metadata: NamespaceMetadata
    spec: NamespacePolicySpec = Field(default_factory=NamespacePolicySpec)

    @property
    def name(self) -> str:
        return self.metadata.name
