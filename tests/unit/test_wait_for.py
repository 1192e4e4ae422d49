"""service.workloads.wait_for: settles on status writes it learns of from the
change log, reading again only the workloads written since the last poll."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from tests.unit.api_support import Api, converge, engine, workload_doc

from portway.controller.records import KIND_WORKLOAD
from portway.service import workloads as svc
from portway.service.app import App
from portway.spec.model import Workload


def _status(phase: str, generation: int = 1) -> dict[str, Any]:
    return {"phase": phase, "observedGeneration": generation}


def test_settles_when_the_controller_writes_ready_and_reads_only_what_changed(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = app.store
    for name in ("web", "api", "idle"):
        store.create(KIND_WORKLOAD, "shop", name, {}, _status("Pending"))
    store.create(KIND_WORKLOAD, "other", "noise", {}, _status("Pending"))
    reads: list[str] = []
    real_get = store.get
    waiter = threading.get_ident()

    first_reads_done = threading.Event()

    def counting_get(kind: str, namespace: str, name: str) -> Any:
        if threading.get_ident() == waiter:  # the store's own reads for writes don't count
            reads.append(f"{namespace}/{name}")
            if len(reads) == 2:
                first_reads_done.set()
        return real_get(kind, namespace, name)

    monkeypatch.setattr(store, "get", counting_get)
    monkeypatch.setattr(svc, "_FULL_READ_SECONDS", 60.0)  # only change-driven reads here

    def controller() -> None:
        # after the waiter's first reads, however slow the machine
        assert first_reads_done.wait(30)
        for _ in range(20):  # a busy neighbour: many writes, none of them ours
            noise = real_get(KIND_WORKLOAD, "other", "noise")
            assert noise is not None
            store.update_status(noise, _status("Pending"))
        for name in ("web", "api"):
            record = real_get(KIND_WORKLOAD, "shop", name)
            assert record is not None
            store.update_status(record, _status("Ready"))

    writer = threading.Thread(target=controller)
    writer.start()
    keys = [("shop", "web", 1), ("shop", "api", 1)]
    results = svc.wait_for(app, keys, timeout=10)
    writer.join()
    assert results == {"shop/web": svc.WaitResult.READY, "shop/api": svc.WaitResult.READY}
    # one read each at the start and one after the write that made it Ready
    assert sorted(reads) == ["shop/api", "shop/api", "shop/web", "shop/web"]
    assert "shop/idle" not in reads and "other/noise" not in reads


def test_a_degraded_workload_ends_the_wait_and_an_old_generation_does_not(app: App) -> None:
    record = app.store.create(KIND_WORKLOAD, "shop", "web", {}, _status("Ready", generation=1))

    def controller() -> None:
        time.sleep(0.1)
        app.store.update_status(record, {**_status("Degraded", 2), "message": "image missing"})

    writer = threading.Thread(target=controller)
    writer.start()
    results = svc.wait_for(app, [("shop", "web", 2)], timeout=10)
    writer.join()
    assert results == {"shop/web": svc.WaitResult.DEGRADED}


def test_times_out_when_nothing_is_written(app: App) -> None:
    app.store.create(KIND_WORKLOAD, "shop", "web", {}, _status("Pending"))
    started = time.monotonic()
    results = svc.wait_for(app, [("shop", "web", 1)], timeout=0.3)
    assert results == {"shop/web": svc.WaitResult.TIMEOUT}
    assert time.monotonic() - started < 5


def test_an_unchanged_reapply_waits_for_a_pass_that_looked_at_the_engine_again(
    api: Api,
) -> None:
    """An embedded controller runs only during a command: the Ready it wrote
    last time may be stale (the engine restarted and lost the containers), and
    an unchanged re-apply keeps the generation, so only a fresh pass tells."""
    workload = Workload.model_validate(workload_doc("web"))
    svc.apply(api.app, [svc.Sourced(workload, "web.yaml", 1)])
    converge(api, "team-a/web")
    record = api.app.store.get(KIND_WORKLOAD, "team-a", "web")
    assert record is not None and record.status["phase"] == "Ready"
    fake = engine(api)
    for container in fake.containers():  # lost behind portway's back
        fake.destroy(fake._handle(container))
    assert fake.running() == []

    # the pass that starts it again is held inside create until the test lets go
    entered, let_go = threading.Event(), threading.Event()
    real_create = fake.create

    def held_create(request: Any) -> Any:
        entered.set()
        assert let_go.wait(30)
        return real_create(request)

    fake.create = held_create  # type: ignore[method-assign]
    with svc.controller_running(api.app) as link:
        assert link.embedded is not None
        [again] = svc.apply(api.app, [svc.Sourced(workload, "web.yaml", 1)])
        assert again.outcome is svc.Outcome.UNCHANGED
        key = again.workload.key
        assert link.observed(key)  # not notified: nothing to wait for
        link.notify([key])
        results: dict[str, svc.WaitResult] = {}

        def wait() -> None:
            results.update(
                svc.wait_for(
                    api.app,
                    [("team-a", "web", again.generation)],
                    timeout=30,
                    observed=link.observed,
                )
            )

        waiter = threading.Thread(target=wait)
        waiter.start()
        try:
            assert entered.wait(30)
            waiter.join(0.5)
            # the stored Ready is from before: no pass since the notify has ended
            assert waiter.is_alive() and not results and not link.observed(key)
        finally:
            let_go.set()
        waiter.join(30)
        assert results == {key: svc.WaitResult.READY}
        assert len(fake.running()) == 1


def test_a_link_to_no_embedded_controller_takes_statuses_as_they_are() -> None:
    link = svc.ControllerLink(other="another-holder")
    link.notify(["team-a/web"])
    assert link.observed("team-a/web")


def test_a_workload_being_migrated_is_not_deleted_until_the_migration_ends(app: App) -> None:
    from portway.errors import ConflictError
    from portway.service.migration_steps import KIND_MIGRATION, Migration, Step

    app.store.create(KIND_WORKLOAD, "shop", "db", {}, _status("Ready"))
    migration = Migration("m1", "shop", "db", "docker-a", "podman-b", 1, (), Step.SNAPSHOTTED)
    record = app.store.create(KIND_MIGRATION, "shop", "db", migration.to_json())
    with pytest.raises(ConflictError) as refused:
        svc.delete(app, "shop", "db")
    message = str(refused.value)
    assert "being migrated to podman-b (migration m1, last step done: snapshotted)" in message
    assert "`portway migrate db -n shop --resume`" in message and "--abort" in message
    stored = app.store.get(KIND_WORKLOAD, "shop", "db")
    assert stored is not None and not stored.deleting  # nothing changed
    # a file's workloads (delete -f) are all checked before any is deleted
    app.store.create(KIND_WORKLOAD, "shop", "web", {}, _status("Ready"))
    with pytest.raises(ConflictError, match="shop/db is being migrated"):
        svc.check_deletable(app, [("shop", "web"), ("shop", "db")])
    svc.check_deletable(app, [("shop", "web")])

    # past the switch it can only be finished
    switched = Migration("m1", "shop", "db", "docker-a", "podman-b", 1, (), Step.SWITCHED)
    record = app.store.update_spec(record, switched.to_json())
    with pytest.raises(ConflictError, match="--resume`, then delete it") as refused:
        svc.delete(app, "shop", "db")
    assert "--abort" not in str(refused.value)

    done = replace(switched, step=Step.DONE)
    app.store.update_spec(record, done.to_json())
    assert svc.delete(app, "shop", "db").deleting
