"""Run the cases against a driver and turn the results into the capability matrix.

A case runs only if the driver declares every feature it needs; otherwise
it is "unsupported" and not run (a driver is never blamed for what it does
not claim). Each case gets a fresh ``Context`` and is always cleaned up.
Per feature, the matrix then says: pass (every case covering it ran and
passed), fail (one failed), unsupported (not declared), untested (declared,
but no case covering it ran).
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from portway.capabilities.matrix import (
    STANDARD_TIER,
    DriverResults,
    FeatureResult,
    Matrix,
    Status,
    column_key,
)
from portway.capabilities.vocabulary import FEATURES, TIER_FEATURES, Feature
from portway.drivers.base import Driver, DriverCapabilities, Health
from portway.errors import PortwayError

from .case import (
    CONTAINER_TIERS,
    DEFAULT_IMAGE,
    Case,
    Context,
    all_cases,
    declared_in_tier,
    new_cluster,
    select_cases,
)
from .failures import CaseFailed, ConformanceError

__all__ = [
    "CaseResult",
    "Outcome",
    "SuiteResult",
    "conformance",
    "gaps_of",
    "kept_matrix_paths",
    "load_matrix",
    "matrix_of",
    "preflight",
    "render_markdown",
    "run_case",
    "run_suite",
    "write_matrix",
]


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 (an outcome, not a password)
    FAIL = "fail"
    UNSUPPORTED = "unsupported"  # the driver does not declare what the case needs: not run


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    group: str
    title: str
    features: tuple[Feature, ...]  # what the case proves
    outcome: Outcome
    message: str = ""  # why it failed, or why it was not run
    duration: float = 0.0  # seconds, cleanup included
    missing: tuple[Feature, ...] = ()  # undeclared features (unsupported only)
    notes: tuple[str, ...] = ()  # e.g. a volume that could not be removed


@dataclass(frozen=True)
class SuiteResult:
    driver: str
    target: str
    engine: str  # the fingerprint's detail, e.g. "Docker Engine 20.10.24 (API 1.41)"
    declared: frozenset[Feature]  # for ``tier`` (see case.declared_in_tier)
    results: tuple[CaseResult, ...]
    generated_at: str  # ISO 8601, UTC: when the run started
    duration: float = 0.0
    #: every registered case was selected (not a run limited by ``only``)
    complete: bool = True
    tier: str = "standard"
    #: features the driver does not offer in this tier, with why
    #: (``DriverCapabilities.gaps_in``: what the tier or the engine lacks)
    gaps: Mapping[Feature, str] = field(default_factory=dict)

    @property
    def column(self) -> str:
        """The matrix column this run fills, e.g. ``docker@sandboxed``."""
        return column_key(self.driver, self.tier)

    def count(self, outcome: Outcome) -> int:
        return sum(r.outcome is outcome for r in self.results)

    @property
    def passed(self) -> int:
        return self.count(Outcome.PASS)

    @property
    def failed(self) -> int:
        return self.count(Outcome.FAIL)

    @property
    def unsupported(self) -> int:
        return self.count(Outcome.UNSUPPORTED)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.outcome is Outcome.FAIL]

    def to_driver_results(self, engine: str | None = None) -> DriverResults:
        features: dict[Feature, FeatureResult] = {}
        for feature in Feature:
            covering = [r for r in self.results if feature in r.features]
            ids = tuple(r.case_id for r in covering)
            if feature not in self.declared:
                features[feature] = FeatureResult(
                    Status.UNSUPPORTED, ids, reason=self.gaps.get(feature, "")
                )
                continue
            failed = tuple(
                f"{r.case_id}: {r.message}" for r in covering if r.outcome is Outcome.FAIL
            )
            ran = [r for r in covering if r.outcome is not Outcome.UNSUPPORTED]
            if failed:
                status = Status.FAIL
            elif ran:
                # every case that ran passed; a covering case that could not run
                # (it needs another feature the driver lacks, e.g. OOM reporting
                # for the memory limit's OOM case) proves nothing either way
                status = Status.PASS
            else:
                status = Status.UNTESTED  # nothing that covers it could run
            features[feature] = FeatureResult(status, ids, failed)
        return DriverResults(
            driver=self.column,
            engine=self.engine if engine is None else engine,
            generated_at=self.generated_at,
            features=features,
            cases_passed=self.passed,
            cases_failed=self.failed,
        )


# --- running ------------------------------------------------------------------


def preflight(driver: Driver, image: str = DEFAULT_IMAGE, tier: str = "standard") -> str:
    """Check the target can run the suite in ``tier``; returns its engine
    description. Raises ``ConformanceError`` if the engine is not healthy,
    lacks the image or has no runtime handler for the tier."""
    fingerprint = driver.fingerprint()
    if fingerprint.health is not Health.HEALTHY:
        raise ConformanceError(
            f"target {driver.target!r} ({driver.name}) is {fingerprint.health.value}: "
            f"{fingerprint.detail}"
        )
    capabilities = driver.capabilities()
    handler = capabilities.handler_for(tier)
    if tier != "standard" and handler is None:
        offered = ", ".join(sorted(capabilities.isolation_tiers)) or "none"
        raise ConformanceError(
            f"target {driver.target!r} ({driver.name}) has no runtime handler for the {tier} "
            f"tier (it offers: {offered})"
        )
    # the wasm cases import their own modules; container tiers need the test image
    if tier in CONTAINER_TIERS and not driver.image_present(image):
        raise ConformanceError(
            f"image {image} is not on target {driver.target!r}; portway never pulls: build the "
            "test images there first (scripts/build-images.sh)"
        )
    engine = fingerprint.detail or f"{driver.name} {fingerprint.version}".strip()
    if handler is not None and tier != "standard":
        engine += f", {tier} tier with runtime {handler.handler}"
    return engine


def run_case(
    driver: Driver,
    case: Case,
    *,
    cluster: str | None = None,
    image: str = DEFAULT_IMAGE,
    declared: frozenset[Feature] | None = None,
    tier: str = "standard",
) -> CaseResult:
    """Run one case in ``tier`` (or report it unsupported without running it);
    always cleans up. The case's features are reported as seen in the tier
    (``Case.features_in``)."""
    if declared is None:
        declared = declared_in_tier(driver.capabilities(), tier)
    features = case.features_in(tier)
    missing = tuple(sorted(case.required_features(tier) - declared))
    if tier not in case.tiers:
        missing = missing or (TIER_FEATURES.get(tier, Feature.ISOLATION_STANDARD),)
        return CaseResult(
            case.id,
            case.group,
            case.title,
            features,
            Outcome.UNSUPPORTED,
            f"the case does not apply to the {tier} tier",
            missing=missing,
        )
    if missing:
        where = f" in the {tier} tier" if tier != "standard" else ""
        return CaseResult(
            case.id,
            case.group,
            case.title,
            features,
            Outcome.UNSUPPORTED,
            f"not declared by the {driver.name} driver{where}: {', '.join(missing)}",
            missing=missing,
        )
    started = time.monotonic()
    ctx = Context(driver, cluster=cluster or new_cluster(), image=image, tier=tier)
    outcome, message = Outcome.PASS, ""
    try:
        case.run(ctx)
    except CaseFailed as exc:
        outcome, message = Outcome.FAIL, str(exc)
    except PortwayError as exc:
        outcome, message = Outcome.FAIL, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a driver bug (or a case bug): report it, where it happened
        outcome, message = Outcome.FAIL, f"unexpected {type(exc).__name__}: {exc}{_where(exc)}"
    finally:
        try:
            problems = ctx.cleanup()
        except Exception as exc:  # cleanup must never hide the case's own result
            problems = [f"cleanup raised {exc!r}"]
    if problems:
        text = "cleanup: " + "; ".join(problems)
        if outcome is Outcome.PASS:
            outcome, message = Outcome.FAIL, text
        else:
            message = f"{message} ({text})"
    return CaseResult(
        case.id,
        case.group,
        case.title,
        features,
        outcome,
        message,
        duration=time.monotonic() - started,
        notes=tuple(ctx.notes),
    )


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {Path(last.filename).name}:{last.lineno})"


def run_suite(
    driver: Driver,
    *,
    only: Iterable[str] | None = None,
    progress: Callable[[CaseResult], None] | None = None,
    image: str = DEFAULT_IMAGE,
    tier: str = "standard",
) -> SuiteResult:
    """Run the cases (all, or those ``only`` names: ids, groups, globs) against
    one driver, every replica in isolation ``tier``. Raises ``ConformanceError``
    if the target cannot run them (or does not offer the tier), and
    ``InputError`` if ``only`` names no case."""
    cases = select_cases(only, tier)
    engine = preflight(driver, image, tier)
    capabilities = driver.capabilities()
    declared = declared_in_tier(capabilities, tier)
    cluster = new_cluster()
    generated_at = _now()
    started = time.monotonic()
    results: list[CaseResult] = []
    for case in cases:
        result = run_case(driver, case, cluster=cluster, image=image, declared=declared, tier=tier)
        results.append(result)
        if progress is not None:
            progress(result)
    return SuiteResult(
        driver=driver.name,
        target=driver.target,
        engine=engine,
        declared=declared,
        results=tuple(results),
        generated_at=generated_at,
        duration=time.monotonic() - started,
        complete=len(cases) == len(cases_for_tier(tier)),
        tier=tier,
        gaps=gaps_of(capabilities, tier),
    )


def gaps_of(capabilities: DriverCapabilities, tier: str) -> dict[Feature, str]:
    """Why the driver does not offer what it does not offer in ``tier``: the
    tier's own gaps, and the standard tier's (a feature the driver lacks
    altogether, such as containerd's services.dns, is missing in every tier)."""
    return {**capabilities.gaps_in(STANDARD_TIER), **capabilities.gaps_in(tier)}


def cases_for_tier(tier: str) -> tuple[Case, ...]:
    """Every registered case that runs in ``tier``."""
    return all_cases(tier)


def conformance(
    app_targets: Sequence[tuple[str, Driver]],
    only: Iterable[str] | None = None,
    progress: Callable[[str, CaseResult], None] | None = None,
    *,
    image: str = DEFAULT_IMAGE,
    tiers: Sequence[str] = ("standard",),
) -> list[SuiteResult]:
    """The suite against each ``(target name, driver)`` in turn (drivers opened
    by the caller, e.g. with ``drivers.registry.open_driver``). ``progress``
    hears ``(target name, result)`` after every case. Build the matrix with
    ``matrix_of(results, load_matrix(path))`` and keep it with ``write_matrix``."""
    selected = None if only is None else list(only)
    suites: list[SuiteResult] = []
    for target, driver in app_targets:

        def report(result: CaseResult, target: str = target) -> None:
            if progress is not None:
                progress(target, result)

        for tier in tiers:
            suites.append(run_suite(driver, only=selected, progress=report, image=image, tier=tier))
    return suites


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- the matrix -------------------------------------------------------------------


def matrix_of(results: Iterable[SuiteResult], base: Matrix | None = None) -> Matrix:
    """``base`` (e.g. the kept matrix) with each run driver's results replaced."""
    matrix = base or Matrix()
    for suite in results:
        matrix = matrix.merged(suite.to_driver_results())
    return matrix


def kept_matrix_paths() -> tuple[Path, Path | None]:
    """Where the repository keeps the matrix: ``src/portway/capabilities/matrix.json``
    and ``docs/capability-matrix.md`` (None outside a source checkout)."""
    import portway.capabilities as capabilities

    json_path = Path(capabilities.__file__).resolve().parent / "matrix.json"
    root = json_path.parents[3]
    is_checkout = (root / "pyproject.toml").exists() and (root / "docs").is_dir()
    return json_path, (root / "docs" / "capability-matrix.md") if is_checkout else None


def load_matrix(path: Path) -> Matrix:
    """The matrix kept at ``path``; an empty one if there is no file yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Matrix()
    return Matrix.from_json(json.loads(text), str(path))


def write_matrix(matrix: Matrix, json_path: Path, md_path: Path | None) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(matrix.to_json(), indent=2, ensure_ascii=False) + "\n")
    if md_path is not None:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(render_markdown(matrix))


_MARKS = {
    Status.PASS: "✓",
    Status.FAIL: "✗",
    Status.UNSUPPORTED: "—",
    Status.UNTESTED: "?",
}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render_markdown(matrix: Matrix) -> str:
    """The matrix as a feature-by-driver table, then per driver its engine and failures."""
    drivers = sorted(matrix.drivers)
    out = [
        "# Capability matrix",
        "",
        "<!-- Generated by the conformance suite: python -m portway.conformance "
        "--target-driver DRIVER --address ADDRESS --write-matrix. Do not edit. -->",
        "",
        "What the conformance suite proved against each real engine. The planner trusts a "
        "driver's declared feature only where every case covering it passed here.",
        "",
        f"{_MARKS[Status.PASS]} pass (every case covering the feature passed) · "
        f"{_MARKS[Status.FAIL]} fail (a case covering it failed) · "
        f"{_MARKS[Status.UNSUPPORTED]} unsupported (the driver does not declare it) · "
        f"{_MARKS[Status.UNTESTED]} untested (declared, but no case covering it ran)",
        "",
    ]
    if not drivers:
        out += ["No conformance results yet.", ""]
        return "\n".join(out)
    out.append("| Feature | What | Provided by | " + " | ".join(drivers) + " |")
    out.append("|---|---|---|" + "|".join(":-:" for _ in drivers) + "|")
    for feature in Feature:
        info = FEATURES[feature]
        marks = [_MARKS[matrix.drivers[d].status(feature)] for d in drivers]
        out.append(
            f"| `{feature.value}` | {info.summary} | {info.provider.value} | "
            + " | ".join(marks)
            + " |"
        )
    for name in drivers:
        results = matrix.drivers[name]
        out += [
            "",
            f"## {name}",
            "",
            f"- Engine: {results.engine or 'unknown'}",
            f"- Run: {results.generated_at or 'unknown'}",
            f"- Cases: {results.cases_passed} passed, {results.cases_failed} failed",
        ]
        by_case: dict[str, tuple[str, list[str]]] = {}
        for feature, found in sorted(results.features.items()):
            for failure in found.failures:
                case_id, _, message = failure.partition(": ")
                by_case.setdefault(case_id, (message, []))[1].append(feature.value)
        if by_case:
            out += ["", "Failures:", ""]
            for case_id, (message, features) in sorted(by_case.items()):
                out.append(f"- `{case_id}` ({', '.join(features)}): {_one_line(message)}")
        not_here = [(f, r.reason) for f, r in sorted(results.features.items()) if r.reason]
        if not_here:
            out += ["", "Not claimed in this tier, and why:", ""]
            for feature, reason in not_here:
                out.append(f"- `{feature.value}`: {_one_line(reason)}")
    out.append("")
    return "\n".join(out)
