"""The Reconciler end to end against the in-memory FakeDriver and a real store.

Each test writes a Workload record the way ``apply`` does and drives
``reconcile`` pass by pass, moving a fake clock instead of sleeping.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.fakes import FakeClock, FakeDriver

from portway.controller.probes import Prober
from portway.controller.reconciler import (
    UNHEALTHY_RETRY_SECONDS,
    ReconcileError,
    Reconciler,
    Settings,
)
from portway.controller.records import (
    CLUSTER_NAMESPACE,
    KIND_REPLICA,
    KIND_TARGET,
    KIND_WORKLOAD,
    template_generation_of,
    template_hash_of,
    workload_spec_envelope,
)
from portway.controller.targets import TargetPool
from portway.drivers.base import ExecResult, ReplicaRequest, ReplicaState
from portway.errors import TemporaryDriverError
from portway.spec.model import Workload
from portway.store import Record, Store

NS, NAME = "ns", "web"
KEY = f"{NS}/{NAME}"
TARGET = "local"


@dataclass
class Env:
    store: Store
    clock: FakeClock
    fake: FakeDriver
    pool: TargetPool
    reconciler: Reconciler

    # --- writing desired state the way the service does -------------------

    def apply(self, **spec: Any) -> Record:
        workload = make_workload(**spec)
        template_hash = workload.spec.template_hash()
        existing = self.store.get(KIND_WORKLOAD, NS, NAME)
        if existing is None:
            envelope = workload_spec_envelope(workload, 1, template_hash)
            return self.store.create(KIND_WORKLOAD, NS, NAME, envelope)
        generation = template_generation_of(existing)
        if template_hash_of(existing) != template_hash:
            generation += 1
        return self.store.update_spec(
            existing, workload_spec_envelope(workload, generation, template_hash)
        )

    def delete(self) -> None:
        self.store.mark_deleting(self.store.require(KIND_WORKLOAD, NS, NAME))

    def restarted_reconciler(self) -> Reconciler:
        """The reconciler of a new controller process: it remembers no probe
        results, only what the store holds. The caller closes it."""
        return Reconciler(
            self.store,
            self.pool,
            Prober(self.clock),
            settings=Settings(stop_timeout=0, action_workers=4),
            clock=self.clock,
        )

    # --- driving ----------------------------------------------------------

    def reconcile(self) -> float | None:
        return self.reconciler.reconcile(KEY)

    def converge(self, until: Callable[[], bool], max_passes: int = 30) -> int:
        """Reconcile until ``until()`` holds, advancing the clock as asked."""
        for passes in range(1, max_passes + 1):
            wake = self.reconcile()
            if until():
                return passes
            self.clock.advance(1.0 if wake is None else max(wake, 0.01))
        raise AssertionError(f"not converged after {max_passes} passes: {self.status()}")

    def request(self, index: int, generation: int = 1, **spec: Any) -> ReplicaRequest:
        """What the reconciler asks the driver for (names and labels included),
        with the placement epoch the scheduler gave the index."""
        workload = make_workload(**spec)
        return ReplicaRequest(
            NS,
            NAME,
            index,
            generation,
            workload.spec.template_hash(),
            workload.spec,
            cluster=self.reconciler.cluster,
            epoch=self.epoch(index),
        )

    def epoch(self, index: int) -> int:
        slot = self.status().get("placements", {}).get(str(index), {})
        return int(slot.get("epoch", 0))

    def container_name(self, index: int, generation: int = 1) -> str:
        return self.request(index, generation).name

    # --- reading ----------------------------------------------------------

    def workload(self) -> Record | None:
        return self.store.get(KIND_WORKLOAD, NS, NAME)

    def status(self) -> dict[str, Any]:
        record = self.workload()
        return {} if record is None else dict(record.status)

    def phase(self) -> str | None:
        return self.status().get("phase")

    def replicas(self) -> dict[int, dict[str, Any]]:
        return {int(r.status["index"]): dict(r.status) for r in self.store.list(KIND_REPLICA, NS)}

    def events(self) -> list[str]:
        return [e.reason for e in self.store.events(KIND_WORKLOAD, NS, NAME, limit=10_000)]

    def counted(self, reason: str) -> int:
        """How often ``reason`` happened (repeats are one event with a count)."""
        found = self.store.events(KIND_WORKLOAD, NS, NAME, limit=10_000)
        return sum(e.count for e in found if e.reason == reason)

    def event_messages(self, reason: str) -> list[str]:
        found = self.store.events(KIND_WORKLOAD, NS, NAME, limit=10_000)
        return [e.message for e in found if e.reason == reason]

    def running_ready(self, count: int, generation: int = 1) -> Callable[[], bool]:
        def check() -> bool:
            containers = self.fake.containers()
            return (
                self.phase() == "Ready"
                and len(containers) == count
                and all(
                    c.state is ReplicaState.RUNNING and c.generation == generation
                    for c in containers
                )
            )

        return check


def make_workload(**spec: Any) -> Workload:
    return Workload.model_validate(
        {
            "apiVersion": "portway.dev/v1",
            "kind": "Workload",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {"image": "portway/app:1", "replicas": 3, **spec},
        }
    )


def make_env(store: Store, *, list_details: bool = True) -> Iterator[Env]:
    clock = FakeClock()
    fake = FakeDriver(TARGET, clock=clock, list_details=list_details)
    store.create(
        KIND_TARGET,
        CLUSTER_NAMESPACE,
        TARGET,
        {"driver": "fake", "address": "fake://x", "labels": {}},
        {"health": "healthy"},
    )
    pool = TargetPool(store, opener=lambda name, driver, address: fake)
    reconciler = Reconciler(
        store,
        pool,
        Prober(clock),
        settings=Settings(stop_timeout=0, action_workers=4),
        clock=clock,
    )
    try:
        yield Env(store, clock, fake, pool, reconciler)
    finally:
        reconciler.close()


@pytest.fixture
def env(store: Store) -> Iterator[Env]:
    yield from make_env(store)


@pytest.fixture
def docker_like_env(store: Store) -> Iterator[Env]:
    """A driver whose list omits start/finish times, like Docker's container list."""
    yield from make_env(store, list_details=False)


