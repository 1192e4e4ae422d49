"""services.dns and services.env in the vocabulary, the drivers' declarations,
the planner and the capability matrix; the namespace network's naming."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from portway.capabilities.matrix import (
    DriverResults,
    FeatureResult,
    Matrix,
    Status,
    load_packaged,
)
from portway.capabilities.planner import (
    SAME_ENGINE_NOTE,
    Mode,
    TargetProfile,
    Verdict,
    differences,
    judge,
    plan,
    plan_for_target,
)
from portway.capabilities.vocabulary import FEATURES, Feature, Provider, WhenMissing, uses
from portway.conformance import CaseResult, Outcome, SuiteResult, render_markdown
from portway.conformance.case import all_cases, declared_in_tier
from portway.conformance.cases_services import resolved_addresses
from portway.conformance.runner import gaps_of
from portway.drivers.base import ReplicaRequest
from portway.drivers.containerd import ContainerdDriver
from portway.drivers.docker import DockerDriver
from portway.drivers.engine_common import (
    EngineNetwork,
    foreign_network,
    namespace_network,
    network_labels,
    released_networks,
    replica_networks,
)
from portway.drivers.podman import PodmanDriver
from portway.spec.model import WorkloadSpec

ALL = frozenset(Feature)
NO_DNS_WHY = "no DNS on this engine's bridge"


def spec(**fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"image": "portway/busybox:latest", **fields})


SERVICE = spec(ports=[{"containerPort": 9090}, {"name": "http", "containerPort": 8080}])


def results(*passed: Feature, reasons: dict[Feature, str] | None = None) -> DriverResults:
    found = {f: FeatureResult(Status.PASS, (f"case.{f}",)) for f in passed}
    for feature, why in (reasons or {}).items():
        found[feature] = FeatureResult(Status.UNSUPPORTED, reason=why)
    return DriverResults("fake", "Fake Engine 1.0", "2026-12-01T00:00:00Z", found)


def target(name: str, features: frozenset[Feature], found: DriverResults) -> TargetProfile:
    return TargetProfile(name, "fake", features, found)


WITH_DNS = target("a", ALL, results(*ALL))
WITHOUT_DNS = target(
    "b",
    ALL - {Feature.SERVICES_DNS},
    results(*(ALL - {Feature.SERVICES_DNS}), reasons={Feature.SERVICES_DNS: NO_DNS_WHY}),
)


# --- the vocabulary ------------------------------------------------------------------------


def test_dns_is_the_engines_and_may_be_dropped() -> None:
    info = FEATURES[Feature.SERVICES_DNS]
    assert (info.provider, info.when_missing) == (Provider.DRIVER, WhenMissing.DROP)


def test_env_is_emulated_by_the_controller_through_env() -> None:
    info = FEATURES[Feature.SERVICES_ENV]
    assert (info.provider, info.when_missing) == (Provider.CONTROLLER, WhenMissing.DROP)
    assert info.needs == (Feature.ENV,)


def test_the_first_named_port_asks_for_dns_once() -> None:
    found = [(u.path, u.feature) for u in uses(SERVICE) if u.feature is Feature.SERVICES_DNS]
    assert found == [("spec.ports[1].name", Feature.SERVICES_DNS)]
    two_names = spec(ports=[{"name": "a", "containerPort": 1}, {"name": "b", "containerPort": 2}])
    assert [u.path for u in uses(two_names) if u.feature is Feature.SERVICES_DNS] == [
        "spec.ports[0].name"
    ]


def test_a_workload_without_named_ports_does_not_ask_for_dns() -> None:
    unnamed = spec(ports=[{"containerPort": 8080}])
    assert Feature.SERVICES_DNS not in {u.feature for u in uses(unnamed)}


# --- the planner -------------------------------------------------------------------


def test_dns_honored_where_declared_and_proven_with_the_same_engine_note() -> None:
    verdict, reason = judge(Feature.SERVICES_DNS, WITH_DNS)
    assert verdict is Verdict.HONORED and "case.services.dns" in reason
    assert SAME_ENGINE_NOTE in plan_for_target(SERVICE, WITH_DNS).notes
    assert "ingress" in SAME_ENGINE_NOTE
    plain = spec(ports=[{"containerPort": 8080}])
    assert SAME_ENGINE_NOTE not in plan_for_target(plain, WITH_DNS).notes


def test_dns_dropped_where_missing_with_the_recorded_reason() -> None:
    verdict, reason = judge(Feature.SERVICES_DNS, WITHOUT_DNS)
    assert verdict is Verdict.DROPPED
    assert reason.startswith("the fake driver cannot resolve a service's name")
    assert reason.endswith(NO_DNS_WHY)
    result = plan_for_target(SERVICE, WITHOUT_DNS)
    assert SAME_ENGINE_NOTE not in result.notes
    # the workload runs there in lenient mode; strict mode refuses the target
    assert result.deployable(Mode.LENIENT)
    assert not result.deployable(Mode.STRICT)
    assert [f.path for f in result.refusals(Mode.STRICT)] == ["spec.ports[1].name"]


def test_the_drift_report_shows_which_targets_resolve_the_name() -> None:
    diff = differences(plan(SERVICE, [WITH_DNS, WITHOUT_DNS]))
    assert diff == {"spec.ports[1].name": {"a": Verdict.HONORED, "b": Verdict.DROPPED}}


def test_env_is_emulated_everywhere_env_is_honored() -> None:
    for profile in (WITH_DNS, WITHOUT_DNS):
        verdict, reason = judge(Feature.SERVICES_ENV, profile)
        assert verdict is Verdict.EMULATED and "portway's controller" in reason
    no_env = target("c", ALL - {Feature.ENV}, results(*ALL))
    verdict, reason = judge(Feature.SERVICES_ENV, no_env)
    assert verdict is Verdict.DROPPED and "needs env" in reason


# --- what the drivers declare (no engine is called) ---------------------------------------


def test_docker_and_podman_declare_dns_and_env() -> None:
    for driver in (
        DockerDriver("t", "docker:///nonexistent/docker.sock"),
        PodmanDriver("t", "podman:///nonexistent/podman.sock"),
    ):
        features = driver.capabilities().features_for("standard")
        assert {Feature.SERVICES_DNS, Feature.SERVICES_ENV} <= features


def test_podman_without_netavark_does_not_claim_dns() -> None:
    driver = PodmanDriver("t", "podman:///nonexistent/podman.sock")
    driver._network_backend = "cni"  # as a fingerprint of such a service finds it
    capabilities = driver.capabilities()
    assert Feature.SERVICES_DNS not in capabilities.features
    assert "aardvark-dns" in capabilities.gaps_in("standard")[Feature.SERVICES_DNS]
    assert "aardvark-dns" in gaps_of(capabilities, "sandboxed")[Feature.SERVICES_DNS]


def test_containerd_declares_dns_missing_with_its_reason_in_every_tier() -> None:
    capabilities = ContainerdDriver("t", "containerd:///nonexistent/containerd.sock").capabilities()
    assert not capabilities.supports(Feature.SERVICES_DNS)
    assert capabilities.supports(Feature.SERVICES_ENV)  # emulated: env is there
    assert "no DNS" in capabilities.gaps_in("standard")[Feature.SERVICES_DNS]
    for tier in ("standard", *(h.tier for h in capabilities.handlers)):
        assert Feature.SERVICES_DNS not in declared_in_tier(capabilities, tier)
        # the standard tier's reason holds for every tier's matrix column
        assert "no DNS" in gaps_of(capabilities, tier)[Feature.SERVICES_DNS]
    # a tier's own gaps stay gaps of declared features
    for tier, gaps in capabilities.tier_gaps.items():
        if tier != "standard":
            assert all(capabilities.supports(f) for f in gaps), tier


# --- conformance and the matrix -----------------------------------------------------


def test_the_case_proves_dns_and_needs_exec_and_ports() -> None:
    [found] = [c for c in all_cases() if c.id == "services.dns_by_name"]
    assert found.features == (Feature.SERVICES_DNS,)
    assert {Feature.EXEC, Feature.PORTS_TCP, Feature.COMMAND} <= found.required_features()
    assert "sandboxed" in found.tiers


def test_an_unsupported_feature_keeps_its_reason_in_the_standard_column() -> None:
    capabilities = ContainerdDriver("t", "containerd:///nonexistent/containerd.sock").capabilities()
    suite = SuiteResult(
        driver="containerd",
        target="t",
        engine="containerd 1.6",
        declared=declared_in_tier(capabilities, "standard"),
        results=(
            CaseResult(
                "services.dns_by_name",
                "services",
                "t",
                (Feature.SERVICES_DNS,),
                Outcome.UNSUPPORTED,
                missing=(Feature.SERVICES_DNS,),
            ),
        ),
        generated_at="2026-12-01T00:00:00Z",
        gaps=gaps_of(capabilities, "standard"),
    )
    column = suite.to_driver_results()
    found = column.features[Feature.SERVICES_DNS]
    assert found.status is Status.UNSUPPORTED and "no DNS" in found.reason
    text = render_markdown(Matrix({"containerd": column}))
    assert "Not claimed in this tier, and why:" in text and "`services.dns`: containerd" in text


def test_the_kept_matrix_proves_dns_on_docker_and_podman_only() -> None:
    kept = load_packaged()
    for column in ("docker", "docker@sandboxed", "podman", "podman@sandboxed"):
        found = kept.drivers[column].features[Feature.SERVICES_DNS]
        assert found.status is Status.PASS, (column, found)
        assert found.cases == ("services.dns_by_name",)
    for column in ("containerd", "containerd@sandboxed"):
        found = kept.drivers[column].features[Feature.SERVICES_DNS]
        assert found.status is Status.UNSUPPORTED and "no DNS" in found.reason, (column, found)


def test_a_plan_against_the_kept_matrix_says_why_containerd_drops_dns() -> None:
    kept = load_packaged()
    capabilities = ContainerdDriver("t", "containerd:///nonexistent/containerd.sock").capabilities()
    profile = TargetProfile(
        "ctr", "containerd", capabilities.features_for("standard"), kept.for_driver("containerd")
    )
    [item] = [f for f in plan_for_target(SERVICE, profile).fields if f.path.endswith(".name")]
    assert item.verdict is Verdict.DROPPED and "no DNS" in item.reason


# --- helpers ----------------------------------------------------------------------------


def test_namespace_networks_are_named_like_the_replicas() -> None:
    assert namespace_network("0caf4c9d1e2f", "shop") == "pw0caf4c-shop"
    assert namespace_network("", "shop") == "pw-shop"


def test_a_network_without_our_labels_is_foreign() -> None:
    ours = network_labels("c1", "shop")
    assert foreign_network("pwc1-shop", ours, "c1", "shop") == ""
    problem = foreign_network("pwc1-shop", {**ours, "portway.dev/cluster": "c2"}, "c1", "shop")
    assert "labels differ: portway.dev/cluster" in problem
    assert "labels differ" in foreign_network("pwc1-shop", {}, "c1", "shop")


def test_named_networks_sit_beside_the_namespace_network() -> None:
    named = EngineNetwork("0caf4c9d1e2f", "shop", "front")
    assert named.name == "pw0caf4c-shop.front"  # a dot: no namespace's own name can take it
    assert named.labels()["portway.dev/network"] == "front"
    assert named.foreign(named.labels()) == ""
    own = EngineNetwork("0caf4c9d1e2f", "shop")
    assert "portway.dev/network" not in own.labels()
    assert "labels differ: portway.dev/network" in named.foreign(own.labels())


def test_a_removed_replica_releases_each_portway_network_it_was_on() -> None:
    info = {
        "Config": {"Labels": {"portway.dev/namespace": "shop", "portway.dev/cluster": "c1"}},
        "NetworkSettings": {
            "Networks": {"pwc1-shop.front": {}, "pwc1-shop.back": {}, "bridge": {}}
        },
    }
    assert released_networks(info) == [
        EngineNetwork("c1", "shop", "back"),
        EngineNetwork("c1", "shop", "front"),
    ]
    info["NetworkSettings"] = {"Networks": {"pwc1-shop": {}}}
    assert released_networks(info) == [EngineNetwork("c1", "shop")]
    assert released_networks({"Config": {"Labels": {}}}) == []


def test_a_replica_joins_its_named_networks_or_its_namespace_network() -> None:
    def request(**spec: Any) -> ReplicaRequest:
        model = WorkloadSpec.model_validate({"image": "portway/busybox:latest", **spec})
        return ReplicaRequest("shop", "w", 0, 1, model.template_hash(), model, cluster="c1")

    assert [n.name for n in replica_networks(request())] == ["pwc1-shop"]
    named = replica_networks(request(networks=["front", "back"]))
    assert [n.name for n in named] == ["pwc1-shop.front", "pwc1-shop.back"]
    assert replica_networks(request(security={"hostNetwork": True})) == []


def test_nslookup_answers_are_read_after_the_name() -> None:
    docker_style = (
        "Server:\t\t127.0.0.11\nAddress:\t127.0.0.11:53\n\nNon-authoritative answer:\n"
        "Name:\tweb.ns\nAddress: 172.18.0.2\nName:\tweb.ns\nAddress: 172.18.0.3\n"
    )
    assert resolved_addresses(docker_style) == {"172.18.0.2", "172.18.0.3"}
    old_busybox = "Server: 10.89.1.1\nAddress 1: 10.89.1.1\n\nName: web\nAddress 1: 10.89.1.2\n"
    assert resolved_addresses(old_busybox) == {"10.89.1.2"}
    failed = (
        "Server:\t\t127.0.0.11\nAddress:\t127.0.0.11:53\n\n** server can't find web: NXDOMAIN\n"
    )
    assert resolved_addresses(failed) == set()


def test_named_networks_are_labels_listed_once_and_not_with_host_network() -> None:
    base = {"image": "portway/busybox:latest"}
    assert WorkloadSpec.model_validate({**base, "networks": ["front"]}).networks == ["front"]
    for bad, said in (
        (["Front"], "DNS-1123 label"),
        (["a.b"], "DNS-1123 label"),
        (["front", "front"], "listed twice"),
    ):
        with pytest.raises(ValidationError, match=said):
            WorkloadSpec.model_validate({**base, "networks": bad})
    with pytest.raises(ValidationError, match="hostNetwork"):
        WorkloadSpec.model_validate(
            {**base, "networks": ["front"], "security": {"hostNetwork": True}}
        )
    # a field added later leaves the template hash of older specs as it was
    plain = WorkloadSpec.model_validate(base)
    assert (
        plain.template_hash()
        == WorkloadSpec.model_validate({**base, "networks": []}).template_hash()
    )
    named = WorkloadSpec.model_validate({**base, "networks": ["front"]})
    assert named.template_hash() != plain.template_hash()
