"""The planner: what each target will do with each field of a spec.

Pure: it sees a spec and profiles of targets (declared features plus the
conformance evidence for their driver) and returns a drift report. Verdicts:

- **honored** — the driver declares the feature and the last conformance run
  against the real engine passed every case that covers it;
- **emulated** — portway itself provides it the same way on every backend
  (restart policies, probes), and the driver features it relies on hold;
- **dropped** — the replica can run without it, degraded (strict mode
  refuses; lenient mode records the degradation);
- **rejected** — running without it would be wrong (always refused).

A declared feature without passing evidence is never called honored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from portway.capabilities.matrix import STANDARD_TIER, DriverResults, Status
from portway.capabilities.tiers import PLANNED
from portway.capabilities.vocabulary import (
    FEATURES,
    TIER_FEATURES,
    Feature,
    Provider,
    Use,
    WhenMissing,
    uses,
)
from portway.spec.model import Portability, WorkloadSpec


class Verdict(StrEnum):
    HONORED = "honored"
    EMULATED = "emulated"
    DROPPED = "dropped"
    REJECTED = "rejected"


Mode = Portability  # strict: refuse any dropped field; lenient: deploy, record degradations


@dataclass(frozen=True)
class TierView:
    """What a target offers in one isolation tier: the runtime handler its
    fingerprint found, the features its driver claims under that runtime, and
    the conformance column run under it."""

    handler: str
    features: frozenset[Feature]
    results: DriverResults | None = None
    #: declared features this tier does not offer, with why
    gaps: Mapping[Feature, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetProfile:
    """What the planner knows of one target. ``features`` and ``results`` are
    the standard tier's; ``tiers`` holds the other tiers the target offers."""

    name: str
    driver: str
    features: frozenset[Feature]
    results: DriverResults | None = None
    healthy: bool = True
    detail: str = ""  # health detail
    problem: str = ""  # the driver cannot even be loaded: nothing can run here
    tiers: Mapping[str, TierView] = field(default_factory=dict)
    tier: str = STANDARD_TIER  # which tier ``features`` and ``results`` describe
    #: the driver's caveats on features it honors (DriverCapabilities.caveats)
    caveats: Mapping[Feature, str] = field(default_factory=dict)

    def for_tier(self, tier: str) -> TargetProfile:
        """The profile as seen by a workload in ``tier``: that tier's features
        and conformance column, when the target offers the tier (otherwise the
        standard view, where the tier's isolation feature is missing)."""
        view = self.tiers.get(tier)
        if tier == self.tier or view is None:
            return self
        return replace(self, features=view.features, results=view.results, tier=tier)


@dataclass(frozen=True)
class FieldVerdict:
    path: str
    feature: Feature
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class ExtensionNote:
    path: str  # spec.extensions.<backend>
    backend: str
    applies: bool
    keys: tuple[str, ...]


@dataclass(frozen=True)
class TargetPlan:
    target: str
    driver: str
    tier: str
    fields: tuple[FieldVerdict, ...]
    extensions: tuple[ExtensionNote, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def with_verdict(self, *verdicts: Verdict) -> list[FieldVerdict]:
        return [f for f in self.fields if f.verdict in verdicts]

    def deployable(self, mode: Mode) -> bool:
        refused = (
            (Verdict.REJECTED,)
            if mode is Mode.LENIENT
            else (
                Verdict.REJECTED,
                Verdict.DROPPED,
            )
        )
        return not self.with_verdict(*refused)

    def refusals(self, mode: Mode) -> list[FieldVerdict]:
        if mode is Mode.LENIENT:
            return self.with_verdict(Verdict.REJECTED)
        return self.with_verdict(Verdict.REJECTED, Verdict.DROPPED)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "driver": self.driver,
            "tier": self.tier,
            "fields": [
                {
                    "path": f.path,
                    "feature": str(f.feature),
                    "verdict": f.verdict.value,
                    "reason": f.reason,
                }
                for f in self.fields
            ],
            "extensions": [
                {"path": e.path, "backend": e.backend, "applies": e.applies, "keys": list(e.keys)}
                for e in self.extensions
            ],
            "notes": list(self.notes),
            "deployable": {m.value: self.deployable(m) for m in Mode},
        }


def _evidence(profile: TargetProfile, feature: Feature) -> tuple[Status, str]:
    results = profile.results
    if results is None:
        where = f" in the {profile.tier} tier" if profile.tier != STANDARD_TIER else ""
        return (
            Status.UNTESTED,
            f"no conformance run recorded for the {profile.driver} driver{where}",
        )
    found = results.features.get(feature)
    if found is None:
        return Status.UNTESTED, "no conformance case covers it"
    if found.status is Status.PASS:
        cases = ", ".join(found.cases)
        return Status.PASS, f"conformance passed on {results.engine}: {cases}"
    if found.status is Status.FAIL:
        return Status.FAIL, f"conformance failed on {results.engine}: {'; '.join(found.failures)}"
    return found.status, f"conformance: {found.status.value}"


def _missing(feature: Feature, reason: str) -> tuple[Verdict, str]:
    info = FEATURES[feature]
    verdict = Verdict.DROPPED if info.when_missing is WhenMissing.DROP else Verdict.REJECTED
    return verdict, reason