RESTART = {"policy": "always", "initialBackoffSeconds": 2, "maxBackoffSeconds": 8}


# --- converging -------------------------------------------------------------------


def test_converges_to_the_desired_number_of_running_replicas(env: Env) -> None:
    env.apply(replicas=3)
    wake = env.reconcile()
    assert len(env.fake.running()) == 3
    assert wake == 0.0  # it acted, so it looks at the result at once
    assert env.phase() == "Progressing"

    assert env.reconcile() is None  # nothing left to do, no probes to run
    status = env.status()
    assert status["phase"] == "Ready"
    assert status["target"] == TARGET
    assert status["templateGeneration"] == 1
    assert status["observedGeneration"] == env.workload().generation  # type: ignore[union-attr]
    assert status["replicas"] == {
        "desired": 3,
        "updated": 3,
        "running": 3,
        "ready": 3,
        "available": 3,
    }
    replicas = env.replicas()
    assert sorted(replicas) == [0, 1, 2]
    for index, replica in replicas.items():
        container = env.fake.container(index)
        assert replica["container_id"] == container.id
        assert replica["container_name"] == env.container_name(index) == container.name
        assert (replica["state"], replica["ready"]) == ("running", True)
        assert (replica["restart_count"], replica["generation"]) == (0, 1)
        assert replica["target"] == TARGET
    assert Counter(env.events()) == {"Placed": 3, "Scheduled": 3, "Started": 3, "Ready": 3}

    # level-triggered and idempotent: more passes change nothing
    env.fake.calls.clear()
    for _ in range(3):
        env.reconcile()
    assert {op for op, _ in env.fake.calls} == {"list"}
    assert Counter(env.events()) == {"Placed": 3, "Scheduled": 3, "Started": 3, "Ready": 3}


def test_published_ports_are_recorded_as_endpoints(env: Env) -> None:
    env.apply(replicas=2, ports=[{"containerPort": 80, "hostPort": 18080}])
    env.converge(env.running_ready(2))
    replicas = env.replicas()
    assert replicas[0]["endpoints"] == ["tcp 80 -> 127.0.0.1:18080"]
    assert replicas[1]["endpoints"] == ["tcp 80 -> 127.0.0.1:18081"]


