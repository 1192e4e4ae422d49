"""The suite's bookkeeping without an engine: which cases run, how results
become feature statuses, cleanup, the matrix files and the case registry."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest

from portway.capabilities.matrix import Matrix, Status
from portway.capabilities.vocabulary import Feature
from portway.conformance import (
    CaseFailed,
    CaseResult,
    ConformanceError,
    Context,
    Outcome,
    SuiteResult,
    all_cases,
    render_markdown,
    run_case,
    run_suite,
    write_matrix,
)
from portway.conformance.__main__ import main
from portway.conformance.case import GROUPS, Case, select_cases
from portway.drivers.base import (
    LABEL_NAMESPACE,
    DriverCapabilities,
    Fingerprint,
    Handle,
    Health,
    ReplicaState,
    ReplicaStatus,
)
from portway.drivers.registry import open_driver
from portway.errors import InputError, TargetUnavailableError


class StubDriver:
    """Just enough of a Driver for the runner: capabilities, listing, destroy."""

    name = "stub"
    target = "stub-target"

    def __init__(
        self,
        features: Iterable[Feature],
        *,
        health: Health = Health.HEALTHY,
        image: bool = True,
        sticky: bool = False,  # destroy does not remove anything
    ) -> None:
        self.features = frozenset(features)
        self.health = health
        self.image = image
        self.sticky = sticky
        self.owned: list[ReplicaStatus] = []
        self.destroyed: list[str] = []

    def fingerprint(self) -> Fingerprint:
        return Fingerprint(self.health, detail="Stub Engine 1.0")

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(self.features)

    def list_owned(self, selector: Mapping[str, str]) -> list[ReplicaStatus]:
        return [s for s in self.owned if all(s.labels.get(k) == v for k, v in selector.items())]

    def destroy(self, handle: Handle) -> None:
        self.destroyed.append(handle.id)
        if not self.sticky:
            self.owned = [s for s in self.owned if s.handle.id != handle.id]

    def image_present(self, image: str) -> bool:
        return self.image


def make_case(
    run: Callable[[Context], None],
    features: tuple[Feature, ...] = (Feature.ENV,),
    requires: tuple[Feature, ...] = (),
    case_id: str = "command.stub",
) -> Case:
    return Case(case_id, case_id.partition(".")[0], "a stub case", features, run, requires)


def result(case_id: str, outcome: Outcome, *features: Feature, message: str = "") -> CaseResult:
    return CaseResult(case_id, "command", "t", features, outcome, message)


# --- running one case ------------------------------------------------------------


def test_a_case_needing_an_undeclared_feature_is_not_run() -> None:
    calls: list[Context] = []
    driver = StubDriver({Feature.PROBES_EXEC})  # but not EXEC, which exec probes need
    found = run_case(driver, make_case(calls.append, (Feature.PROBES_EXEC,)))
    assert calls == []
    assert found.outcome is Outcome.UNSUPPORTED
    assert found.missing == (Feature.EXEC,)
    assert found.message == "not declared by the stub driver: exec"

    matrix = SuiteResult("stub", "t", "", driver.features, (found,), "").to_driver_results()
    assert matrix.status(Feature.EXEC) is Status.UNSUPPORTED
    assert matrix.status(Feature.PROBES_EXEC) is Status.UNTESTED  # declared, not proven


def test_requires_are_needed_but_not_proven() -> None:
    driver = StubDriver({Feature.ENV})
    found = run_case(driver, make_case(lambda ctx: None, requires=(Feature.COMMAND,)))
    assert (found.outcome, found.missing) == (Outcome.UNSUPPORTED, (Feature.COMMAND,))


def test_outcomes_and_messages() -> None:
    driver = StubDriver({Feature.ENV})

    def fails(ctx: Context) -> None:
        raise CaseFailed("expected 1, got 2")

    def driver_error(ctx: Context) -> None:
        raise TargetUnavailableError("stub-target", "engine gone")

    def crashes(ctx: Context) -> None:
        raise ValueError("boom")

    assert run_case(driver, make_case(lambda ctx: None)).outcome is Outcome.PASS
    failed = run_case(driver, make_case(fails))
    assert (failed.outcome, failed.message) == (Outcome.FAIL, "expected 1, got 2")
    gone = run_case(driver, make_case(driver_error))
    assert gone.outcome is Outcome.FAIL
    assert gone.message.startswith("TargetUnavailableError: target 'stub-target': engine gone")
    crashed = run_case(driver, make_case(crashes))
    assert crashed.outcome is Outcome.FAIL
    assert crashed.message.startswith("unexpected ValueError: boom (at test_runner.py:")


def _leave_a_replica(driver: StubDriver) -> Callable[[Context], None]:
    def run(ctx: Context) -> None:
        handle = Handle("stub", "stub-target", f"id-{ctx.namespace}", "leftover")
        labels = {LABEL_NAMESPACE: ctx.namespace}
        driver.owned.append(ReplicaStatus(handle, labels, ReplicaState.RUNNING))
        # another case's replica, in another namespace: not ours to remove
        other = Handle("stub", "stub-target", "someone-else", "other")
        driver.owned.append(ReplicaStatus(other, {LABEL_NAMESPACE: "x"}, ReplicaState.RUNNING))

    return run


def test_cleanup_removes_what_the_case_made_and_nothing_else() -> None:
    driver = StubDriver({Feature.ENV})
    found = run_case(driver, make_case(_leave_a_replica(driver)))
    assert found.outcome is Outcome.PASS
    assert len(driver.destroyed) == 1 and driver.destroyed[0].startswith("id-cf-")
    assert [s.handle.id for s in driver.owned] == ["someone-else"]


def test_a_replica_that_cannot_be_removed_fails_the_case() -> None:
    driver = StubDriver({Feature.ENV}, sticky=True)
    found = run_case(driver, make_case(_leave_a_replica(driver)))
    assert found.outcome is Outcome.FAIL
    assert found.message == "cleanup: replicas still listed after destroy: leftover"


# --- suites and feature statuses -----------------------------------------------------


def test_feature_status_rules() -> None:
    declared = frozenset({Feature.ENV, Feature.COMMAND, Feature.ARGS, Feature.LOGS})
    suite = SuiteResult(
        "stub",
        "t",
        "Stub Engine 1.0",
        declared,
        (
            result("command.a", Outcome.PASS, Feature.ENV, Feature.COMMAND),
            result("command.b", Outcome.FAIL, Feature.COMMAND, message="wrong"),
            result("command.c", Outcome.PASS, Feature.ARGS, Feature.STATS),
        ),
        "2024-01-01T00:00:00Z",
    )
    found = suite.to_driver_results()
    assert found.status(Feature.ENV) is Status.PASS
    assert found.status(Feature.COMMAND) is Status.FAIL
    assert found.features[Feature.COMMAND].cases == ("command.a", "command.b")
    assert found.features[Feature.COMMAND].failures == ("command.b: wrong",)
    assert found.status(Feature.ARGS) is Status.PASS
    assert found.status(Feature.STATS) is Status.UNSUPPORTED  # covered, but not declared
    assert found.status(Feature.LOGS) is Status.UNTESTED  # declared, nothing covers it
    assert found.status(Feature.EXEC) is Status.UNSUPPORTED
    assert (found.cases_passed, found.cases_failed) == (2, 1)
    assert found.engine == "Stub Engine 1.0"
    assert suite.to_driver_results(engine="other").engine == "other"


def test_run_suite_checks_the_target_first() -> None:
    with pytest.raises(ConformanceError, match="is unhealthy"):
        run_suite(StubDriver(set(), health=Health.UNHEALTHY))
    with pytest.raises(ConformanceError, match="never pulls"):
        run_suite(StubDriver(set(), image=False))
    with pytest.raises(InputError, match="no conformance case matches 'nope'"):
        run_suite(StubDriver(set()), only=["nope"])


def test_run_suite_reports_every_case_unsupported_on_a_driver_declaring_nothing() -> None:
    seen: list[CaseResult] = []
    suite = run_suite(StubDriver(set()), progress=seen.append)
    assert [r.case_id for r in seen] == [c.id for c in all_cases()]
    assert suite.complete and suite.unsupported == len(all_cases())
    assert suite.engine == "Stub Engine 1.0"
    statuses = {suite.to_driver_results().status(f) for f in Feature}
    assert statuses == {Status.UNSUPPORTED}


# --- the matrix files ----------------------------------------------------------------


def test_write_matrix_round_trips_and_renders(tmp_path: Path) -> None:
    suite = SuiteResult(
        "stub",
        "t",
        "Stub Engine 1.0",
        frozenset({Feature.ENV, Feature.COMMAND, Feature.LOGS}),
        (
            result("command.a", Outcome.PASS, Feature.ENV),
            result("command.b", Outcome.FAIL, Feature.COMMAND, message="exit 1\nnot 0"),
        ),
        "2024-01-01T00:00:00Z",
    )
    matrix = Matrix().merged(suite.to_driver_results())
    write_matrix(matrix, tmp_path / "m.json", tmp_path / "docs" / "m.md")
    loaded = Matrix.from_json(json.loads((tmp_path / "m.json").read_text()))
    assert loaded.to_json() == matrix.to_json()
    text = (tmp_path / "docs" / "m.md").read_text()
    assert text == render_markdown(matrix)
    assert "| Feature | What | Provided by | stub |" in text
    assert "| `env` | set environment variables | driver | ✓ |" in text
    assert "| `command` | replace the image entrypoint | driver | ✗ |" in text
    assert "| `logs` | read a replica's output (portway logs) | driver | ? |" in text
    assert "| `stats` | report CPU and memory use | driver | — |" in text
    assert "- Engine: Stub Engine 1.0" in text
    assert "- `command.b` (command): exit 1 not 0" in text
    assert "No conformance results yet." in render_markdown(Matrix())


# --- the registry ---------------------------------------------------------------------


def test_the_registry() -> None:
    cases = all_cases()
    assert len(cases) >= 40
    assert len({c.id for c in cases}) == len(cases)
    assert [c.group for c in cases] == sorted((c.group for c in cases), key=GROUPS.index)
    for group in GROUPS:
        assert any(c.group == group for c in cases), f"group {group} has no case"
    for case in cases:
        assert case.id.startswith(case.group + ".") and case.title, case
        assert all(isinstance(f, Feature) for f in case.features + case.requires), case


def test_every_feature_the_docker_driver_declares_is_covered() -> None:
    declared = open_driver("c", "docker", "docker:///var/run/docker.sock").capabilities()
    # a case proves, in each tier it runs in, that tier's features (the
    # lifecycle cases prove isolation.sandboxed when run under gVisor)
    covered = {f for c in all_cases() for tier in c.tiers for f in c.features_in(tier)}
    assert sorted(declared.features - covered) == []


def test_selecting_cases() -> None:
    assert {c.group for c in select_cases(["probes"])} == {"probes"}
    assert [c.id for c in select_cases(["*tmpfs*"])] == [
        "volumes.tmpfs",
        "volumes.tmpfs_size",
        "secrets.files_tmpfs",
    ]
    picked = select_cases(["logs.tail", "lifecycle.exit_code"])
    assert [c.id for c in picked] == ["lifecycle.exit_code", "logs.tail"]  # suite order
    with pytest.raises(InputError, match="'nope'"):
        select_cases(["logs.tail", "nope"])


def test_module_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(all_cases())
    with pytest.raises(SystemExit) as exited:
        main(["--address", "docker:///x", "--only", "logs", "--write-matrix"])
    assert exited.value.code == 2


def test_a_covering_case_that_could_not_run_does_not_veto_the_ones_that_passed() -> None:
    declared = frozenset({Feature.RESOURCES_MEMORY})
    ran = CaseResult(
        "resources.memory_limit",
        "resources",
        "limit applied",
        (Feature.RESOURCES_MEMORY,),
        Outcome.PASS,
    )
    not_run = CaseResult(
        "resources.oom_killed",
        "resources",
        "OOM reported",
        (Feature.RESOURCES_MEMORY, Feature.OOM_REPORTED),
        Outcome.UNSUPPORTED,
        missing=(Feature.OOM_REPORTED,),
    )
    only_not_run = SuiteResult("d", "t", "", declared, (not_run,), "").to_driver_results()
    assert only_not_run.status(Feature.RESOURCES_MEMORY) is Status.UNTESTED
    both = SuiteResult("d", "t", "", declared, (ran, not_run), "").to_driver_results()
    assert both.status(Feature.RESOURCES_MEMORY) is Status.PASS
    assert both.features[Feature.RESOURCES_MEMORY].cases == (
        "resources.memory_limit",
        "resources.oom_killed",
    )
