"""Drift reports for users (``portway plan``) and for ``apply``'s gate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from portway.capabilities.matrix import STANDARD_TIER, Matrix, load_packaged
from portway.capabilities.planner import Mode, TargetPlan, TargetProfile, TierView, plan_for_target
from portway.controller.records import TargetView
from portway.drivers.base import DriverCapabilities, ExtensionChecker, TierExtensionChecker
from portway.errors import InputError, Issue, PortwayError
from portway.policy import Violation
from portway.service import namespaces as ns_policy
from portway.service.app import App
from portway.spec.model import Workload


def profile_of(app: App, view: TargetView, matrix: Matrix) -> TargetProfile:
    """What the planner needs to know of one target; never raises."""
    try:
        driver = app.targets.driver(view)
        capabilities = driver.capabilities()
    except PortwayError as exc:
        return TargetProfile(
            view.name, view.driver, frozenset(), None, healthy=False, problem=str(exc)
        )
    return TargetProfile(
        name=view.name,
        driver=view.driver,
        features=capabilities.features_for(STANDARD_TIER),
        results=matrix.for_driver(view.driver),
        healthy=view.healthy,
        detail=view.detail,
        tiers=tier_views(view.driver, capabilities, matrix),
        caveats=capabilities.caveats,
    )


def tier_views(
    driver: str, capabilities: DriverCapabilities, matrix: Matrix
) -> dict[str, TierView]:
    """The non-standard tiers a target offers, each with the features its
    driver claims under that tier's runtime and that tier's conformance column."""
    return {
        h.tier: TierView(
            h.handler,
            capabilities.features_for(h.tier),
            matrix.for_driver(driver, h.tier),
            capabilities.gaps_in(h.tier),
        )
        for h in capabilities.handlers
        if h.tier != STANDARD_TIER
    }


def profiles(
    app: App, names: Sequence[str] = (), matrix: Matrix | None = None
) -> list[TargetProfile]:
    matrix = load_packaged() if matrix is None else matrix
    for view in app.target_views():
        app.targets.check(view)  # health now, not as last recorded
    views = app.target_views()
    if names:
        known = {v.name for v in views}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(
                f"no target named {', '.join(unknown)}; known targets: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        views = [v for v in views if v.name in names]
    return [profile_of(app, v, matrix) for v in views]


@dataclass(frozen=True)
class WorkloadPlan:
    workload: Workload
    file: str
    document: int
    targets: tuple[TargetPlan, ...]
    #: target name -> what its driver says is wrong with its extension block
    extension_problems: Mapping[str, list[str]] = field(default_factory=dict)
    #: what the namespace's policy refuses (``apply`` would refuse it too)
    policy: tuple[Violation, ...] = ()


def plan_workloads(
    app: App,
    items: Sequence[tuple[Workload, str, int]],
    names: Sequence[str] = (),
    namespaces: Sequence[ns_policy.SourcedNamespace] = (),
) -> list[WorkloadPlan]:
    """The drift report of each workload, planned in the tier its namespace
    resolves for it, with the namespace policy's verdict."""
    found = profiles(app, names)
    views = {v.name: v for v in app.target_views()}
    pending = {n.namespace.name: n.namespace.spec for n in namespaces}
    plans = []
    for workload, file, doc in items:
        verdict = ns_policy.judge(app, workload, pending)
        w = verdict.workload
        plans.append(
            WorkloadPlan(
                w,
                file,
                doc,
                tuple(plan_for_target(w.spec, p) for p in found),
                {
                    p.name: extension_problems(app, views[p.name], w)
                    for p in found
                    if p.name in views
                },
                verdict.violations,
            )
        )
    return plans


def gate(workload: Workload, target_plan: TargetPlan, file: str, document: int) -> list[Issue]:
    """Why ``apply`` must refuse this workload on this target (empty: it may go)."""
    mode = Mode(workload.spec.portability)
    issues = []
    for item in target_plan.refusals(mode):
        hint = None
        if mode is Mode.STRICT and item.verdict.value == "dropped":
            hint = "set spec.portability: lenient to deploy without it"
        issues.append(
            Issue(
                f"{item.verdict.value} on target {target_plan.target} "
                f"({target_plan.driver}): {item.reason}",
                file=file,
                document=document,
                path=item.path,
                hint=hint,
            )
        )
    return issues


def extension_problems(app: App, view: TargetView, workload: Workload) -> list[str]:
    """What the target's driver says is wrong with ``extensions.<its driver>``."""
    settings = workload.spec.extensions.get(view.driver)
    if settings is None:
        return []
    try:
        driver = app.targets.driver(view)
    except PortwayError:
        return []  # the plan already says the driver cannot load
    problems = driver.check_extension(settings) if isinstance(driver, ExtensionChecker) else []
    if not problems and isinstance(driver, TierExtensionChecker):
        problems = driver.check_tier_extension(settings, workload.spec.isolation)
    return problems


def extension_issues(
    app: App, view: TargetView, workload: Workload, file: str, document: int
) -> list[Issue]:
    return [
        Issue(
            f"{problem} (target {view.name})",
            file=file,
            document=document,
            path=f"spec.extensions.{view.driver}",
        )
        for problem in extension_problems(app, view, workload)
    ]


def degradations(target_plan: TargetPlan) -> list[dict[str, str]]:
    """What lenient mode records on the workload: every field not fully honored."""
    return [
        {
            "path": f.path,
            "feature": str(f.feature),
            "verdict": f.verdict.value,
            "reason": f.reason,
            "target": target_plan.target,
        }
        for f in target_plan.fields
        if f.verdict.value in ("dropped", "rejected")
    ]