def test_a_missing_workload_is_nothing_to_do(env: Env) -> None:
    assert env.reconcile() is None
    assert env.fake.containers() == []


def test_unplaceable_workload_waits_and_says_why(env: Env) -> None:
    env.apply(replicas=1, placement={"targetSelector": {"zone": "mars"}})
    assert env.reconcile() == pytest.approx(UNHEALTHY_RETRY_SECONDS * 2)
    assert env.fake.containers() == []
    status = env.status()
    assert status["phase"] == "Pending"
    assert status["message"] == "0/1 targets available: 1 do not match targetSelector"
    env.reconcile()
    assert env.events() == ["FailedScheduling"]  # recorded once, not every pass


# --- restarts ----------------------------------------------------------------------


def test_a_crashed_replica_restarts_after_a_growing_backoff(env: Env) -> None:
    env.apply(replicas=2, restart=RESTART)
    env.converge(env.running_ready(2))

    crashed = env.fake.container(0)
    env.fake.crash(crashed, exit_code=3)
    env.clock.advance(0.5)
    wake = env.reconcile()
    assert wake == pytest.approx(1.5)  # 2 s backoff from the exit
    assert env.fake.container(0).state is ReplicaState.EXITED
    assert env.phase() == "Degraded"
    replica = env.replicas()[0]
    assert (replica["state"], replica["last_exit_code"], replica["restart_count"]) == (
        "exited",
        3,
        0,
    )
    exited, backoff, degraded = env.store.events(KIND_WORKLOAD, NS, NAME, limit=3)
    assert exited.reason == "Crashed"
    assert exited.type == "Warning"
    assert "exit code 3" in exited.message
    assert (exited.replica, exited.target) == (0, TARGET)
    assert backoff.reason == "BackOff" and "back-off of 2s" in backoff.message
    assert degraded.reason == "Degraded" and degraded.replica is None

    env.clock.advance(1.4)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.EXITED
    assert env.events().count("Crashed") == 1  # reported once

    env.clock.advance(0.1)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.RUNNING
    assert env.fake.container(0).id == crashed.id  # restarted in place
    assert env.replicas()[0]["restart_count"] == 1
    assert env.events()[-1] == "Restarted"
    env.reconcile()
    assert env.phase() == "Ready"

    # second crash: twice the delay
    env.fake.crash(crashed, exit_code=3)
    env.reconcile()
    env.clock.advance(3.9)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.EXITED
    env.clock.advance(0.1)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.RUNNING
    assert env.replicas()[0]["restart_count"] == 2
    assert env.replicas()[1]["restart_count"] == 0
    # repeats are one event with a count (aggregated like kubectl's)
    assert env.counted("Restarted") == 2
    assert env.counted("Crashed") == 2
    # no counters in messages: a crash loop folds into one Degraded event
    assert env.counted("Degraded") == 2 and env.events().count("Degraded") == 1
    assert env.event_messages("BackOff") == [
        "replica 0 restarts after a back-off of 2s",
        "replica 0 restarts after a back-off of 4s",
    ]


def test_restart_counts_survive_a_controller_restart(env: Env) -> None:
    env.apply(replicas=1, restart=RESTART)
    env.converge(env.running_ready(1))
    env.fake.crash(env.fake.container(0))
    env.clock.advance(2.0)
    env.reconcile()
    assert env.replicas()[0]["restart_count"] == 1

    # a new controller: fresh prober and reconciler, same store and engine
    env.reconciler.close()
    env.reconciler = Reconciler(
        env.store,
        TargetPool(env.store, opener=lambda *_: env.fake),
        Prober(env.clock),
        clock=env.clock,
    )
    env.fake.crash(env.fake.container(0))
    env.reconcile()
    env.clock.advance(3.9)  # the second restart waits 4 s: backoff was remembered
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.EXITED
    env.clock.advance(0.1)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.RUNNING
    assert env.replicas()[0]["restart_count"] == 2


