"""The step machine of ``portway migrate`` with fake steps: order, a save
after every step, resume from the record after a crash at any step, a
failed step retried (idempotent), what the record keeps, and when an abort
is still possible. (The steps' real work is proven on three engines in
tests/integration/test_migration_e2e.py.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest
from tests.fakes import FakeClock
from tests.unit.test_volume_placement import Listing, workload

from portway.controller import volume_placement
from portway.errors import ConflictError
from portway.service.migration_steps import (
    ORDER,
    Migration,
    Step,
    VolumeMove,
    advance,
    check_abortable,
    remaining,
)
from portway.spec.model import Workload

ACTIONS = ("precopy", "quiesce", "snapshot", "transfer", "restore", "switch", "start", "cleanup")


class Crash(Exception):
    """Stands for the process dying (``os._exit``) after a step."""


class FakeSteps:
    """Records each call, moves the fake clock, and makes one product per step."""

    def __init__(self, clock: FakeClock, fail: str = "") -> None:
        self.clock = clock
        self.calls: list[str] = []
        self.fail = fail  # action that raises once

    def _do(self, name: str, m: Migration) -> Migration:
        self.calls.append(name)
        self.clock.advance(0.5)
        if name == self.fail:
            self.fail = ""
            raise ConflictError(f"{name} failed")
        if name == "snapshot":
            return m.with_volume(replace(m.volumes[0], snapshot=f"data-mig-{m.id}"))
        if name == "restore":
            return m.with_volume(replace(m.volumes[0], restored=True))
        return m

    def precopy(self, m: Migration) -> Migration:
        return self._do("precopy", m)

    def quiesce(self, m: Migration) -> Migration:
        return self._do("quiesce", m)

    def snapshot(self, m: Migration) -> Migration:
        return self._do("snapshot", m)

    def transfer(self, m: Migration) -> Migration:
        return self._do("transfer", m)

    def restore(self, m: Migration) -> Migration:
        return self._do("restore", m)

    def switch(self, m: Migration) -> Migration:
        return self._do("switch", m)

    def start(self, m: Migration) -> Migration:
        return self._do("start", m)

    def cleanup(self, m: Migration) -> Migration:
        return self._do("cleanup", m)


class Record:
    """The store's Migration record: what survives a crash (as JSON)."""

    def __init__(self, migration: Migration) -> None:
        self.saved = migration.to_json()
        self.saves: list[str] = []

    def save(self, m: Migration) -> Migration:
        self.saved = m.to_json()
        self.saves.append(m.step.value)
        return m

    def load(self) -> Migration:
        return Migration.from_json(self.saved)


def planned() -> Migration:
    return Migration(
        id="ab12",
        namespace="ns",
        workload="db",
        source="docker",
        destination="podman",
        replicas=2,
        placement_targets=("docker",),
        volumes=(VolumeMove("db-data-0", "ns-db-data-0"),),
    )


def test_every_step_runs_once_in_order_and_is_saved_with_its_timing() -> None:
    clock = FakeClock()
    steps, record, shown = FakeSteps(clock), Record(planned()), []
    done = advance(
        planned(),
        steps,
        record.save,
        lambda step, took, m: shown.append((step, took)),
        clock=clock,
    )
    assert steps.calls == list(ACTIONS)
    assert record.saves == [s.value for s in ORDER[1:]]
    assert shown == [(s, 0.5) for s in ORDER[1:]]
    assert done.step is Step.DONE and record.load() == done
    assert done.timings == {s.value: 0.5 for s in ORDER[1:]}
    assert done.volumes[0].snapshot == "data-mig-ab12" and done.volumes[0].restored


@pytest.mark.parametrize("crash_after", ORDER[:-1], ids=lambda s: s.value)
def test_killed_after_any_step_a_resume_runs_only_the_rest(crash_after: Step) -> None:
    clock = FakeClock()
    record = Record(planned())
    first = FakeSteps(clock)

    def crash(step: Step) -> None:
        if step is crash_after:
            raise Crash

    if crash_after is Step.PLANNED:
        pass  # killed right after planning: nothing ran
    else:
        with pytest.raises(Crash):
            advance(planned(), first, record.save, lambda *_: None, clock=clock, crash=crash)
    saved = record.load()
    assert saved.step is crash_after
    second = FakeSteps(clock)
    done = advance(saved, second, record.save, lambda *_: None, clock=clock)
    # no step before the crash point runs again; every later one runs once
    assert second.calls == list(ACTIONS[crash_after.position :])
    assert first.calls + second.calls == list(ACTIONS)
    assert done.step is Step.DONE
    assert done.volumes[0].restored


def test_a_failed_step_leaves_the_record_before_it_and_runs_again() -> None:
    clock = FakeClock()
    record = Record(planned())
    steps = FakeSteps(clock, fail="restore")
    with pytest.raises(ConflictError, match="restore failed"):
        advance(planned(), steps, record.save, lambda *_: None, clock=clock)
    assert record.load().step is Step.TRANSFERRED
    done = advance(record.load(), steps, record.save, lambda *_: None, clock=clock)
    assert steps.calls == [*ACTIONS[:5], *ACTIONS[4:]]  # restore twice, nothing else
    assert done.step is Step.DONE


def test_the_record_round_trips_through_json() -> None:
    m = replace(planned(), step=Step.RESTORED, keep_source=True, timings={"quiesced": 1.25})
    m = m.with_volume(replace(m.volumes[0], archive_sha256="f" * 64, files=3, bytes=10))
    assert Migration.from_json(m.to_json()) == m
    assert remaining(Step.SWITCHED) == (Step.STARTED, Step.DONE)
    assert remaining(Step.DONE) == ()


def test_abort_is_possible_only_before_the_switch() -> None:
    for step in ORDER[: Step.SWITCHED.position]:
        check_abortable(replace(planned(), step=step))
    for step in ORDER[Step.SWITCHED.position :]:
        with pytest.raises(ConflictError, match=r"cannot be aborted.*--to docker"):
            check_abortable(replace(planned(), step=step))


def homes(
    found: Mapping[str, list[str] | None], remembered: dict[int, str], targets: list[str]
) -> dict[int, str]:
    raw = workload().model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["spec"]["placement"] = {"targets": targets}
    spec = Workload.model_validate(raw)
    drivers = {t: Listing(objs) for t, objs in found.items()}
    return volume_placement.refresh_homes(spec, "c", [0], remembered, drivers)  # type: ignore[arg-type]


def test_a_volume_on_two_targets_lives_where_the_placement_allows() -> None:
    both = {"docker": ["db-data-0"], "podman": ["db-data-0"]}
    # restored on podman, not switched yet (or aborted): stays on docker
    assert homes(both, {0: "docker"}, []) == {0: "docker"}
    assert homes(both, {0: "docker"}, ["docker"]) == {0: "docker"}
    # the switch names podman: the index follows its restored volume
    assert homes(both, {0: "docker"}, ["podman"]) == {0: "podman"}
    # the old target is down: the remembered home stands until it answers
    assert homes({"docker": None, "podman": ["db-data-0"]}, {0: "docker"}, []) == {0: "docker"}
    # the old copy removed: the one left
    assert homes({"docker": [], "podman": ["db-data-0"]}, {0: "docker"}, []) == {0: "podman"}
