"""Decide what to do for one workload: a pure function over data.

Given the desired workload, what the engines report, and what the controller
remembers per replica index (restart counts, backoff), return the actions that
move the world one step toward the desired state. It is level-triggered: the
same inputs give the same actions whatever happened before, so a crashed
controller that runs it again after a restart does the right thing, and an
action repeated by mistake is harmless (drivers make every step idempotent).

Rolling replacement works index by index. A new revision of index ``i`` is
created first (the engine validates image and configuration while the old
replica still runs), then started; the old replica is removed only once the
new one is ready. When ports are published on fixed host ports the old
replica must release them first, so it is stopped (not removed) just before
the new one starts. At most ``max_unavailable`` indices are in that state at
once; indices that have nothing running are never held back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from portway.drivers.base import Handle, ReplicaState, ReplicaStatus
from portway.spec.model import RestartPolicyName, WorkloadSpec

#: a replica that ran at least this long before exiting restarts without delay
BACKOFF_RESET_SECONDS = 600.0
#: how soon to look again while something is in progress, as a safety net for
#: missed engine events (events only ever make us look sooner)
PROGRESS_POLL_SECONDS = 1.0


class Phase(StrEnum):
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    DELETING = "Deleting"
    COMPLETED = "Completed"  # every replica exited 0 and the policy does not restart it


@dataclass(frozen=True)
class Desired:
    namespace: str
    name: str
    spec: WorkloadSpec
    generation: int  # template generation: bumps on changes that need new replicas
    template_hash: str
    target: str  # where indices without a slot of their own run
    deleting: bool = False
    max_unavailable: int = 1
    #: index -> (target, placement epoch), from the scheduler
    slots: Mapping[int, tuple[str, int]] = field(default_factory=dict)
    #: targets that could not be listed: what runs there is unknown, so
    #: nothing is created for indices placed there until they are moved
    unreachable: frozenset[str] = frozenset()
    #: targets an index left by failover: copies found there are removed on
    #: sight (fenced), never kept as a surge
    fenced: frozenset[str] = frozenset()
    #: seconds a serving copy is drained (out of the load balancer's rotation,
    #: open connections finishing) before it is stopped; 0: no ingress
    drain_seconds: float = 0.0
    #: container id -> when its draining began
    draining: Mapping[str, float] = field(default_factory=dict)

    @property
    def replicas(self) -> int:
        return 0 if self.deleting else self.spec.replicas

    def slot(self, index: int) -> tuple[str, int]:
        return self.slots.get(index, (self.target, 0))

    def is_current(self, observed: Observed) -> bool:
        """The copy the index should have: this template, target and epoch."""
        return observed.generation == self.generation and self.in_place(observed)

    def in_place(self, observed: Observed) -> bool:
        return (observed.handle.target, observed.status.epoch) == self.slot(observed.index)

    @property
    def fixed_host_ports(self) -> bool:
        return any(p.host_port is not None for p in self.spec.ports)


@dataclass(frozen=True)
class Observed:
    """One container and what the controller's probes say about it."""

    status: ReplicaStatus
    ready: bool = False  # readiness: True when running and no probe says otherwise
    live: bool = True  # False once the liveness probe failed past its threshold
    #: the last failing probe's word ("readiness: exec probe exited 1"); "" when passing
    probe_message: str = ""
    #: this run of the container has been ready before: not being ready now is
    #: a loss (Degraded), not start-up (Progressing)
    was_ready: bool = False

    @property
    def handle(self) -> Handle:
        return self.status.handle

    @property
    def index(self) -> int:
        return self.status.index

    @property
    def generation(self) -> int:
        return self.status.generation

    @property
    def running(self) -> bool:
        return self.status.state is ReplicaState.RUNNING


@dataclass(frozen=True)
class ReplicaMemory:
    """What the controller keeps per replica index between reconciles (in the store)."""

    container_id: str = ""
    restart_count: int = 0
    backoff_step: int = 0
    last_exit_code: int | None = None
    last_reason: str = ""
    #: identifies the exit we already reported, so an exit is reported once
    reported_exit: str = ""
    #: set when we stopped the container on purpose (liveness, making room)
    stopped_by_us: str = ""
    #: when the controller first saw the current exit; the backoff counts from
    #: the engine's finish time, or from this when the engine gives none
    exit_seen_at: float = 0.0
    #: exits the engine reported as out-of-memory kills, over the index's life
    #: (the ``portway_replica_oom_kills_total`` counter)
    oom_kills: int = 0


# --- actions -------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    index: int
    generation: int
    target: str
    start: bool
    reason: str
    epoch: int = 0


