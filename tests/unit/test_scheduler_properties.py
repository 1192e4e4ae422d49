"""Scheduler properties over random clusters and asks (hypothesis).

Every decision is replayed against a naive oracle written here from the
rules in the brief, independent of the scheduler's caches and counters:

- no target's committed requests ever exceed its known capacity;
- with a hard spread rule, the skew stays within maxSkew after every placement;
- whenever the oracle finds a feasible target, the scheduler places the
  replica (sampling never loses one) on a target the oracle finds feasible;
  when it places nothing, the oracle finds nothing, and the counted reasons
  are the oracle's, filter order included;
- preemption only when nothing is feasible, never of priority >= the asker's
  nor of the asker's own workload, and the chosen target then fits.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from portway.scheduler.fit import Capacity, Request
from portway.scheduler.model import (
    TARGET_KEY,
    AffinityTerm,
    Ask,
    Decision,
    Effect,
    Overhead,
    PlacedReplica,
    SpreadRule,
    Strategy,
    Taint,
    TargetState,
    Toleration,
)
from portway.scheduler.state import ClusterState

MEM = 256 * 1024 * 1024  # memory unit
CPU = 0.25  # cpu unit: sums of quarters are exact in binary floating point
SANDBOX = Overhead(memory=MEM, cpu=CPU)
GPU = Taint("gpu", "yes", Effect.NO_SCHEDULE)
OLD = Taint("old", "", Effect.PREFER_NO_SCHEDULE)
APPS = ("w0", "w1", "w2", "w3")
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the oracle ------------------------------------------------------------------------------


def labels_of(t: TargetState) -> Mapping[str, str]:
    return {TARGET_KEY: t.name, **t.labels}


def tolerated(taint: Taint, tolerations: Sequence[Toleration]) -> bool:
    for tol in tolerations:
        effect_ok = tol.effect is None or tol.effect == taint.effect
        key_ok = tol.key == "" or tol.key == taint.key
        value_ok = tol.operator == "Exists" or tol.value == taint.value
        if effect_ok and key_ok and value_ok:
            return True
    return False


def static_reason(t: TargetState, ask: Ask) -> str | None:
    labels = labels_of(t)
    if ask.names and t.name not in ask.names:
        return "not in placement.targets"
    if any(labels.get(k) != v for k, v in ask.selector.items()):
        return "do not match targetSelector"
    if t.name in ask.excluded:
        return ask.excluded[t.name]
    if not t.healthy:
        return "unhealthy"
    if t.cordoned:
        return "cordoned"
    if ask.tier not in t.tiers:
        return f"lack isolation tier {ask.tier}"
    for taint in t.taints:
        if taint.effect == Effect.NO_SCHEDULE and not tolerated(taint, ask.tolerations):
            return f"have untolerated taint {taint}"
    return None


def selected(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def oracle(
    targets: Sequence[TargetState], placed: Sequence[PlacedReplica], ask: Ask
) -> dict[str, str | None]:
    """Each target's first failing filter (None: it can take one more replica)."""
    by_name = {t.name: t for t in targets}
    static_ok = [t for t in targets if static_reason(t, ask) is None]
    mine = [r for r in placed if r.workload == ask.workload]
    out: dict[str, str | None] = {}
    for t in targets:
        out[t.name] = reason(t, by_name, static_ok, mine, placed, ask)
    return out