def test_an_oom_kill_is_reported(env: Env) -> None:
    env.apply(replicas=1, restart={"policy": "on-failure", "initialBackoffSeconds": 1})
    env.converge(env.running_ready(1))
    env.fake.oom(env.fake.container(0))
    env.reconcile()
    (message,) = env.event_messages("OOMKilled")  # the reason metrics count by
    assert "exit code 137" in message
    assert env.event_messages("Crashed") == []
    assert env.replicas()[0]["last_reason"] == "OOMKilled"
    assert "OOMKilled" in env.status()["message"]
    env.clock.advance(1.0)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.RUNNING


def test_a_completed_job_is_not_restarted(env: Env) -> None:
    env.apply(replicas=2, restart={"policy": "on-failure"})
    env.converge(env.running_ready(2))
    for container in env.fake.containers():
        env.fake.crash(container, exit_code=0)
    env.clock.advance(3600)
    env.reconcile()
    env.reconcile()
    assert all(c.state is ReplicaState.EXITED for c in env.fake.containers())
    assert env.phase() == "Completed"
    assert "Restarted" not in env.events()


def test_on_failure_gives_up_after_max_retries(env: Env) -> None:
    env.apply(
        replicas=1,
        restart={"policy": "on-failure", "maxRetries": 1, "initialBackoffSeconds": 1},
    )
    env.converge(env.running_ready(1))
    env.fake.crash(env.fake.container(0), exit_code=1)
    env.clock.advance(1)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.RUNNING
    env.fake.crash(env.fake.container(0), exit_code=1)
    env.clock.advance(3600)
    assert env.reconcile() is None
    assert env.fake.container(0).state is ReplicaState.EXITED
    assert env.phase() == "Degraded"
    assert env.status()["message"] == "replica 0: Error, exit code 1"
    assert env.replicas()[0]["restart_count"] == 1


def test_a_failed_liveness_probe_stops_and_restarts_the_replica(env: Env) -> None:
    env.apply(
        replicas=1,
        restart={"policy": "always", "initialBackoffSeconds": 1},
        probes={
            "liveness": {"exec": {"command": ["check"]}, "periodSeconds": 5, "failureThreshold": 1}
        },
    )
    env.converge(env.running_ready(1))
    container = env.fake.container(0)
    env.fake.exec_results[container.id] = ExecResult(1, b"dead")
    env.clock.advance(5)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.EXITED
    (stopped,) = [e for e in env.store.events(KIND_WORKLOAD, NS, NAME) if e.reason == "Stopped"]
    assert stopped.type == "Warning"
    assert "LivenessProbeFailed" in stopped.message

    env.fake.exec_results.pop(container.id)  # healthy again after a restart
    env.clock.advance(0.5)
    env.reconcile()
    (exited,) = env.event_messages("Crashed")
    assert "LivenessProbeFailed" in exited
    env.clock.advance(0.5)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.RUNNING
    # the new run is judged afresh: it is not stopped again
    for _ in range(3):
        env.clock.advance(0.2)
        env.reconcile()
    assert env.fake.container(0).state is ReplicaState.RUNNING
    assert env.events().count("Stopped") == 1
    assert env.replicas()[0]["restart_count"] == 1


def test_a_restarted_replica_is_probed_afresh_with_a_docker_like_list(
    docker_like_env: Env,
) -> None:
    env = docker_like_env
    env.apply(
        replicas=1,
        restart={"policy": "always", "initialBackoffSeconds": 1},
        probes={
            "liveness": {"exec": {"command": ["check"]}, "periodSeconds": 5, "failureThreshold": 1}
        },
    )
    env.converge(env.running_ready(1))
    container = env.fake.container(0)
    env.fake.exec_results[container.id] = ExecResult(1, b"dead")
    env.clock.advance(5)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.EXITED
    env.fake.exec_results.pop(container.id)  # healthy from now on
    env.clock.advance(1)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.RUNNING
    env.clock.advance(0.5)
    env.reconcile()
    assert env.fake.container(0).state is ReplicaState.RUNNING
    assert env.events().count("Stopped") == 1


def test_a_restart_that_failed_is_not_counted(env: Env) -> None:
    env.apply(replicas=1, restart=RESTART)
    env.converge(env.running_ready(1))
    env.fake.crash(env.fake.container(0))
    env.reconcile()  # reported; due in 2 s
    env.fake.fail("start")
    env.clock.advance(2)
    with pytest.raises(ReconcileError):
        env.reconcile()
    env.fake.heal()
    env.converge(env.running_ready(1))
    assert env.events().count("Restarted") == 1
    assert env.replicas()[0]["restart_count"] == 1


