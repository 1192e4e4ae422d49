"""The SQL state store against real SQLite files and a real PostgreSQL
(every test runs on both): CRUD, compare-and-swap, events, leases, and several
writers (instances, threads, processes) at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests import store_backends

from portway.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    PortwayError,
    StoreError,
)
from portway.store import Record, Store
from portway.store import sql as store_sql

# every test of this module runs on SQLite and on PostgreSQL
db_url = store_backends.db_url
store = store_backends.store

KIND = "Workload"
NS = "default"
SPEC = {"image": "hello:1", "replicas": 2}


class FakeClock:
    """Stands in for the ``time`` module inside portway.store.sql."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(store_sql, "time", fake)
    return fake


@pytest.fixture
def two_stores(db_url: str) -> Iterator[tuple[Store, Store]]:
    """Two independent instances on one file, as two processes would have."""
    first, second = Store(db_url), Store(db_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def make(store: Store, name: str = "web", **spec: object) -> Record:
    return store.create(KIND, NS, name, spec or SPEC)


# --- create / get / list / require -----------------------------------------


def test_create_returns_first_version(store: Store, clock: FakeClock) -> None:
    record = store.create(KIND, NS, "web", SPEC)

    assert (record.kind, record.namespace, record.name) == (KIND, NS, "web")
    assert record.key == "default/web"
    assert (record.version, record.generation) == (1, 1)
    assert record.spec == SPEC
    assert record.status == {}
    assert record.deleting is False
    assert record.created_at == record.updated_at == clock.now


def test_create_with_status(store: Store) -> None:
    record = store.create(KIND, NS, "web", SPEC, {"phase": "Pending"})
    assert record.status == {"phase": "Pending"}


def test_get_returns_what_was_stored(store: Store) -> None:
    created = make(store)
    assert store.get(KIND, NS, "web") == created
    assert store.require(KIND, NS, "web") == created


def test_get_missing_is_none_and_require_raises(store: Store) -> None:
    assert store.get(KIND, NS, "nope") is None
    with pytest.raises(NotFoundError, match=r"workload default/nope not found") as info:
        store.require(KIND, NS, "nope")
    assert isinstance(info.value, PortwayError)
    assert info.value.exit_code == 3


def test_create_twice_raises_and_keeps_the_first(store: Store) -> None:
    first = make(store, image="a")
    with pytest.raises(AlreadyExistsError, match="already exists"):
        store.create(KIND, NS, "web", {"image": "b"})
    assert store.require(KIND, NS, "web") == first


def test_identity_is_kind_namespace_and_name(store: Store) -> None:
    store.create(KIND, NS, "web", SPEC)
    store.create(KIND, "other", "web", SPEC)
    store.create("Replica", NS, "web", SPEC)
    assert len(store.list(KIND)) == 2
    assert len(store.list("Replica")) == 1


def test_list_orders_by_namespace_then_name_and_filters(store: Store) -> None:
    for namespace, name in [("b", "y"), ("a", "z"), ("b", "x"), ("a", "a")]:
        store.create(KIND, namespace, name, SPEC)
    store.create("Replica", "a", "other-kind", SPEC)

    assert [r.key for r in store.list(KIND)] == ["a/a", "a/z", "b/x", "b/y"]
    assert [r.key for r in store.list(KIND, "b")] == ["b/x", "b/y"]
    assert store.list(KIND, "missing") == []
    assert store.list("Nothing") == []


def test_unopenable_database_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the state store"):
        Store(f"sqlite:///{tmp_path / 'no-such-dir' / 'state.db'}")


# --- versions and generations ----------------------------------------------


def test_update_spec_bumps_version_and_generation(store: Store, clock: FakeClock) -> None:
    record = make(store)
    clock.advance(5)
    updated = store.update_spec(record, {"image": "hello:2", "replicas": 2})

    assert (updated.version, updated.generation) == (2, 2)
    assert updated.spec == {"image": "hello:2", "replicas": 2}
    assert updated.updated_at == clock.now
    assert updated.created_at == record.created_at
    assert store.require(KIND, NS, "web") == updated


def test_update_spec_unchanged_bumps_only_version(store: Store) -> None:
    record = make(store)
    # Same content in another key order is the same spec.
    updated = store.update_spec(record, {"replicas": 2, "image": "hello:1"})
    assert (updated.version, updated.generation) == (2, 1)


def test_update_status_bumps_only_version(store: Store) -> None:
    record = make(store)
    updated = store.update_status(record, {"ready": 2})

    assert (updated.version, updated.generation) == (2, 1)
    assert updated.status == {"ready": 2}
    assert updated.spec == SPEC


def test_status_then_spec_then_status(store: Store) -> None:
    record = make(store)
    record = store.update_status(record, {"ready": 0})
    record = store.update_spec(record, {"image": "hello:2"})
    record = store.update_status(record, {"ready": 1})
    assert (record.version, record.generation) == (4, 2)
    assert record.spec == {"image": "hello:2"}
    assert record.status == {"ready": 1}


@pytest.mark.parametrize(
    "stale_write",
    [
        pytest.param(lambda s, r: s.update_spec(r, {"image": "other"}), id="update_spec"),
        pytest.param(lambda s, r: s.update_status(r, {"ready": 9}), id="update_status"),
        pytest.param(lambda s, r: s.mark_deleting(r), id="mark_deleting"),
        pytest.param(lambda s, r: s.delete(r), id="delete"),
    ],
)
def test_stale_write_conflicts_and_changes_nothing(
    store: Store, stale_write: Callable[[Store, Record], object]
) -> None:
    stale = make(store)
    current = store.update_status(stale, {"ready": 1})

    with pytest.raises(ConflictError, match="changed since it was read"):
        stale_write(store, stale)
    assert store.require(KIND, NS, "web") == current


def test_write_after_delete_is_not_found(store: Store) -> None:
    record = make(store)
    store.delete(record)
    with pytest.raises(NotFoundError):
        store.update_status(record, {"ready": 1})


def test_delete_removes_and_twice_is_fine(store: Store) -> None:
    record = make(store)
    store.delete(record)
    assert store.get(KIND, NS, "web") is None
    store.delete(record)  # already gone: not an error
    assert store.list(KIND) == []


def test_delete_leaves_other_objects(store: Store) -> None:
    web = make(store, "web")
    make(store, "db")
    store.delete(web)
    assert [r.name for r in store.list(KIND)] == ["db"]


def test_name_can_be_reused_after_delete(store: Store) -> None:
    store.delete(make(store))
    again = make(store)
    assert (again.version, again.generation) == (1, 1)


# --- deleting ----------------------------------------------------------------


def test_mark_deleting_is_a_new_generation(store: Store) -> None:
    record = make(store)
    marked = store.mark_deleting(record)

    assert marked.deleting is True
    assert (marked.version, marked.generation) == (2, 2)
    assert store.require(KIND, NS, "web").deleting is True


def test_mark_deleting_twice_writes_nothing(store: Store) -> None:
    marked = store.mark_deleting(make(store))
    assert store.mark_deleting(marked) == marked
    assert store.require(KIND, NS, "web").version == marked.version


def test_update_status_keeps_deleting(store: Store) -> None:
    marked = store.mark_deleting(make(store))
    updated = store.update_status(marked, {"ready": 0})
    assert updated.deleting is True
    assert updated.generation == marked.generation


def test_reapply_of_same_spec_cancels_deleting_as_a_new_generation(store: Store) -> None:
    # A controller that already acted on the deleting generation must see the
    # cancellation as new desired state, even though the spec is the same.
    marked = store.mark_deleting(make(store))
    revived = store.update_spec(marked, SPEC)
    assert revived.deleting is False
    assert revived.generation == marked.generation + 1


# --- events ------------------------------------------------------------------


def test_events_come_oldest_first_with_their_fields(store: Store, clock: FakeClock) -> None:
    store.record_event(KIND, NS, "web", "Scheduled", "placed on local")
    clock.advance(1)
    store.record_event(KIND, NS, "web", "Failed", "image missing", warning=True)

    first, second = store.events()
    assert first.id < second.id
    assert (first.reason, first.type, first.message) == ("Scheduled", "Normal", "placed on local")
    assert (second.reason, second.type) == ("Failed", "Warning")
    assert (first.kind, first.namespace, first.name) == (KIND, NS, "web")
    assert second.ts == first.ts + 1


def test_events_filters(store: Store) -> None:
    store.record_event(KIND, NS, "web", "A", "")
    store.record_event(KIND, NS, "db", "B", "")
    store.record_event(KIND, "other", "web", "C", "")
    store.record_event("Replica", NS, "web", "D", "")

    def reasons(**filters: str) -> list[str]:
        return [e.reason for e in store.events(**filters)]  # type: ignore[arg-type]

    assert reasons() == ["A", "B", "C", "D"]
    assert reasons(kind=KIND) == ["A", "B", "C"]
    assert reasons(namespace=NS) == ["A", "B", "D"]
    assert reasons(name="web") == ["A", "C", "D"]
    assert reasons(kind=KIND, namespace=NS, name="web") == ["A"]
    assert reasons(name="nobody") == []


def test_events_limit_gives_the_newest_oldest_first(store: Store) -> None:
    for i in range(10):
        store.record_event(KIND, NS, "web", f"E{i}", "")
    assert [e.reason for e in store.events(limit=3)] == ["E7", "E8", "E9"]


def test_events_after_id(store: Store) -> None:
    for i in range(5):
        store.record_event(KIND, NS, "web", f"E{i}", "")
    all_events = store.events()
    after = store.events(after_id=all_events[1].id)
    assert [e.reason for e in after] == ["E2", "E3", "E4"]
    assert store.events(after_id=all_events[-1].id) == []


def test_events_after_id_zero_pages_from_the_oldest(store: Store) -> None:
    for i in range(5):
        store.record_event(KIND, NS, "web", f"E{i}", "")
    assert [e.reason for e in store.events(after_id=0, limit=2)] == ["E0", "E1"]


def test_following_events_in_pages_misses_none(store: Store) -> None:
    for i in range(10):
        store.record_event(KIND, NS, "web", f"E{i}", "")
    seen: list[str] = []
    last = 0
    while page := store.events(after_id=last, limit=3):
        seen += [e.reason for e in page]
        last = page[-1].id
    assert seen == [f"E{i}" for i in range(10)]


def test_prune_events_keeps_the_newest(store: Store) -> None:
    for i in range(10):
        store.record_event(KIND, NS, "web", f"E{i}", "")
    assert store.prune_events(keep=4) == 6
    assert [e.reason for e in store.events()] == ["E6", "E7", "E8", "E9"]
    assert store.prune_events(keep=4) == 0
    assert store.prune_events(keep=100) == 0
    assert store.prune_events(keep=0) == 4
    assert store.events() == []


def test_prune_empty_log(store: Store) -> None:
    assert store.prune_events(keep=0) == 0


def test_event_ids_keep_growing_after_prune(store: Store) -> None:
    store.record_event(KIND, NS, "web", "old", "")
    old = store.events()[-1]
    store.prune_events(keep=1)
    store.record_event(KIND, NS, "web", "new", "")
    assert store.events()[-1].id > old.id


# --- leases ------------------------------------------------------------------


def test_lease_is_taken_renewed_and_refused_to_others(store: Store, clock: FakeClock) -> None:
    assert store.acquire_lease("controller", "a", ttl=10)
    assert store.lease_holder("controller") == "a"

    clock.advance(8)
    assert store.acquire_lease("controller", "a", ttl=10)  # renewed: now until +18
    clock.advance(8)
    assert not store.acquire_lease("controller", "b", ttl=10)
    assert store.lease_holder("controller") == "a"


def test_expired_lease_goes_to_another_holder(store: Store, clock: FakeClock) -> None:
    assert store.acquire_lease("controller", "a", ttl=10)
    clock.advance(10.5)
    assert store.lease_holder("controller") is None
    assert store.acquire_lease("controller", "b", ttl=10)
    assert store.lease_holder("controller") == "b"
    assert not store.acquire_lease("controller", "a", ttl=10)


def test_release_lease_only_by_its_holder(store: Store, clock: FakeClock) -> None:
    assert store.acquire_lease("controller", "a", ttl=10)
    store.release_lease("controller", "b")
    assert store.lease_holder("controller") == "a"
    store.release_lease("controller", "a")
    assert store.lease_holder("controller") is None
    assert store.acquire_lease("controller", "b", ttl=10)


def test_leases_are_independent_by_name(store: Store, clock: FakeClock) -> None:
    assert store.acquire_lease("one", "a", ttl=10)
    assert store.acquire_lease("two", "b", ttl=10)
    assert (store.lease_holder("one"), store.lease_holder("two")) == ("a", "b")


def test_steal_lease_only_from_the_named_holder(store: Store, clock: FakeClock) -> None:
    assert store.acquire_lease("controller", "dead", ttl=10)
    assert not store.steal_lease("controller", "someone-else", "new", ttl=10)
    assert store.lease_holder("controller") == "dead"
    assert store.steal_lease("controller", "dead", "new", ttl=10)  # though unexpired
    assert store.lease_holder("controller") == "new"
    assert not store.acquire_lease("controller", "dead", ttl=10)


def test_unknown_lease_has_no_holder(store: Store) -> None:
    assert store.lease_holder("nobody") is None


# --- two instances on one file -------------------------------------------------


def test_instances_see_each_others_writes(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    created = make(a)
    assert b.require(KIND, NS, "web") == created

    updated = b.update_status(created, {"ready": 1})
    assert a.require(KIND, NS, "web") == updated

    a.record_event(KIND, NS, "web", "FromA", "")
    assert [e.reason for e in b.events()] == ["FromA"]

    b.delete(updated)
    assert a.get(KIND, NS, "web") is None


def test_compare_and_swap_across_instances(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    read_by_a = make(a)
    read_by_b = b.require(KIND, NS, "web")

    winner = b.update_spec(read_by_b, {"image": "from-b"})
    with pytest.raises(ConflictError):
        a.update_spec(read_by_a, {"image": "from-a"})
    assert a.require(KIND, NS, "web") == winner

    with pytest.raises(AlreadyExistsError):
        b.create(KIND, NS, "web", SPEC)


def test_lease_across_instances(two_stores: tuple[Store, Store], clock: FakeClock) -> None:
    a, b = two_stores
    assert a.acquire_lease("controller", "process-a", ttl=10)
    assert not b.acquire_lease("controller", "process-b", ttl=10)
    assert b.lease_holder("controller") == "process-a"
    clock.advance(11)
    assert b.acquire_lease("controller", "process-b", ttl=10)
    assert not a.acquire_lease("controller", "process-a", ttl=10)


# --- concurrent read-modify-write ---------------------------------------------


def increment(store: Store, times: int, conflicts: list[int]) -> None:
    """Add 1 to status.counter ``times`` times, rereading after each conflict."""
    for _ in range(times):
        while True:
            record = store.require(KIND, NS, "counter")
            try:
                store.update_status(record, {"counter": record.status["counter"] + 1})
                break
            except ConflictError:
                conflicts.append(1)


def run_threads(stores: list[Store], threads: int, times: int) -> list[int]:
    conflicts: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(store: Store) -> None:
        try:
            barrier.wait()
            increment(store, times, conflicts)
        except BaseException as exc:
            errors.append(exc)

    workers = [
        threading.Thread(target=work, args=(stores[i % len(stores)],)) for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "a worker hung"
    assert errors == []
    return conflicts


def test_threads_incrementing_lose_no_update(store: Store) -> None:
    store.create(KIND, NS, "counter", {}, {"counter": 0})
    threads, times = 8, 25

    run_threads([store], threads, times)

    final = store.require(KIND, NS, "counter")
    assert final.status["counter"] == threads * times
    assert final.version == 1 + threads * times
    assert final.generation == 1


def test_threads_on_two_instances_lose_no_update(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    a.create(KIND, NS, "counter", {}, {"counter": 0})

    run_threads([a, b], threads=8, times=20)

    assert b.require(KIND, NS, "counter").status["counter"] == 160


INCREMENT_SCRIPT = textwrap.dedent(
    """
    import sys
    from portway.errors import ConflictError
    from portway.store import Store

    store = Store(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        while True:
            record = store.require("Workload", "default", "counter")
            try:
                store.update_status(record, {"counter": record.status["counter"] + 1})
                break
            except ConflictError:
                pass
    """
)


def start_processes(db_url: str, processes: int, times: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, "-c", INCREMENT_SCRIPT, db_url, str(times)])
        for _ in range(processes)
    ]


def wait_all(workers: list[subprocess.Popen[bytes]]) -> None:
    assert [w.wait(timeout=240) for w in workers] == [0] * len(workers)


def test_processes_incrementing_lose_no_update(store: Store) -> None:
    store.create(KIND, NS, "counter", {}, {"counter": 0})
    wait_all(start_processes(store.url, processes=3, times=20))
    assert store.require(KIND, NS, "counter").status["counter"] == 60


@pytest.mark.slow
def test_stress_threads_and_processes(store: Store) -> None:
    store.create(KIND, NS, "counter", {}, {"counter": 0})
    processes = start_processes(store.url, processes=4, times=200)
    run_threads([store], threads=16, times=200)
    wait_all(processes)
    assert store.require(KIND, NS, "counter").status["counter"] == 16 * 200 + 4 * 200


# --- event aggregation and retention ----------------------------------------------


def test_a_repeated_event_is_one_row_with_a_count_and_a_new_id(
    store: Store, clock: FakeClock
) -> None:
    store.record_event(KIND, NS, "web", "NotReady", "probe failed", warning=True, replica=0)
    first = store.events()[-1]
    clock.advance(5)
    store.record_event(KIND, NS, "web", "Ready", "ready", replica=0)
    clock.advance(5)
    store.record_event(KIND, NS, "web", "NotReady", "probe failed", warning=True, replica=0)
    ready, again = store.events()
    assert ready.reason == "Ready"
    assert again.reason == "NotReady" and again.count == 2
    assert (again.first_ts, again.ts) == (first.ts, first.ts + 10)
    assert again.id > ready.id > first.id  # followers after an id see the repeat
    assert (again.replica, again.target) == (0, "")


def test_two_writers_folding_one_repeat_at_once_leave_one_row(
    two_stores: tuple[Store, Store],
) -> None:
    """Both read the repeat before either folds it: the second to write must
    fold into the first's row, not keep a row of its own."""
    from sqlalchemy import event as sa_event

    first, second = two_stores
    first.record_event(KIND, NS, "web", "BackOff", "m", warning=True)
    raced: list[int] = []

    def other_writer_first(conn: object, cursor: object, statement: str, *args: object) -> None:
        # between the first writer's read of the repeat and its insert
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS") and not raced:
            raced.append(second.record_event(KIND, NS, "web", "BackOff", "m", warning=True))

    sa_event.listen(first._engine, "before_cursor_execute", other_writer_first)
    try:
        newest = first.record_event(KIND, NS, "web", "BackOff", "m", warning=True)
    finally:
        sa_event.remove(first._engine, "before_cursor_execute", other_writer_first)
    assert raced  # the other writer did come in between
    [row] = first.events()
    assert (row.id, row.count) == (newest, 3)
    assert newest > raced[0]


def test_events_that_differ_in_replica_target_or_message_are_not_folded(store: Store) -> None:
    store.record_event(KIND, NS, "web", "Started", "m", replica=0, target="a")
    store.record_event(KIND, NS, "web", "Started", "m", replica=1, target="a")
    store.record_event(KIND, NS, "web", "Started", "m", replica=0, target="b")
    store.record_event(KIND, NS, "web", "Started", "other", replica=0, target="a")
    store.record_event(KIND, NS, "web", "Started", "m")
    assert [e.count for e in store.events()] == [1, 1, 1, 1, 1]
    assert store.events()[-1].replica is None


def test_a_repeat_after_the_aggregation_window_is_a_new_event(
    store: Store, clock: FakeClock
) -> None:
    store.record_event(KIND, NS, "web", "BackOff", "m")
    clock.advance(store.events_aggregate_seconds + 1)
    store.record_event(KIND, NS, "web", "BackOff", "m")
    assert [e.count for e in store.events()] == [1, 1]


def test_events_filter_by_type_reason_target_and_time(store: Store, clock: FakeClock) -> None:
    store.record_event(KIND, NS, "web", "Started", "", target="a")
    clock.advance(60)
    store.record_event(KIND, NS, "web", "OOMKilled", "", warning=True, target="b")
    store.record_event(KIND, NS, "db", "Started", "", target="b")

    def reasons(**filters: object) -> list[tuple[str, str]]:
        return [(e.name, e.reason) for e in store.events(**filters)]  # type: ignore[arg-type]

    assert reasons(event_type="Warning") == [("web", "OOMKilled")]
    assert reasons(reason="Started") == [("web", "Started"), ("db", "Started")]
    assert reasons(target="b") == [("web", "OOMKilled"), ("db", "Started")]
    assert reasons(since=clock.time() - 30) == [("web", "OOMKilled"), ("db", "Started")]
    assert reasons(reason="Started", target="b") == [("db", "Started")]


def test_prune_events_by_age_and_count(store: Store, clock: FakeClock) -> None:
    for i in range(3):
        store.record_event(KIND, NS, "web", f"Old{i}", "")
    clock.advance(3600)
    for i in range(5):
        store.record_event(KIND, NS, "web", f"New{i}", "")
    assert store.prune_events(keep=4, older_than=clock.time() - 1800) == 3 + 1
    assert [e.reason for e in store.events()] == ["New1", "New2", "New3", "New4"]
