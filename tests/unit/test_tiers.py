"""Isolation tiers: per-tier planning, matrix columns, target records, placement."""

from __future__ import annotations

from typing import Any

from portway.capabilities.matrix import (
    DriverResults,
    FeatureResult,
    Matrix,
    Status,
    column_key,
    split_column_key,
)
from portway.capabilities.planner import Mode, TargetProfile, TierView, Verdict, plan_for_target
from portway.capabilities.tiers import PLANNED, unavailable
from portway.capabilities.vocabulary import Feature
from portway.conformance.case import declared_in_tier, in_tier
from portway.controller.records import TargetView, TierHandler
from portway.controller.targets import tiers_of
from portway.drivers.base import DriverCapabilities, RuntimeHandler
from portway.scheduler.model import Ask, TargetState
from portway.scheduler.model import Overhead as TierCost
from portway.scheduler.state import ClusterState
from portway.spec.model import WorkloadSpec

ALL = frozenset(Feature)


def spec(**fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"image": "portway/busybox:latest", **fields})


def column(key: str, *passing: Feature, failed: dict[Feature, str] | None = None) -> DriverResults:
    results = {f: FeatureResult(Status.PASS, (f"case.{f}",)) for f in passing}
    for feature, message in (failed or {}).items():
        results[feature] = FeatureResult(Status.FAIL, (f"case.{feature}",), (message,))
    return DriverResults(key, "Fake Engine", "2026-11-23T00:00:00Z", results)


def gvisor_profile(**kw: Any) -> TargetProfile:
    other_tiers = {Feature.ISOLATION_MICROVM, Feature.ISOLATION_WASM}
    standard = ALL - {Feature.ISOLATION_SANDBOXED} - other_tiers
    sandboxed = ALL - {Feature.OOM_REPORTED, Feature.ISOLATION_STANDARD} - other_tiers
    return TargetProfile(
        "local-docker",
        "docker",
        standard,
        column("docker", *standard),
        tiers={
            "sandboxed": TierView(
                "runsc",
                sandboxed,
                column(
                    "docker@sandboxed",
                    *(sandboxed - {Feature.RESOURCES_PIDS}),
                    failed={Feature.RESOURCES_PIDS: "pids.max not enforced"},
                ),
            )
        },
        **kw,
    )


def verdicts(plan: Any) -> dict[str, Verdict]:
    return {f.path: f.verdict for f in plan.fields}


def test_column_keys_round_trip() -> None:
    assert column_key("docker") == "docker"
    assert column_key("docker", "sandboxed") == "docker@sandboxed"
    assert split_column_key("docker@sandboxed") == ("docker", "sandboxed")
    assert split_column_key("podman") == ("podman", "standard")
    matrix = Matrix({"docker@sandboxed": column("docker@sandboxed", Feature.ENV)})
    found = matrix.for_driver("docker", "sandboxed")
    assert found is not None and found.status(Feature.ENV) is Status.PASS
    assert matrix.for_driver("docker") is None


def test_a_sandboxed_workload_is_judged_by_the_sandboxed_column() -> None:
    profile = gvisor_profile()
    sandboxed = plan_for_target(spec(isolation="sandboxed", resources={"pids": 10}), profile)
    assert sandboxed.tier == "sandboxed"
    found = verdicts(sandboxed)
    assert found["spec.isolation"] is Verdict.HONORED
    # proven under runc but failed under gVisor: the sandboxed column decides
    assert found["spec.resources.pids"] is Verdict.DROPPED
    assert any("runsc" in note for note in sandboxed.notes)
    standard = plan_for_target(spec(resources={"pids": 10}), profile)
    assert verdicts(standard)["spec.resources.pids"] is Verdict.HONORED
    assert standard.notes == ()


def test_a_tier_the_target_lacks_is_rejected_naming_what_it_offers() -> None:
    plain = TargetProfile("p", "podman", ALL - {Feature.ISOLATION_SANDBOXED}, column("podman"))
    plan = plan_for_target(spec(isolation="sandboxed"), plain)
    refused = {f.path: f for f in plan.fields}["spec.isolation"]
    assert refused.verdict is Verdict.REJECTED
    assert "no runtime handler for the sandboxed tier" in refused.reason
    assert "offers: standard" in refused.reason
    assert not plan.deployable(Mode.STRICT) and not plan.deployable(Mode.LENIENT)


def test_microvm_is_planned_only_and_says_why() -> None:
    plan = plan_for_target(spec(isolation="microvm"), gvisor_profile())
    refused = {f.path: f for f in plan.fields}["spec.isolation"]
    assert refused.verdict is Verdict.REJECTED
    assert "Firecracker" in refused.reason and "docs/isolation.md" in refused.reason
    assert "microvm" in PLANNED
    assert unavailable({"standard", "sandboxed"}) == {
        "microvm": PLANNED["microvm"],
        "wasm": "no runtime handler for it on this target",
    }


