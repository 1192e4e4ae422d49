"""``portway audit``: what is running, judged against the CIS Docker
Benchmark's container runtime rules (section 5).

The facts come from the engine (a driver's ``SecurityInspector``), never from
the spec: an audit checks what actually runs. The spec is used only where
portway itself provides the control (its probes count as a health check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from portway.controller.records import KIND_WORKLOAD, cluster_id, workload_of
from portway.drivers.base import (
    LABEL_CLUSTER,
    LABEL_NAMESPACE,
    LABEL_WORKLOAD,
    ReplicaState,
    SecurityInspector,
)
from portway.errors import InputError, PortwayError
from portway.policy.cis import Finding, Level, audit_replica, worst
from portway.service.app import App
from portway.spec.model import WorkloadSpec


@dataclass(frozen=True)
class ReplicaAudit:
    workload: str  # namespace/name
    replica: int
    container: str
    findings: tuple[Finding, ...] = ()
    error: str = ""  # the engine could not report this replica's facts

    @property
    def level(self) -> Level:
        return worst(self.findings) if self.findings else Level.WARN


@dataclass(frozen=True)
class TargetAudit:
    target: str
    driver: str
    #: why the target was not audited ("" when it was)
    not_auditable: str = ""
    replicas: list[ReplicaAudit] = field(default_factory=list)


def _spec_of(app: App, namespace: str, name: str) -> WorkloadSpec | None:
    record = app.store.get(KIND_WORKLOAD, namespace, name)
    return None if record is None else workload_of(record).spec


def audit(app: App, names: Sequence[str] = ()) -> list[TargetAudit]:
    views = app.target_views()
    if names:
        known = {v.name for v in views}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(
                f"no target named {', '.join(unknown)}; known targets: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        views = [v for v in views if v.name in names]
    cluster = cluster_id(app.store)
    results = []
    for view in views:
        try:
            driver = app.targets.driver(view)
            if not isinstance(driver, SecurityInspector):
                results.append(
                    TargetAudit(
                        view.name,
                        view.driver,
                        f"not auditable: the {view.driver} driver does not report security facts",
                    )
                )
                continue
            statuses = driver.list_owned({LABEL_CLUSTER: cluster})
        except PortwayError as exc:
            results.append(TargetAudit(view.name, view.driver, f"not auditable: {exc}"))
            continue
        replicas = []
        for status in sorted(statuses, key=lambda s: (s.workload_key, s.index)):
            if status.state is not ReplicaState.RUNNING:
                continue
            namespace = status.labels.get(LABEL_NAMESPACE, "")
            name = status.labels.get(LABEL_WORKLOAD, "")
            try:
                facts = driver.security_facts(status.handle)
            except PortwayError as exc:
                replicas.append(
                    ReplicaAudit(
                        status.workload_key, status.index, status.handle.name, (), str(exc)
                    )
                )
                continue
            findings = audit_replica(facts, _spec_of(app, namespace, name))
            replicas.append(
                ReplicaAudit(status.workload_key, status.index, status.handle.name, tuple(findings))
            )
        results.append(TargetAudit(view.name, view.driver, "", replicas))
    return results
