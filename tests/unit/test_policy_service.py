"""Namespace policy through the service layer, over fake targets (no engine):
refused applies write nothing and list every violation, tiers resolve from
the namespace and steer placement, the reconciler re-checks before creating,
and audit reads SecurityFacts."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes import FakeDriver

from portway.capabilities import matrix as matrix_module
from portway.capabilities.matrix import DriverResults, FeatureResult, Matrix, Status
from portway.capabilities.vocabulary import Feature
from portway.controller.namespaces import default_pod_security
from portway.controller.reconciler import ReconcileError
from portway.controller.records import CLUSTER_NAMESPACE, KIND_TARGET, KIND_WORKLOAD, workload_of
from portway.controller.runner import Controller
from portway.drivers import registry
from portway.drivers.base import (
    DriverCapabilities,
    Handle,
    MountFact,
    ReplicaRequest,
    SecurityFacts,
)
from portway.errors import InputError, PolicyError
from portway.policy.cis import Level
from portway.service import audit as audit_svc
from portway.service import namespaces as ns_svc
from portway.service import planning
from portway.service import workloads as svc
from portway.service.app import App, Settings
from portway.spec.loader import load_objects_text
from portway.spec.model import Workload, WorkloadSpec
from portway.spec.namespace import Namespace, PodSecurityLevel

TIERS = {Feature.ISOLATION_SANDBOXED, Feature.ISOLATION_MICROVM, Feature.ISOLATION_WASM}
STANDARD_ONLY = frozenset(Feature) - TIERS
WITH_SANDBOX = STANDARD_ONLY | {Feature.ISOLATION_SANDBOXED}


class StandardDriver(FakeDriver):
    name = "stdfake"

    def __init__(self, target: str, address: str) -> None:
        super().__init__(target)

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(STANDARD_ONLY)


class SandboxDriver(StandardDriver):
    """Offers the sandboxed tier and reports security facts (for audit)."""

    name = "sbxfake"

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(WITH_SANDBOX)

    def __init__(self, target: str, address: str) -> None:
        super().__init__(target, address)
        self.specs: dict[str, WorkloadSpec] = {}  # container name -> spec it was made from

    def create(self, request: ReplicaRequest) -> Handle:
        self.specs[request.name] = request.spec
        return super().create(request)

    def security_facts(self, handle: Handle) -> SecurityFacts:
        spec = self.specs[handle.name]
        return SecurityFacts(
            privileged=spec.security.privileged,
            cap_drop=tuple(spec.security.capabilities.drop),
            runtime="runsc" if spec.isolation.value == "sandboxed" else "runc",
            published=(("0.0.0.0", 80, 80, "tcp"),),
            mounts=(MountFact("/var/run/docker.sock", "/var/run/docker.sock", "bind"),),
        )


def proven(driver: str, features: frozenset[Feature]) -> DriverResults:
    return DriverResults(
        driver,
        f"{driver} 1.0",
        "2026-11-23T00:00:00Z",
        {f: FeatureResult(Status.PASS, (f"case.{f}",)) for f in features},
    )


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    registry.register("stdfake", f"{__name__}:StandardDriver")
    registry.register("sbxfake", f"{__name__}:SandboxDriver")
    kept = Matrix(
        {"stdfake": proven("stdfake", STANDARD_ONLY), "sbxfake": proven("sbxfake", WITH_SANDBOX)}
    )
    for module in (matrix_module, planning, svc):
        monkeypatch.setattr(module, "load_packaged", lambda: kept)
    monkeypatch.delenv("PORTWAY_DEFAULT_POD_SECURITY", raising=False)
    application = App(Settings(home=tmp_path, docker_socket=str(tmp_path / "no.sock")))
    # "a-standard" sorts first: placement would pick it unless the tier rules it out
    for name, driver in (("a-standard", "stdfake"), ("b-sandbox", "sbxfake")):
        application.store.create(
            KIND_TARGET,
            CLUSTER_NAMESPACE,
            name,
            {"driver": driver, "address": f"{driver}://x", "labels": {}},
            {"health": "healthy", "checkedAt": 1e12},
        )
    application.targets.check_all()  # records each target's tiers, as the controller does
    yield application
    application.close()


def load(text: str) -> tuple[list[svc.Sourced], list[ns_svc.SourcedNamespace]]:
    workloads, namespaces = [], []
    for item in load_objects_text(textwrap.dedent(text), "f.yaml"):
        if isinstance(item.object, Workload):
            workloads.append(svc.Sourced(item.object, "f.yaml", item.document, item.lines))
        else:
            assert isinstance(item.object, Namespace)
            namespaces.append(ns_svc.SourcedNamespace(item.object, "f.yaml", item.document))
    return workloads, namespaces


LOCKED = """\
apiVersion: portway.dev/v1
kind: Namespace
metadata: {name: locked}
spec:
  isolation: {default: sandboxed, minimum: sandboxed}
