"""Engine caveats: what an engine does to a feature it honors that no
conformance run can rule out is said in the plan wherever the feature is
honored on that engine, and nowhere else."""

from __future__ import annotations

from portway.capabilities.matrix import DriverResults, FeatureResult, Status
from portway.capabilities.planner import ENGINE_CAVEATS, TargetProfile, Verdict, plan_for_target
from portway.capabilities.vocabulary import Feature
from portway.spec.model import WorkloadSpec

ALL = frozenset(Feature)
CAVEAT = ENGINE_CAVEATS[("docker", Feature.NETWORKS_NAMED)]


def _profile(driver: str, features: frozenset[Feature] = ALL) -> TargetProfile:
    proven = {f: FeatureResult(Status.PASS, (f"case.{f}",)) for f in features}
    results = DriverResults(driver, "Engine 1.0", "2026-12-01T00:00:00Z", proven)
    return TargetProfile(f"local-{driver}", driver, features, results)


def _spec(**fields: object) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"image": "portway/busybox:latest", **fields})


def test_docker_named_networks_are_honored_with_the_rule_rewrite_caveat() -> None:
    plan = plan_for_target(_spec(networks=["front"]), _profile("docker"))
    [field] = [f for f in plan.fields if f.feature is Feature.NETWORKS_NAMED]
    assert field.verdict is Verdict.HONORED
    assert CAVEAT in plan.notes
    assert "security boundary" in CAVEAT and "39 of 539" in CAVEAT


def test_no_caveat_without_named_networks_or_where_the_feature_is_not_honored() -> None:
    assert CAVEAT not in plan_for_target(_spec(), _profile("docker")).notes
    missing = _profile("docker", ALL - {Feature.NETWORKS_NAMED})
    plan = plan_for_target(_spec(networks=["front"]), missing)
    [field] = [f for f in plan.fields if f.feature is Feature.NETWORKS_NAMED]
    assert field.verdict is not Verdict.HONORED
    assert CAVEAT not in plan.notes
    # another engine's honored named networks carry no Docker caveat
    assert CAVEAT not in plan_for_target(_spec(networks=["front"]), _profile("podman")).notes