# --- scaling, updates, deletion ---------------------------------------------------


def test_scale_down_removes_the_highest_indices(env: Env) -> None:
    env.apply(replicas=3)
    env.converge(env.running_ready(3))
    kept = env.fake.container(0).id
    env.apply(replicas=1)
    assert template_generation_of(env.workload()) == 1  # type: ignore[arg-type]
    env.reconcile()
    assert [c.id for c in env.fake.containers()] == [kept]
    assert sorted(env.replicas()) == [0]
    removed = env.event_messages("Removed")
    assert len(removed) == 2
    assert all("ScaledDown" in m for m in removed)
    env.reconcile()
    assert env.phase() == "Ready"
    assert env.status()["replicas"]["desired"] == 1


def test_a_new_workload_with_zero_replicas_is_ready_at_once(env: Env) -> None:
    env.apply(replicas=0)
    assert env.reconcile() is None
    assert env.fake.containers() == []
    status = env.status()
    assert status["phase"] == "Ready"
    assert status["observedGeneration"] == env.workload().generation  # type: ignore[union-attr]
    assert status["replicas"]["desired"] == 0
    env.apply(replicas=2)  # and it scales up from there
    env.converge(env.running_ready(2))
    assert env.phase() == "Ready"


def test_scale_to_zero_removes_every_replica_and_is_ready(env: Env) -> None:
    env.apply(replicas=2)
    env.converge(env.running_ready(2))
    env.apply(replicas=0)
    env.converge(lambda: not env.fake.containers() and env.phase() == "Ready")
    assert env.replicas() == {}
    assert env.status()["replicas"]["desired"] == 0


def test_scale_up_after_scale_down_reuses_indices(env: Env) -> None:
    env.apply(replicas=2)
    env.converge(env.running_ready(2))
    env.apply(replicas=4)
    env.converge(env.running_ready(4))
    assert sorted(env.replicas()) == [0, 1, 2, 3]
    assert Counter(env.events())["Scheduled"] == 4


def test_a_template_change_rolls_replicas_one_at_a_time(env: Env) -> None:
    env.apply(replicas=3, env={"VERSION": "1"})
    env.converge(env.running_ready(3))
    old_ids = {c.id for c in env.fake.containers()}
    env.apply(replicas=3, env={"VERSION": "2"})
    record = env.workload()
    assert record is not None
    assert template_generation_of(record) == 2

    passes = 0
    while not env.running_ready(3, generation=2)():
        passes += 1
        assert passes <= 20, env.status()
        wake = env.reconcile()
        containers = env.fake.containers()
        per_index = Counter(c.index for c in containers)
        assert sum(1 for n in per_index.values() if n > 1) <= 1, containers
        serving = sum(1 for c in containers if c.state is ReplicaState.RUNNING)
        assert serving >= 3  # max_unavailable 1, and the new one starts before the old goes
        env.clock.advance(wake if wake is not None else 1.0)
    # one index per pass; pass 4 removes the last old replica, pass 5 sees it Ready
    assert passes == 5
    assert not old_ids & {c.id for c in env.fake.containers()}
    assert Counter(env.events())["Scheduled"] == 6
    superseded = [m for m in env.event_messages("Removed") if "Superseded" in m]
    assert len(superseded) == 3
    assert all(r["generation"] == 2 for r in env.replicas().values())
    assert env.status()["templateGeneration"] == 2
    assert env.status()["replicas"]["updated"] == 3


def test_a_rollout_that_never_becomes_ready_keeps_the_old_replicas(env: Env) -> None:
    probes = {"readiness": {"exec": {"command": ["ready"]}, "periodSeconds": 1}}
    env.apply(replicas=3, probes=probes)
    env.converge(env.running_ready(3))
    old = {c.index: c.id for c in env.fake.containers()}
    env.fake.exec_default = ExecResult(1, b"not ready")  # every new replica
    for container in env.fake.containers():
        env.fake.exec_results[container.id] = ExecResult(0, b"")  # the old ones stay fine
    env.apply(replicas=3, probes=probes, image="portway/app:2")
    for _ in range(10):
        env.reconcile()
        env.clock.advance(1.0)
    containers = env.fake.containers()
    assert all(old[i] in {c.id for c in containers} for i in range(3))
    assert [c.index for c in containers if c.generation == 2] == [0]
    assert all(c.state is ReplicaState.RUNNING for c in containers)
    assert env.phase() == "Progressing"
    assert env.status()["replicas"]["available"] == 3

    env.fake.exec_default = ExecResult(0, b"")
    env.converge(env.running_ready(3, generation=2))


