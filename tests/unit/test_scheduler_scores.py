"""Scheduler scores: each score alone, their weights against each other, ties, reasons."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest

from portway.scheduler.fit import Capacity, Request
from portway.scheduler.model import (
    AffinityTerm,
    Ask,
    Effect,
    PlacedReplica,
    SpreadRule,
    Strategy,
    Taint,
    TargetState,
    Toleration,
)
from portway.scheduler.scores import (
    WEIGHTS,
    affinity_score,
    keep_together_score,
    resource_score,
    spread_score,
    taint_score,
)
from portway.scheduler.state import ClusterState, schedule

GIB = 1024**3


def target(
    name: str,
    labels: Mapping[str, str] | None = None,
    *,
    memory: int | None = 8 * GIB,
    cpu: float | None = 8.0,
    taints: Sequence[Taint] = (),
) -> TargetState:
    return TargetState(
        name=name, labels=dict(labels or {}), capacity=Capacity(memory, cpu), taints=tuple(taints)
    )


def ask(workload: str = "ns/web", n: int = 1, **kw: object) -> Ask:
    kw.setdefault("labels", {"app": workload.split("/")[-1]})
    return Ask(workload, tuple(range(n)), **kw)  # type: ignore[arg-type]


def filler(workload: str, on: str, memory: int, cpu: float = 0.0, index: int = 0) -> PlacedReplica:
    return PlacedReplica(
        workload, index, on, labels={"app": workload.split("/")[-1]}, request=Request(memory, cpu)
    )


def first(targets: Sequence[TargetState], a: Ask, placed: Sequence[PlacedReplica] = ()) -> str:
    decision = schedule(targets, placed, a)
    assert decision.placed, decision.failure
    return decision.placed[0].target


# --- the score functions ---------------------------------------------------------------------


def test_resource_score_least_and_most_allocated() -> None:
    spread = resource_score(Strategy.SPREAD, 100, 10.0, 20, 2.0)
    assert spread == pytest.approx(80.0)
    assert resource_score(Strategy.BINPACK, 100, 10.0, 20, 2.0) == pytest.approx(20.0)
    # memory and cpu averaged
    assert resource_score(Strategy.SPREAD, 100, 10.0, 50, 0.0) == pytest.approx(75.0)


def test_resource_score_unknown_capacity_is_neutral() -> None:
    assert resource_score(Strategy.SPREAD, None, None, 10**12, 99.0) == 50.0
    assert resource_score(Strategy.BINPACK, None, None, 0, 0.0) == 50.0
    # one part unknown: that part is 50
    assert resource_score(Strategy.SPREAD, 100, None, 0, 0.0) == pytest.approx(75.0)


def test_other_score_functions_are_normalised() -> None:
    assert keep_together_score(True) == 100.0
    assert keep_together_score(False) == 0.0
    assert spread_score([1]) == 100.0
    assert spread_score([2, None]) == 25.0
    assert spread_score([]) == 0.0
    assert taint_score(False) == 100.0
    assert taint_score(True) == 0.0
    assert affinity_score(50, 50, 0, 0) == 100.0
    assert affinity_score(0, 50, 0, 0) == 0.0
    assert affinity_score(0, 0, 30, 30) == 0.0
    assert affinity_score(0, 0, 0, 30) == 100.0
    assert affinity_score(20, 40, 10, 60) == pytest.approx(70.0)


def test_weights_rank_the_preferences() -> None:
    w = WEIGHTS
    # keep-together outweighs any resource difference
    assert w.keep_together * 100 > w.resources * 100
    # preferred affinity outweighs keep-together and resources together
    assert w.affinity * 100 > (w.keep_together + w.resources) * 100
    # an operator's PreferNoSchedule outweighs portway's defaults together
    assert w.taints * 100 > (w.keep_together + w.resources) * 100
    assert w.spread * 100 > w.resources * 100


# --- resources -------------------------------------------------------------------------------


def test_spread_strategy_prefers_the_emptiest_target() -> None:
    targets = [target("a"), target("b"), target("c")]
    placed = [filler("ns/x", "a", 4 * GIB), filler("ns/y", "b", 1 * GIB)]
    assert first(targets, ask(request=Request(GIB, 1.0)), placed) == "c"


def test_binpack_strategy_prefers_the_fullest_target_that_fits() -> None:
    targets = [target("a"), target("b"), target("c")]
    placed = [filler("ns/x", "a", 7 * GIB + 1), filler("ns/y", "b", 4 * GIB)]
    a = ask(request=Request(GIB, 1.0), strategy=Strategy.BINPACK)
    assert first(targets, a, placed) == "b"


def test_least_allocated_uses_the_free_share_not_bytes() -> None:
    targets = [target("big", memory=64 * GIB, cpu=64.0), target("small", memory=4 * GIB, cpu=4.0)]
    placed = [filler("ns/x", "big", 48 * GIB, 48.0)]  # 16 GiB free but 25 % free
    assert first(targets, ask(request=Request(GIB, 1.0)), placed) == "small"


def test_unknown_capacity_scores_neutral_against_known() -> None:
    targets = [target("a-unknown", memory=None, cpu=None), target("b")]
    half_full = [filler("ns/x", "b", 4 * GIB, 4.0)]
    nearly_full = [filler("ns/x", "b", 7 * GIB, 7.0)]
    a = ask(request=Request(0, 0.0))
    assert first(targets, a) == "b"  # empty (100) beats neutral (50)
    assert first(targets, a, half_full) == "a-unknown"  # 50 ties 50: name
    assert first(targets, a, nearly_full) == "a-unknown"


# --- keep-together ---------------------------------------------------------------------------


def test_keep_together_outweighs_resources() -> None:
    targets = [target("a"), target("b")]
    decision = schedule(targets, [], ask(n=5, request=Request(GIB, 1.0)))
    assert [x.target for x in decision.placed] == ["a"] * 5
    assert "keeps workload together" in decision.placed[1].reason
    assert "keeps workload together" not in decision.placed[0].reason


def test_keep_together_follows_existing_replicas() -> None:
    targets = [target("a"), target("b")]
    placed = [filler("ns/web", "b", 6 * GIB, index=7)]
    assert first(targets, ask(request=Request(GIB, 1.0)), placed) == "b"


def test_no_keep_together_with_spread_rules_or_preferred_anti_affinity() -> None:
    targets = [target("a", {"zone": "x"}), target("b", {"zone": "x"})]
    placed = [filler("ns/web", "b", 6 * GIB, index=7)]
    soft = ask(request=Request(GIB, 1.0), spread=(SpreadRule("zone", hard=False),))
    assert first(targets, soft, placed) == "a"
    apart = ask(
        request=Request(GIB, 1.0),
        preferred_anti_affinity=(AffinityTerm({"app": "other"}, weight=10),),
    )
    assert first(targets, apart, placed) == "a"


def test_preferred_affinity_outweighs_keep_together() -> None:
    targets = [target("a"), target("b")]
    placed = [filler("ns/web", "a", 0, index=7), filler("ns/db", "b", 6 * GIB)]
    a = ask(preferred_affinity=(AffinityTerm({"app": "db"}, weight=1),))
    assert first(targets, a, placed) == "b"


def test_prefer_no_schedule_taint_outweighs_keep_together() -> None:
    soon_gone = Taint("maintenance", effect=Effect.PREFER_NO_SCHEDULE)
    targets = [target("a", taints=[soon_gone]), target("b")]
    placed = [filler("ns/web", "a", 0, index=7)]
    assert first(targets, ask(), placed) == "b"
    tolerant = ask(tolerations=(Toleration("maintenance", "Exists"),))
    assert first(targets, tolerant, placed) == "a"


# --- affinity, spread, taints ----------------------------------------------------------------


def test_preferred_affinity_sums_weights_per_domain() -> None:
    targets = [target("a", {"zone": "x"}), target("b", {"zone": "y"}), target("c", {"zone": "y"})]
    placed = [filler("ns/db", "c", 0), filler("ns/cache", "a", 0)]
    a = ask(
        preferred_affinity=(
            AffinityTerm({"app": "db"}, "zone", weight=60),
            AffinityTerm({"app": "cache"}, "zone", weight=30),
        )
    )
    decision = schedule(targets, placed, a)
    assert decision.placed[0].target == "b"  # zone y (60) beats zone x (30); b before c by name
    assert "preferred affinity +60" in decision.placed[0].reason


def test_preferred_anti_affinity_pushes_away() -> None:
    targets = [target("a", {"zone": "x"}), target("b", {"zone": "y"})]
    placed = [filler("ns/noisy", "a", 0)]
    a = ask(preferred_anti_affinity=(AffinityTerm({"app": "noisy"}, "zone", weight=100),))
    assert first(targets, a, placed) == "b"


def test_preferred_anti_affinity_on_own_labels_spreads_the_workload() -> None:
    targets = [target("a"), target("b"), target("c")]
    a = ask(n=3, preferred_anti_affinity=(AffinityTerm({"app": "web"}, weight=100),))
    decision = schedule(targets, [], a)
    assert sorted(x.target for x in decision.placed) == ["a", "b", "c"]


def test_soft_spread_prefers_lower_skew_but_never_refuses() -> None:
    targets = [target("a", {"zone": "x"}, memory=None), target("b", {"zone": "y"}, memory=GIB)]
    a = ask(n=4, request=Request(GIB, 0.0), spread=(SpreadRule("zone", max_skew=1, hard=False),))
    decision = schedule(targets, [], a)
    # the second replica goes to y (skew 1 beats 2); y is then full, so the rest go to x
    assert [x.target for x in decision.placed] == ["a", "b", "a", "a"]
    assert decision.unplaced == ()


def test_soft_spread_outweighs_resources() -> None:
    targets = [target("a", {"zone": "x"}), target("b", {"zone": "y"})]
    placed = [
        filler("ns/web", "a", 0, index=5),
        filler("ns/web", "b", 0, index=6),
        filler("ns/web", "b", 0, index=7),
        filler("ns/other", "a", 6 * GIB),  # a is the fuller target
    ]
    # x has 1, y has 2: a gives skew 1, b skew 2
    assert first(targets, ask(spread=(SpreadRule("zone", hard=False),)), placed) == "a"


def test_untolerated_prefer_no_schedule_is_scored_down() -> None:
    soon_gone = Taint("maintenance", effect=Effect.PREFER_NO_SCHEDULE)
    targets = [target("a", taints=[soon_gone]), target("b")]
    placed = [filler("ns/x", "b", 7 * GIB, 7.0)]
    decision = schedule(targets, placed, ask())
    assert decision.placed[0].target == "b"
    only = schedule([targets[0]], [], ask())
    assert only.placed[0].target == "a"
    assert "PreferNoSchedule" in only.placed[0].reason


# --- ties, determinism, reasons --------------------------------------------------------------


def test_ties_go_to_the_first_target_by_name() -> None:
    names = ["delta", "alpha", "charlie", "bravo"]
    targets = [target(n) for n in names]
    assert first(targets, ask()) == "alpha"
    random.Random(1).shuffle(targets)
    assert first(targets, ask()) == "alpha"


def test_same_inputs_same_decision() -> None:
    rng = random.Random(7)
    targets = [
        target(f"t{i:02d}", {"zone": rng.choice("xyz")}, memory=rng.choice([4, 8]) * GIB)
        for i in range(40)
    ]
    placed = [filler(f"ns/f{i}", f"t{rng.randrange(40):02d}", GIB, index=i) for i in range(30)]
    asks = [
        ask("ns/a", 20, request=Request(GIB // 2, 0.5), spread=(SpreadRule("zone"),)),
        ask("ns/b", 20, request=Request(GIB // 4, 0.25)),
        ask("ns/c", 10, anti_affinity=(AffinityTerm({"app": "c"}),)),
    ]

    def run(order: Sequence[TargetState]) -> list[object]:
        state = ClusterState(order, placed)
        return [state.schedule(a) for a in asks]

    once = run(targets)
    assert run(targets) == once
    assert run(list(reversed(targets))) == once


def test_reason_names_the_resource_score_and_the_spread() -> None:
    targets = [target("a", {"zone": "x"}), target("b", {"zone": "y"})]
    decision = schedule(targets, [], ask(n=2, spread=(SpreadRule("zone"),)))
    assert decision.placed[0].reason == "least-allocated 100; spread zone=x (0\u21921, min 0)"
    assert decision.placed[1].reason == "least-allocated 100; spread zone=y (0\u21921, min 0)"
    binpack = schedule(targets, [], ask(strategy=Strategy.BINPACK, request=Request(4 * GIB, 4.0)))
    assert binpack.placed[0].reason.startswith("most-allocated 50")
