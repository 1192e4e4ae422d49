"""Namespace policy: apply, list and describe Namespace objects, and judge
workloads against the policy of their namespace before anything is written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from portway.controller.namespaces import (
    KIND_NAMESPACE,
    namespace_envelope,
    namespace_of,
    policy_for,
)
from portway.controller.records import CLUSTER_NAMESPACE, KIND_WORKLOAD, workload_of
from portway.errors import AlreadyExistsError, ConflictError, Issue, NotFoundError
from portway.policy import Violation, evaluate_spec, resolved
from portway.service.app import App
from portway.spec.loader import line_of
from portway.spec.model import Workload
from portway.spec.namespace import Namespace, NamespacePolicySpec


@dataclass(frozen=True)
class SourcedNamespace:
    namespace: Namespace
    file: str
    document: int


@dataclass(frozen=True)
class NamespaceApplied:
    namespace: Namespace
    outcome: str  # "created", "configured" or "unchanged"
    #: running workloads the new policy would refuse, "ns/name: violation";
    #: they keep running (as with `kubectl label ns ... enforce=`)
    violators: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    policy: NamespacePolicySpec
    explicit: bool  # False: no Namespace object, the defaults apply
    workloads: list[str]
    created_at: float | None = None


@dataclass(frozen=True)
class Judged:
    """A workload with its namespace's tier written in, or why it is refused."""

    workload: Workload
    violations: tuple[Violation, ...]


def policy_of(
    app: App, name: str, pending: Mapping[str, NamespacePolicySpec] | None = None
) -> NamespacePolicySpec:
    """The policy for namespace ``name``; one being applied in the same file wins."""
    if pending and name in pending:
        return pending[name]
    return policy_for(app.store, name, app.settings.default_pod_security)


def judge(
    app: App, workload: Workload, pending: Mapping[str, NamespacePolicySpec] | None = None
) -> Judged:
    decision = evaluate_spec(workload.spec, policy_of(app, workload.metadata.namespace, pending))
    return Judged(resolved(workload, decision.tier), decision.violations)


def violation_issues(
    violations: Sequence[Violation],
    namespace: str,
    file: str,
    document: int,
    lines: Mapping[str, int] | None = None,
) -> list[Issue]:
    """One issue per violation: where (file, line, document, field), which
    rule, what was expected."""
    issues = []
    for v in violations:
        issues.append(
            Issue(
                f"refused by policy of namespace {namespace} ({v.rule}): {v.message}",
                file=file,
                document=document,
                path=v.path,
                line=line_of(lines or {}, v.path),
            )
        )
    return issues


# --- namespace objects ---------------------------------------------------------


def running_violators(app: App, name: str, policy: NamespacePolicySpec) -> list[str]:
    """Stored workloads of namespace ``name`` that ``policy`` would refuse."""
    found = []
    for record in app.store.list(KIND_WORKLOAD, name):
        if record.deleting:
            continue
        # the stored spec carries its resolved tier: judge it as given
        decision = evaluate_spec(workload_of(record).spec, policy, given=True)
        found += [f"{record.key}: {v}" for v in decision.violations]
    return found


def apply_namespaces(app: App, items: Sequence[SourcedNamespace]) -> list[NamespaceApplied]:
    return [_write(app, item.namespace) for item in items]


def _write(app: App, namespace: Namespace) -> NamespaceApplied:
    envelope = namespace_envelope(namespace)
    violators = running_violators(app, namespace.name, namespace.spec)
    for _ in range(5):
        existing = app.store.get(KIND_NAMESPACE, CLUSTER_NAMESPACE, namespace.name)
        try:
            if existing is None:
                app.store.create(KIND_NAMESPACE, CLUSTER_NAMESPACE, namespace.name, envelope)
                return NamespaceApplied(namespace, "created", violators)
            if dict(existing.spec) == envelope:
                return NamespaceApplied(namespace, "unchanged", violators)
            app.store.update_spec(existing, envelope)
            app.store.record_event(
                KIND_NAMESPACE,
                CLUSTER_NAMESPACE,
                namespace.name,
                "PolicyChanged",
                f"podSecurity {namespace.spec.pod_security.value}"
                + (f"; {len(violators)} running violation(s)" if violators else ""),
                warning=bool(violators),
            )
            return NamespaceApplied(namespace, "configured", violators)
        except (ConflictError, AlreadyExistsError):
            continue
    raise ConflictError(f"namespace {namespace.name} keeps changing under us; try again")


def list_namespaces(app: App) -> list[NamespaceInfo]:
    """Namespaces with a policy object, and those only workloads name."""
    explicit = {r.name: r for r in app.store.list(KIND_NAMESPACE, CLUSTER_NAMESPACE)}
    workloads: dict[str, list[str]] = {}
    for record in app.store.list(KIND_WORKLOAD):
        workloads.setdefault(record.namespace, []).append(record.name)
    names = sorted(set(explicit) | set(workloads))
    return [
        NamespaceInfo(
            name,
            namespace_of(explicit[name]).spec if name in explicit else policy_of(app, name),
            name in explicit,
            sorted(workloads.get(name, [])),
            explicit[name].created_at if name in explicit else None,
        )
        for name in names
    ]


def get_namespace(app: App, name: str) -> NamespaceInfo:
    for info in list_namespaces(app):
        if info.name == name:
            return info
    raise NotFoundError(
        f"namespace {name} not found: it has no policy object and no workloads "
        "(see `portway get namespaces`)"
    )
