"""WorkQueue: dedupe, one worker per key, delayed and rate-limited adds, shutdown.

Time-dependent tests inject a fake clock and call ``get(timeout=0)`` after
moving it: the queue then never waits on real time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from tests.fakes import FakeClock

from portway.controller.queue import WorkQueue


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def queue(clock: FakeClock) -> WorkQueue:
    return WorkQueue(base_delay=0.2, max_delay=60.0, clock=clock)


def drain(queue: WorkQueue) -> list[str]:
    """Everything ready now, marking each done at once."""
    keys = []
    while (key := queue.get(timeout=0)) is not None:
        keys.append(key)
        queue.done(key)
    return keys


def test_a_key_waits_at_most_once(queue: WorkQueue) -> None:
    for key in ["a", "b", "a", "a", "c", "b"]:
        queue.add(key)
    assert len(queue) == 3
    assert drain(queue) == ["a", "b", "c"]  # first-come order
    assert queue.get(timeout=0) is None
    assert len(queue) == 0


def test_a_key_in_progress_is_not_handed_out_again_and_comes_back_once(queue: WorkQueue) -> None:
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")
    queue.add("a")
    queue.add("b")
    # "a" is being processed: only "b" is available
    assert queue.get(timeout=0) == "b"
    assert queue.get(timeout=0) is None
    queue.done("b")
    queue.done("a")
    assert queue.get(timeout=0) == "a"
    assert queue.get(timeout=0) is None
    queue.done("a")
    assert queue.get(timeout=0) is None


def test_done_without_a_re_add_does_not_requeue(queue: WorkQueue) -> None:
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    assert queue.get(timeout=0) is None


def test_add_after_wakes_the_key_when_due(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_after("a", 5.0)
    assert len(queue) == 1
    assert queue.get(timeout=0) is None
    clock.advance(4.9)
    assert queue.get(timeout=0) is None
    clock.advance(0.1)
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    clock.advance(100)
    assert queue.get(timeout=0) is None


def test_add_after_without_delay_adds_at_once(queue: WorkQueue) -> None:
    queue.add_after("a", 0)
    queue.add_after("b", -3)
    assert drain(queue) == ["a", "b"]


def test_the_earliest_add_after_wins(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_after("late-first", 10.0)
    queue.add_after("late-first", 3.0)
    queue.add_after("early-first", 3.0)
    queue.add_after("early-first", 10.0)  # ignored: an earlier wake-up is scheduled
    clock.advance(3.0)
    assert sorted(drain(queue)) == ["early-first", "late-first"]
    clock.advance(7.0)
    assert drain(queue) == []


def test_delayed_keys_come_out_in_due_order(queue: WorkQueue, clock: FakeClock) -> None:
    queue.add_after("c", 3.0)
    queue.add_after("a", 1.0)
    queue.add_after("b", 2.0)
    clock.advance(5.0)
    assert drain(queue) == ["a", "b", "c"]


def test_add_after_a_key_in_progress_comes_back_after_done(
    queue: WorkQueue, clock: FakeClock
) -> None:
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add_after("a", 1.0)
    clock.advance(1.0)
    assert queue.get(timeout=0) is None  # due, but still being processed
    queue.done("a")
    assert queue.get(timeout=0) == "a"


def test_a_delayed_key_already_waiting_is_not_duplicated(
    queue: WorkQueue, clock: FakeClock
) -> None:
    queue.add("a")
    queue.add_after("a", 1.0)
    clock.advance(1.0)
    assert queue.get(timeout=0) == "a"
    assert queue.get(timeout=0) is None


def test_rate_limited_delays_double_up_to_the_cap(clock: FakeClock) -> None:
    queue = WorkQueue(base_delay=0.2, max_delay=2.0, clock=clock)
    delays = [queue.add_rate_limited("a") for _ in range(6)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert queue.failures("a") == 6
    assert queue.failures("other") == 0
    # the first (earliest) wake-up stands
    assert queue.get(timeout=0) is None
    clock.advance(0.2)
    assert queue.get(timeout=0) == "a"
    queue.done("a")

    queue.forget("a")
    assert queue.failures("a") == 0
    assert queue.add_rate_limited("a") == pytest.approx(0.2)


def test_rate_limits_are_per_key(queue: WorkQueue) -> None:
    assert queue.add_rate_limited("a") == pytest.approx(0.2)
    assert queue.add_rate_limited("a") == pytest.approx(0.4)
    assert queue.add_rate_limited("b") == pytest.approx(0.2)
    queue.forget("a")
    assert queue.failures("b") == 1


def test_rate_limiting_survives_a_key_that_keeps_failing(queue: WorkQueue) -> None:
    delays = [queue.add_rate_limited("broken") for _ in range(1100)]
    assert delays[-1] == 60.0


def test_shutdown_makes_get_return_none(queue: WorkQueue) -> None:
    queue.shutdown()
    assert queue.get() is None  # no timeout, yet it returns
    queue.add("a")
    queue.add_after("b", 1.0)
    assert queue.get(timeout=0) is None
    assert len(queue) == 0


def test_shutdown_lets_workers_drain_what_was_queued(queue: WorkQueue) -> None:
    queue.add("a")
    queue.shutdown()
    assert queue.get() == "a"
    assert queue.get() is None


def test_shutdown_wakes_a_blocked_worker() -> None:
    queue = WorkQueue()  # real clock
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    time.sleep(0.02)
    assert worker.is_alive()
    queue.shutdown()
    worker.join(timeout=2)
    assert not worker.is_alive()
    assert got == [None]


def test_a_blocked_worker_wakes_on_add() -> None:
    queue = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=2)))
    worker.start()
    time.sleep(0.02)
    queue.add("a")
    worker.join(timeout=2)
    assert got == ["a"]


def test_get_times_out_on_an_empty_queue() -> None:
    queue = WorkQueue()
    started = time.monotonic()
    assert queue.get(timeout=0.05) is None
    assert 0.04 <= time.monotonic() - started < 1.0


def test_get_waits_for_a_delayed_key_in_real_time() -> None:
    queue = WorkQueue()
    queue.add_after("a", 0.05)
    started = time.monotonic()
    assert queue.get(timeout=1.0) == "a"
    assert 0.04 <= time.monotonic() - started < 0.9


def test_workers_never_process_one_key_concurrently_and_lose_no_add() -> None:
    queue = WorkQueue()
    keys = [f"k{i}" for i in range(50)]
    lock = threading.Lock()
    in_flight: set[str] = set()
    overlaps: list[str] = []
    processed: Counter[str] = Counter()
    seq = 0
    last_add: dict[str, int] = {}
    last_start: dict[str, int] = {}
    stop = threading.Event()

    def work() -> None:
        nonlocal seq
        while True:
            key = queue.get(timeout=0.01)
            if key is None:
                if stop.is_set():
                    return
                continue
            with lock:
                if key in in_flight:
                    overlaps.append(key)
                in_flight.add(key)
                seq += 1
                last_start[key] = seq
                processed[key] += 1
            time.sleep(0)  # let others run while "processing"
            with lock:
                in_flight.discard(key)
            queue.done(key)

    workers = [threading.Thread(target=work) for _ in range(4)]
    for worker in workers:
        worker.start()
    for n in range(1000):
        key = keys[(n * 7) % 50]
        with lock:
            seq += 1
            last_add[key] = seq
        queue.add(key)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with lock:
            caught_up = all(last_start.get(k, 0) > last_add[k] for k in keys) and not in_flight
        if caught_up and len(queue) == 0:
            break
        time.sleep(0.005)
    stop.set()
    queue.shutdown()
    for worker in workers:
        worker.join(timeout=2)
    assert not any(w.is_alive() for w in workers)
    assert overlaps == []
    assert set(processed) == set(keys)
    assert sum(processed.values()) <= 1000  # dedupe never makes more work
    # every add was followed by a processing of that key (none was lost)
    assert all(last_start[k] > last_add[k] for k in keys)