def test_fixed_host_ports_are_released_before_the_new_replica_starts(env: Env) -> None:
    ports = [{"containerPort": 80, "hostPort": 18080}]
    env.apply(replicas=2, ports=ports, env={"V": "1"})
    env.converge(env.running_ready(2))
    old = {c.index: c.name for c in env.fake.containers()}
    env.fake.calls.clear()
    env.apply(replicas=2, ports=ports, env={"V": "2"})
    # the fake engine refuses to start on a port in use: converging proves the order
    env.converge(env.running_ready(2, generation=2))
    assert "Failed" not in env.events()
    for index in range(2):
        new = env.container_name(index, 2)
        assert env.fake.calls.index(("stop", old[index])) < env.fake.calls.index(("start", new))
    assert sorted(c.ports[0].host_port for c in env.fake.containers()) == [18080, 18081]


def test_deletion_removes_containers_then_records(env: Env) -> None:
    env.apply(replicas=2)
    env.converge(env.running_ready(2))
    env.delete()
    wake = env.reconcile()
    assert env.fake.containers() == []
    assert wake == 0.0  # it acted, so it looks at the result at once
    assert env.phase() == "Deleting"
    assert env.replicas() == {}
    assert Counter(m.split("(")[1].split(")")[0] for m in env.event_messages("Removed")) == {
        "WorkloadDeleted": 2
    }

    assert env.reconcile() is None
    assert env.workload() is None
    assert env.store.list(KIND_REPLICA) == []
    assert env.events()[-1] == "Deleted"
    assert env.reconcile() is None  # gone: nothing to do


def test_a_replica_on_a_removed_engine_object_is_recreated(env: Env) -> None:
    env.apply(replicas=2)
    env.converge(env.running_ready(2))
    gone = env.fake.container(1)
    (status,) = [s for s in env.fake.list_owned({}) if s.handle.id == gone.id]
    env.fake.destroy(status.handle)  # removed behind the controller's back
    env.converge(env.running_ready(2))
    assert env.fake.container(1).id != gone.id
    assert env.replicas()[1]["container_id"] == env.fake.container(1).id


def test_replica_record_shows_the_kept_duplicate(env: Env) -> None:
    env.apply(replicas=1)
    env.converge(env.running_ready(1))
    kept = env.fake.container(0)
    request = env.request(0, replicas=1)
    env.fake.add_container(request, name=request.name + "-copy", state=ReplicaState.CREATED)
    env.reconcile()
    assert [c.id for c in env.fake.containers()] == [kept.id]  # the duplicate was removed
    replica = env.replicas()[0]
    assert replica["container_id"] == kept.id
    assert replica["state"] == "running"


def test_a_duplicate_is_removed(env: Env) -> None:
    env.apply(replicas=1)
    env.converge(env.running_ready(1))
    kept = env.fake.container(0)
    request = env.request(0, replicas=1)
    env.fake.add_container(request, name=request.name + "-copy", state=ReplicaState.CREATED)
    env.reconcile()
    assert [c.id for c in env.fake.containers()] == [kept.id]
    assert any("Duplicate" in m for m in env.event_messages("Removed"))
    env.converge(env.running_ready(1))
    assert env.replicas()[0]["container_id"] == kept.id


# --- engine trouble ------------------------------------------------------------------