@dataclass(frozen=True)
class Start:
    handle: Handle
    index: int
    restart: bool  # counts as a restart of the replica
    reason: str


@dataclass(frozen=True)
class Stop:
    handle: Handle
    index: int
    reason: str


@dataclass(frozen=True)
class Remove:
    handle: Handle
    index: int
    reason: str


@dataclass(frozen=True)
class Drain:
    """Take a serving copy out of the load balancer's rotation; it is removed
    once ``seconds`` have passed (the controller records when it began)."""

    handle: Handle
    index: int
    reason: str
    seconds: float


@dataclass(frozen=True)
class Report:
    """Record an event only (e.g. a replica exited)."""

    index: int
    reason: str
    message: str
    warning: bool = True
    target: str = ""


Action = Create | Start | Stop | Remove | Drain | Report


@dataclass(frozen=True)
class Summary:
    desired: int
    updated: int  # containers of the current generation
    running: int  # current generation, running
    ready: int  # current generation, ready
    available: int  # indices with some ready replica, any generation
    phase: Phase
    reasons: tuple[str, ...] = ()
    """Why the workload is Degraded (each makes it so)."""
    waiting: tuple[str, ...] = ()
    """What a Progressing workload waits for (shown in its message)."""


@dataclass
class Plan:
    #: actions per replica index, run in order within an index; indices in parallel
    steps: dict[int, list[Action]] = field(default_factory=dict)
    memory: dict[int, ReplicaMemory] = field(default_factory=dict)
    requeue_after: float | None = None
    summary: Summary | None = None
    #: True when the workload is being deleted and nothing of it remains
    finished_deleting: bool = False
    #: container id -> when its draining began, for copies still draining
    draining: dict[str, float] = field(default_factory=dict)

    def retire(self, desired: Desired, item: Observed, index: int, reason: str, now: float) -> None:
        """Remove a copy that is no longer wanted; a serving one behind the
        ingress is drained first (no new connections, open ones finish)."""
        if desired.drain_seconds <= 0 or not item.running or not item.status.ports:
            self.add(index, Remove(item.handle, index, reason))
            return
        began = desired.draining.get(item.handle.id)
        if began is None:
            self.add(index, Drain(item.handle, index, reason, desired.drain_seconds))
            self.draining[item.handle.id] = now
            self.wake_in(desired.drain_seconds)
        elif now - began < desired.drain_seconds:
            self.draining[item.handle.id] = began
            self.wake_in(desired.drain_seconds - (now - began))
        else:
            self.add(index, Remove(item.handle, index, reason))

    def add(self, index: int, action: Action) -> None:
        self.steps.setdefault(index, []).append(action)

    def wake_in(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds

    @property
    def actions(self) -> list[Action]:
        return [a for index in sorted(self.steps) for a in self.steps[index]]


def restart_delay(step: int, initial: float, maximum: float) -> float:
    """Exponential backoff: initial, 2x, 4x, ... capped at ``maximum``."""
    if step <= 0:
        return 0.0 if initial == 0 else initial
    return float(min(initial * (2 ** min(step, 32)), maximum))


def exit_reason(status: ReplicaStatus) -> str:
    if status.oom_killed:
        return "OOMKilled"
    if status.exit_code == 0:
        return "Completed"
    return "Error"


def _exit_marker(status: ReplicaStatus) -> str:
    finished = status.finished_at.isoformat() if status.finished_at else ""
    return f"{status.handle.id}:{finished}:{status.exit_code}"


def _should_restart(spec: WorkloadSpec, status: ReplicaStatus, memory: ReplicaMemory) -> bool:
    policy = spec.restart.policy
    if policy is RestartPolicyName.NEVER:
        return False
    if policy is RestartPolicyName.ALWAYS:
        return True
    if status.exit_code == 0 and not status.oom_killed:
        return False
    limit = spec.restart.max_retries
    return limit is None or memory.restart_count < limit


def _ran_for(status: ReplicaStatus) -> float:
    if status.started_at is None or status.finished_at is None:
        return 0.0
    return (status.finished_at - status.started_at).total_seconds()


def _order(observed: Observed) -> tuple[int, float]:
    """Preferred survivor first: running, then the oldest."""
    created = observed.status.created_at.timestamp() if observed.status.created_at else 0.0
    return (0 if observed.running else 1, created)


def plan_workload(
    desired: Desired,
    observed: Sequence[Observed],
    memory: Mapping[int, ReplicaMemory],
    now: float,
) -> Plan:
    plan = Plan()
    if desired.deleting:
        for item in observed:
            plan.add(item.index, Remove(item.handle, item.index, "WorkloadDeleted"))
        plan.finished_deleting = not observed
        if observed:
            plan.wake_in(PROGRESS_POLL_SECONDS)
        plan.summary = Summary(0, 0, 0, 0, 0, Phase.DELETING)
        return plan

    by_index: dict[int, list[Observed]] = defaultdict(list)
    for item in observed:
        if not 0 <= item.index < desired.replicas:
            plan.retire(desired, item, item.index, "ScaledDown", now)
        elif item.handle.target in desired.fenced and not desired.in_place(item):
            # the index failed over elsewhere: this copy must never serve again
            plan.add(item.index, Remove(item.handle, item.index, "Fenced"))
        else:
            by_index[item.index].append(item)

    in_update = 0
    for index in range(desired.replicas):
        group = by_index.get(index, [])
        current = sorted((o for o in group if desired.is_current(o)), key=_order)
        old = [o for o in group if not desired.is_current(o)]
        if current and old and not (current[0].running and current[0].ready):
            in_update += 1  # mid-replacement: counts against max_unavailable
        for extra in current[1:]:
            plan.add(index, Remove(extra.handle, index, "Duplicate"))
        if current:
            mem = memory.get(index, ReplicaMemory())
            _plan_index(plan, desired, index, current[0], old, mem, now)
    budget = max(desired.max_unavailable, 1) - in_update

    for index in range(desired.replicas):
        group = by_index.get(index, [])
        if any(desired.is_current(o) for o in group):
            continue
        target, epoch = desired.slot(index)
        if not target:
            continue  # not placed (nothing fits): the scheduler says why
        if target in desired.unreachable:
            continue  # unknown what runs there; failover moves it after a grace period
        serving_old = [o for o in group if o.running and o.ready]
        if serving_old:
            if budget <= 0:
                plan.wake_in(PROGRESS_POLL_SECONDS)
                continue
            budget -= 1
        # Fixed host ports: the old replica must release them before the new
        # one starts, so create now and start on the next pass.
        start = not (desired.fixed_host_ports and any(o.running for o in group))
        moving = any(o.handle.target != target or o.status.epoch != epoch for o in group)
        reason = "Moved" if moving else "Update" if group else "Scheduled"
        plan.add(index, Create(index, desired.generation, target, start, reason, epoch))
        plan.memory[index] = ReplicaMemory()
        plan.wake_in(0.0 if not start else PROGRESS_POLL_SECONDS)

    plan.summary = _summarize(desired, by_index, plan, memory)
    if plan.summary.phase is Phase.PROGRESSING:
        plan.wake_in(PROGRESS_POLL_SECONDS)
    return plan


def _plan_index(
    plan: Plan,
    desired: Desired,
    index: int,
    current: Observed,
    old: list[Observed],
    mem: ReplicaMemory,
    now: float,
) -> None:
    status = current.status
    if mem.container_id != status.handle.id:
        mem = ReplicaMemory(container_id=status.handle.id)
    state = status.state

    if state is ReplicaState.CREATED:
        running_old = [o for o in old if o.running]
        if desired.fixed_host_ports and running_old:
            for item in running_old:
                plan.add(index, Stop(item.handle, index, "MakingRoom"))
        plan.add(index, Start(status.handle, index, restart=False, reason="Started"))
        plan.wake_in(PROGRESS_POLL_SECONDS)

    elif state is ReplicaState.RUNNING:
        if not current.live:
            plan.add(
                index,
                Report(
                    index,
                    "Unhealthy",
                    f"replica {index} failed its liveness probe and is stopped: "
                    f"{current.probe_message or 'liveness probe failed'}",
                    target=status.handle.target,
                ),
            )
            plan.add(index, Stop(status.handle, index, "LivenessProbeFailed"))
            mem = replace(mem, stopped_by_us="LivenessProbeFailed")
            plan.wake_in(0.0)
        elif current.ready:
            for item in old:
                why = "Superseded" if desired.in_place(item) else "Rescheduled"
                plan.retire(desired, item, index, why, now)
        else:
            plan.wake_in(PROGRESS_POLL_SECONDS)

    elif state is ReplicaState.EXITED:
        mem = _plan_exited(plan, desired, index, status, mem, now)

    else:  # restarting, paused, removing, unknown: the engine is busy; look again soon
        plan.wake_in(PROGRESS_POLL_SECONDS)

    plan.memory[index] = mem


def _plan_exited(
    plan: Plan,
    desired: Desired,
    index: int,
    status: ReplicaStatus,
    mem: ReplicaMemory,
    now: float,
) -> ReplicaMemory:
    reason = mem.stopped_by_us or exit_reason(status)
    marker = _exit_marker(status)
    if mem.reported_exit != marker:
        detail = f"exit code {status.exit_code}" if status.exit_code is not None else "no exit code"
        if status.error:
            detail += f": {status.error}"
        # OOMKilled is its own reason: the metrics count OOM kills by it
        event = reason if reason in ("Completed", "OOMKilled") else "Crashed"
        plan.add(
            index,
            Report(
                index,
                event,
                f"replica {index} exited ({reason}, {detail})",
                warning=event != "Completed",
                target=status.handle.target,
            ),
        )
        step = 0 if _ran_for(status) >= BACKOFF_RESET_SECONDS else mem.backoff_step
        mem = replace(
            mem,
            reported_exit=marker,
            last_exit_code=status.exit_code,
            last_reason=reason,
            backoff_step=step,
            exit_seen_at=now,
            oom_kills=mem.oom_kills + (1 if status.oom_killed else 0),
        )
        report_backoff = True  # once per exit, like the exit itself
    else:
        report_backoff = False
    if not _should_restart(desired.spec, status, mem):
        return mem
    delay = restart_delay(
        mem.backoff_step,
        desired.spec.restart.initial_backoff_seconds,
        desired.spec.restart.max_backoff_seconds,
    )
    finished = status.finished_at.timestamp() if status.finished_at else mem.exit_seen_at
    due = finished + delay
    if now < due:
        if report_backoff:
            plan.add(
                index,
                Report(
                    index,
                    "BackOff",
                    # no counter or time left in the message: repeats fold into one event
                    f"replica {index} restarts after a back-off of {delay:g}s",
                    target=status.handle.target,
                ),
            )
        plan.wake_in(due - now)
        return mem
    plan.add(index, Start(status.handle, index, restart=True, reason="Restarted"))
    plan.wake_in(PROGRESS_POLL_SECONDS)
    return replace(
        mem,
        restart_count=mem.restart_count + 1,
        backoff_step=mem.backoff_step + 1,
        stopped_by_us="",
    )


def _summarize(
    desired: Desired,
    by_index: Mapping[int, list[Observed]],
    plan: Plan,
    memory: Mapping[int, ReplicaMemory],
) -> Summary:
    updated = running = ready = available = completed = 0
    reasons: list[str] = []
    waiting: list[str] = []
    stale = False
    for index in range(desired.replicas):
        group = by_index.get(index, [])
        current = [o for o in group if desired.is_current(o)]
        if any(not desired.is_current(o) for o in group):
            stale = True
        if any(o.ready and o.running for o in group):
            available += 1
        target = desired.slot(index)[0]
        if not current and not target:
            reasons.append(f"replica {index}: not placed")
            continue
        if not current and target in desired.unreachable:
            reasons.append(f"replica {index}: target {target} unreachable")
            continue
        if not current:
            continue
        updated += 1
        head = sorted(current, key=_order)[0]
        if head.running:
            running += 1
            if head.ready:
                ready += 1
            elif head.was_ready:
                reasons.append(f"replica {index}: not ready ({head.probe_message or 'probe'})")
            elif head.probe_message:
                waiting.append(f"replica {index}: not ready yet ({head.probe_message})")
        elif head.status.state is ReplicaState.EXITED:
            mem = plan.memory.get(index) or memory.get(index) or ReplicaMemory()
            why = mem.last_reason or exit_reason(head.status)
            will_restart = any(
                isinstance(a, Start) for a in plan.steps.get(index, [])
            ) or _should_restart(desired.spec, head.status, mem)
            if will_restart:
                reasons.append(
                    f"replica {index}: {why}, restarting (restarts: {mem.restart_count})"
                )
            elif why == "Completed":
                completed += 1
            else:
                reasons.append(f"replica {index}: {why}, exit code {head.status.exit_code}")
    surplus = any(isinstance(a, Remove) for steps in plan.steps.values() for a in steps)
    if reasons:
        phase = Phase.DEGRADED
    elif completed and completed == desired.replicas and not stale:
        phase = Phase.COMPLETED
    elif ready == desired.replicas and not stale and not surplus:
        phase = Phase.READY
    else:
        phase = Phase.PROGRESSING
    return Summary(
        desired.replicas,
        updated,
        running,
        ready,
        available,
        phase,
        tuple(reasons),
        tuple(waiting) if phase is Phase.PROGRESSING else (),
    )
