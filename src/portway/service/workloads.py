"""Workload operations: apply, delete, wait, and the embedded controller."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from portway import tracing
from portway.capabilities.matrix import Matrix, load_packaged
from portway.capabilities.planner import plan_for_target
from portway.controller import scheduling
from portway.controller.records import (
    KIND_REPLICA,
    KIND_WORKLOAD,
    ReplicaView,
    TargetView,
    template_generation_of,
    template_hash_of,
    workload_of,
    workload_spec_envelope,
)
from portway.controller.runner import Controller, ControllerSettings
from portway.errors import (
    AlreadyExistsError,
    ConflictError,
    InputError,
    Issue,
    NotFoundError,
    PolicyError,
    PortwayError,
)
from portway.scheduler.filters import static_rejection
from portway.scheduler.fit import Capacity
from portway.scheduler.state import ClusterState
from portway.scheduler.topology import target_labels
from portway.service import namespaces as ns_policy
from portway.service import preflight
from portway.service import secrets as secret_service
from portway.service.app import App
from portway.service.migration_steps import KIND_MIGRATION, Migration, Step
from portway.service.planning import degradations, extension_issues, gate, profile_of
from portway.spec.model import Workload
from portway.store import Record


class Outcome(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Applied:
    workload: Workload
    outcome: Outcome
    generation: int  # the record's generation after the write


@dataclass(frozen=True)
class Sourced:
    """A workload and where it came from, for error messages."""

    workload: Workload
    file: str
    document: int
    #: line of each field path in the file (from the loader), for messages
    lines: Mapping[str, int] = field(default_factory=dict)


def _eligible_targets(app: App, workload: Workload) -> tuple[list[TargetView], str]:
    """Targets the workload may be placed on by its placement rules and
    tier, whatever their health or free room (the scheduler judges those
    when it places; a workload that does not fit waits, or preempts), and,
    when there are none, why ("0/2 targets available: 2 lack isolation
    tier sandboxed")."""
    views = app.target_views()
    ask = scheduling.ask_for(workload, [0])
    states = [
        replace(scheduling.target_state(v), healthy=True, capacity=Capacity())
        for v in sorted(views, key=lambda v: v.name)
    ]
    passing = {
        state.name for state in states if static_rejection(state, target_labels(state), ask) is None
    }
    eligible = [v for v in views if v.name in passing]
    if eligible:
        return eligible, ""
    return [], ClusterState(states, ()).explain(ask).message()


def _judge_targets(
    app: App, item: Sourced, matrix: Matrix
) -> tuple[list[Issue], dict[str, str], list[dict[str, str]]]:
    """Preflight on every eligible target: the drift gate, the image, the
    extension block. A target that fails is excluded from placement (with
    why); only when every target fails is the apply refused, with every
    target's reasons. Returns (issues, excluded targets, degradations)."""
    workload = item.workload
    eligible, why_none = _eligible_targets(app, workload)
    if not eligible:
        issue = Issue(
            f"no target matches this workload's placement ({why_none}, "
            f"isolation {workload.spec.isolation.value})",
            file=item.file,
            document=item.document,
            path="spec.placement",
            hint="see `portway get targets`",
        )
        return [issue], {}, []
    refused: dict[str, list[Issue]] = {}
    degraded: list[dict[str, str]] = []
    for target in sorted(eligible, key=lambda v: v.name):
        target_issues = preflight.check_image(
            workload, target, app.targets, item.file, item.document
        )
        target_plan = plan_for_target(workload.spec, profile_of(app, target, matrix))
        target_issues += gate(workload, target_plan, item.file, item.document)
        target_issues += extension_issues(app, target, workload, item.file, item.document)
        if target_issues:
            refused[target.name] = target_issues
        else:
            degraded += degradations(target_plan)
    if len(refused) == len(eligible):
        return [i for issues in refused.values() for i in issues], {}, []
    excluded = {name: _short(issues[0].message) for name, issues in refused.items()}
    return [], excluded, degraded


def _short(message: str, limit: int = 120) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def judge_policy(
    app: App,
    items: Sequence[Sourced],
    namespaces: Sequence[ns_policy.SourcedNamespace] = (),
) -> tuple[list[Sourced], list[Issue]]:
    """Each workload with its namespace's tier written in, and every policy
    violation of every workload. Namespaces applied in the same file count."""
    pending = {n.namespace.name: n.namespace.spec for n in namespaces}
    judged: list[Sourced] = []
    issues: list[Issue] = []
    for item in items:
        verdict = ns_policy.judge(app, item.workload, pending)
        issues += ns_policy.violation_issues(
            verdict.violations,
            item.workload.metadata.namespace,
            item.file,
            item.document,
            item.lines,
        )
        judged.append(replace(item, workload=verdict.workload))
    return judged, issues


def apply(app: App, items: Sequence[Sourced]) -> list[Applied]:
    """Validate everything, then write desired state. All or nothing on errors:
    a refused workload changes nothing."""
    return apply_all(app, items, ())[1]


def apply_all(
    app: App,
    items: Sequence[Sourced],
    namespaces: Sequence[ns_policy.SourcedNamespace],
    *,
    dry_run: bool = False,
) -> tuple[list[ns_policy.NamespaceApplied], list[Applied]]:
    """``portway apply`` of a file that may hold namespace policies and
    workloads: every check of every object first (workloads against the
    file's own namespace policies), then the namespaces, then the workloads.
    With ``dry_run`` every check runs and nothing is written; the outcomes
    are what a real apply would report now."""
    attributes: tracing.Attributes = {
        "portway.workloads": [i.workload.key for i in items],
        "portway.namespaces": sorted(
            {i.workload.metadata.namespace for i in items} | {n.namespace.name for n in namespaces}
        ),
        "portway.dry_run": dry_run,
    }
    with tracing.span("portway.apply", attributes):
        with tracing.span("portway.validate", {"portway.workloads": len(items)}):
            items, degraded, excluded = _check_all(app, items, namespaces)
        if dry_run:
            return [_predict_namespace(app, n) for n in namespaces], [
                _predict(
                    app,
                    item.workload,
                    degraded.get(item.workload.key, []),
                    excluded.get(item.workload.key, {}),
                )
                for item in items
            ]
        with tracing.span("portway.write"):
            written = ns_policy.apply_namespaces(app, namespaces)
            applied = [
                _write(
                    app,
                    item.workload,
                    degraded.get(item.workload.key, []),
                    excluded.get(item.workload.key, {}),
                )
                for item in items
            ]
        for result in applied:
            if result.outcome is not Outcome.UNCHANGED:
                tracing.remember(result.workload.key)
                _drift_events(app, result.workload, degraded.get(result.workload.key, []))
        return written, applied


def _check_all(
    app: App,
    items: Sequence[Sourced],
    namespaces: Sequence[ns_policy.SourcedNamespace],
) -> tuple[list[Sourced], dict[str, list[dict[str, str]]], dict[str, dict[str, str]]]:
    """Every check of ``apply_all``; raises with every issue found. Returns
    the workloads with their namespace's tier written in (``judge_policy``),
    each one's degradations and the targets excluded for it."""
    issues: list[Issue] = []
    items, policy_issues = judge_policy(app, items, namespaces)
    matrix = load_packaged()
    degraded: dict[str, list[dict[str, str]]] = {}
    for item in items:
        policy_issues += preflight.check_bind_mounts(
            item.workload, app.settings.bind_mount_prefixes, item.file, item.document
        )
    issues += preflight.check_port_conflicts(
        [(i.workload, i.file, i.document) for i in items], app.store
    )
    issues += preflight.check_ingress([(i.workload, i.file, i.document) for i in items], app.store)
    excluded: dict[str, dict[str, str]] = {}
    for item in items:
        workload = item.workload
        target_issues, excluded[workload.key], degraded[workload.key] = _judge_targets(
            app, item, matrix
        )
        issues += target_issues
        issues += preflight.check_ports_free(
            workload, item.file, item.document, _owned_ports(app, workload)
        )
        issues += secret_service.reference_issues(
            app,
            secret_service.Reference(
                workload.spec, workload.metadata.namespace, item.file, item.document, item.lines
            ),
        )
    if policy_issues:
        raise PolicyError(policy_issues + issues)
    if issues:
        raise InputError(issues)
    return items, degraded, excluded


def _drift_events(app: App, workload: Workload, degraded: Sequence[Mapping[str, str]]) -> None:
    """One DriftDegraded event per target on which a lenient apply let
    fields go unhonored: the decision is the apply's, so it says so."""
    by_target: dict[str, list[str]] = {}
    for item in degraded:
        by_target.setdefault(item["target"], []).append(f"{item['path']} {item['verdict']}")
    for target, fields in sorted(by_target.items()):
        app.store.record_event(
            KIND_WORKLOAD,
            workload.metadata.namespace,
            workload.metadata.name,
            "DriftDegraded",
            f"applied in lenient mode; on {target}: " + ", ".join(fields),
            warning=True,
            target=target,
        )


def _predict(
    app: App,
    workload: Workload,
    degraded: list[dict[str, str]],
    excluded: Mapping[str, str],
) -> Applied:
    """What ``_write`` would report for ``workload``, without writing."""
    existing = app.store.get(KIND_WORKLOAD, workload.metadata.namespace, workload.metadata.name)
    if existing is None:
        return Applied(workload, Outcome.CREATED, 1)
    template_hash = workload.spec.template_hash()
    generation = template_generation_of(existing) + (template_hash_of(existing) != template_hash)
    envelope = workload_spec_envelope(workload, generation, template_hash, degraded, excluded)
    if envelope == dict(existing.spec) and not existing.deleting:
        return Applied(workload, Outcome.UNCHANGED, existing.generation)
    return Applied(workload, Outcome.CONFIGURED, existing.generation + 1)


def _predict_namespace(app: App, item: ns_policy.SourcedNamespace) -> ns_policy.NamespaceApplied:
    known = {info.name for info in ns_policy.list_namespaces(app) if info.explicit}
    outcome = "configured" if item.namespace.name in known else "created"
    return ns_policy.NamespaceApplied(item.namespace, outcome)


def _owned_ports(app: App, workload: Workload) -> set[tuple[str, int, str]]:
    """Host ports this workload's replicas publish now, on any healthy target."""
    ports: set[tuple[str, int, str]] = set()
    for view in app.target_views():
        if not view.healthy:
            continue
        with contextlib.suppress(PortwayError):
            ports |= preflight.owned_ports(workload, view, app.targets, app.store)
    return ports


def _write(
    app: App,
    workload: Workload,
    degraded: list[dict[str, str]],
    excluded: Mapping[str, str],
) -> Applied:
    namespace, name = workload.metadata.namespace, workload.metadata.name
    _refuse_during_migration(app, workload)
    template_hash = secret_service.template_hash(app, workload)
    for _ in range(5):
        existing = app.store.get(KIND_WORKLOAD, namespace, name)
        try:
            if existing is None:
                record = app.store.create(
                    KIND_WORKLOAD,
                    namespace,
                    name,
                    workload_spec_envelope(workload, 1, template_hash, degraded, excluded),
                )
                return Applied(workload, Outcome.CREATED, record.generation)
            generation = template_generation_of(existing)
            if template_hash_of(existing) != template_hash:
                generation += 1
            envelope = workload_spec_envelope(
                workload, generation, template_hash, degraded, excluded
            )
            record = app.store.update_spec(existing, envelope)
            changed = record.generation != existing.generation or existing.deleting
            return Applied(
                workload, Outcome.CONFIGURED if changed else Outcome.UNCHANGED, record.generation
            )
        except (ConflictError, AlreadyExistsError):
            continue  # the controller wrote status meanwhile: read again
    raise ConflictError(f"workload {namespace}/{name} keeps changing under us; try again")


def _refuse_during_migration(app: App, workload: Workload) -> None:
    """An apply during a migration would give the quiesced old copy its
    replicas back (or undo the switch): both copies could serve; ``portway
    migrate`` owns the workload's replicas and placement until it is done or
    aborted. After one, a file still placing the workload only where it was
    would start it there without its data (the volumes moved): refused too."""
    namespace, name = workload.metadata.namespace, workload.metadata.name
    migration = _refuse_while_migrating(app, namespace, name, "apply")
    if migration is None:
        return
    record, destination = migration
    current = app.store.get(KIND_WORKLOAD, namespace, name)
    if current is None or current.created_at > record.updated_at:
        return  # a new workload of that name: the migration was of another
    targets = workload.spec.placement.targets
    if targets and destination not in targets:
        raise ConflictError(
            f"workload {namespace}/{name} was migrated to {destination} with its volumes; "
            f"spec.placement.targets {targets} would start it without its data. Put "
            f"{destination} in spec.placement.targets, or move it with its data: "
            f"`portway migrate {name} -n {namespace} --to {targets[0]}`"
        )


def _refuse_while_migrating(
    app: App, namespace: str, name: str, then: str
) -> tuple[Record, str] | None:
    """Refuse ``then`` (apply, delete) while a migration of the workload is in
    progress: it owns the workload's copies on two targets and edits its
    replicas and placement step by step, so the user decides how it ends
    first. Returns the finished migration's record and destination (None:
    never migrated)."""
    record = app.store.get(KIND_MIGRATION, namespace, name)
    if record is None:
        return None
    migration = Migration.from_json(dict(record.spec))
    if migration.step is not Step.DONE:
        command = f"portway migrate {name} -n {namespace}"
        ways = f"finish it with `{command} --resume`"
        if migration.step.position < Step.SWITCHED.position:
            ways += f" or give it back to {migration.source} with `{command} --abort`"
        raise ConflictError(
            f"workload {namespace}/{name} is being migrated to {migration.destination} "
            f"(migration {migration.id}, last step done: {migration.step.value}); {ways}, "
            f"then {then}"
        )
    return record, migration.destination


def check_deletable(app: App, keys: Sequence[tuple[str, str]]) -> None:
    """Refuse before anything is deleted when any of ``keys`` is being
    migrated (``delete -f`` of a file deletes all of its workloads or none)."""
    for namespace, name in keys:
        _refuse_while_migrating(app, namespace, name, "delete it")


def delete(app: App, namespace: str, name: str, *, dry_run: bool = False) -> Record:
    """Mark the workload deleting (the controller removes its replicas).
    ``dry_run``: every check (it exists, no migration refuses it), no change."""
    record = app.store.require(KIND_WORKLOAD, namespace, name)
    _refuse_while_migrating(app, namespace, name, "delete it")
    if dry_run:
        return record
    for _ in range(5):
        try:
            return app.store.mark_deleting(record)
        except ConflictError:
            record = app.store.require(KIND_WORKLOAD, namespace, name)
    raise ConflictError(f"workload {namespace}/{name} keeps changing under us; try again")


# --- queries -------------------------------------------------------------


def list_workloads(app: App, namespace: str | None) -> list[Record]:
    return app.store.list(KIND_WORKLOAD, namespace)


def get_workload(app: App, namespace: str, name: str) -> Record:
    return app.store.require(KIND_WORKLOAD, namespace, name)


def replicas_of(app: App, namespace: str, name: str) -> list[ReplicaView]:
    views = []
    for record in app.store.list(KIND_REPLICA, namespace):
        view = ReplicaView.from_status(record.status)
        if view.workload == name:
            views.append(view)
    return sorted(views, key=lambda v: v.index)


def all_replicas(app: App, namespace: str | None) -> list[tuple[str, ReplicaView]]:
    out = []
    for record in app.store.list(KIND_REPLICA, namespace):
        out.append((record.namespace, ReplicaView.from_status(record.status)))
    return sorted(out, key=lambda p: (p[0], p[1].workload, p[1].index))


# --- waiting ---------------------------------------------------------------


class WaitResult(StrEnum):
    READY = "ready"
    DELETED = "deleted"
    DEGRADED = "degraded"
    TIMEOUT = "timeout"


def workload_settled(record: Record | None, generation: int) -> WaitResult | None:
    """Whether an applied workload has converged (None: not yet)."""
    if record is None:
        return WaitResult.DELETED
    status = record.status
    if int(status.get("observedGeneration", 0)) < generation:
        return None
    phase = status.get("phase")
    if phase in ("Ready", "Completed"):
        return WaitResult.READY
    if phase == "Degraded":
        return WaitResult.DEGRADED
    return None


_FULL_READ_SECONDS = 1.0


def wait_for(
    app: App,
    keys: Sequence[tuple[str, str, int]],
    *,
    timeout: float,
    deleting: bool = False,
    on_progress: Callable[[list[Record | None]], None] | None = None,
    poll: float = 0.02,
    observed: Callable[[str], bool] | None = None,
) -> dict[str, WaitResult]:
    """Poll the store until each (namespace, name, generation) settles.

    ``observed`` (see ``ControllerLink.observed``) says whether a workload's
    stored status is from after the apply; until it is, the workload has not
    settled, whatever the status says.

    A poll reads the change log after the last revision seen and reads again
    only the workloads written since: reading every workload every 20 ms took
    a fifth of a core, and in an embedded controller that time was taken from
    the threads starting the replicas (the GIL)."""
    deadline = time.monotonic() + timeout
    results: dict[str, WaitResult] = {}
    final: set[str] = set()
    index = {(ns, name): i for i, (ns, name, _) in enumerate(keys)}
    seen = app.store.revision()  # read before the records: a write in between is read twice
    records = [app.store.get(KIND_WORKLOAD, ns, name) for ns, name, _ in keys]
    next_full_read = time.monotonic() + _FULL_READ_SECONDS
    while True:
        final.clear()
        if on_progress is not None:
            on_progress(records)
        for (ns, name, generation), record in zip(keys, records, strict=True):
            key = f"{ns}/{name}"
            if deleting:
                if record is None:
                    results[key] = WaitResult.DELETED
            elif observed is not None and record is not None and not observed(key):
                results.pop(key, None)
            else:
                settled = workload_settled(record, generation)
                if settled is WaitResult.READY or settled is WaitResult.DELETED:
                    results[key] = settled
                elif settled is WaitResult.DEGRADED:
                    results[key] = settled
                    if record is not None and "restarting" not in str(
                        record.status.get("message", "")
                    ):
                        final.add(key)  # failed for good: no restart will come
                else:
                    results.pop(key, None)
        done = all(
            results.get(f"{ns}/{n}") in (WaitResult.READY, WaitResult.DELETED)
            or f"{ns}/{n}" in final
            for ns, n, _ in keys
        )
        if done:
            return results
        if time.monotonic() >= deadline:
            for ns, n, _ in keys:
                results.setdefault(f"{ns}/{n}", WaitResult.TIMEOUT)
            return results
        time.sleep(poll)
        written: set[int] = set()
        for change in app.store.changes(since=seen, kinds={KIND_WORKLOAD}):
            seen = max(seen, change.revision)
            position = index.get((change.namespace, change.name))
            if position is not None:
                written.add(position)
        if time.monotonic() >= next_full_read:
            # the log keeps the last 10,000 writes: were more pruned between
            # two polls, a write would be missed; a read of all once a second
            # bounds that (and costs nothing next to the polls it replaced)
            written = set(range(len(keys)))
            next_full_read = time.monotonic() + _FULL_READ_SECONDS
        for position in sorted(written):
            ns, name, _ = keys[position]
            records[position] = app.store.get(KIND_WORKLOAD, ns, name)


@dataclass
class ControllerLink:
    """Which controller works on the store during a CLI command."""

    embedded: Controller | None = None  # one we run in this process
    other: str | None = None  # holder id of one running elsewhere
    #: per workload key, the embedded controller's pass mark when it was notified
    _marks: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def notify(self, keys: Sequence[str]) -> None:
        """Wake the embedded controller at once; another process's controller
        notices spec changes by itself within a fraction of a second."""
        if self.embedded is not None:
            mark = self.embedded.pass_mark()  # before the wake: its pass comes after
            for key in keys:
                # the first notify counts: later ones (a nudge while waiting)
                # must not push the mark past passes that already tell
                self._marks.setdefault(key, mark)
                self.embedded.enqueue(key)

    def observed(self, key: str) -> bool:
        """Whether the workload's stored status is from after ``notify``.

        An embedded controller runs only during a command, so the status it
        wrote last time (Ready, say) may be long out of date: the engine may
        have been restarted and the containers lost since. Re-applying an
        unchanged workload leaves its generation as it was, so only a pass
        started after the notify tells. A controller running elsewhere
        reconciles all the time, and its status is taken as it is."""
        mark = self._marks.get(key)
        if self.embedded is None or mark is None:
            return True
        return self.embedded.passed_since(key, mark)


@contextlib.contextmanager
def controller_running(
    app: App, settings: ControllerSettings | None = None, *, embed: bool = True
) -> Iterator[ControllerLink]:
    """Make sure a controller works on the store while the block runs.

    If one is already running (``portway controller``), defer to it;
    otherwise run one embedded in this process for the block's duration
    (unless ``embed`` is False: then the link names no controller).
    """
    controller = Controller(
        app.store,
        settings=settings,
        targets=app.targets,
        ingress_home=app.settings.home,
    )
    other = controller.running_controller()
    if other is not None or not embed:
        yield ControllerLink(other=other)
        return
    if not controller.acquire():
        yield ControllerLink(other=controller.running_controller() or "unknown")
        return
    controller.start()
    try:
        yield ControllerLink(embedded=controller)
    finally:
        controller.stop()


def resolve_workload(app: App, namespace: str, name: str) -> tuple[Record, Workload]:
    record = app.store.get(KIND_WORKLOAD, namespace, name)
    if record is None:
        raise NotFoundError(
            f"workload {namespace}/{name} not found (see `portway get workloads -A`)"
        )
    return record, workload_of(record)
