"""Lease election and fencing on both backends: racing acquirers, exactly
one holder at any time, and a stale holder's writes refused."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from tests import store_backends

from portway.controller.runner import LEASE_NAME, Controller, ControllerSettings
from portway.store import Fence, FencedError, Store
from portway.store import sql as store_sql

# every test of this module runs on SQLite and on PostgreSQL
db_url = store_backends.db_url
store = store_backends.store

KIND = "Workload"
NS = "default"


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(store_sql, "time", fake)
    return fake


def race(store: Store, contenders: int, ttl: float) -> list[int | None]:
    """All contenders call acquire_lease at once; returns their answers."""
    answers: list[int | None] = [None] * contenders
    barrier = threading.Barrier(contenders)

    def contend(i: int) -> None:
        barrier.wait()
        answers[i] = store.acquire_lease(LEASE_NAME, f"holder-{i}", ttl)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_racers_for_a_new_or_expired_lease_elect_exactly_one(
    store: Store, clock: FakeClock
) -> None:
    tokens: list[int] = []
    holders: list[str] = []
    for _ in range(5):  # first a missing row (INSERT race), then an expired one (UPDATE race)
        answers = race(store, contenders=12, ttl=10)
        winners = [i for i, token in enumerate(answers) if token is not None]
        assert len(winners) == 1, answers
        lease = store.lease(LEASE_NAME)
        assert lease is not None and lease.holder == f"holder-{winners[0]}"
        tokens.append(lease.token)
        holders.append(lease.holder)
        clock.now += 11  # expire it for the next round
    # each change of hands bumps the token; a holder retaking its own keeps it
    expected = [1]
    for before, after in itertools.pairwise(holders):
        expected.append(expected[-1] + (before != after))
    assert tokens == expected


def test_renewal_keeps_the_token_and_a_takeover_bumps_it(store: Store, clock: FakeClock) -> None:
    assert store.acquire_lease(LEASE_NAME, "a", ttl=10) == 1
    clock.now += 5
    assert store.acquire_lease(LEASE_NAME, "a", ttl=10) == 1
    clock.now += 11
    assert store.acquire_lease(LEASE_NAME, "b", ttl=10) == 2
    assert store.steal_lease(LEASE_NAME, "b", "c", ttl=10) == 3
    assert store.steal_lease(LEASE_NAME, "b", "d", ttl=10) is None
    store.release_lease(LEASE_NAME, "c")
    assert store.acquire_lease(LEASE_NAME, "e", ttl=10) == 4  # released: anyone may take it


def test_one_holder_at_any_time_under_contention(store: Store) -> None:
    """Threads keep trying to take a short lease (real time); each believes it
    holds the lease from when acquire returned until its start + ttl. Those
    intervals never overlap between holders, and every fenced write made by a
    holder that believes it holds the lease commits."""
    ttl, duration, contenders = 0.15, 1.0, 8
    record = store.create(KIND, NS, "counter", {}, {"n": 0})
    held: list[tuple[float, float, str]] = []
    refused: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(contenders)

    def contend(me: str) -> None:
        barrier.wait()
        end = time.time() + duration
        while time.time() < end:
            started = time.time()
            token = store.acquire_lease(LEASE_NAME, me, ttl)
            if token is None:
                time.sleep(0.01)
                continue
            got = time.time()
            fence = Fence(LEASE_NAME, me, token)
            fenced = store.fenced(lambda fence=fence: fence)
            try:
                current = fenced.require(KIND, NS, "counter")
                fenced.update_status(current, {"n": current.status["n"] + 1})
            except FencedError:
                refused.append(me)  # only if the write came after the expiry
            until = started + ttl
            if time.time() < started + ttl / 2:
                until = time.time()  # stops believing before it lets go
                store.release_lease(LEASE_NAME, me)  # let the others have a go
            with lock:
                held.append((got, until, me))
            time.sleep(0.005)

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len({who for _, _, who in held}) > 1, "the lease never changed hands"
    ordered = sorted(held)
    for (_, end, who), (start, _, next_who) in itertools.pairwise(ordered):
        if who != next_who:
            assert start >= end, f"{who} and {next_who} both held the lease at {start}"
    final = store.require(KIND, NS, "counter")
    assert final.status["n"] == len(held) - len(refused)
    assert final.version == record.version + final.status["n"]


def test_a_stale_holder_cannot_write_after_a_takeover(store: Store, clock: FakeClock) -> None:
    token_a = store.acquire_lease(LEASE_NAME, "a", ttl=10)
    assert token_a is not None
    as_a = store.fenced(lambda: Fence(LEASE_NAME, "a", token_a))
    web = as_a.create(KIND, NS, "web", {"image": "x"})
    assert store.changes()[-1].writer == "a"

    clock.now += 11
    token_b = store.acquire_lease(LEASE_NAME, "b", ttl=10)
    assert token_b == token_a + 1
    revision = store.revision()

    writes = [
        lambda: as_a.update_status(web, {"ready": 1}),
        lambda: as_a.update_spec(web, {"image": "y"}),
        lambda: as_a.mark_deleting(web),
        lambda: as_a.delete(web),
        lambda: as_a.create(KIND, NS, "other", {}),
        lambda: as_a.record_event(KIND, NS, "web", "Stale", "from a"),
    ]
    for write in writes:
        with pytest.raises(FencedError, match=r"held by b \(token 2\), not by a \(token 1\)"):
            write()
    assert store.require(KIND, NS, "web") == web
    assert store.get(KIND, NS, "other") is None
    assert store.revision() == revision
    assert store.events() == []

    as_b = store.fenced(lambda: Fence(LEASE_NAME, "b", token_b))
    assert as_b.update_status(web, {"ready": 1}).status == {"ready": 1}
    assert store.changes()[-1].writer == "b"


def test_an_expired_fence_refuses_even_before_a_takeover(store: Store, clock: FakeClock) -> None:
    token = store.acquire_lease(LEASE_NAME, "a", ttl=10)
    assert token is not None
    as_a = store.fenced(lambda: Fence(LEASE_NAME, "a", token))
    clock.now += 11
    with pytest.raises(FencedError, match="expired"):
        as_a.create(KIND, NS, "web", {})
    assert store.acquire_lease(LEASE_NAME, "a", ttl=10) == token  # renewed: same holder
    assert as_a.create(KIND, NS, "web", {}).name == "web"


def test_unfenced_views_and_the_plain_store_write_freely(store: Store) -> None:
    assert store.fenced(lambda: None).create(KIND, NS, "web", {}).revision == 1
    assert store.changes()[-1].writer == ""


# --- the controller's side ----------------------------------------------------------


def controller(store: Store) -> Controller:
    return Controller(store, settings=ControllerSettings(lease_ttl=5.0, workers=1))


def test_controller_writes_under_its_lease_and_stops_writing_when_it_is_taken(
    store: Store,
) -> None:
    leader = controller(store)
    try:
        assert leader.acquire()
        assert leader.holds_lease()
        leader.fenced_store.create(KIND, NS, "web", {})
        assert store.changes()[-1].writer == leader.holder

        assert store.steal_lease(LEASE_NAME, leader.holder, "someone-else", ttl=5.0) is not None
        with pytest.raises(FencedError, match="someone-else"):
            leader.fenced_store.record_event(KIND, NS, "web", "Late", "")

        standby = controller(store)
        try:
            assert not standby.acquire()
            assert not standby.holds_lease()
            # a controller that never led (a one-off pass) writes unfenced
            standby.fenced_store.record_event(KIND, NS, "web", "OnePass", "")
        finally:
            standby.reconciler.close()
    finally:
        leader.reconciler.close()


def test_a_controller_that_lost_its_lease_refuses_to_write(store: Store) -> None:
    leader = controller(store)
    try:
        assert leader.acquire()
        leader._lose_lease("test")
        assert not leader.holds_lease()
        with pytest.raises(FencedError, match="lost its lease"):
            leader.fenced_store.create(KIND, NS, "web", {})
        assert store.get(KIND, NS, "web") is None
    finally:
        leader.reconciler.close()


def test_a_controller_that_lost_its_lease_stands_by_and_leads_again(store: Store) -> None:
    leader = Controller(store, settings=ControllerSettings(lease_ttl=0.6, workers=1))
    stop = threading.Event()
    runner = threading.Thread(target=leader.run_forever, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while leader._lease_token is None and time.monotonic() < deadline:
            time.sleep(0.02)
        first = store.lease(LEASE_NAME)
        assert first is not None and first.holder == leader.holder

        assert store.steal_lease(LEASE_NAME, leader.holder, "other", ttl=1.0) == first.token + 1
        while leader.holds_lease() and time.monotonic() < deadline:
            time.sleep(0.02)  # its next renewal (every ttl/3) finds the lease gone
        assert not leader.holds_lease()
        with pytest.raises(FencedError):
            leader.fenced_store.record_event(KIND, NS, "web", "Stale", "")

        store.release_lease(LEASE_NAME, "other")
        while not leader.holds_lease() and time.monotonic() < deadline:
            time.sleep(0.02)  # standing by, it polls every second
        again = store.lease(LEASE_NAME)
        assert again is not None and again.holder == leader.holder
        assert again.token == first.token + 2
        leader.fenced_store.record_event(KIND, NS, "web", "Back", "")
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert [e.reason for e in store.events()] == ["Back"]