def reason(
    t: TargetState,
    by_name: Mapping[str, TargetState],
    static_ok: Sequence[TargetState],
    mine: Sequence[PlacedReplica],
    placed: Sequence[PlacedReplica],
    ask: Ask,
) -> str | None:
    why = static_reason(t, ask)
    if why:
        return why
    used_memory = sum(r.request.memory for r in placed if r.target == t.name)
    used_cpu = sum(r.request.cpu for r in placed if r.target == t.name)
    overhead = t.tiers[ask.tier]
    if t.capacity.memory is not None and (
        used_memory + ask.request.memory + overhead.memory > t.capacity.memory
    ):
        return "insufficient memory"
    if t.capacity.cpu is not None and used_cpu + ask.request.cpu + overhead.cpu > t.capacity.cpu:
        return "insufficient cpu"
    for rule in (r for r in ask.spread if r.hard):
        key = rule.topology_key
        counts = {labels_of(u)[key]: 0 for u in static_ok if key in labels_of(u)}
        eligible = {u.name for u in static_ok}
        for r in mine:
            if r.target in eligible and key in labels_of(by_name[r.target]):
                counts[labels_of(by_name[r.target])[key]] += 1
        if key not in labels_of(t):
            return f"lack label {key}"
        if counts[labels_of(t)[key]] + 1 - min(counts.values()) > rule.max_skew:
            return f"would exceed maxSkew {rule.max_skew} over {key}"

    def in_domain(term: AffinityTerm) -> bool:
        key = term.topology_key
        domain = labels_of(t).get(key)
        return domain is not None and any(
            selected(term.selector, r.labels) and labels_of(by_name[r.target]).get(key) == domain
            for r in placed
        )

    nobody = not any(selected(term.selector, r.labels) for term in ask.affinity for r in placed)
    self_affine = all(selected(term.selector, ask.labels) for term in ask.affinity)
    if not (nobody and self_affine) and not all(in_domain(term) for term in ask.affinity):
        return "do not satisfy affinity"
    if any(in_domain(term) for term in ask.anti_affinity):
        return "conflict with anti-affinity"
    return None


def cost(t: TargetState, ask: Ask) -> Request:
    return ask.request + Request(t.tiers[ask.tier].memory, t.tiers[ask.tier].cpu)


# --- generating clusters and asks ------------------------------------------------------------


@st.composite
def targets(draw: st.DrawFn) -> list[TargetState]:
    out = []
    for i in range(draw(st.integers(1, 24))):
        labels = {"region": draw(st.sampled_from(["r1", "r2"]))}
        zone = draw(st.sampled_from(["x", "y", "z", None]))
        if zone is not None:
            labels["zone"] = zone
        tiers = {"standard": Overhead()}
        if draw(st.booleans()):
            tiers["sandboxed"] = SANDBOX
        memory = draw(st.one_of(st.none(), st.integers(0, 12)))
        cpu = draw(st.one_of(st.none(), st.integers(0, 12)))
        out.append(
            TargetState(
                name=f"t{i:02d}",
                labels=labels,
                healthy=draw(st.integers(0, 9)) > 0,
                cordoned=draw(st.integers(0, 9)) == 0,
                tiers=tiers,
                capacity=Capacity(
                    None if memory is None else memory * MEM, None if cpu is None else cpu * CPU
                ),
                taints=tuple(draw(st.lists(st.sampled_from([GPU, OLD]), max_size=1))),
            )
        )
    return out


@dataclass(frozen=True)
class Spec:
    """What every ask of one workload shares."""

    labels: Mapping[str, str]
    request: Request
    tier: str
    selector: Mapping[str, str]
    tolerations: tuple[Toleration, ...]
    spread: tuple[SpreadRule, ...]
    affinity: tuple[AffinityTerm, ...]
    anti: tuple[AffinityTerm, ...]
    preferred: tuple[AffinityTerm, ...]
    priority: int
    preempt: bool
    strategy: Strategy


@st.composite
def specs(draw: st.DrawFn, app: str, *, hard_spread: bool | None = None) -> Spec:
    own = {"app": app}
    other = {"app": draw(st.sampled_from(APPS))}
    key = st.sampled_from([TARGET_KEY, "zone", "region"])
    spread: tuple[SpreadRule, ...] = ()
    if hard_spread or (hard_spread is None and draw(st.integers(0, 3)) == 0):
        spread = (SpreadRule(draw(st.sampled_from(["zone", "region"])), draw(st.integers(1, 2))),)
    return Spec(
        labels=own,
        request=Request(draw(st.integers(0, 4)) * MEM, draw(st.integers(0, 4)) * CPU),
        tier=draw(st.sampled_from(["standard", "standard", "sandboxed"])),
        selector=draw(st.sampled_from([{}, {}, {"region": "r1"}])),
        tolerations=draw(st.sampled_from([(), (), (Toleration("gpu", "Exists"),)])),
        spread=spread,
        affinity=draw(st.sampled_from([(), (), (), (AffinityTerm(other, draw(key)),)])),
        anti=draw(st.sampled_from([(), (), (AffinityTerm(own, draw(key)),)])),
        preferred=draw(st.sampled_from([(), (AffinityTerm(other, draw(key), weight=30),)])),
        priority=draw(st.sampled_from([10, 50, 100])),
        preempt=draw(st.integers(0, 3)) > 0,
        strategy=draw(st.sampled_from(list(Strategy))),
    )


