"""The step machine of ``portway migrate``, apart from what each step does.

A migration is a ``Migration`` record in the store (one per workload) that
names the step last completed and what the steps made (snapshot names, the
archives' SHA-256, which volumes were restored). ``advance`` runs the steps
after the recorded one, saving the record after each, so a migrate killed
anywhere resumes from the record; every step is idempotent, so a step cut
short is simply run again. The invariant this order keeps: before
``switched`` the old target is the workload (its volumes untouched, its
replicas scaled to 0 and restartable by ``--abort``); from ``switched`` on,
the new one is. Never both serving (the old replicas are gone before the
new ones are asked for), never neither recoverable.

This module is pure: the steps' work is behind ``StepActions`` (the real one
is ``service.migration``; unit tests use fakes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from portway.errors import ConflictError

KIND_MIGRATION = "Migration"

#: test hook: ``os._exit(137)`` right after this step is saved (a SIGKILL's code)
CRASH_AFTER_ENV = "PORTWAY_MIGRATE_CRASH_AFTER"


class Step(StrEnum):
    """The step last completed, in order."""

    PLANNED = "planned"
    PRECOPIED = "precopied"
    QUIESCED = "quiesced"
    SNAPSHOTTED = "snapshotted"
    TRANSFERRED = "transferred"
    RESTORED = "restored"
    SWITCHED = "switched"
    STARTED = "started"
    DONE = "done"

    @property
    def position(self) -> int:
        return ORDER.index(self)


ORDER: tuple[Step, ...] = tuple(Step)


@dataclass(frozen=True)
class VolumeMove:
    """One Volume object the workload owns, and what the steps made of it."""

    object: str  # Volume object name (``counter-data-0``)
    engine_volume: str  # same name on both targets: ``<ns>-<object>``
    snapshot: str = ""  # snapshot name in the store (``<object>-mig-<id>``)
    archive_sha256: str = ""
    files: int = 0
    bytes: int = 0
    consistency: str = ""
    restored: bool = False
    #: digest of the file list the destination got while the source still
    #: served (pre-copy); when the final snapshot's list is the same, the
    #: restore has nothing left to write
    precopy: str = ""
    from_precopy: bool = False
    #: the source volume's metadata listing taken just before the pre-copy
    #: (``snapshots.tree``; empty: not readable from this host, or racy)
    precopy_tree: str = ""
    #: the stopped volume's listing equals ``precopy_tree``: the pre-copy
    #: is the stopped state, so no stopped snapshot was taken
    unchanged: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "engineVolume": self.engine_volume,
            "snapshot": self.snapshot,
            "archiveSha256": self.archive_sha256,
            "files": self.files,
            "bytes": self.bytes,
            "consistency": self.consistency,
            "restored": self.restored,
            "precopy": self.precopy,
            "fromPrecopy": self.from_precopy,
            "precopyTree": self.precopy_tree,
            "unchanged": self.unchanged,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> VolumeMove:
        return cls(
            object=str(raw["object"]),
            engine_volume=str(raw["engineVolume"]),
            snapshot=str(raw.get("snapshot", "")),
            archive_sha256=str(raw.get("archiveSha256", "")),
            files=int(raw.get("files", 0)),
            bytes=int(raw.get("bytes", 0)),
            consistency=str(raw.get("consistency", "")),
            restored=bool(raw.get("restored", False)),
            precopy=str(raw.get("precopy", "")),
            from_precopy=bool(raw.get("fromPrecopy", False)),
            precopy_tree=str(raw.get("precopyTree", "")),
            unchanged=bool(raw.get("unchanged", False)),
        )


@dataclass(frozen=True)
class Migration:
    """What the ``Migration`` record holds."""

    id: str
    namespace: str
    workload: str
    source: str
    destination: str
    replicas: int  # desired replicas before the quiesce, given back at the switch
    placement_targets: tuple[str, ...]  # spec.placement.targets before the switch
    step: Step = Step.PLANNED
    keep_source: bool = False
    volumes: tuple[VolumeMove, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds

    def with_volume(self, move: VolumeMove) -> Migration:
        volumes = tuple(move if v.object == move.object else v for v in self.volumes)
        return replace(self, volumes=volumes)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "workload": self.workload,
            "source": self.source,
            "destination": self.destination,
            "replicas": self.replicas,
            "placementTargets": list(self.placement_targets),
            "step": self.step.value,
            "keepSource": self.keep_source,
            "volumes": [v.to_json() for v in self.volumes],
            "timings": dict(self.timings),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Migration:
        return cls(
            id=str(raw["id"]),
            namespace=str(raw["namespace"]),
            workload=str(raw["workload"]),
            source=str(raw["source"]),
            destination=str(raw["destination"]),
            replicas=int(raw["replicas"]),
            placement_targets=tuple(str(t) for t in raw.get("placementTargets", [])),
            step=Step(str(raw.get("step", Step.PLANNED.value))),
            keep_source=bool(raw.get("keepSource", False)),
            volumes=tuple(VolumeMove.from_json(v) for v in raw.get("volumes", [])),
            timings={str(k): float(v) for k, v in dict(raw.get("timings", {})).items()},
        )


class StepActions(Protocol):
    """What each step does; each returns the migration with its products and
    must be idempotent (it may run again after a crash, wholly or in part)."""

    def precopy(self, migration: Migration) -> Migration: ...
    def quiesce(self, migration: Migration) -> Migration: ...
    def snapshot(self, migration: Migration) -> Migration: ...
    def transfer(self, migration: Migration) -> Migration: ...
    def restore(self, migration: Migration) -> Migration: ...
    def switch(self, migration: Migration) -> Migration: ...
    def start(self, migration: Migration) -> Migration: ...
    def cleanup(self, migration: Migration) -> Migration: ...


def action_of(actions: StepActions, step: Step) -> Callable[[Migration], Migration]:
    """The action that completes ``step`` (PLANNED is made by planning)."""
    table: dict[Step, Callable[[Migration], Migration]] = {
        Step.PRECOPIED: actions.precopy,
        Step.QUIESCED: actions.quiesce,
        Step.SNAPSHOTTED: actions.snapshot,
        Step.TRANSFERRED: actions.transfer,
        Step.RESTORED: actions.restore,
        Step.SWITCHED: actions.switch,
        Step.STARTED: actions.start,
        Step.DONE: actions.cleanup,
    }
    return table[step]


def remaining(step: Step) -> tuple[Step, ...]:
    return ORDER[step.position + 1 :]


def crash_point() -> str:
    return os.environ.get(CRASH_AFTER_ENV, "")


def advance(
    migration: Migration,
    actions: StepActions,
    save: Callable[[Migration], Migration],
    progress: Callable[[Step, float, Migration], None],
    *,
    clock: Callable[[], float] = time.monotonic,
    crash: Callable[[Step], None] | None = None,
) -> Migration:
    """Run every step after ``migration.step``; save after each one."""
    for step in remaining(migration.step):
        began = clock()
        done = action_of(actions, step)(migration)
        took = clock() - began
        migration = save(
            replace(done, step=step, timings={**done.timings, step.value: round(took, 3)})
        )
        progress(step, took, migration)
        if crash is not None:
            crash(step)
    return migration


def crash_if_asked(step: Step) -> None:
    """The kill-matrix tests' hook: die like SIGKILL right after ``step``."""
    if crash_point() == step.value:
        os._exit(137)


def check_abortable(migration: Migration) -> None:
    if migration.step.position >= Step.SWITCHED.position:
        raise ConflictError(
            f"migration {migration.id} of {migration.namespace}/{migration.workload} has "
            f"switched to {migration.destination} already (step {migration.step.value}); "
            f"it cannot be aborted: finish it with `portway migrate {migration.workload} "
            f"--resume`, then migrate back with `--to {migration.source}`"
        )
