"""Priority preemption: who is evicted, where, and when nobody is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from portway.scheduler.fit import Capacity, Request
from portway.scheduler.model import (
    AffinityTerm,
    Ask,
    Decision,
    PlacedReplica,
    SpreadRule,
    TargetState,
)
from portway.scheduler.preemption import choose_victims, eviction_order, rank
from portway.scheduler.state import ClusterState

GIB = 1024**3


def target(
    name: str, memory: int = 4 * GIB, labels: Mapping[str, str] | None = None
) -> TargetState:
    return TargetState(name=name, labels=dict(labels or {}), capacity=Capacity(memory, 64.0))


def resident(
    workload: str, on: str, gib: float, priority: int, index: int = 0, app: str | None = None
) -> PlacedReplica:
    return PlacedReplica(
        workload,
        index,
        on,
        labels={"app": app or workload.split("/")[-1]},
        priority=priority,
        request=Request(int(gib * GIB), 0.0),
    )


def ask(gib: float = 2, priority: int = 100, n: int = 1, **kw: object) -> Ask:
    kw.setdefault("labels", {"app": "urgent"})
    return Ask(
        "ns/urgent",
        tuple(range(n)),
        request=Request(int(gib * GIB), 0.0),
        priority=priority,
        **kw,  # type: ignore[arg-type]
    )


def run(
    targets: Sequence[TargetState], placed: Sequence[PlacedReplica], a: Ask
) -> tuple[ClusterState, Decision]:
    state = ClusterState(targets, placed)
    return state, state.schedule(a)


def victims_of(decision: Decision) -> list[tuple[str, int]]:
    return [(v.workload, v.index) for a in decision.placed for v in a.victims]


def test_evicts_a_lower_priority_replica_to_fit() -> None:
    placed = [resident("ns/batch", "a", 3, priority=10)]
    state, decision = run([target("a")], placed, ask())
    assert [x.target for x in decision.placed] == ["a"]
    assert victims_of(decision) == [("ns/batch", 0)]
    assert "preempts 1 replica(s) of priority \u2264 10" in decision.placed[0].reason
    # the victim is gone from the state, the new replica is in
    assert [r.workload for r in state.replicas("a")] == ["ns/urgent"]
    assert state.free("a") == Capacity(2 * GIB, 64.0)


def test_never_evicts_equal_or_higher_priority() -> None:
    placed = [resident("ns/peer", "a", 3, priority=100), resident("ns/boss", "b", 3, 1000)]
    state, decision = run([target("a"), target("b")], placed, ask(priority=100))
    assert decision.placed == ()
    assert decision.unplaced == (0,)
    assert decision.failure is not None
    assert decision.failure.reasons == {"insufficient memory": 2}
    assert len(state.replicas()) == 2


def test_never_evicts_its_own_workload() -> None:
    placed = [
        PlacedReplica(
            "ns/urgent", 7, "a", {"app": "urgent"}, priority=1, request=Request(3 * GIB, 0)
        )
    ]
    _, decision = run([target("a")], placed, ask(priority=100))
    assert decision.placed == ()
    assert decision.unplaced == (0,)


def test_preemption_policy_never() -> None:
    placed = [resident("ns/batch", "a", 3, priority=10)]
    state, decision = run([target("a")], placed, ask(preempt=False))
    assert decision.placed == ()
    assert decision.failure is not None
    assert decision.failure.message() == "0/1 targets available: 1 insufficient memory"
    assert len(state.replicas()) == 1


def test_lowest_priority_first_then_largest_request() -> None:
    placed = [
        resident("ns/mid", "a", 1, priority=20),
        resident("ns/low-small", "a", 0.5, priority=5),
        resident("ns/low-big", "a", 1.5, priority=5),
    ]
    # 3 GiB used of 4; needs 2: free 1 + low-big 1.5 = 2.5 >= 2
    _, decision = run([target("a")], placed, ask(gib=2))
    assert victims_of(decision) == [("ns/low-big", 0)]


def test_reprieve_gives_back_victims_not_needed() -> None:
    placed = [
        resident("ns/low-small", "a", 0.5, priority=5),
        resident("ns/mid-big", "a", 3, priority=20),
    ]
    # 0.5 free; needs 3: greedy takes low-small (1 free), then mid-big (4 free);
    # without low-small it is still 3.5 free, so low-small stays
    _, decision = run([target("a")], placed, ask(gib=3))
    assert victims_of(decision) == [("ns/mid-big", 0)]


def test_target_with_the_lowest_highest_victim_priority_wins() -> None:
    placed = [
        resident("ns/mid", "a", 3, priority=40),
        resident("ns/low1", "b", 1, priority=10),
        resident("ns/low2", "b", 1, priority=10, index=1),
        resident("ns/low3", "b", 1, priority=10, index=2),
    ]
    # a: one victim of priority 40; b: two victims of priority 10
    _, decision = run([target("a"), target("b")], placed, ask(gib=2))
    assert decision.placed[0].target == "b"
    assert victims_of(decision) == [("ns/low1", 0)]


def test_then_fewest_victims_then_name() -> None:
    placed = [
        resident("ns/s1", "a", 1.5, priority=10),
        resident("ns/s2", "a", 1.5, priority=10, index=1),
        resident("ns/big", "b", 3, priority=10),
        resident("ns/big2", "c", 3, priority=10),
    ]
    # a needs two victims, b and c one each: b by name
    _, decision = run([target("a", 3 * GIB), target("b"), target("c")], placed, ask(gib=2))
    assert decision.placed[0].target == "b"
    assert victims_of(decision) == [("ns/big", 0)]


def test_only_targets_failing_on_resources_alone_are_considered() -> None:
    anti = AffinityTerm({"app": "rival"})
    placed = [
        resident("ns/rival", "a", 3, priority=10),  # a conflicts with anti-affinity
        resident("ns/batch", "b", 3, priority=10),
    ]
    _, decision = run([target("a"), target("b")], placed, ask(anti_affinity=(anti,)))
    assert decision.placed[0].target == "b"
    assert victims_of(decision) == [("ns/batch", 0)]
    only_a = ask(anti_affinity=(anti,), names=("a",))
    _, decision = run([target("a"), target("b")], placed, only_a)
    assert decision.placed == ()


def test_preemption_respects_a_hard_spread_rule() -> None:
    zones = [target("a", labels={"zone": "x"}), target("b", labels={"zone": "y"})]
    placed = [
        PlacedReplica("ns/urgent", 5, "a", {"app": "urgent"}, priority=100),
        resident("ns/batch", "b", 3, priority=10),
        resident("ns/batch", "a", 3, priority=10, index=1),
    ]
    # x already has one: only y is allowed by maxSkew 1, and it is full of batch
    _, decision = run(zones, placed, ask(spread=(SpreadRule("zone"),)))
    assert decision.placed[0].target == "b"
    assert victims_of(decision) == [("ns/batch", 0)]


def test_replicas_the_required_affinity_needs_are_spared() -> None:
    placed = [resident("ns/db", "a", 3, priority=10), resident("ns/batch", "b", 3, priority=10)]
    needs_db = ask(affinity=(AffinityTerm({"app": "db"}),))
    _, decision = run([target("a"), target("b")], placed, needs_db)
    assert decision.placed == ()  # a would have to evict its only db; b has no db


def test_each_replica_of_an_ask_may_preempt() -> None:
    placed = [resident("ns/batch", t, 3, priority=10, index=i) for i, t in enumerate("abc")]
    state, decision = run([target("a"), target("b"), target("c")], placed, ask(gib=3, n=3))
    assert sorted(x.target for x in decision.placed) == ["a", "b", "c"]
    assert len(victims_of(decision)) == 3
    assert {r.workload for r in state.replicas()} == {"ns/urgent"}


def test_choose_victims_unit() -> None:
    residents = sorted(
        [
            resident("ns/a", "t", 1, priority=1),
            resident("ns/b", "t", 2, priority=1),
            resident("ns/c", "t", 4, priority=50),
            resident("ns/own", "t", 8, priority=0),
        ],
        key=eviction_order,
    )
    pick = choose_victims(residents, priority=50, workload="ns/own", memory=2 * GIB, cpu=0.0)
    assert pick is not None
    assert [v.workload for v in pick] == ["ns/b"]
    # priority 50 may not evict ns/c (equal), and ns/own is its own
    assert (
        choose_victims(residents, priority=50, workload="ns/own", memory=4 * GIB, cpu=0.0) is None
    )
    spared = choose_victims(
        residents,
        priority=51,
        workload="ns/own",
        memory=2 * GIB,
        cpu=0.0,
        spare=lambda r: r.workload == "ns/b",
    )
    assert spared is not None
    assert [v.workload for v in spared] == ["ns/c"]
    assert choose_victims(residents, priority=99, workload="x", memory=0, cpu=0.0) == ()


def test_rank_orders_by_priority_count_name() -> None:
    low = [resident("ns/a", "t", 1, priority=1)]
    two_low = [resident("ns/a", "t", 1, priority=1), resident("ns/b", "t", 1, priority=1)]
    high = [resident("ns/c", "t", 1, priority=9)]
    assert rank(low, "z") < rank(two_low, "a") < rank(high, "a")
    assert rank(low, "a") < rank(low, "b")
