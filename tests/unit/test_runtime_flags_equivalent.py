"""Every field of the portway equivalent of compose-go's runtime-flags.yaml
gets a verdict on each backend, from the kept conformance matrix."""

from __future__ import annotations

from pathlib import Path

from portway.capabilities.matrix import Status, load_packaged
from portway.capabilities.planner import TargetProfile, Verdict, plan_for_target
from portway.capabilities.vocabulary import uses
from portway.spec.loader import load_workloads

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "runtime-flags.yaml"
BACKENDS = ("docker", "podman", "containerd")


def kept_profile(driver: str) -> TargetProfile:
    results = load_packaged().for_driver(driver)
    assert results is not None, f"the kept matrix has no run for {driver}"
    declared = frozenset(
        f for f, r in results.features.items() if r.status is not Status.UNSUPPORTED
    )
    return TargetProfile(f"local-{driver}", driver, declared, results)


def test_every_field_gets_a_verdict_on_every_backend() -> None:
    [workload] = load_workloads(EXAMPLE)
    expected = [(u.path, u.feature) for u in uses(workload.spec)]
    assert len(expected) >= 15
    for driver in BACKENDS:
        plan = plan_for_target(workload.spec, kept_profile(driver))
        assert [(f.path, f.feature) for f in plan.fields] == expected  # none hidden
        for item in plan.fields:
            assert item.reason, (driver, item.path)
        honored = {f.path for f in plan.fields if f.verdict is Verdict.HONORED}
        assert {
            "spec.resources.memory",
            "spec.security.capabilities.drop",
            "spec.volumes[0]",
            "spec.ports[1]",
        } <= honored, (driver, honored)
        assert plan.with_verdict(Verdict.EMULATED)[0].path == "spec.restart.policy"
        notes = {e.backend: e.applies for e in plan.extensions}
        assert notes == {b: b == driver for b in BACKENDS}


def test_the_kept_matrix_proves_every_declared_feature_on_every_backend() -> None:
    for driver in BACKENDS:
        results = load_packaged().for_driver(driver)
        assert results is not None and results.cases_failed == 0, driver
        unproven = sorted(
            str(f)
            for f, r in results.features.items()
            if r.status not in (Status.PASS, Status.UNSUPPORTED)
        )
        assert unproven == [], (driver, unproven)
