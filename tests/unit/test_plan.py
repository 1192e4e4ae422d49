"""The pure decision function ``plan_workload``: what to do for one workload,
given what is desired, what the engine reports and what the controller remembers."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portway.controller.plan import (
    BACKOFF_RESET_SECONDS,
    PROGRESS_POLL_SECONDS,
    Create,
    Desired,
    Observed,
    Phase,
    Plan,
    Remove,
    ReplicaMemory,
    Report,
    Start,
    Stop,
    plan_workload,
    restart_delay,
)
from portway.drivers.base import (
    LABEL_GENERATION,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_REPLICA,
    LABEL_WORKLOAD,
    Handle,
    ReplicaState,
    ReplicaStatus,
)
from portway.spec.model import WorkloadSpec

TARGET = "local"
NOW = 1_700_000_000.0
RUNNING = ReplicaState.RUNNING
EXITED = ReplicaState.EXITED
CREATED = ReplicaState.CREATED

_ids = itertools.count(1)


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def make_spec(**fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"image": "portway/app:1", "replicas": 3, **fields})


def desired(
    spec: WorkloadSpec | None = None,
    *,
    generation: int = 1,
    deleting: bool = False,
    max_unavailable: int = 1,
    target: str = TARGET,
) -> Desired:
    return Desired(
        namespace="ns",
        name="web",
        spec=spec or make_spec(),
        generation=generation,
        template_hash=f"hash{generation}",
        target=target,
        deleting=deleting,
        max_unavailable=max_unavailable,
    )


def status(
    index: int,
    generation: int = 1,
    state: ReplicaState = RUNNING,
    *,
    target: str = TARGET,
    exit_code: int | None = None,
    oom_killed: bool = False,
    created: float | None = None,
    started: float | None = None,
    finished: float | None = None,
    container_id: str | None = None,
) -> ReplicaStatus:
    cid = container_id or f"c{next(_ids):06d}"
    labels = {
        LABEL_MANAGED: "true",
        LABEL_NAMESPACE: "ns",
        LABEL_WORKLOAD: "web",
        LABEL_REPLICA: str(index),
        LABEL_GENERATION: str(generation),
    }
    return ReplicaStatus(
        handle=Handle("fake", target, cid, f"pw-ns-web-{index}-g{generation}"),
        labels=labels,
        state=state,
        exit_code=exit_code,
        oom_killed=oom_killed,
        created_at=ts(created if created is not None else NOW - 1000),
        started_at=None if started is None else ts(started),
        finished_at=None if finished is None else ts(finished),
    )


def obs(
    index: int,
    generation: int = 1,
    state: ReplicaState = RUNNING,
    *,
    ready: bool | None = None,
    live: bool = True,
    **kwargs: Any,
) -> Observed:
    """An observation; running replicas are ready unless told otherwise."""
    return Observed(
        status(index, generation, state, **kwargs),
        ready=state is RUNNING if ready is None else ready,
        live=live,
    )


def exited(
    index: int, exit_code: int, *, ran: float = 10.0, ago: float = 0.0, **kw: Any
) -> Observed:
    """An exited replica that ran ``ran`` seconds and finished ``ago`` seconds before NOW."""
    finished = NOW - ago
    return obs(
        index,
        state=EXITED,
        exit_code=exit_code,
        started=finished - ran,
        finished=finished,
        **kw,
    )


def of(plan: Plan, kind: type) -> list[Any]:
    return [a for a in plan.actions if isinstance(a, kind)]


def remembered(o: Observed, **fields: Any) -> ReplicaMemory:
    return ReplicaMemory(container_id=o.handle.id, **fields)


def always(initial: float = 2.0, maximum: float = 16.0) -> WorkloadSpec:
    return make_spec(
        replicas=1,
        restart={
            "policy": "always",
            "initialBackoffSeconds": initial,
            "maxBackoffSeconds": maximum,
        },
    )


# --- creating and scaling -------------------------------------------------------


def test_fresh_workload_creates_and_starts_every_index() -> None:
    plan = plan_workload(desired(), [], {}, NOW)
    assert plan.actions == [Create(i, 1, TARGET, True, "Scheduled") for i in range(3)]
    assert set(plan.steps) == {0, 1, 2}
    assert plan.memory == {i: ReplicaMemory() for i in range(3)}
    assert plan.requeue_after == PROGRESS_POLL_SECONDS
    assert plan.summary is not None
    assert plan.summary.phase is Phase.PROGRESSING
    assert (plan.summary.desired, plan.summary.updated, plan.summary.running) == (3, 0, 0)
    assert not plan.finished_deleting


def test_scale_up_creates_only_the_missing_indices() -> None:
    have = [obs(0), obs(1)]
    plan = plan_workload(desired(make_spec(replicas=5)), have, {}, NOW)
    assert plan.actions == [Create(i, 1, TARGET, True, "Scheduled") for i in (2, 3, 4)]


def test_scale_down_removes_indices_at_or_beyond_replicas() -> None:
    have = [obs(0), obs(1), obs(2), obs(7, state=EXITED, exit_code=0)]
    plan = plan_workload(desired(make_spec(replicas=1)), have, {}, NOW)
    removes = of(plan, Remove)
    assert {(r.index, r.reason) for r in removes} == {
        (1, "ScaledDown"),
        (2, "ScaledDown"),
        (7, "ScaledDown"),
    }
    assert {r.handle for r in removes} == {o.handle for o in have[1:]}
    assert not of(plan, Create)
    assert not of(plan, Start)
    assert plan.summary is not None
    # the surplus is still there: not Ready yet
    assert plan.summary.phase is Phase.PROGRESSING
    after = plan_workload(desired(make_spec(replicas=1)), have[:1], {}, NOW)
    assert after.actions == []
    assert after.summary is not None
    assert after.summary.phase is Phase.READY


def test_scale_to_zero_removes_everything_and_is_ready() -> None:
    have = [obs(0), obs(1)]
    plan = plan_workload(desired(make_spec(replicas=0)), have, {}, NOW)
    assert [(a.index, a.reason) for a in of(plan, Remove)] == [(0, "ScaledDown"), (1, "ScaledDown")]
    empty = plan_workload(desired(make_spec(replicas=0)), [], {}, NOW)
    assert empty.actions == []
    assert empty.summary is not None
    assert empty.summary.phase is Phase.READY


def test_duplicate_current_replica_is_removed_and_the_running_one_kept() -> None:
    older_exited = obs(0, state=EXITED, exit_code=1, created=NOW - 500, finished=NOW - 400)
    newer_running = obs(0, created=NOW - 100)
    plan = plan_workload(desired(make_spec(replicas=1)), [older_exited, newer_running], {}, NOW)
    assert plan.actions == [Remove(older_exited.handle, 0, "Duplicate")]
    assert plan.memory[0].container_id == newer_running.handle.id


def test_duplicate_running_replicas_keep_the_oldest() -> None:
    young = obs(0, created=NOW - 10)
    old = obs(0, created=NOW - 900)
    plan = plan_workload(desired(make_spec(replicas=1)), [young, old], {}, NOW)
    assert plan.actions == [Remove(young.handle, 0, "Duplicate")]


def test_replica_on_another_target_stays_until_its_replacement_is_ready() -> None:
    """A move (drain, placement change) surges: the new copy first, the old one
    removed only once the new one is ready; a surplus index is scaled down."""
    elsewhere = obs(0, target="other")
    elsewhere_surplus = obs(5, target="other")
    plan = plan_workload(desired(make_spec(replicas=1)), [elsewhere, elsewhere_surplus], {}, NOW)
    assert of(plan, Remove) == [Remove(elsewhere_surplus.handle, 5, "ScaledDown")]
    assert of(plan, Create) == [Create(0, 1, TARGET, True, "Moved")]

    arrived = obs(0, target=TARGET)
    done = plan_workload(desired(make_spec(replicas=1)), [elsewhere, arrived], {}, NOW)
    assert of(done, Remove) == [Remove(elsewhere.handle, 0, "Rescheduled")]
    assert of(done, Create) == []


def test_each_index_goes_to_its_own_slot_with_its_epoch() -> None:
    spec = make_spec(replicas=2)
    want = replace_desired(desired(spec), slots={0: ("a", 3), 1: ("b", 4)})
    plan = plan_workload(want, [], {}, NOW)
    assert of(plan, Create) == [
        Create(0, 1, "a", True, "Scheduled", 3),
        Create(1, 1, "b", True, "Scheduled", 4),
    ]


def test_a_copy_with_an_older_epoch_is_not_adopted() -> None:
    """Index 0 left target a and came back (epoch 1 -> 3): the copy still
    carrying epoch 1 is stale, whatever its generation."""
    old_copy = obs(0, target="a")  # no epoch label: epoch 0
    want = replace_desired(desired(make_spec(replicas=1)), slots={0: ("a", 3)})
    plan = plan_workload(want, [old_copy], {}, NOW)
    assert of(plan, Create) == [Create(0, 1, "a", True, "Moved", 3)]


def test_copies_on_a_fenced_target_are_removed_on_sight() -> None:
    """After failover the copy on the returning target never serves again,
    even while its replacement is not ready yet."""
    stale = obs(0, target="dead")
    want = replace_desired(
        desired(make_spec(replicas=1)), slots={0: ("b", 2)}, fenced=frozenset({"dead"})
    )
    plan = plan_workload(want, [stale], {}, NOW)
    assert of(plan, Remove) == [Remove(stale.handle, 0, "Fenced")]
    assert of(plan, Create) == [Create(0, 1, "b", True, "Scheduled", 2)]


def test_nothing_is_created_on_an_unreachable_target() -> None:
    want = replace_desired(
        desired(make_spec(replicas=2)),
        slots={0: ("down", 1), 1: ("up", 2)},
        unreachable=frozenset({"down"}),
    )
    plan = plan_workload(want, [], {}, NOW)
    assert of(plan, Create) == [Create(1, 1, "up", True, "Scheduled", 2)]
    assert plan.summary is not None
    assert plan.summary.phase is Phase.DEGRADED
    assert "replica 0: target down unreachable" in plan.summary.reasons


def replace_desired(base: Desired, **changes: Any) -> Desired:
    from dataclasses import replace

    return replace(base, **changes)


# --- rolling updates ------------------------------------------------------------


def test_rolling_update_replaces_one_index_at_a_time() -> None:
    spec = make_spec(replicas=3)
    old = [obs(i, 1) for i in range(3)]

    first = plan_workload(desired(spec, generation=2), old, {}, NOW)
    assert first.actions == [Create(0, 2, TARGET, True, "Update")]
    assert first.requeue_after == PROGRESS_POLL_SECONDS
    assert first.summary is not None
    assert first.summary.available == 3
    assert first.summary.updated == 0
    assert first.summary.phase is Phase.PROGRESSING

    # index 0's new replica runs but is not ready yet: nobody else may start
    new0_starting = obs(0, 2, ready=False)
    second = plan_workload(desired(spec, generation=2), [*old, new0_starting], {}, NOW)
    assert not of(second, Create)
    assert not of(second, Remove)
    assert second.requeue_after == PROGRESS_POLL_SECONDS

    # ready: the old replica of index 0 goes and index 1 may start
    new0 = obs(0, 2)
    third = plan_workload(desired(spec, generation=2), [*old, new0], {}, NOW)
    assert third.steps[0] == [Remove(old[0].handle, 0, "Superseded")]
    assert third.steps[1] == [Create(1, 2, TARGET, True, "Update")]
    assert 2 not in third.steps


def test_rolling_update_respects_a_larger_max_unavailable() -> None:
    old = [obs(i, 1) for i in range(4)]
    plan = plan_workload(
        desired(make_spec(replicas=4), generation=2, max_unavailable=2), old, {}, NOW
    )
    assert [a.index for a in of(plan, Create)] == [0, 1]


def test_rolling_update_with_a_crashing_new_revision_holds_the_rest_back() -> None:
    old = [obs(i, 1) for i in range(3)]
    broken = exited(0, 1, ran=1.0, ago=0.5, generation=2)
    plan = plan_workload(desired(make_spec(replicas=3), generation=2), [*old, broken], {}, NOW)
    assert not of(plan, Create)
    assert not any(isinstance(a, Remove) and a.handle == old[0].handle for a in plan.actions)


def test_old_replicas_that_are_not_running_do_not_consume_the_budget() -> None:
    old = [
        obs(0, 1),
        obs(1, 1, state=EXITED, exit_code=1),
        obs(2, 1, state=CREATED),
        obs(3, 1, ready=False),  # running but not ready: not serving either
    ]
    plan = plan_workload(desired(make_spec(replicas=4), generation=2), old, {}, NOW)
    assert [c.index for c in of(plan, Create)] == [0, 1, 2, 3]
    assert all(c.reason == "Update" and c.start for c in of(plan, Create))


def test_fixed_host_port_update_stops_the_old_replica_just_before_starting_the_new() -> None:
    spec = make_spec(replicas=2, ports=[{"containerPort": 80, "hostPort": 18080}])
    old = [obs(0, 1), obs(1, 1)]

    first = plan_workload(desired(spec, generation=2), old, {}, NOW)
    assert first.actions == [Create(0, 2, TARGET, False, "Update")]
    assert first.requeue_after == 0.0  # start it on the very next pass

    new0 = obs(0, 2, state=CREATED)
    second = plan_workload(desired(spec, generation=2), [*old, new0], {}, NOW)
    assert second.steps[0] == [
        Stop(old[0].handle, 0, "MakingRoom"),
        Start(new0.handle, 0, restart=False, reason="Started"),
    ]
    assert 1 not in second.steps  # index 0 is mid-replacement: index 1 waits

    stopped0 = Observed(
        status(0, 1, EXITED, exit_code=143, container_id=old[0].handle.id), ready=False
    )
    new0_ready = Observed(status(0, 2, RUNNING, container_id=new0.handle.id), ready=True)
    third = plan_workload(desired(spec, generation=2), [stopped0, old[1], new0_ready], {}, NOW)
    assert third.steps[0] == [Remove(old[0].handle, 0, "Superseded")]
    assert third.steps[1] == [Create(1, 2, TARGET, False, "Update")]


def test_fixed_host_port_without_a_running_old_replica_starts_at_once() -> None:
    spec = make_spec(replicas=2, ports=[{"containerPort": 80, "hostPort": 18080}])
    fresh = plan_workload(desired(spec), [], {}, NOW)
    assert all(c.start for c in of(fresh, Create))
    dead_old = [obs(0, 1, state=EXITED, exit_code=1), obs(1, 1, state=EXITED, exit_code=1)]
    update = plan_workload(desired(spec, generation=2), dead_old, {}, NOW)
    assert [(c.index, c.start) for c in of(update, Create)] == [(0, True), (1, True)]


# --- lifecycle of one replica -----------------------------------------------------


def test_created_current_replica_is_started() -> None:
    created = obs(0, state=CREATED)
    plan = plan_workload(desired(make_spec(replicas=1)), [created], {}, NOW)
    assert plan.actions == [Start(created.handle, 0, restart=False, reason="Started")]


def test_exit_is_reported_once_and_restarted_after_the_backoff() -> None:
    spec = always(initial=2.0)
    crashed = exited(0, 1, ago=1.0)

    first = plan_workload(desired(spec), [crashed], {}, NOW)
    reports = of(first, Report)
    assert [r.reason for r in reports] == ["Crashed", "BackOff"]
    assert "back-off of 2s" in reports[1].message
    assert reports[0].warning
    assert "exit code 1" in reports[0].message
    assert "Error" in reports[0].message
    assert not of(first, Start)  # due one second from now
    assert first.requeue_after == pytest.approx(1.0)
    mem = first.memory[0]
    assert mem.reported_exit
    assert (mem.last_exit_code, mem.last_reason, mem.restart_count) == (1, "Error", 0)
    assert first.summary is not None
    assert first.summary.phase is Phase.DEGRADED
    assert "restarting" in first.summary.reasons[0]

    # the same exit again, a little later: neither a second report nor a start
    again = plan_workload(desired(spec), [crashed], {0: mem}, NOW + 0.5)
    assert again.actions == []
    assert again.requeue_after == pytest.approx(0.5)

    due = plan_workload(desired(spec), [crashed], {0: mem}, NOW + 1.0)
    assert due.actions == [Start(crashed.handle, 0, restart=True, reason="Restarted")]
    assert due.memory[0].restart_count == 1
    assert due.memory[0].backoff_step == 1
    assert due.memory[0].reported_exit == mem.reported_exit


def test_restart_delay_doubles_and_is_capped() -> None:
    assert [restart_delay(step, 1.0, 10.0) for step in range(6)] == [1, 2, 4, 8, 10, 10]
    assert restart_delay(10_000, 1.0, 10.0) == 10.0
    assert restart_delay(0, 0.0, 10.0) == 0.0
    assert restart_delay(3, 0.0, 10.0) == 0.0


@pytest.mark.parametrize(("step", "delay"), [(0, 2.0), (1, 4.0), (2, 8.0), (3, 16.0), (5, 16.0)])
def test_restart_waits_the_backoff_of_its_step(step: int, delay: float) -> None:
    spec = always(initial=2.0, maximum=16.0)
    crashed = exited(0, 1, ago=0.0)
    mem = remembered(crashed, restart_count=step, backoff_step=step)
    early = plan_workload(desired(spec), [crashed], {0: mem}, NOW + delay - 0.01)
    assert not of(early, Start)
    assert early.requeue_after == pytest.approx(0.01, abs=1e-6)
    on_time = plan_workload(desired(spec), [crashed], {0: mem}, NOW + delay)
    assert of(on_time, Start) == [Start(crashed.handle, 0, restart=True, reason="Restarted")]
    assert on_time.memory[0].restart_count == step + 1
    assert on_time.memory[0].backoff_step == step + 1


def test_restart_count_accumulates_over_several_crashes() -> None:
    spec = always(initial=1.0, maximum=8.0)
    handle_id = "c-crashloop"
    memory: dict[int, ReplicaMemory] = {}
    now = NOW
    restarts_at: list[float] = []
    for _ in range(4):
        crashed = Observed(
            status(0, 1, EXITED, exit_code=2, started=now - 1, finished=now, container_id=handle_id)
        )
        while True:
            plan = plan_workload(desired(spec), [crashed], memory, now)
            memory = dict(plan.memory)
            if of(plan, Start):
                restarts_at.append(now)
                break
            assert plan.requeue_after is not None
            now += plan.requeue_after
    assert memory[0].restart_count == 4
    gaps = [b - a for a, b in itertools.pairwise([NOW, *restarts_at])]
    # each crash happens right at the restart, so gaps are exactly the backoffs
    assert gaps == [1.0, 2.0, 4.0, 8.0]


def test_a_replica_that_ran_long_enough_restarts_without_growing_backoff() -> None:
    spec = always(initial=1.0, maximum=300.0)
    long_run = exited(0, 1, ran=BACKOFF_RESET_SECONDS, ago=0.0)
    mem = remembered(long_run, restart_count=5, backoff_step=5)
    plan = plan_workload(desired(spec), [long_run], {0: mem}, NOW + 1.0)
    assert of(plan, Start) == [Start(long_run.handle, 0, restart=True, reason="Restarted")]
    assert plan.memory[0].restart_count == 6
    assert plan.memory[0].backoff_step == 1

    short_run = exited(0, 1, ran=BACKOFF_RESET_SECONDS - 1, ago=0.0)
    mem = remembered(short_run, restart_count=5, backoff_step=5)
    held = plan_workload(desired(spec), [short_run], {0: mem}, NOW + 1.0)
    assert not of(held, Start)
    assert held.requeue_after == pytest.approx(31.0)  # 2**5 s in all


def test_on_failure_does_not_restart_a_clean_exit_and_completes() -> None:
    spec = make_spec(replicas=2, restart={"policy": "on-failure"})
    done = [exited(0, 0), exited(1, 0)]
    plan = plan_workload(desired(spec), done, {}, NOW + 3600)
    assert not of(plan, Start)
    assert [r.index for r in of(plan, Report)] == [0, 1]
    assert all("Completed" in r.message for r in of(plan, Report))
    assert plan.summary is not None
    assert plan.summary.phase is Phase.COMPLETED
    assert plan.summary.reasons == ()
    # one still running: not completed yet
    partly = plan_workload(desired(spec), [done[0], obs(1)], {}, NOW)
    assert partly.summary is not None
    assert partly.summary.phase is Phase.PROGRESSING


def test_on_failure_restarts_a_failure() -> None:
    spec = make_spec(replicas=1, restart={"policy": "on-failure", "initialBackoffSeconds": 1})
    failed = exited(0, 3)
    plan = plan_workload(desired(spec), [failed], {}, NOW + 1)
    assert of(plan, Start) == [Start(failed.handle, 0, restart=True, reason="Restarted")]


def test_on_failure_gives_up_after_max_retries() -> None:
    spec = make_spec(replicas=1, restart={"policy": "on-failure", "maxRetries": 2})
    failed = exited(0, 1)
    mem = remembered(failed, restart_count=2, backoff_step=2)
    plan = plan_workload(desired(spec), [failed], {0: mem}, NOW + 3600)
    assert not of(plan, Start)
    assert plan.memory[0].restart_count == 2
    assert plan.summary is not None
    assert plan.summary.phase is Phase.DEGRADED
    assert plan.summary.reasons == ("replica 0: Error, exit code 1",)
    assert plan.requeue_after is None  # nothing will change by itself


def test_never_policy_does_not_restart() -> None:
    spec = make_spec(replicas=1, restart={"policy": "never"})
    failed = exited(0, 1)
    plan = plan_workload(desired(spec), [failed], {}, NOW + 3600)
    assert not of(plan, Start)
    assert len(of(plan, Report)) == 1
    assert plan.summary is not None
    assert plan.summary.phase is Phase.DEGRADED
    clean = plan_workload(desired(spec), [exited(0, 0)], {}, NOW + 3600)
    assert not of(clean, Start)
    assert clean.summary is not None
    assert clean.summary.phase is Phase.COMPLETED


def test_oom_kill_is_reported_as_such_and_restarted_even_with_exit_zero() -> None:
    spec = make_spec(replicas=1, restart={"policy": "on-failure", "initialBackoffSeconds": 1})
    killed = exited(0, 0, oom_killed=True)
    plan = plan_workload(desired(spec), [killed], {}, NOW + 1)
    (report,) = of(plan, Report)
    assert "OOMKilled" in report.message
    assert plan.memory[0].last_reason == "OOMKilled"
    assert of(plan, Start) == [Start(killed.handle, 0, restart=True, reason="Restarted")]


def test_liveness_failure_stops_the_replica_and_it_restarts_as_such() -> None:
    spec = always(initial=1.0)
    unhealthy = obs(0, live=False, ready=True)
    plan = plan_workload(desired(spec), [unhealthy], {}, NOW)
    unhealthy_report, stop = plan.actions
    assert stop == Stop(unhealthy.handle, 0, "LivenessProbeFailed")
    assert isinstance(unhealthy_report, Report) and unhealthy_report.reason == "Unhealthy"
    assert plan.memory[0].stopped_by_us == "LivenessProbeFailed"
    assert plan.requeue_after == 0.0

    stopped = Observed(
        status(
            0,
            1,
            EXITED,
            exit_code=143,
            started=NOW - 60,
            finished=NOW,
            container_id=unhealthy.handle.id,
        )
    )
    after = plan_workload(desired(spec), [stopped], plan.memory, NOW + 1)
    (report,) = of(after, Report)
    assert "LivenessProbeFailed" in report.message
    assert of(after, Start) == [Start(stopped.handle, 0, restart=True, reason="Restarted")]
    assert after.memory[0].stopped_by_us == ""
    assert after.memory[0].last_reason == "LivenessProbeFailed"


def test_memory_of_another_container_is_not_used() -> None:
    crashed = exited(0, 1)
    stale = ReplicaMemory(container_id="gone", restart_count=9, backoff_step=9, reported_exit="x")
    plan = plan_workload(desired(always(initial=1.0)), [crashed], {0: stale}, NOW + 1)
    assert len(of(plan, Report)) == 1
    assert plan.memory[0].restart_count == 1


def test_busy_engine_states_are_looked_at_again_soon() -> None:
    for state in (ReplicaState.RESTARTING, ReplicaState.PAUSED, ReplicaState.UNKNOWN):
        plan = plan_workload(desired(make_spec(replicas=1)), [obs(0, state=state)], {}, NOW)
        assert plan.actions == []
        assert plan.requeue_after == PROGRESS_POLL_SECONDS


def test_exit_without_finish_time_is_still_restarted() -> None:
    spec = always(initial=1.0)
    crashed = obs(0, state=EXITED, exit_code=1)  # engine gave no FinishedAt
    memory: dict[int, ReplicaMemory] = {}
    started = False
    for step in range(10):
        plan = plan_workload(desired(spec), [crashed], memory, NOW + step)
        memory = dict(plan.memory)
        started = started or bool(of(plan, Start))
    assert started


# --- deletion ------------------------------------------------------------------


def test_deleting_removes_everything_and_finishes_when_nothing_is_left() -> None:
    have = [obs(0), obs(1, 2), obs(9, target="other"), obs(1, state=EXITED, exit_code=1)]
    plan = plan_workload(desired(deleting=True, generation=2), have, {}, NOW)
    assert all(isinstance(a, Remove) and a.reason == "WorkloadDeleted" for a in plan.actions)
    assert len(of(plan, Remove)) == len(plan.actions) == len(have)
    assert {a.handle for a in of(plan, Remove)} == {o.handle for o in have}
    assert not plan.finished_deleting
    assert plan.requeue_after == PROGRESS_POLL_SECONDS
    assert plan.summary is not None
    assert plan.summary.phase is Phase.DELETING

    done = plan_workload(desired(deleting=True), [], {}, NOW)
    assert done.actions == []
    assert done.finished_deleting
    assert done.summary is not None
    assert done.summary.phase is Phase.DELETING


# --- summary -------------------------------------------------------------------


def test_summary_counts_during_an_update() -> None:
    have = [
        obs(0, 2),  # new, ready
        obs(1, 2, ready=False),  # new, running, not ready
        obs(1, 1, state=EXITED, exit_code=143),  # its old one, stopped
        obs(2, 1),  # old, ready
    ]
    plan = plan_workload(desired(make_spec(replicas=3), generation=2), have, {}, NOW)
    summary = plan.summary
    assert summary is not None
    assert (summary.desired, summary.updated, summary.running, summary.ready) == (3, 2, 2, 1)
    assert summary.available == 2  # indices 0 and 2 serve
    assert summary.phase is Phase.PROGRESSING


def test_ready_only_when_all_current_replicas_are_ready_and_nothing_else_is_left() -> None:
    spec = make_spec(replicas=2)
    ready = plan_workload(desired(spec, generation=2), [obs(0, 2), obs(1, 2)], {}, NOW)
    assert ready.summary is not None
    assert ready.summary.phase is Phase.READY
    assert ready.requeue_after is None

    one_not_ready = plan_workload(
        desired(spec, generation=2), [obs(0, 2), obs(1, 2, ready=False)], {}, NOW
    )
    assert one_not_ready.summary is not None
    assert one_not_ready.summary.phase is Phase.PROGRESSING

    old_left = plan_workload(
        desired(spec, generation=2), [obs(0, 2), obs(1, 2), obs(1, 1, state=EXITED)], {}, NOW
    )
    assert old_left.summary is not None
    assert old_left.summary.ready == 2
    assert old_left.summary.phase is Phase.PROGRESSING

    surplus = plan_workload(desired(spec, generation=2), [obs(0, 2), obs(1, 2), obs(2, 2)], {}, NOW)
    assert surplus.summary is not None
    assert surplus.summary.phase is Phase.PROGRESSING


# --- determinism ---------------------------------------------------------------


def _mixed_world() -> tuple[Desired, list[Observed], dict[int, ReplicaMemory]]:
    have = [
        obs(0, 2, created=NOW - 10),
        obs(0, 1, created=NOW - 500),
        exited(1, 1, generation=2, created=NOW - 20),
        obs(2, 1, created=NOW - 500),
        obs(3, 2, state=CREATED, created=NOW - 5),
        obs(4, 2, created=NOW - 30),
        obs(7, 2, created=NOW - 40),
        obs(5, 2, target="other", created=NOW - 50),
    ]
    memory = {1: remembered(have[2], restart_count=1, backoff_step=1)}
    return desired(make_spec(replicas=6), generation=2), have, memory


def test_same_inputs_give_the_same_plan() -> None:
    want, have, memory = _mixed_world()
    first = plan_workload(want, have, memory, NOW)
    second = plan_workload(want, list(have), dict(memory), NOW)
    assert first == second
    assert first.actions  # it does decide something


def test_the_order_of_observations_does_not_matter() -> None:
    want, have, memory = _mixed_world()
    reference = plan_workload(want, have, memory, NOW)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = list(have)
        rng.shuffle(shuffled)
        plan = plan_workload(want, shuffled, memory, NOW)
        assert plan.actions == reference.actions
        assert plan.memory == reference.memory
        assert plan.summary == reference.summary
        assert plan.requeue_after == reference.requeue_after


# --- properties ------------------------------------------------------------------

_states = st.sampled_from(list(ReplicaState))


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Desired, list[Observed], dict[int, ReplicaMemory], float]:
    replicas = draw(st.integers(0, 5))
    generation = draw(st.integers(1, 3))
    policy = draw(st.sampled_from(["always", "on-failure", "never"]))
    restart: dict[str, Any] = {"policy": policy}
    if policy == "on-failure" and draw(st.booleans()):
        restart["maxRetries"] = draw(st.integers(0, 3))
    ports = [{"containerPort": 80, "hostPort": 20000}] if draw(st.booleans()) else []
    spec = make_spec(replicas=replicas, restart=restart, ports=ports)
    want = desired(
        spec,
        generation=generation,
        deleting=draw(st.booleans()),
        max_unavailable=draw(st.integers(0, 3)),
    )
    items: list[Observed] = []
    for n in range(draw(st.integers(0, 8))):
        state = draw(_states)
        finished = NOW - draw(st.floats(0, 2000)) if state is EXITED else None
        items.append(
            Observed(
                status(
                    draw(st.integers(-1, 7)),
                    draw(st.integers(1, 3)),
                    state,
                    target=draw(st.sampled_from([TARGET, TARGET, "other"])),
                    exit_code=draw(st.sampled_from([0, 1, 137])) if state is EXITED else None,
                    oom_killed=draw(st.booleans()) if state is EXITED else False,
                    created=NOW - draw(st.integers(0, 1000)),
                    started=None if finished is None else finished - draw(st.floats(0, 1000)),
                    finished=finished,
                    container_id=f"h{n}",
                ),
                ready=draw(st.booleans()),
                live=draw(st.booleans()),
            )
        )
    memory = {
        i: ReplicaMemory(
            container_id=f"h{draw(st.integers(0, 8))}",
            restart_count=draw(st.integers(0, 5)),
            backoff_step=draw(st.integers(0, 5)),
        )
        for i in draw(st.sets(st.integers(0, 6), max_size=3))
    }
    return want, items, memory, NOW + draw(st.floats(0, 5000))


def _check_plan_invariants(want: Desired, items: Sequence[Observed], plan: Plan) -> None:
    handles = {o.handle for o in items}
    creates = of(plan, Create)
    if want.deleting:
        assert all(isinstance(a, Remove) for a in plan.actions)
        assert len(of(plan, Remove)) == len(plan.actions)
        assert {a.handle for a in of(plan, Remove)} == handles
        assert plan.finished_deleting == (not items)
        return
    assert not plan.finished_deleting
    created_indices = [c.index for c in creates]
    assert len(created_indices) == len(set(created_indices)), "two creates for one index"
    for create in creates:
        assert 0 <= create.index < want.replicas
        assert create.generation == want.generation
        assert create.target == want.target
        assert not any(
            o.index == create.index
            and o.generation == want.generation
            and o.handle.target == want.target
            for o in items
        ), "a second current-generation container for one index"
    by_handle = {o.handle: o for o in items}
    for action in plan.actions:
        if isinstance(action, Start | Stop | Remove):
            assert action.handle in handles
        if isinstance(action, Start):
            assert not by_handle[action.handle].running, "start of a running replica"
            assert by_handle[action.handle].generation == want.generation
        if isinstance(action, Stop):
            assert by_handle[action.handle].running, "stop of a replica that is not running"
    removed = [a.handle for a in plan.actions if isinstance(a, Remove)]
    assert len(removed) == len(set(removed))
    started = {a.handle for a in plan.actions if isinstance(a, Start)}
    assert not started & set(removed), "a replica both started and removed"
    # after the plan, every wanted index keeps or gets at most one current replica here
    for index in range(want.replicas):
        kept = [
            o
            for o in items
            if o.index == index
            and o.generation == want.generation
            and o.handle.target == want.target
            and o.handle not in removed
        ]
        assert len(kept) + created_indices.count(index) <= 1
    assert plan.requeue_after is None or plan.requeue_after >= 0


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(worlds())
def test_plan_invariants_hold_for_any_observed_world(
    world: tuple[Desired, list[Observed], dict[int, ReplicaMemory], float],
) -> None:
    want, items, memory, now = world
    plan = plan_workload(want, items, memory, now)
    _check_plan_invariants(want, items, plan)
    assert plan_workload(want, items, memory, now) == plan


def test_an_index_without_a_slot_is_not_created_and_says_so() -> None:
    want = replace_desired(desired(make_spec(replicas=2)), target="", slots={0: ("a", 1)})
    plan = plan_workload(want, [], {}, NOW)
    assert of(plan, Create) == [Create(0, 1, "a", True, "Scheduled", 1)]
    assert plan.summary is not None
    assert "replica 1: not placed" in plan.summary.reasons


def _published(item: Observed, host_port: int) -> Observed:
    from dataclasses import replace

    from portway.drivers.base import PublishedPort

    ports = (PublishedPort(8080, "tcp", "127.0.0.1", host_port),)
    return Observed(replace(item.status, ports=ports), ready=item.ready, live=item.live)


def test_a_copy_behind_the_ingress_is_drained_before_it_is_removed() -> None:
    from portway.controller.plan import Drain

    spec = make_spec(replicas=1)
    old = _published(obs(0, 1), 40001)
    new = _published(obs(0, 2), 40002)
    want = replace_desired(desired(spec, generation=2), drain_seconds=5.0)

    first = plan_workload(want, [old, new], {}, NOW)
    assert of(first, Remove) == []
    assert of(first, Drain) == [Drain(old.handle, 0, "Superseded", 5.0)]
    assert first.draining == {old.handle.id: NOW}
    assert first.requeue_after is not None and first.requeue_after <= 5.0

    halfway = replace_desired(want, draining=first.draining)
    second = plan_workload(halfway, [old, new], {}, NOW + 2)
    assert of(second, Remove) == [] and of(second, Drain) == []
    assert second.draining == {old.handle.id: NOW}
    assert second.requeue_after is not None and second.requeue_after <= 3.0

    third = plan_workload(halfway, [old, new], {}, NOW + 5)
    assert of(third, Remove) == [Remove(old.handle, 0, "Superseded")]
    assert third.draining == {}


def test_without_ingress_or_ports_a_copy_is_removed_at_once() -> None:
    spec = make_spec(replicas=1)
    old, new = obs(0, 1), obs(0, 2)  # no published ports
    want = replace_desired(desired(spec, generation=2), drain_seconds=5.0)
    assert of(plan_workload(want, [old, new], {}, NOW), Remove) == [
        Remove(old.handle, 0, "Superseded")
    ]
    scaled = _published(obs(3, 1), 40003)
    plan = plan_workload(replace_desired(desired(spec), drain_seconds=0.0), [scaled], {}, NOW)
    assert of(plan, Remove) == [Remove(scaled.handle, 3, "ScaledDown")]