def judge(feature: Feature, profile: TargetProfile) -> tuple[Verdict, str]:
    """The verdict for one feature on one target, with its reason."""
    info = FEATURES[feature]
    if profile.problem:
        return Verdict.REJECTED, profile.problem
    if info.provider is Provider.CONTROLLER:
        for needed in info.needs:
            verdict, why = judge(needed, profile)
            if verdict is Verdict.DROPPED and "not proven" in why:
                return Verdict.DROPPED, f"needs {needed}, which is not proven: {why}"
            if verdict not in (Verdict.HONORED, Verdict.EMULATED):
                return _missing(feature, f"needs {needed}, which is {verdict.value}: {why}")
        status, evidence = _evidence(profile, feature)
        if status is Status.FAIL:
            return _missing(feature, evidence)
        how = f"by portway's controller ({info.summary})"
        return Verdict.EMULATED, how + (f"; {evidence}" if status is Status.PASS else "")
    if feature not in profile.features:
        if feature in _TIER_OF:
            return _missing(feature, _no_tier(profile, _TIER_OF[feature]))
        view = profile.tiers.get(profile.tier)
        if view is not None and feature in view.gaps:
            return _missing(feature, f"not in the {profile.tier} tier: {view.gaps[feature]}")
        cannot = f"the {profile.driver} driver cannot {info.summary}"
        recorded = _recorded_reason(profile, feature)
        return _missing(feature, f"{cannot}: {recorded}" if recorded else cannot)
    status, evidence = _evidence(profile, feature)
    if status is Status.PASS:
        return Verdict.HONORED, evidence
    if status is Status.FAIL:
        return _missing(feature, evidence)
    # Unproven is not known-missing: strict mode refuses it, lenient mode may
    # take the risk (and records it), whatever the feature's missing-policy.
    return Verdict.DROPPED, f"declared by the {profile.driver} driver but not proven: {evidence}"


#: what engine DNS cannot do, said wherever services.dns is honored
SAME_ENGINE_NOTE = (
    "services.dns: the service's name resolves, through this engine's own DNS, to its "
    "replicas on this engine only; replicas on other engines are reached through the ingress"
)

_TIER_OF = {feature: tier for tier, feature in TIER_FEATURES.items()}


def _recorded_reason(profile: TargetProfile, feature: Feature) -> str:
    """Why the driver does not claim ``feature``, as its conformance column
    recorded it (e.g. containerd: no DNS on its bridge); "" if not said."""
    found = None if profile.results is None else profile.results.features.get(feature)
    return "" if found is None else found.reason


def _no_tier(profile: TargetProfile, tier: str) -> str:
    standard = {STANDARD_TIER} if Feature.ISOLATION_STANDARD in profile.features else set()
    offered = sorted(standard | set(profile.tiers))
    why = f"target {profile.name} has no runtime handler for the {tier} tier"
    why += f" (its {profile.driver} driver offers: {', '.join(offered) or 'none'})"
    note = PLANNED.get(tier)
    return f"{why}; {note}" if note else why


def plan_for_target(spec: WorkloadSpec, profile: TargetProfile) -> TargetPlan:
    profile = profile.for_tier(spec.isolation.value)
    fields = tuple(
        FieldVerdict(use.path, use.feature, *judge(use.feature, profile)) for use in uses(spec)
    )
    extensions = tuple(
        ExtensionNote(
            path=f"spec.extensions.{backend}",
            backend=backend,
            applies=backend == profile.driver,
            keys=tuple(sorted(settings)),
        )
        for backend, settings in sorted(spec.extensions.items())
    )
    notes: list[str] = []
    if any(f.feature is Feature.SERVICES_DNS and f.verdict is Verdict.HONORED for f in fields):
        notes.append(SAME_ENGINE_NOTE)
    honored = {f.feature for f in fields if f.verdict is Verdict.HONORED}
    notes += [
        f"{feature}: {caveat}"
        for feature, caveat in sorted(profile.caveats.items())
        if feature in honored
    ]
    view = profile.tiers.get(profile.tier)
    if view is not None and profile.tier != STANDARD_TIER:
        notes.append(
            f"tier {profile.tier} runs with the {view.handler} runtime; verdicts come from "
            f"its own conformance column ({profile.driver}@{profile.tier})"
        )
    if profile.problem:
        notes.append(f"target {profile.name}: {profile.problem}")
    elif not profile.healthy:
        notes.append(
            f"target {profile.name} is unhealthy now ({profile.detail or 'no detail'}); "
            "verdicts come from its driver and conformance record"
        )
    return TargetPlan(
        target=profile.name,
        driver=profile.driver,
        tier=spec.isolation.value,
        fields=fields,
        extensions=extensions,
        notes=tuple(notes),
    )


def plan(spec: WorkloadSpec, profiles: Sequence[TargetProfile]) -> list[TargetPlan]:
    return [plan_for_target(spec, p) for p in profiles]


def differences(plans: Sequence[TargetPlan]) -> Mapping[str, Mapping[str, Verdict]]:
    """Fields whose verdict differs between targets: path -> target -> verdict."""
    by_path: dict[str, dict[str, Verdict]] = {}
    for target_plan in plans:
        for item in target_plan.fields:
            by_path.setdefault(item.path, {})[target_plan.target] = item.verdict
    return {p: v for p, v in by_path.items() if len(set(v.values())) > 1}


__all__ = [
    "ExtensionNote",
    "FieldVerdict",
    "Mode",
    "TargetPlan",
    "TargetProfile",
    "TierView",
    "Use",
    "Verdict",
    "judge",
    "plan",
    "plan_for_target",
]