@st.composite
def workloads(draw: st.DrawFn, *, hard_spread: bool | None = None) -> list[Ask]:
    specs_by_app = {app: draw(specs(app, hard_spread=hard_spread)) for app in APPS}
    next_index = Counter[str]()
    asks = []
    for _ in range(draw(st.integers(1, 6))):
        app = draw(st.sampled_from(APPS))
        spec = specs_by_app[app]
        n = draw(st.integers(1, 6))
        indices = tuple(range(next_index[app], next_index[app] + n))
        next_index[app] += n
        asks.append(
            Ask(
                workload=f"ns/{app}",
                indices=indices,
                labels=spec.labels,
                request=spec.request,
                tier=spec.tier,
                selector=spec.selector,
                tolerations=spec.tolerations,
                spread=spec.spread,
                affinity=spec.affinity,
                anti_affinity=spec.anti,
                preferred_affinity=spec.preferred,
                priority=spec.priority,
                preempt=spec.preempt,
                strategy=spec.strategy,
            )
        )
    return asks


@st.composite
def crowded(draw: st.DrawFn) -> tuple[list[TargetState], list[Ask]]:
    """Small known capacities, plain asks of mixed priority: preemption is common."""
    cluster = [
        TargetState(
            name=f"t{i:02d}",
            labels={"zone": draw(st.sampled_from(["x", "y"]))},
            capacity=Capacity(draw(st.integers(1, 6)) * MEM, draw(st.integers(1, 6)) * CPU),
        )
        for i in range(draw(st.integers(1, 8)))
    ]
    next_index = Counter[str]()
    asks = []
    for _ in range(draw(st.integers(1, 8))):
        app = draw(st.sampled_from(APPS))
        n = draw(st.integers(1, 5))
        asks.append(
            Ask(
                workload=f"ns/{app}",
                indices=tuple(range(next_index[app], next_index[app] + n)),
                labels={"app": app},
                request=Request(draw(st.integers(0, 3)) * MEM, draw(st.integers(0, 3)) * CPU),
                anti_affinity=draw(st.sampled_from([(), (), (AffinityTerm({"app": app}),)])),
                affinity=draw(st.sampled_from([(), (), (AffinityTerm({"app": "w0"}, "zone"),)])),
                priority=draw(st.sampled_from([10, 20, 20, 50])),
                preempt=draw(st.integers(0, 5)) > 0,
            )
        )
        next_index[app] += n
    return cluster, asks


samples = st.sampled_from([1, 2, 3, None])


# --- replaying decisions ---------------------------------------------------------------------


def check_capacity(targets: Sequence[TargetState], state: ClusterState) -> None:
    for t in targets:
        on = [r for r in state.replicas() if r.target == t.name]
        if t.capacity.memory is not None:
            assert sum(r.request.memory for r in on) <= t.capacity.memory, t.name
        if t.capacity.cpu is not None:
            assert sum(r.request.cpu for r in on) <= t.capacity.cpu, t.name


