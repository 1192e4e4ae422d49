"""The conformance run's capability matrix, whole even when xdist splits the run.

Every process that ran conformance cases (the one pytest process, or each
xdist worker) hands its per-column results to the process that reports: a
worker through ``config.workeroutput`` (xdist carries it to the controller
when the worker finishes), a serial run directly. The reporting process
merges the parts column by column, in case order, writes
``capability-matrix.{json,md}`` and prints the matrix in the terminal summary.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from portway.capabilities.matrix import Matrix
from portway.capabilities.vocabulary import Feature
from portway.conformance import (
    CaseResult,
    Outcome,
    SuiteResult,
    all_cases,
    render_markdown,
    write_matrix,
)

#: key in config.workeroutput (a worker's parts, as JSON text)
WORKER_OUTPUT_KEY = "portway_conformance"


class _Parts:
    """Suites and the output directory handed in so far (in the reporting process)."""

    def __init__(self) -> None:
        self.suites: list[SuiteResult] = []
        self.out: Path | None = None


_PARTS = pytest.StashKey[_Parts]()


def _parts(config: pytest.Config) -> _Parts:
    if _PARTS not in config.stash:
        config.stash[_PARTS] = _Parts()
    return config.stash[_PARTS]


def cases_in(tier: str) -> int:
    return sum(tier in c.tiers for c in all_cases())


# --- to and from JSON (xdist carries only plain data) ----------------------------


def suite_to_json(suite: SuiteResult) -> dict[str, Any]:
    data = asdict(suite)
    data["declared"] = sorted(suite.declared)
    data["gaps"] = dict(suite.gaps)
    return data


def suite_from_json(data: dict[str, Any]) -> SuiteResult:
    results = tuple(
        CaseResult(
            **{
                **r,
                "features": tuple(Feature(f) for f in r["features"]),
                "outcome": Outcome(r["outcome"]),
                "missing": tuple(Feature(f) for f in r["missing"]),
                "notes": tuple(r["notes"]),
            }
        )
        for r in data["results"]
    )
    return SuiteResult(
        **{
            **data,
            "declared": frozenset(Feature(f) for f in data["declared"]),
            "results": results,
            "gaps": {Feature(f): why for f, why in data["gaps"].items()},
        }
    )


# --- handing parts in ------------------------------------------------------------


def hand_in(config: pytest.Config, suites: list[SuiteResult], out: Path) -> None:
    """Called where cases ran: keep the parts, or send them on if this is a worker."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        payload = {"out": str(out), "suites": [suite_to_json(s) for s in suites]}
        workeroutput[WORKER_OUTPUT_KEY] = json.dumps(payload)
        return
    parts = _parts(config)
    parts.suites.extend(suites)
    parts.out = out


def receive_from_worker(config: pytest.Config, workeroutput: dict[str, Any]) -> None:
    """Called in the xdist controller when a worker finishes."""
    text = workeroutput.get(WORKER_OUTPUT_KEY)
    if not text:
        return
    payload = json.loads(text)
    parts = _parts(config)
    parts.suites.extend(suite_from_json(s) for s in payload["suites"])
    parts.out = Path(payload["out"])


# --- merging and reporting -------------------------------------------------------


def merge(suites: list[SuiteResult]) -> list[SuiteResult]:
    """One suite per column: the parts' results together, in case order."""
    order = {case.id: i for i, case in enumerate(all_cases())}
    by_column: dict[str, SuiteResult] = {}
    for suite in suites:
        kept = by_column.get(suite.column)
        if kept is None:
            by_column[suite.column] = suite
            continue
        by_column[suite.column] = replace(
            kept,
            engine=kept.engine or suite.engine,
            generated_at=min(kept.generated_at, suite.generated_at),
            results=kept.results + suite.results,
        )
    merged = []
    for column in sorted(by_column):
        suite = by_column[column]
        results = tuple(sorted(suite.results, key=lambda r: order.get(r.case_id, len(order))))
        merged.append(
            replace(
                suite,
                results=results,
                complete=len(results) == cases_in(suite.tier),
            )
        )
    return merged


def report(config: pytest.Config, write_line: Any) -> None:
    """Write the merged matrix files and print the matrix (reporting process only)."""
    if hasattr(config, "workerinput") or _PARTS not in config.stash:
        return
    parts = config.stash[_PARTS]
    if not parts.suites or parts.out is None:
        return
    suites = merge(parts.suites)
    matrix = Matrix()
    for suite in suites:
        matrix = matrix.merged(suite.to_driver_results())
    write_matrix(matrix, parts.out / "capability-matrix.json", parts.out / "capability-matrix.md")
    lines = ["", "=" * 30 + " capability matrix " + "=" * 30]
    for suite in suites:
        lines.append(
            f"{suite.column}: {suite.passed} passed, {suite.failed} failed, "
            f"{suite.unsupported} unsupported"
            + (
                ""
                if suite.complete
                else f" (partial run: {len(suite.results)} of {cases_in(suite.tier)})"
            )
        )
    lines += [render_markdown(matrix), f"written to {parts.out}"]
    for line in "\n".join(lines).splitlines():
        write_line(line)
