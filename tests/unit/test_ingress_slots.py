"""portway.ingress.slots: which endpoint holds which server slot."""

from __future__ import annotations

from dataclasses import replace

import pytest

from portway.ingress import AdminState, Backend, Endpoint, HealthCheck, Mode
from portway.ingress.slots import (
    NO_REPLICA,
    SlotView,
    admin_state,
    allocate,
    allocate_all,
    desired_views,
    pool_size,
    replica_label,
    slot_index,
    slot_name,
)


def ep(name: str, **changes: object) -> Endpoint:
    base = Endpoint(name, "127.0.0.1", 30000 + len(name), ready=True, replica=f"r-{name}")
    return replace(base, **changes)  # type: ignore[arg-type]


def test_first_allocation_fills_from_the_first_slot() -> None:
    assert allocate([ep("a"), ep("b")], None, 4) == ("a", "b", None, None)


def test_an_endpoint_keeps_its_slot_and_newcomers_take_the_lowest_free() -> None:
    previous = ("a", "b", "c", None)
    assert allocate([ep("c"), ep("a")], previous, 4) == ("a", None, "c", None)
    assert allocate([ep("c"), ep("d"), ep("a"), ep("e")], previous, 4) == ("a", "d", "c", "e")


def test_the_pool_grows_to_the_next_power_of_two_and_never_shrinks() -> None:
    grown = allocate([ep(x) for x in "abcde"], ("a", "b", "c", "d"), 4)
    assert grown == ("a", "b", "c", "d", "e", None, None, None)
    assert allocate([ep("a")], grown, 4) == ("a",) + (None,) * 7


@pytest.mark.parametrize(
    ("needed", "current", "minimum", "size"),
    [(0, 0, 4, 4), (3, 0, 4, 4), (5, 0, 4, 8), (5, 4, 4, 8), (9, 8, 4, 16), (2, 8, 4, 8)],
)
def test_pool_size(needed: int, current: int, minimum: int, size: int) -> None:
    assert pool_size(needed, current, minimum) == size


def test_allocate_all_per_backend() -> None:
    check = HealthCheck()
    backends = {
        "web": Backend("web", Mode.HTTP, (ep("a"),), check),
        "db": Backend("db", Mode.TCP, (), check),
    }
    assert allocate_all(backends, {"web": (None, "a"), "gone": ("x",)}, 2) == {
        "db": (None, None),
        "web": (None, "a"),
    }


def test_admin_state_draining_wins() -> None:
    assert admin_state(ep("a")) is AdminState.READY
    assert admin_state(ep("a", ready=False)) is AdminState.MAINT
    assert admin_state(ep("a", draining=True)) is AdminState.DRAIN
    assert admin_state(ep("a", ready=False, draining=True)) is AdminState.DRAIN


def test_desired_views() -> None:
    backend = Backend(
        "web",
        Mode.HTTP,
        (ep("a"), ep("b", ready=False, address="0:0::1"), ep("c", replica="")),
        HealthCheck(),
    )
    views = desired_views(backend, ("a", None, "b", "c"))
    assert views == (
        SlotView("a", "127.0.0.1", 30001, AdminState.READY, "r-a"),
        SlotView(None, None, None, AdminState.MAINT, NO_REPLICA),
        SlotView("b", "::1", 30001, AdminState.MAINT, "r-b"),  # as HAProxy prints it
        SlotView("c", "127.0.0.1", 30001, AdminState.READY, "c"),  # no replica: the id
    )


def test_replica_label_is_one_safe_word() -> None:
    assert replica_label(ep("a", replica="web-0")) == "web-0"
    assert replica_label(ep("a b;c", replica="")) == "a_b_c"


def test_slot_names() -> None:
    assert [slot_name(i) for i in range(3)] == ["s1", "s2", "s3"]
    assert slot_index("s12") == 11