def test_an_engine_outage_loses_nothing_and_converges_after_recovery(env: Env) -> None:
    env.apply(replicas=2, restart=RESTART)
    env.converge(env.running_ready(2))
    before_containers = [(c.id, c.state) for c in env.fake.containers()]
    before_replicas = env.replicas()

    env.fake.outage()
    wake = env.reconcile()
    assert wake == pytest.approx(1.0)  # the driver's retry hint
    assert "engine unreachable" in env.status()["message"]
    assert [(c.id, c.state) for c in env.fake.containers()] == before_containers
    assert env.replicas() == before_replicas

    # the health check notices; passes then wait for the target
    (view,) = env.pool.views()
    env.pool.check(view)
    assert env.pool.views()[0].health == "undetected"
    assert env.reconcile() == pytest.approx(UNHEALTHY_RETRY_SECONDS)
    assert env.status()["message"].startswith(f"waiting for target {TARGET}")
    assert env.replicas() == before_replicas
    target_events = [e.reason for e in env.store.events(KIND_TARGET)]
    assert target_events == ["TargetUnhealthy"]

    # meanwhile a replica crashed; the engine comes back
    env.fake.outage(False)
    env.fake.crash(env.fake.container(1))
    env.pool.check(env.pool.views()[0])
    assert env.pool.views()[0].healthy
    env.converge(env.running_ready(2))
    assert [c.id for c in env.fake.containers()] == [cid for cid, _ in before_containers]
    assert env.replicas()[1]["restart_count"] == 1


def test_failed_actions_surface_as_a_reconcile_error_and_are_retried(env: Env) -> None:
    env.apply(replicas=2)
    env.fake.fail("start")
    with pytest.raises(ReconcileError) as caught:
        env.reconcile()
    assert set(caught.value.failures) == {0, 1}
    assert not caught.value.permanent
    assert all(c.state is ReplicaState.CREATED for c in env.fake.containers())
    assert env.events().count("Failed") == 2
    replicas = env.replicas()
    assert all("injected failure" in r["message"] for r in replicas.values())
    assert "injected failure" in env.status()["message"]

    env.fake.heal()
    env.converge(env.running_ready(2))
    assert len(env.fake.containers()) == 2  # the created ones were started, not duplicated
    assert all(r["message"] == "" for r in env.replicas().values())


def test_an_outage_while_inspecting_surfaces_as_a_temporary_error(env: Env) -> None:
    env.apply(replicas=1, restart=RESTART)
    env.converge(env.running_ready(1))
    env.fake.crash(env.fake.container(0))
    env.fake.fail("inspect")
    with pytest.raises(TemporaryDriverError):
        env.reconcile()
    assert env.replicas()[0]["restart_count"] == 0
    env.fake.heal()
    env.converge(env.running_ready(1))
    assert env.replicas()[0]["restart_count"] == 1


def test_a_deletion_during_an_outage_finishes_after_recovery(env: Env) -> None:
    env.apply(replicas=2)
    env.converge(env.running_ready(2))
    env.delete()
    env.fake.fail("destroy")
    with pytest.raises(ReconcileError):
        env.reconcile()
    assert env.workload() is not None
    env.fake.heal()
    env.converge(lambda: env.workload() is None)
    assert env.fake.containers() == []
    assert env.store.list(KIND_REPLICA) == []


def test_deleting_a_workload_that_was_never_placed_finishes_in_one_pass(env: Env) -> None:
    env.apply(replicas=1)
    env.delete()
    wake = env.reconcile()
    assert wake is not None or env.workload() is None
    assert env.workload() is None


def test_deleting_a_workload_that_was_never_placed_eventually_finishes(env: Env) -> None:
    env.apply(replicas=1)
    env.delete()
    for _ in range(2):
        env.reconcile()
    assert env.workload() is None
    assert env.fake.containers() == []
    assert env.events() == ["Deleted"]


# --- health for a replica's whole life ----------------------------------------------

READINESS = {
    "readiness": {"exec": {"command": ["ready"]}, "periodSeconds": 1, "failureThreshold": 2}
}


