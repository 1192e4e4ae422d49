"""Engine caveats: what an engine does to a feature it honors that no
conformance run can rule out is declared by its driver and said in the plan
wherever the feature is honored there, and nowhere else."""

from __future__ import annotations

from portway.capabilities.matrix import DriverResults, FeatureResult, Status
from portway.capabilities.planner import TargetProfile, Verdict, plan_for_target
from portway.capabilities.vocabulary import Feature
from portway.drivers.docker import NETWORK_RULES_REWRITTEN, OOM_MISSED_AT_START, DockerDriver
from portway.spec.model import WorkloadSpec

ALL = frozenset(Feature)
CAVEATS = {
    Feature.NETWORKS_NAMED: NETWORK_RULES_REWRITTEN,
    Feature.RESOURCES_MEMORY: OOM_MISSED_AT_START,
}
NOTE = f"networks.named: {NETWORK_RULES_REWRITTEN}"


def _profile(
    features: frozenset[Feature] = ALL, caveats: dict[Feature, str] = CAVEATS
) -> TargetProfile:
    proven = {f: FeatureResult(Status.PASS, (f"case.{f}",)) for f in features}
    results = DriverResults("docker", "Engine 1.0", "2026-12-01T00:00:00Z", proven)
    return TargetProfile("local-docker", "docker", features, results, caveats=caveats)


def _spec(**fields: object) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"image": "portway/busybox:latest", **fields})


def test_the_docker_driver_declares_its_caveats() -> None:
    capabilities = DockerDriver("t", "docker:///nonexistent/docker.sock").capabilities()
    assert Feature.NETWORKS_NAMED in capabilities.features
    assert capabilities.caveats == CAVEATS
    assert "security boundary" in NETWORK_RULES_REWRITTEN and "39 of 539" in NETWORK_RULES_REWRITTEN
    assert "OOMKilled" in OOM_MISSED_AT_START and "2 of 110" in OOM_MISSED_AT_START


def test_a_memory_limit_on_docker_carries_the_oom_caveat() -> None:
    note = f"resources.memory: {OOM_MISSED_AT_START}"
    assert note in plan_for_target(_spec(resources={"memory": "64Mi"}), _profile()).notes
    assert note not in plan_for_target(_spec(), _profile()).notes


def test_named_networks_honored_with_the_drivers_caveat_in_the_plan() -> None:
    plan = plan_for_target(_spec(networks=["front"]), _profile())
    [field] = [f for f in plan.fields if f.feature is Feature.NETWORKS_NAMED]
    assert field.verdict is Verdict.HONORED
    assert NOTE in plan.notes


def test_no_caveat_without_named_networks_or_where_the_feature_is_not_honored() -> None:
    assert NOTE not in plan_for_target(_spec(), _profile()).notes
    missing = _profile(ALL - {Feature.NETWORKS_NAMED})
    plan = plan_for_target(_spec(networks=["front"]), missing)
    [field] = [f for f in plan.fields if f.feature is Feature.NETWORKS_NAMED]
    assert field.verdict is not Verdict.HONORED
    assert NOTE not in plan.notes
    # a driver that declares no caveat gets no note
    assert NOTE not in plan_for_target(_spec(networks=["front"]), _profile(caveats={})).notes
