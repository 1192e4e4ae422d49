"""The planner: verdicts per field and target from declarations and evidence."""

from __future__ import annotations

from typing import Any

from portway.capabilities.matrix import DriverResults, FeatureResult, Matrix, Status
from portway.capabilities.planner import (
    Mode,
    TargetProfile,
    Verdict,
    differences,
    judge,
    plan,
    plan_for_target,
)
from portway.capabilities.vocabulary import Feature, uses
from portway.spec.model import WorkloadSpec

ALL = frozenset(Feature)


def spec(**fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"image": "portway/busybox:latest", **fields})


def proven(*features: Feature, failed: dict[Feature, str] | None = None) -> DriverResults:
    results = {f: FeatureResult(Status.PASS, (f"case.{f}",)) for f in features}
    for feature, message in (failed or {}).items():
        results[feature] = FeatureResult(Status.FAIL, (f"case.{feature}",), (message,))
    return DriverResults("fake", "Fake Engine 1.0", "2026-11-23T00:00:00Z", results)


def profile(
    name: str = "t1",
    features: frozenset[Feature] = ALL,
    results: DriverResults | None = None,
    **kw: Any,
) -> TargetProfile:
    return TargetProfile(
        name, "fake", features, results if results is not None else proven(*ALL), **kw
    )


FULL = spec(
    command=["httpd"],
    args=["-f"],
    env={"A": "1"},
    ports=[{"containerPort": 8080, "hostPort": 18080}, {"containerPort": 53, "protocol": "udp"}],
    resources={"cpu": 0.5, "memory": "64Mi", "pids": 10},
    restart={"policy": "on-failure", "maxRetries": 2},
    probes={"readiness": {"http": {"port": 8080}}, "liveness": {"exec": {"command": ["true"]}}},
    volumes=[
        {"name": "t", "type": "tmpfs", "mountPath": "/t", "sizeLimit": "1Mi"},
        {"name": "n", "type": "named", "mountPath": "/n", "readOnly": True},
    ],
    security={
        "user": "65534",
        "readOnlyRootFilesystem": True,
        "noNewPrivileges": True,
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
    },
    extensions={"docker": {"init": True}, "podman": {}},
)


def test_uses_lists_every_feature_with_its_field() -> None:
    found = {(u.path, u.feature) for u in uses(FULL)}
    expected = {
        ("spec.command", Feature.COMMAND),
        ("spec.args", Feature.ARGS),
        ("spec.env", Feature.ENV),
        ("spec.ports[0]", Feature.PORTS_TCP),
        ("spec.ports[0].hostPort", Feature.PORTS_HOST_PORT),
        ("spec.ports[1]", Feature.PORTS_UDP),
        ("spec.resources.cpu", Feature.RESOURCES_CPU),
        ("spec.resources.memory", Feature.RESOURCES_MEMORY),
        ("spec.resources.pids", Feature.RESOURCES_PIDS),
        ("spec.restart.policy", Feature.RESTART_ON_FAILURE),
        ("spec.probes.readiness.http", Feature.PROBES_HTTP),
        ("spec.probes.liveness.exec", Feature.PROBES_EXEC),
        ("spec.volumes[0]", Feature.VOLUMES_TMPFS),
        ("spec.volumes[0].sizeLimit", Feature.VOLUMES_TMPFS_SIZE),
        ("spec.volumes[1]", Feature.VOLUMES_NAMED),
        ("spec.volumes[1].readOnly", Feature.VOLUMES_READ_ONLY),
        ("spec.security.user", Feature.SECURITY_USER),
        ("spec.security.readOnlyRootFilesystem", Feature.SECURITY_READ_ONLY_ROOTFS),
        ("spec.security.capabilities.add", Feature.SECURITY_CAP_ADD),
        ("spec.security.capabilities.drop", Feature.SECURITY_CAP_DROP),
        ("spec.security.noNewPrivileges", Feature.SECURITY_NO_NEW_PRIVILEGES),
        ("spec.isolation", Feature.ISOLATION_STANDARD),
    }
    assert found == expected


def test_minimal_spec_uses_only_restart_and_isolation() -> None:
    assert [u.feature for u in uses(spec())] == [
        Feature.RESTART_ALWAYS,
        Feature.ISOLATION_STANDARD,
    ]


def test_declared_and_proven_is_honored_with_evidence() -> None:
    verdict, reason = judge(Feature.PORTS_TCP, profile())
    assert verdict is Verdict.HONORED
    assert "Fake Engine 1.0" in reason and "case.ports.tcp" in reason


