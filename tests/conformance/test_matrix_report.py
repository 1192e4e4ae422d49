"""The conformance matrix made whole from xdist workers' parts, without an engine."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from portway.capabilities.vocabulary import Feature
from portway.conformance import CaseResult, Outcome, SuiteResult, all_cases
from tests.conformance.matrix_report import (
    hand_in,
    merge,
    receive_from_worker,
    report,
    suite_from_json,
    suite_to_json,
)

CASES = [c for c in all_cases() if "standard" in c.tiers][:4]


def result(index: int, outcome: Outcome = Outcome.PASS) -> CaseResult:
    case = CASES[index]
    return CaseResult(
        case.id,
        case.group,
        case.title,
        tuple(case.features_in("standard")),
        outcome,
        message="exit 1" if outcome is Outcome.FAIL else "",
        duration=0.5,
        missing=(Feature.LOGS,) if outcome is Outcome.UNSUPPORTED else (),
        notes=("a note",),
    )


def suite(*results: CaseResult, engine: str = "Stub 1.0") -> SuiteResult:
    return SuiteResult(
        "stub",
        "t",
        engine,
        frozenset({Feature.ENV, Feature.LOGS, Feature.EXEC}),
        results,
        "2026-01-01T00:00:00Z",
        tier="standard",
        gaps={Feature.STATS: "no stats here"},
    )


def test_a_suite_survives_the_trip_through_json() -> None:
    whole = suite(result(0), result(1, Outcome.FAIL), result(2, Outcome.UNSUPPORTED))
    assert suite_from_json(json.loads(json.dumps(suite_to_json(whole)))) == whole


def test_parts_merge_into_the_serial_run_in_case_order() -> None:
    serial = suite(result(0), result(1, Outcome.FAIL), result(2), result(3))
    parts = [suite(result(3), result(1, Outcome.FAIL)), suite(result(2), result(0), engine="")]
    [merged] = merge(parts)
    assert merged.results == serial.results
    assert merged.engine == "Stub 1.0"  # the part that opened the engine describes it
    assert merged.to_driver_results() == serial.to_driver_results()
    assert not merged.complete  # 4 cases of the whole tier


def test_the_controller_reports_what_every_worker_handed_in(tmp_path: Path) -> None:
    controller = SimpleNamespace(stash={})
    out = tmp_path / "conformance"
    for part in (suite(result(1)), suite(result(0))):
        worker = SimpleNamespace(workeroutput={}, workerinput={})
        hand_in(worker, [part], out)  # type: ignore[arg-type]
        receive_from_worker(controller, worker.workeroutput)  # type: ignore[arg-type]
    lines: list[str] = []
    report(controller, lines.append)  # type: ignore[arg-type]
    assert lines[2].startswith("stub: 2 passed, 0 failed, 0 unsupported (partial run: 2 of")
    written = json.loads((out / "capability-matrix.json").read_text())
    features: dict[str, Any] = written["drivers"]["stub"]["features"]
    cases = {case for feature in features.values() for case in feature["cases"]}
    assert {CASES[0].id, CASES[1].id} <= cases
    assert f"written to {out}" in lines


def test_a_worker_reports_nothing_itself(tmp_path: Path) -> None:
    worker = SimpleNamespace(workeroutput={}, workerinput={}, stash={})
    hand_in(worker, [suite(result(0))], tmp_path)  # type: ignore[arg-type]
    lines: list[str] = []
    report(worker, lines.append)  # type: ignore[arg-type]
    assert lines == [] and not (tmp_path / "capability-matrix.json").exists()