def test_a_replica_that_stops_being_ready_degrades_the_workload_until_it_recovers(
    env: Env,
) -> None:
    env.apply(replicas=2, probes=READINESS)
    env.converge(env.running_ready(2))
    env.clock.advance(3600)  # an hour into its life
    env.reconcile()
    assert env.phase() == "Ready"

    container = env.fake.container(1)
    env.fake.exec_results[container.id] = ExecResult(1, b"")
    failing_since = env.clock()
    env.converge(lambda: env.phase() == "Degraded")
    assert env.clock() - failing_since <= 1 * 2  # within period x failureThreshold
    assert env.replicas()[1]["ready"] is False and env.replicas()[0]["ready"] is True
    assert "replica 1: not ready (readiness: exec probe exited 1)" in env.status()["message"]
    (lost,) = [e for e in env.store.events(KIND_WORKLOAD, NS, NAME) if e.reason == "NotReady"]
    assert (lost.type, lost.replica, lost.target) == ("Warning", 1, TARGET)
    assert "exec probe exited 1" in lost.message

    env.fake.exec_results.pop(container.id)
    env.converge(lambda: env.phase() == "Ready")
    assert env.replicas()[1]["ready"] is True
    assert env.events()[-2:] == ["Ready", "Recovered"]

    # a flapping probe is counted, not repeated row after row
    env.fake.exec_results[container.id] = ExecResult(1, b"")
    env.converge(lambda: env.phase() == "Degraded")
    env.fake.exec_results.pop(container.id)
    env.converge(lambda: env.phase() == "Ready")
    assert env.counted("NotReady") == 2 and env.events().count("NotReady") == 1


def test_a_replica_not_ready_yet_after_start_is_progressing_not_degraded(env: Env) -> None:
    env.fake.exec_default = ExecResult(1, b"")
    env.apply(replicas=1, probes=READINESS)
    for _ in range(5):
        env.clock.advance(1.0)
        env.reconcile()
    assert env.phase() == "Progressing"
    assert "replica 0: not ready yet (readiness: exec probe exited 1)" in env.status()["message"]
    assert "NotReady" not in env.events() and "Degraded" not in env.events()


def test_a_failed_liveness_probe_is_an_unhealthy_event_naming_the_probe(env: Env) -> None:
    probes = {"liveness": {"exec": {"command": ["alive"]}, "periodSeconds": 1}}
    env.apply(replicas=1, probes=probes, restart=RESTART)
    env.converge(env.running_ready(1))
    env.fake.exec_results[env.fake.container(0).id] = ExecResult(1, b"")
    env.converge(lambda: "Unhealthy" in env.events())
    (message,) = env.event_messages("Unhealthy")
    assert "liveness: exec probe exited 1" in message


def test_a_restarted_controller_keeps_a_ready_replica_ready_while_its_probe_counts_again(
    env: Env,
) -> None:
    """successThreshold 3: a new controller's prober needs three successes
    before it calls the replica ready. The replica record says this very run
    was ready, so it stays ready meanwhile: no NotReady, no Degraded."""
    probes = {"readiness": {**READINESS["readiness"], "successThreshold": 3}}
    env.apply(replicas=2, probes=probes)
    env.converge(env.running_ready(2))
    before = env.events()

    restarted = env.restarted_reconciler()
    try:
        for _ in range(5):
            restarted.reconcile(KEY)
            assert env.phase() == "Ready", env.status()
            assert all(r["ready"] for r in env.replicas().values())
            env.clock.advance(1.0)
        assert env.events() == before  # nothing to report: nothing changed

        # it is still judged: failing the threshold loses readiness as before
        env.fake.exec_results[env.fake.container(0).id] = ExecResult(1, b"")
        for _ in range(4):
            restarted.reconcile(KEY)
            env.clock.advance(1.0)
        assert env.phase() == "Degraded" and env.replicas()[0]["ready"] is False
        assert "NotReady" in env.events()
    finally:
        restarted.close()


def test_a_run_not_recorded_ready_counts_its_successes_after_a_controller_restart(
    env: Env,
) -> None:
    """The recorded readiness is of one run: a container restarted since
    (a new start time) is judged afresh."""
    probes = {"readiness": {**READINESS["readiness"], "successThreshold": 3}}
    env.apply(replicas=1, probes=probes)
    env.converge(env.running_ready(1))
    [record] = env.store.list(KIND_REPLICA, NS)
    env.store.update_status(record, {**record.status, "started_at": "2001-01-01T00:00:00+00:00"})
    restarted = env.restarted_reconciler()
    try:
        restarted.reconcile(KEY)
        assert env.replicas()[0]["ready"] is False  # one success of three
    finally:
        restarted.close()
