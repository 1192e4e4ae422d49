"""Namespace policy records in the store, and the defaults for namespaces
that have none.

A namespace needs no object to exist: workloads name it and it is there. Its
policy is then the defaults: Pod Security level from
``PORTWAY_DEFAULT_POD_SECURITY`` (``baseline`` when unset), host ports
1024-65535, default tier standard, no minimum tier, any image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from portway.controller.records import CLUSTER_NAMESPACE
from portway.errors import InputError
from portway.spec.namespace import KIND_NAMESPACE, Namespace, NamespacePolicySpec, PodSecurityLevel
from portway.store import Record, Store

DEFAULT_POD_SECURITY_ENV = "PORTWAY_DEFAULT_POD_SECURITY"

__all__ = [
    "DEFAULT_POD_SECURITY_ENV",
    "KIND_NAMESPACE",
    "default_pod_security",
    "default_policy",
    "namespace_envelope",
    "namespace_of",
    "policy_for",
]


def default_pod_security(environ: Mapping[str, str] | None = None) -> PodSecurityLevel:
    """The level of a namespace without a policy object. Baseline by default:
    it refuses only known privilege escalations, so ordinary workloads run
    unchanged while privileged ones need a namespace that says so."""
    env = os.environ if environ is None else environ
    value = env.get(DEFAULT_POD_SECURITY_ENV, "").strip() or PodSecurityLevel.BASELINE.value
    try:
        return PodSecurityLevel(value)
    except ValueError:
        levels = ", ".join(level.value for level in PodSecurityLevel)
        raise InputError(
            f"{DEFAULT_POD_SECURITY_ENV}={value!r} is not a Pod Security level; "
            f"expected one of {levels}"
        ) from None


def default_policy(level: PodSecurityLevel) -> NamespacePolicySpec:
    return NamespacePolicySpec(pod_security=level)


def namespace_of(record: Record) -> Namespace:
    return Namespace.model_validate(record.spec["namespace"])


def namespace_envelope(namespace: Namespace) -> dict[str, Any]:
    return {"namespace": namespace.model_dump(mode="json", by_alias=True, exclude_none=True)}


def policy_for(store: Store, name: str, default_level: PodSecurityLevel) -> NamespacePolicySpec:
    """The policy in force for namespace ``name``: its object's, else the defaults."""
    record = store.get(KIND_NAMESPACE, CLUSTER_NAMESPACE, name)
    if record is None:
        return default_policy(default_level)
    return namespace_of(record).spec