"""

BAD = """\
apiVersion: portway.dev/v1
kind: Workload
metadata: {name: bad}
spec:
  image: portway/busybox:latest
  ports:
    - {containerPort: 80, hostPort: 80}
  volumes:
    - {name: sock, type: bind, source: /var/run/docker.sock, mountPath: /sock}
  security:
    privileged: true
    hostPid: true
    capabilities: {add: [SYS_ADMIN]}
"""


def test_refused_apply_writes_nothing_and_lists_every_violation(app: App) -> None:
    items, namespaces = load(BAD)
    with pytest.raises(PolicyError) as refused:
        svc.apply_all(app, items, namespaces)
    found = {(i.path, i.line) for i in refused.value.issues if "refused by policy" in i.message}
    assert found == {
        ("spec.security.privileged", 11),
        ("spec.security.hostPid", 12),
        ("spec.security.capabilities.add[0]", 13),
        ("spec.volumes[0].source", 9),  # engine-socket and host-path-volumes
        ("spec.ports[0].hostPort", 7),
    }
    rules = {
        i.message.split("(")[1].split(")")[0]
        for i in refused.value.issues
        if "refused by policy" in i.message
    }
    assert {
        "baseline/privileged",
        "baseline/host-namespaces",
        "baseline/capabilities",
        "baseline/host-path-volumes",
        "engine-socket",
        "baseline/host-ports",
    } <= rules
    assert all(i.file == "f.yaml" and i.document == 1 for i in refused.value.issues)
    assert "namespace default" in str(refused.value)
    assert app.store.list(KIND_WORKLOAD) == []


def test_privileged_namespace_accepts_what_baseline_refuses(app: App) -> None:
    privileged = "apiVersion: portway.dev/v1\nkind: Namespace\nmetadata: {name: ops}\n"
    privileged += "spec: {podSecurity: privileged}\n---\n"
    bad = BAD.replace("metadata: {name: bad}", "metadata: {name: bad, namespace: ops}")
    # bind volumes still need the operator's PORTWAY_ALLOW_BIND on top of policy
    items, namespaces = load(privileged + bad.replace("type: bind, source: /var/run/docker.sock",
                                                      "type: tmpfs"))  # fmt: skip
    written, [applied] = svc.apply_all(app, items, namespaces)
    assert [(w.namespace.name, w.outcome) for w in written] == [("ops", "created")]
    assert applied.outcome is svc.Outcome.CREATED


def test_minimum_tier_refuses_standard_and_the_namespace_is_not_written(app: App) -> None:
    wl = "---\napiVersion: portway.dev/v1\nkind: Workload\n"
    wl += "metadata: {name: web, namespace: locked}\nspec: {image: portway/busybox:latest, "
    items, namespaces = load(LOCKED + wl + "isolation: standard}\n")
    with pytest.raises(PolicyError) as refused:
        svc.apply_all(app, items, namespaces)
    [issue] = refused.value.issues
    assert issue.path == "spec.isolation" and issue.line == 10 and issue.document == 2
    assert "(isolation/minimum-tier)" in issue.message
    assert "weaker than the namespace's minimum tier sandboxed" in issue.message
    assert app.store.list("Namespace", CLUSTER_NAMESPACE) == []
    assert app.store.list(KIND_WORKLOAD) == []


def test_workload_without_isolation_gets_the_default_tier_and_a_sandbox_target(
    app: App,
) -> None:
    wl = "---\napiVersion: portway.dev/v1\nkind: Workload\n"
    wl += "metadata: {name: web, namespace: locked}\nspec: {image: portway/busybox:latest}\n"
    items, namespaces = load(LOCKED + wl)
    _, [applied] = svc.apply_all(app, items, namespaces)
    assert applied.outcome is svc.Outcome.CREATED
    record = app.store.require(KIND_WORKLOAD, "locked", "web")
    stored = workload_of(record)
    assert stored.spec.isolation.value == "sandboxed"
    assert record.spec["templateHash"] == stored.spec.template_hash()
    assert record.spec["templateHash"] != items[0].workload.spec.template_hash()
    # placement sees the resolved tier: the standard-only target is never chosen
    Controller(app.store, targets=app.targets).reconciler.reconcile("locked/web")
    assert app.store.require(KIND_WORKLOAD, "locked", "web").status["target"] == "b-sandbox"


def test_a_tier_no_target_offers_is_unplaceable_with_the_reason(app: App) -> None:
    wl = "apiVersion: portway.dev/v1\nkind: Workload\nmetadata: {name: vm}\n"
    items, _ = load(wl + "spec: {image: portway/busybox:latest, isolation: microvm}\n")
    with pytest.raises(InputError) as refused:
        svc.apply(app, items)
    [issue] = refused.value.issues
    count = len(app.target_views())  # the fixture's two plus local-wasm
    assert f"0/{count} targets available: {count} lack isolation tier microvm" in issue.message


def test_untrusted_workload_lands_in_the_sandbox(app: App) -> None:
    wl = "apiVersion: portway.dev/v1\nkind: Workload\nmetadata: {name: guest}\n"
    items, _ = load(wl + "spec: {image: portway/busybox:latest, trust: untrusted}\n")
    svc.apply(app, items)
    stored = workload_of(app.store.require(KIND_WORKLOAD, "default", "guest"))
    assert stored.spec.isolation.value == "sandboxed"


def test_plan_shows_policy_violations_and_plans_the_resolved_tier(app: App) -> None:
    wl = "---\napiVersion: portway.dev/v1\nkind: Workload\n"
    wl += "metadata: {name: web, namespace: locked}\nspec: {image: portway/busybox:latest,"
    wl += " security: {privileged: true}}\n"
    items, namespaces = load(LOCKED + wl)
    [plan] = planning.plan_workloads(
        app, [(s.workload, s.file, s.document) for s in items], namespaces=namespaces
    )
    assert plan.workload.spec.isolation.value == "sandboxed"
    assert [(v.rule, v.path) for v in plan.policy] == [
        ("baseline/privileged", "spec.security.privileged")
    ]
    assert app.store.list("Namespace", CLUSTER_NAMESPACE) == []  # plan writes nothing


def test_default_pod_security_comes_from_the_environment(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_pod_security({}) is PodSecurityLevel.BASELINE
    assert default_pod_security({"PORTWAY_DEFAULT_POD_SECURITY": "restricted"}) is (
        PodSecurityLevel.RESTRICTED
    )
    with pytest.raises(InputError, match="PORTWAY_DEFAULT_POD_SECURITY='strict'"):
        default_pod_security({"PORTWAY_DEFAULT_POD_SECURITY": "strict"})
    monkeypatch.setenv("PORTWAY_DEFAULT_POD_SECURITY", "restricted")
    strict = App(Settings(home=tmp_path / "s", docker_socket=str(tmp_path / "no.sock")))
    try:
        wl = "apiVersion: portway.dev/v1\nkind: Workload\nmetadata: {name: w}\n"
        items, _ = load(wl + "spec: {image: portway/busybox:latest}\n")
        verdict = ns_svc.judge(strict, items[0].workload)
        assert {v.rule for v in verdict.violations} == {
            "restricted/run-as-non-root",
            "restricted/capabilities",
            "restricted/privilege-escalation",
        }
        defaults = ns_svc.policy_of(strict, "default")  # no Namespace object
        assert defaults.pod_security is PodSecurityLevel.RESTRICTED
        assert defaults.host_ports == ["1024-65535"]
        assert defaults.isolation.default.value == "standard"
        assert defaults.isolation.minimum is None
    finally:
        strict.close()


PRIV_NS = "apiVersion: portway.dev/v1\nkind: Namespace\nmetadata: {name: ops}\n"
PRIV_WL = """\
apiVersion: portway.dev/v1
kind: Workload
metadata: {name: root, namespace: ops}
spec:
  image: portway/busybox:latest
  replicas: 2
  security: {privileged: true}