def test_a_column_proves_only_its_own_isolation_feature() -> None:
    caps = DriverCapabilities(
        ALL,
        handlers=(RuntimeHandler("standard", "runc"), RuntimeHandler("sandboxed", "runsc")),
        tier_gaps={"sandboxed": {Feature.OOM_REPORTED: "gVisor reports no OOM kill"}},
    )
    sandboxed = declared_in_tier(caps, "sandboxed")
    assert Feature.ISOLATION_SANDBOXED in sandboxed
    assert Feature.ISOLATION_STANDARD not in sandboxed
    assert Feature.OOM_REPORTED not in sandboxed
    standard = declared_in_tier(caps, "standard")
    assert Feature.ISOLATION_STANDARD in standard and Feature.OOM_REPORTED in standard
    assert Feature.ISOLATION_SANDBOXED not in standard
    # a lifecycle case written for runc proves the tier it ran in
    assert in_tier((Feature.ISOLATION_STANDARD, Feature.ENV), "sandboxed") == (
        Feature.ISOLATION_SANDBOXED,
        Feature.ENV,
    )


class _Caps:
    def __init__(self, caps: DriverCapabilities) -> None:
        self._caps = caps

    def capabilities(self) -> DriverCapabilities:
        return self._caps


def test_target_records_keep_each_tier_handler_and_overhead() -> None:
    caps = DriverCapabilities(
        ALL,
        handlers=(
            RuntimeHandler("standard", "runc"),
            RuntimeHandler("sandboxed", "runsc", overhead_memory=64 << 20, overhead_cpu=0.1),
        ),
    )
    recorded = tiers_of(_Caps(caps))  # type: ignore[arg-type]
    assert recorded["sandboxed"] == {
        "handler": "runsc",
        "overheadMemory": 64 << 20,
        "overheadCpu": 0.1,
    }
    view = TargetView(
        "t",
        "docker",
        "docker://",
        {},
        tiers={k: TierHandler.from_status(v) for k, v in recorded.items()},
    )
    assert view.isolation_tiers == frozenset({"standard", "sandboxed"})
    # a driver naming no handlers offers the tiers its features declare
    bare = tiers_of(_Caps(DriverCapabilities(frozenset({Feature.ISOLATION_STANDARD}))))  # type: ignore[arg-type]
    assert set(bare) == {"standard"}
    # never fingerprinted: standard only
    assert TargetView("u", "docker", "docker://", {}).isolation_tiers == frozenset({"standard"})


def test_placement_never_picks_a_target_without_the_tier() -> None:
    plain = TargetState("plain", tiers={"standard": TierCost()})
    gvisor = TargetState("gvisor", tiers={"standard": TierCost(), "sandboxed": TierCost()})
    ask = Ask("ns/box", (0,), tier="sandboxed")
    placed = ClusterState([plain, gvisor]).schedule(ask)
    assert [p.target for p in placed.placed] == ["gvisor"]
    nowhere = ClusterState([plain]).schedule(ask)
    assert nowhere.placed == () and nowhere.failure is not None
    assert nowhere.failure.message() == "0/1 targets available: 1 lack isolation tier sandboxed"


def test_host_access_is_never_offered_in_the_sandboxed_tier_and_the_plan_says_why() -> None:
    caps = DriverCapabilities(
        ALL,
        handlers=(RuntimeHandler("standard", "runc"), RuntimeHandler("sandboxed", "runsc")),
        tier_gaps={"sandboxed": {Feature.RESOURCES_PIDS: "counts the Sentry's threads"}},
    )
    gaps = caps.gaps_in("sandboxed")
    assert Feature.SECURITY_HOST_PID in gaps and Feature.RESOURCES_PIDS in gaps
    assert Feature.SECURITY_HOST_PID in caps.features_for("standard")
    assert Feature.SECURITY_HOST_PID not in caps.features_for("sandboxed")
    profile = TargetProfile(
        "t",
        "docker",
        caps.features_for("standard"),
        column("docker", *ALL),
        tiers={
            "sandboxed": TierView(
                "runsc",
                caps.features_for("sandboxed"),
                column("docker@sandboxed", *ALL),
                gaps,
            )
        },
    )
    plan = plan_for_target(
        spec(isolation="sandboxed", security={"hostPid": True}, resources={"pids": 5}), profile
    )
    found = {f.path: f for f in plan.fields}
    assert found["spec.security.hostPid"].verdict is Verdict.REJECTED
    assert "not in the sandboxed tier: the sandbox has its own kernel" in (
        found["spec.security.hostPid"].reason
    )
    assert "Sentry" in found["spec.resources.pids"].reason


def test_a_tier_column_keeps_why_a_feature_is_not_claimed() -> None:
    from portway.conformance.runner import SuiteResult, matrix_of, render_markdown

    suite = SuiteResult(
        driver="docker",
        target="t",
        engine="Docker",
        declared=frozenset({Feature.ENV, Feature.ISOLATION_SANDBOXED}),
        results=(),
        generated_at="2026-11-23T00:00:00Z",
        tier="sandboxed",
        gaps={Feature.RESOURCES_PIDS: "the Sentry's threads count"},
    )
    matrix = matrix_of([suite])
    column = matrix.for_driver("docker", "sandboxed")
    assert column is not None
    assert column.features[Feature.RESOURCES_PIDS].reason == "the Sentry's threads count"
    again = Matrix.from_json(matrix.to_json())
    kept = again.for_driver("docker", "sandboxed")
    assert kept is not None and kept.features[Feature.RESOURCES_PIDS].reason
    text = render_markdown(matrix)
    assert "## docker@sandboxed" in text
    assert "- `resources.pids`: the Sentry's threads count" in text