def test_undeclared_feature_is_dropped_or_rejected_by_its_policy() -> None:
    lacking = profile(features=ALL - {Feature.RESOURCES_PIDS, Feature.PORTS_UDP})
    pids = judge(Feature.RESOURCES_PIDS, lacking)
    udp = judge(Feature.PORTS_UDP, lacking)
    assert pids == (Verdict.DROPPED, "the fake driver cannot limit the number of processes")
    assert udp[0] is Verdict.REJECTED and "publish a UDP port" in udp[1]


def test_a_failed_conformance_case_takes_the_claim_back() -> None:
    results = proven(*ALL, failed={Feature.RESOURCES_MEMORY: "memory.limit: limit not applied"})
    verdict, reason = judge(Feature.RESOURCES_MEMORY, profile(results=results))
    assert verdict is Verdict.DROPPED
    assert "conformance failed" in reason and "limit not applied" in reason


def test_declared_but_unproven_is_dropped_never_honored() -> None:
    verdict, reason = judge(Feature.COMMAND, profile(results=proven()))
    assert verdict is Verdict.DROPPED
    assert "not proven" in reason
    none_recorded = TargetProfile("t", "fake", ALL, None)
    assert judge(Feature.ENV, none_recorded)[0] is Verdict.DROPPED


def test_controller_features_are_emulated_and_need_their_driver_features() -> None:
    verdict, reason = judge(Feature.RESTART_ON_FAILURE, profile())
    assert verdict is Verdict.EMULATED and "portway's controller" in reason
    no_exec = profile(features=ALL - {Feature.EXEC})
    verdict, reason = judge(Feature.PROBES_EXEC, no_exec)
    assert verdict is Verdict.REJECTED and "needs exec" in reason
    no_tcp = profile(features=ALL - {Feature.PORTS_TCP})
    assert judge(Feature.PROBES_HTTP, no_tcp)[0] is Verdict.REJECTED


def test_a_target_whose_driver_cannot_load_rejects_everything_but_lists_every_field() -> None:
    broken = TargetProfile("far", "nomad", frozenset(), None, problem="driver 'nomad' cannot load")
    result = plan_for_target(FULL, broken)
    assert len(result.fields) == len(uses(FULL))
    assert {f.verdict for f in result.fields} == {Verdict.REJECTED}
    assert any("cannot load" in n for n in result.notes)


def test_unhealthy_target_is_planned_with_a_note() -> None:
    result = plan_for_target(FULL, profile(healthy=False, detail="connection refused"))
    assert any("unhealthy" in n and "connection refused" in n for n in result.notes)


def test_extensions_are_listed_and_apply_only_to_their_backend() -> None:
    as_docker = TargetProfile("d", "docker", ALL, proven(*ALL))
    result = plan_for_target(FULL, as_docker)
    notes = {e.backend: e for e in result.extensions}
    assert notes["docker"].applies and notes["docker"].keys == ("init",)
    assert not notes["podman"].applies


def test_strict_refuses_drops_lenient_only_rejections() -> None:
    lacking = profile(features=ALL - {Feature.RESOURCES_PIDS})
    result = plan_for_target(FULL, lacking)
    assert not result.deployable(Mode.STRICT)
    assert result.deployable(Mode.LENIENT)
    assert [f.path for f in result.refusals(Mode.STRICT)] == ["spec.resources.pids"]
    assert result.refusals(Mode.LENIENT) == []


def test_differences_between_targets() -> None:
    plans = plan(FULL, [profile("a"), profile("b", features=ALL - {Feature.RESOURCES_PIDS})])
    diff = differences(plans)
    assert diff == {"spec.resources.pids": {"a": Verdict.HONORED, "b": Verdict.DROPPED}}


def test_plan_json_is_complete() -> None:
    data = plan_for_target(FULL, profile()).to_json()
    assert data["deployable"] == {"strict": True, "lenient": True}
    assert len(data["fields"]) == len(uses(FULL))
    assert {e["backend"] for e in data["extensions"]} == {"docker", "podman"}


def test_matrix_round_trips_through_json() -> None:
    matrix = Matrix({"fake": proven(Feature.EXEC, failed={Feature.STATS: "boom"})})
    again = Matrix.from_json(matrix.to_json())
    assert again == matrix
    assert again.drivers["fake"].status(Feature.STATS) is Status.FAIL
    assert again.drivers["fake"].status(Feature.LOGS) is Status.UNTESTED