"""


def test_tightening_a_namespace_warns_keeps_replicas_and_refuses_new_ones(app: App) -> None:
    items, namespaces = load(PRIV_NS + "spec: {podSecurity: privileged}\n---\n" + PRIV_WL)
    svc.apply_all(app, items, namespaces)
    controller = Controller(app.store, targets=app.targets)
    controller.reconciler.reconcile("ops/root")
    view = next(v for v in app.target_views() if v.name == "a-standard")
    fake = app.targets.driver(view)
    assert isinstance(fake, FakeDriver)
    assert len(fake.running()) == 2

    _, tightened = load(PRIV_NS + "spec: {podSecurity: baseline}\n")
    [written] = ns_svc.apply_namespaces(app, tightened)
    assert written.outcome == "configured"
    assert written.violators == [
        "ops/root: spec.security.privileged: privileged replicas turn off most isolation; "
        "expected false [baseline/privileged]"
    ]
    [info] = [i for i in ns_svc.list_namespaces(app) if i.name == "ops"]
    assert info.explicit and info.policy.pod_security is PodSecurityLevel.BASELINE
    assert info.workloads == ["root"]

    controller.reconciler.reconcile("ops/root")  # running replicas stay
    assert len(fake.running()) == 2
    fake.destroy(fake._handle(fake.running()[0]))  # a replica disappears: replacing it is refused
    with pytest.raises(ReconcileError, match="refused by policy"):
        controller.reconciler.reconcile("ops/root")
    assert len(fake.containers()) == 1
    failed = [
        e.message
        for e in app.store.events("Workload", "ops", "root")
        if e.reason == "PolicyRefused"
    ]
    assert failed and "refused by policy: spec.security.privileged" in failed[0]
    controller.reconciler.close()


def test_audit_reads_facts_and_names_targets_that_cannot_be_audited(app: App) -> None:
    wl = "apiVersion: portway.dev/v1\nkind: Workload\nmetadata: {name: s}\n"
    items, _ = load(wl + "spec: {image: portway/busybox:latest, isolation: sandboxed}\n")
    svc.apply(app, items)
    controller = Controller(app.store, targets=app.targets)
    controller.reconciler.reconcile("default/s")
    controller.reconciler.close()
    results = {t.target: t for t in audit_svc.audit(app)}
    assert "does not report security facts" in results["a-standard"].not_auditable
    [replica] = results["b-sandbox"].replicas
    assert (replica.workload, replica.replica) == ("default/s", 0)
    levels = {f.rule: f.level for f in replica.findings}
    assert levels["5.31"] is Level.FAIL and levels["5.7"] is Level.FAIL
    assert levels["5.13"] is Level.WARN and levels["5.4"] is Level.PASS
    assert replica.level is Level.FAIL
    with pytest.raises(InputError, match="no target named nope"):
        audit_svc.audit(app, ["nope"])