def replay(
    targets: Sequence[TargetState], mirror: list[PlacedReplica], ask: Ask, decision: Decision
) -> None:
    """Check ``decision`` step by step against the oracle, updating ``mirror``."""
    by_name = {t.name: t for t in targets}
    for assignment in decision.placed:
        verdicts = oracle(targets, mirror, ask)
        feasible = {name for name, why in verdicts.items() if why is None}
        if assignment.victims:
            event("preempted")
            assert not feasible, "preempted although a target was feasible"
            assert ask.preempt
            for victim in assignment.victims:
                assert victim.priority < ask.priority
                assert victim.workload != ask.workload
                assert victim.target == assignment.target
                mirror.remove(victim)
            assert oracle(targets, mirror, ask)[assignment.target] is None
        else:
            assert assignment.target in feasible, verdicts[assignment.target]
        target = by_name[assignment.target]
        mirror.append(
            PlacedReplica(
                ask.workload,
                assignment.index,
                assignment.target,
                ask.labels,
                ask.priority,
                cost(target, ask),
            )
        )
    if decision.unplaced:
        event("unplaced")
        verdicts = oracle(targets, mirror, ask)
        assert all(why is not None for why in verdicts.values()), "a feasible target was lost"
        assert decision.failure is not None
        assert decision.failure.total == len(targets)
        assert decision.failure.reasons == dict(Counter(verdicts.values()))
        assert decision.unplaced == ask.indices[len(decision.placed) :]


# --- properties ------------------------------------------------------------------------------


@PROPERTY
@given(targets(), workloads(), samples)
def test_decisions_agree_with_the_oracle(
    cluster: list[TargetState], asks: list[Ask], sample: int | None
) -> None:
    state = ClusterState(cluster, sample=sample)
    mirror: list[PlacedReplica] = []
    for ask in asks:
        decision = state.schedule(ask)
        replay(cluster, mirror, ask, decision)
        check_capacity(cluster, state)
        assert sorted(state.replicas(), key=_key) == sorted(mirror, key=_key)


@PROPERTY
@given(targets(), workloads(hard_spread=True), samples)
def test_hard_spread_skew_stays_within_max_skew(
    cluster: list[TargetState], asks: list[Ask], sample: int | None
) -> None:
    # one priority for all: an eviction is no placement and may unbalance any spread
    asks = [_same_priority(a) for a in asks]
    state = ClusterState(cluster, sample=sample)
    for ask in asks:
        rule = ask.spread[0]
        eligible = [t for t in cluster if static_reason(t, ask) is None]
        key = rule.topology_key
        domain = {t.name: t.labels[key] for t in eligible if key in t.labels}
        counts = Counter(dict.fromkeys(domain.values(), 0))
        for r in state.replicas():
            if r.workload == ask.workload and r.target in domain:
                counts[domain[r.target]] += 1
        decision = state.schedule(ask)
        for assignment in decision.placed:
            assert not assignment.victims
            counts[domain[assignment.target]] += 1  # a hard rule: the target has the key
            assert max(counts.values()) - min(counts.values()) <= rule.max_skew


@settings(PROPERTY, max_examples=400)
@given(crowded(), samples)
def test_preemption_never_evicts_equal_or_higher_priority(
    crowd: tuple[list[TargetState], list[Ask]], sample: int | None
) -> None:
    cluster, asks = crowd
    state = ClusterState(cluster, sample=sample)
    mirror: list[PlacedReplica] = []
    for ask in asks:
        decision = state.schedule(ask)
        for assignment in decision.placed:
            for victim in assignment.victims:
                assert victim.priority < ask.priority
                assert victim.workload != ask.workload
        replay(cluster, mirror, ask, decision)  # and everything else the oracle knows
        check_capacity(cluster, state)


@PROPERTY
@given(targets(), workloads(), samples)
def test_same_inputs_same_decisions(
    cluster: list[TargetState], asks: list[Ask], sample: int | None
) -> None:
    first = ClusterState(cluster, sample=sample)
    second = ClusterState(list(reversed(cluster)), sample=sample)
    for ask in asks:
        assert first.schedule(ask) == second.schedule(ask)


def _key(r: PlacedReplica) -> tuple[str, int]:
    return (r.workload, r.index)


def _same_priority(ask: Ask) -> Ask:
    return dataclasses.replace(ask, priority=50)
