"""Scheduler filters: each rejection reason, its order, and how reasons are counted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from portway.scheduler.filters import (
    matches,
    resource_rejection,
    static_rejection,
    tolerates,
    untolerated,
)
from portway.scheduler.fit import Capacity, Request
from portway.scheduler.model import (
    TARGET_KEY,
    AffinityTerm,
    Ask,
    Effect,
    Overhead,
    PlacedReplica,
    SpreadRule,
    Taint,
    TargetState,
    Toleration,
    Unplaceable,
)
from portway.scheduler.state import ClusterState

GIB = 1024**3


def target(
    name: str,
    labels: Mapping[str, str] | None = None,
    *,
    memory: int | None = 8 * GIB,
    cpu: float | None = 8.0,
    tiers: Mapping[str, Overhead] | None = None,
    taints: Sequence[Taint] = (),
    healthy: bool = True,
    cordoned: bool = False,
) -> TargetState:
    return TargetState(
        name=name,
        labels=dict(labels or {}),
        healthy=healthy,
        cordoned=cordoned,
        tiers=dict(tiers or {"standard": Overhead()}),
        capacity=Capacity(memory, cpu),
        taints=tuple(taints),
    )


def ask(workload: str = "ns/web", n: int = 1, **kw: object) -> Ask:
    kw.setdefault("labels", {"app": workload.split("/")[-1]})
    return Ask(workload, tuple(range(n)), **kw)  # type: ignore[arg-type]


def replica(
    workload: str, index: int, on: str, labels: Mapping[str, str] | None = None, **kw: object
) -> PlacedReplica:
    return PlacedReplica(
        workload,
        index,
        on,
        labels=dict(labels or {"app": workload.split("/")[-1]}),
        **kw,  # type: ignore[arg-type]
    )


def reasons(
    targets: Sequence[TargetState], a: Ask, placed: Sequence[PlacedReplica] = ()
) -> Mapping[str, int]:
    return ClusterState(targets, placed).explain(a).reasons


def placed_on(
    targets: Sequence[TargetState], a: Ask, placed: Sequence[PlacedReplica] = ()
) -> list[str]:
    decision = ClusterState(targets, placed).schedule(a)
    return [x.target for x in decision.placed]


# --- 1-6: static filters ---------------------------------------------------------------------


def test_names_restrict_targets() -> None:
    targets = [target("a"), target("b"), target("c")]
    assert reasons(targets, ask(names=("b",))) == {"not in placement.targets": 2}
    assert set(placed_on(targets, ask(names=("c", "b"), n=4))) <= {"b", "c"}


def test_selector_must_match_every_pair() -> None:
    targets = [target("a", {"zone": "x", "disk": "hdd"}), target("b", {"zone": "x", "disk": "ssd"})]
    a = ask(selector={"zone": "x", "disk": "ssd"})
    assert reasons(targets, a) == {"do not match targetSelector": 1}
    assert placed_on(targets, a) == ["b"]


def test_selector_on_the_target_key_names_one_target() -> None:
    targets = [target("a"), target("b")]
    assert placed_on(targets, ask(selector={TARGET_KEY: "b"})) == ["b"]


def test_excluded_targets_count_under_the_given_reason() -> None:
    targets = [target("a"), target("b"), target("c")]
    a = ask(excluded={"a": "have drifted", "b": "lack image x"})
    assert reasons(targets, a) == {"have drifted": 1, "lack image x": 1}
    assert placed_on(targets, a) == ["c"]


def test_unhealthy_and_cordoned() -> None:
    targets = [target("a", healthy=False), target("b", cordoned=True), target("c")]
    assert reasons(targets, ask()) == {"unhealthy": 1, "cordoned": 1}
    assert placed_on(targets, ask(n=3)) == ["c", "c", "c"]


def test_missing_tier() -> None:
    targets = [target("a"), target("b", tiers={"standard": Overhead(), "sandboxed": Overhead()})]
    a = ask(tier="sandboxed")
    assert reasons(targets, a) == {"lack isolation tier sandboxed": 1}
    assert placed_on(targets, a) == ["b"]


def test_untolerated_no_schedule_taint() -> None:
    gpu = Taint("gpu", "yes")
    targets = [target("a", taints=[gpu]), target("b")]
    assert reasons(targets, ask()) == {"have untolerated taint gpu=yes:NoSchedule": 1}
    assert placed_on(targets, ask(selector={}, names=("a",))) == []
    assert placed_on(targets, ask(names=("a",), tolerations=(Toleration("gpu", "Exists"),))) == [
        "a"
    ]


def test_prefer_no_schedule_taint_is_no_filter() -> None:
    targets = [target("a", taints=[Taint("old", effect=Effect.PREFER_NO_SCHEDULE)])]
    assert reasons(targets, ask()) == {}
    assert placed_on(targets, ask()) == ["a"]


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        (Toleration("k", "Equal", "v"), Taint("k", "v"), True),
        (Toleration("k", "Equal", "w"), Taint("k", "v"), False),
        (Toleration("k", "Exists"), Taint("k", "v"), True),
        (Toleration("other", "Exists"), Taint("k", "v"), False),
        (Toleration("", "Exists"), Taint("k", "v"), True),  # empty key + Exists: every taint
        (Toleration("k", "Exists", effect=Effect.NO_SCHEDULE), Taint("k", "v"), True),
        (
            Toleration("k", "Exists", effect=Effect.PREFER_NO_SCHEDULE),
            Taint("k", "v", Effect.NO_SCHEDULE),
            False,
        ),
        (Toleration("k"), Taint("k"), True),  # Equal with both values empty
    ],
)
def test_toleration_semantics(toleration: Toleration, taint: Taint, expected: bool) -> None:
    assert tolerates(toleration, taint) is expected


def test_untolerated_keeps_the_targets_order_and_effect() -> None:
    taints = [Taint("a"), Taint("b", effect=Effect.PREFER_NO_SCHEDULE), Taint("c")]
    assert untolerated(taints, [Toleration("a", "Exists")], Effect.NO_SCHEDULE) == [Taint("c")]
    assert untolerated(taints, [], Effect.PREFER_NO_SCHEDULE) == [taints[1]]


def test_static_rejection_order() -> None:
    sick = target("a", {"zone": "x"}, healthy=False, taints=[Taint("t")])
    assert static_rejection(sick, sick.labels, ask(names=("b",))) == "not in placement.targets"
    assert static_rejection(sick, sick.labels, ask(selector={"zone": "y"})) == (
        "do not match targetSelector"
    )
    assert static_rejection(sick, sick.labels, ask(excluded={"a": "gone"})) == "gone"
    assert static_rejection(sick, sick.labels, ask(tier="wasm")) == "unhealthy"
    assert matches({}, {"any": "thing"})


# --- 7: resources ----------------------------------------------------------------------------


def test_memory_then_cpu_with_tier_overhead() -> None:
    overhead = {"standard": Overhead(), "sandboxed": Overhead(memory=GIB, cpu=1.0)}
    targets = [
        target("a", memory=2 * GIB, cpu=8.0, tiers=overhead),
        target("b", memory=8 * GIB, cpu=1.5, tiers=overhead),
        target("c", memory=3 * GIB, cpu=2.0, tiers=overhead),
    ]
    plain = ask(request=Request(2 * GIB, 1.0))
    assert reasons(targets, plain) == {}
    sandboxed = ask(request=Request(2 * GIB, 1.0), tier="sandboxed")
    assert reasons(targets, sandboxed) == {"insufficient memory": 1, "insufficient cpu": 1}
    decision = ClusterState(targets).schedule(sandboxed)
    assert [a.target for a in decision.placed] == ["c"]


def test_memory_is_checked_before_cpu() -> None:
    targets = [target("a", memory=GIB, cpu=0.5)]
    assert reasons(targets, ask(request=Request(2 * GIB, 1.0))) == {"insufficient memory": 1}


def test_exact_fit_is_allowed_and_committed_replicas_count() -> None:
    targets = [target("a", memory=4 * GIB, cpu=1.0)]
    a = ask(n=3, request=Request(2 * GIB, 0.5))
    decision = ClusterState(targets).schedule(a)
    assert [x.target for x in decision.placed] == ["a", "a"]
    assert decision.unplaced == (2,)
    assert decision.failure == Unplaceable({"insufficient memory": 1}, 1)


def test_cpu_rounding_does_not_refuse_an_exact_fit() -> None:
    targets = [target("a", cpu=0.3)]
    decision = ClusterState(targets).schedule(ask(n=3, request=Request(0, 0.1)))
    assert len(decision.placed) == 3


def test_unknown_capacity_never_refuses() -> None:
    targets = [target("a", memory=None, cpu=None), target("b", memory=None, cpu=0.5)]
    a = ask(n=4, request=Request(100 * GIB, 1.0), names=("a",))
    assert len(ClusterState(targets).schedule(a).placed) == 4
    b = ask(request=Request(100 * GIB, 1.0), names=("b",))
    assert reasons(targets, b) == {"not in placement.targets": 1, "insufficient cpu": 1}


def test_resource_rejection_function() -> None:
    used, cost = Request(GIB, 1.0), Request(GIB, 1.0)
    assert resource_rejection(2 * GIB, 2.0, used, cost) is None
    assert resource_rejection(2 * GIB - 1, 2.0, used, cost) == "insufficient memory"
    assert resource_rejection(2 * GIB, 1.9, used, cost) == "insufficient cpu"
    assert resource_rejection(None, None, used, cost) is None


# --- 8: hard spread --------------------------------------------------------------------------


def zones(*spec: str) -> list[TargetState]:
    """``"a1:x"`` -> target a1 in zone x; no colon: no zone label."""
    out = []
    for item in spec:
        name, _, zone = item.partition(":")
        out.append(target(name, {"zone": zone} if zone else {}))
    return out


def test_hard_spread_lacking_the_key() -> None:
    targets = zones("a:x", "b")
    a = ask(spread=(SpreadRule("zone"),))
    assert reasons(targets, a) == {"lack label zone": 1}
    assert placed_on(targets, ask(n=2, spread=(SpreadRule("zone", max_skew=5),))) == ["a", "a"]


def test_hard_spread_max_skew() -> None:
    targets = zones("a:x", "b:y")
    placed = [replica("ns/web", 0, "a"), replica("ns/web", 1, "a")]
    a = ask(spread=(SpreadRule("zone", max_skew=1),))
    # x has 2, y has 0: x would make 3 - 0 > 1
    assert reasons(targets, a, placed) == {"would exceed maxSkew 1 over zone": 1}
    assert placed_on(targets, ask(n=4, spread=(SpreadRule("zone"),)), ()) == ["a", "b", "a", "b"]


def test_hard_spread_counts_only_the_same_workload() -> None:
    targets = zones("a:x", "b:y")
    others = [replica("ns/other", i, "b") for i in range(5)]
    a = ask(n=2, spread=(SpreadRule("zone"),))
    assert sorted(placed_on(targets, a, others)) == ["a", "b"]


def test_spread_domains_are_those_of_statically_eligible_targets() -> None:
    # zone z's only target is unhealthy: z is no domain, so its count of 0
    # does not hold the others back
    targets = [*zones("a:x", "b:y"), target("c", {"zone": "z"}, healthy=False)]
    a = ask(n=4, spread=(SpreadRule("zone"),))
    assert sorted(placed_on(targets, a)) == ["a", "a", "b", "b"]


def test_spread_with_max_skew_two() -> None:
    targets = zones("a:x", "b:y")
    placed = [replica("ns/web", 10, "a"), replica("ns/web", 11, "a")]
    two = ask(spread=(SpreadRule("zone", max_skew=2),))
    assert reasons(targets, two, placed) == {"would exceed maxSkew 2 over zone": 1}
    three = ask(spread=(SpreadRule("zone", max_skew=3),))
    assert reasons(targets, three, placed) == {}
    # with only a eligible, x is the only domain: no skew at all
    only_a = ask(spread=(SpreadRule("zone", max_skew=1),), names=("a",))
    assert placed_on(targets, only_a, placed) == ["a"]


# --- 9-10: affinity --------------------------------------------------------------------------


def test_required_affinity_needs_a_match_in_the_domain() -> None:
    targets = zones("a:x", "b:y", "c:y")
    db = [replica("ns/db", 0, "c", {"app": "db"})]
    a = ask(n=2, affinity=(AffinityTerm({"app": "db"}, "zone"),))
    assert reasons(targets, a, db) == {"do not satisfy affinity": 1}
    # b and c tie (both empty): b by name, then the second replica keeps it company
    assert placed_on(targets, a, db) == ["b", "b"]
    per_target = ask(affinity=(AffinityTerm({"app": "db"}),))
    assert placed_on(targets, per_target, db) == ["c"]


def test_required_affinity_target_without_the_key() -> None:
    targets = zones("a", "b:y")
    db = [replica("ns/db", 0, "a", {"app": "db"}), replica("ns/db", 1, "b", {"app": "db"})]
    a = ask(affinity=(AffinityTerm({"app": "db"}, "zone"),))
    assert reasons(targets, a, db) == {"do not satisfy affinity": 1}


def test_required_affinity_without_any_match_is_unplaceable() -> None:
    targets = zones("a:x", "b:y")
    a = ask(affinity=(AffinityTerm({"app": "db"}, "zone"),))
    decision = ClusterState(targets).schedule(a)
    assert decision.placed == ()
    assert decision.failure is not None
    assert decision.failure.message() == "0/2 targets available: 2 do not satisfy affinity"


def test_self_affine_workload_may_start_anywhere_then_stays() -> None:
    targets = zones("a:x", "b:y", "c:z")
    a = ask(n=3, labels={"app": "web"}, affinity=(AffinityTerm({"app": "web"}, "zone"),))
    assert len(set(placed_on(targets, a))) == 1
    # once a matching replica exists, the exception no longer applies
    placed = [replica("ns/web", 9, "c")]
    assert placed_on(targets, a, placed) == ["c", "c", "c"]


def test_required_anti_affinity_conflict() -> None:
    targets = zones("a:x", "b:x", "c:y")
    db = [replica("ns/db", 0, "a", {"app": "db"})]
    a = ask(anti_affinity=(AffinityTerm({"app": "db"}, "zone"),))
    assert reasons(targets, a, db) == {"conflict with anti-affinity": 2}
    assert placed_on(targets, a, db) == ["c"]


def test_anti_affinity_with_own_labels_is_one_replica_per_domain() -> None:
    targets = zones("a:x", "b:x", "c:y", "d:z")
    a = ask(n=4, labels={"app": "web"}, anti_affinity=(AffinityTerm({"app": "web"}, "zone"),))
    decision = ClusterState(targets).schedule(a)
    chosen = [x.target for x in decision.placed]
    assert len(chosen) == 3
    assert {t.labels["zone"] for t in targets if t.name in chosen} == {"x", "y", "z"}
    assert decision.unplaced == (3,)
    assert decision.failure is not None
    assert decision.failure.reasons == {"conflict with anti-affinity": 4}


def test_anti_affinity_ignores_targets_without_the_key() -> None:
    targets = zones("a", "b")
    a = ask(n=2, anti_affinity=(AffinityTerm({"app": "web"}, "zone"),))
    assert len(placed_on(targets, a)) == 2


def test_anti_affinity_per_target_by_default_without_the_target_label() -> None:
    # the default topology key is portway.dev/target; the name stands in for the label
    targets = [target("a"), target("b")]
    a = ask(n=3, anti_affinity=(AffinityTerm({"app": "web"}),))
    decision = ClusterState(targets).schedule(a)
    assert sorted(x.target for x in decision.placed) == ["a", "b"]
    assert decision.unplaced == (2,)


# --- order and counting ----------------------------------------------------------------------


def test_first_failing_filter_is_counted() -> None:
    targets = [
        target("a", healthy=False, tiers={}),  # unhealthy comes before the missing tier
        target("b", memory=1),  # resources come before the missing spread label
        target("c", {"zone": "x"}, memory=GIB, cpu=None),  # fits
        target("d", {"zone": "x"}, cordoned=True, taints=[Taint("t")]),  # cordon before taint
    ]
    a = ask(request=Request(GIB // 2, 0.0), spread=(SpreadRule("zone"),))
    assert reasons(targets, a) == {"unhealthy": 1, "insufficient memory": 1, "cordoned": 1}


def test_message_counts_reasons_most_common_first() -> None:
    targets = [
        target("a"),
        target("b"),
        target("c", memory=GIB),
        target("d", memory=GIB),
        target("e", memory=GIB),
    ]
    a = ask(request=Request(2 * GIB, 0.0), names=("c", "d", "e"))
    failure = ClusterState(targets).explain(a)
    assert failure.total == 5
    assert failure.message() == (
        "0/5 targets available: 3 insufficient memory, 2 not in placement.targets"
    )
    sandboxed = ask(request=Request(2 * GIB, 0.0), tier="sandboxed", names=("c", "d", "e"))
    decision = ClusterState(targets[2:]).schedule(sandboxed)
    assert decision.failure is not None
    assert decision.failure.message() == "0/3 targets available: 3 lack isolation tier sandboxed"
