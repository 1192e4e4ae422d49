"""choose_target: eligibility, reasons counted per kind, stability and determinism."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import pytest

from portway.scheduler.placement import Candidate, Placed, Unplaceable, choose_target


def target(
    name: str,
    labels: Mapping[str, str] | None = None,
    *,
    healthy: bool = True,
    cordoned: bool = False,
    tiers: Sequence[str] = ("standard",),
) -> Candidate:
    return Candidate(name, dict(labels or {}), healthy, cordoned, frozenset(tiers))


def choose(
    candidates: Sequence[Candidate],
    *,
    selector: Mapping[str, str] | None = None,
    names: Sequence[str] = (),
    isolation: str = "standard",
    current: str | None = None,
) -> Placed | Unplaceable:
    return choose_target(
        candidates, selector=selector or {}, names=names, isolation=isolation, current=current
    )


def test_first_eligible_target_by_name() -> None:
    result = choose([target("gamma"), target("alpha"), target("beta")])
    assert result == Placed("alpha")


def test_selector_must_match_every_label() -> None:
    candidates = [
        target("a", {"zone": "eu", "disk": "hdd"}),
        target("b", {"zone": "eu", "disk": "ssd"}),
        target("c", {"zone": "us", "disk": "ssd"}),
    ]
    assert choose(candidates, selector={"zone": "eu", "disk": "ssd"}) == Placed("b")
    assert choose(candidates, selector={"disk": "ssd"}) == Placed("b")
    assert choose(candidates, selector={}) == Placed("a")


def test_names_restrict_the_choice() -> None:
    candidates = [target("a"), target("b"), target("c")]
    assert choose(candidates, names=["c", "b"]) == Placed("b")
    result = choose(candidates, names=["zzz"])
    assert isinstance(result, Unplaceable)
    assert result.reasons == {"not in placement.targets": 3}


def test_rejections_are_counted_per_reason() -> None:
    candidates = [
        target("down-1", healthy=False),
        target("down-2", healthy=False),
        target("drained", cordoned=True),
        target("plain"),
        target("elsewhere", {"zone": "us"}),
        target("excluded"),
    ]
    result = choose(
        candidates,
        names=["down-1", "down-2", "drained", "plain", "elsewhere"],
        isolation="sandboxed",
    )
    assert isinstance(result, Unplaceable)
    assert result.total == 6
    assert result.reasons == {
        "unhealthy": 2,
        "cordoned": 1,
        "lack isolation tier sandboxed": 2,
        "not in placement.targets": 1,
    }


def test_message_lists_reasons_sorted() -> None:
    candidates = [
        target("a", healthy=False),
        target("b", healthy=False),
        target("c", cordoned=True),
    ]
    result = choose(candidates)
    assert isinstance(result, Unplaceable)
    assert result.message() == "0/3 targets available: 1 cordoned, 2 unhealthy"


def test_selector_mismatch_message() -> None:
    candidates = [target("a"), target("b", {"zone": "eu"}), target("c", healthy=False)]
    result = choose(candidates, selector={"zone": "us"})
    assert isinstance(result, Unplaceable)
    assert result.message() == "0/3 targets available: 3 do not match targetSelector"


def test_no_targets_at_all() -> None:
    result = choose([])
    assert isinstance(result, Unplaceable)
    assert result.message() == "0/0 targets available"


def test_the_first_failing_check_is_the_reason() -> None:
    # unhealthy and cordoned and lacking the tier: reported once, as unhealthy
    result = choose([target("a", healthy=False, cordoned=True, tiers=())])
    assert isinstance(result, Unplaceable)
    assert result.reasons == {"unhealthy": 1}


def test_isolation_tier_must_be_offered() -> None:
    candidates = [target("a"), target("b", tiers=("standard", "microvm"))]
    assert choose(candidates, isolation="microvm") == Placed("b")
    assert choose(candidates, isolation="standard") == Placed("a")


def test_keeps_the_current_target_while_it_is_eligible() -> None:
    candidates = [target("a"), target("b"), target("c")]
    assert choose(candidates, current="c") == Placed("c")
    moved = [target("a"), target("b"), target("c", cordoned=True)]
    assert choose(moved, current="c") == Placed("a")
    assert choose(candidates, current="gone") == Placed("a")
    assert choose(candidates, current="c", names=["a", "b"]) == Placed("a")


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_choice_does_not_depend_on_candidate_order(order: tuple[int, ...]) -> None:
    pool = [
        target("t3", {"ssd": "yes"}),
        target("t1", {"ssd": "yes"}, healthy=False),
        target("t2", {"ssd": "yes"}),
        target("t0", {"ssd": "no"}),
    ]
    shuffled = [pool[i] for i in order]
    assert choose(shuffled, selector={"ssd": "yes"}) == Placed("t2")
    result = choose(shuffled, selector={"ssd": "maybe"})
    assert isinstance(result, Unplaceable)
    assert result.message() == "0/4 targets available: 4 do not match targetSelector"
