"""``portway migrate WORKLOAD --to TARGET``: move a stateful workload, with
its named volumes, to another target (docs/volumes.md, "Migration").

plan → quiesce (replicas to 0 through the store; the controller stops the
old copy) → snapshot each volume (consistency ``stopped``) → transfer
(verified by the archive's SHA-256) → restore on the destination (verified
file by file) → switch (one compare-and-swap of the workload record:
``placement.targets`` to the destination, replicas back) → start and verify
(ready, every replica on the destination, mounting the restored volumes) →
clean up the old volumes and the migration's snapshots. The order and the
resume logic are in ``migration_steps``; this module does each step's work,
idempotently.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets as random_ids
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from portway.capabilities.vocabulary import Feature
from portway.controller.records import KIND_WORKLOAD, TargetView, cluster_id, workload_of
from portway.controller.scheduling import Placements
from portway.drivers.base import (
    LABEL_CLUSTER,
    LABEL_NAMESPACE,
    LABEL_PREFIX,
    LABEL_TARGET,
    LABEL_WORKLOAD,
    ReplicaState,
)
from portway.drivers.volumes import LABEL_VOLUME_OBJECT, VolumeManager
from portway.errors import ConflictError, InputError, NotFoundError, PortwayError
from portway.service import preflight
from portway.service.app import App
from portway.service.migration_steps import (
    KIND_MIGRATION,
    Migration,
    Step,
    StepActions,
    VolumeMove,
    advance,
    check_abortable,
    crash_if_asked,
)
from portway.service.snapshots import manifest_of, snapshot_store
from portway.service.workloads import WaitResult, wait_for
from portway.snapshots.manifest import (
    Consistency,
    FileEntry,
    Manifest,
    compare,
    file_digest,
    scan_archive,
    verify_archive,
)
from portway.snapshots.tree import listable, settle, tree_state
from portway.spec.model import VolumeType, Workload
from portway.spec.volumes import engine_volume_name, volume_object
from portway.store import Record

#: marks a destination volume this migration made (so a resume or an abort
#: knows it may replace or remove it, and never touches anyone else's)
LABEL_MIGRATION = LABEL_PREFIX + "migration"

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Started:
    """How ``migrate`` began: a new migration, a resumed one, or none needed."""

    migration: Migration | None
    resumed: bool
    note: str = ""  # e.g. "no named volumes: a placement change"
    generation: int = 0  # of the workload record after a placement change


# --- planning -------------------------------------------------------------------


def _destination(app: App, name: str) -> tuple[TargetView, VolumeManager]:
    view = app.targets.view(name)
    if view is None:
        known = ", ".join(sorted(v.name for v in app.target_views())) or "none"
        raise NotFoundError(f"--to {name}: no such target (targets: {known})")
    driver = app.targets.driver(view)
    caps = driver.capabilities()
    missing = [
        f.value for f in (Feature.VOLUMES_NAMED, Feature.VOLUMES_SNAPSHOTS) if not caps.supports(f)
    ]
    if missing or not isinstance(driver, VolumeManager):
        raise InputError(
            f"--to {name}: target {name} ({view.driver}) cannot receive a stateful workload: "
            f"it lacks {', '.join(missing) or 'volume management'} (see docs/volumes.md)"
        )
    if not view.healthy:
        raise ConflictError(f"--to {name}: target {name} is unhealthy; migrate when it is healthy")
    return view, driver


def _source_of(record: Record, workload: Workload) -> str:
    placements = Placements.from_status(record.status, workload.spec.replicas)
    targets = sorted({s.target for s in placements.slots.values()})
    if len(targets) != 1:
        where = ", ".join(targets) or "nowhere (no replica is placed)"
        raise ConflictError(
            f"workload {workload.key} runs on {where}; migrate moves a workload that runs on "
            "one target (set spec.placement.targets to one target and apply first)"
        )
    return targets[0]


def _owned_objects(app: App, workload: Workload, source: str) -> list[str]:
    """The workload's own Volume objects that exist on ``source``."""
    wanted: list[str] = []
    for volume in workload.spec.volumes:
        if volume.type is not VolumeType.NAMED:
            continue
        if volume.source is not None or volume.claim is not None:
            what = f"source: {volume.source}" if volume.source else f"claim: {volume.claim}"
            raise InputError(
                f"spec.volumes[{volume.name}] ({what}) is not the workload's own volume; "
                "migrate moves only the workload's own named volumes. Move it with "
                "`portway volume export` / `volume import --target`, then migrate"
            )
        count = workload.spec.replicas if volume.per_replica else 1
        for index in range(max(count, 1)):
            obj = volume_object(workload.metadata.name, volume, index)
            if obj is not None:
                wanted.append(obj)
    view = app.targets.view(source)
    if view is None:
        raise ConflictError(f"source target {source} was removed; its volumes cannot be read")
    driver = app.targets.driver(view)
    if not isinstance(driver, VolumeManager):
        raise InputError(f"source target {source} does not manage named volumes")
    selector = {
        LABEL_CLUSTER: cluster_id(app.store),
        LABEL_NAMESPACE: workload.metadata.namespace,
        LABEL_WORKLOAD: workload.metadata.name,
    }
    present = {i.labels.get(LABEL_VOLUME_OBJECT) for i in driver.list_volumes(selector)}
    return [obj for obj in wanted if obj in present]


def _check_image(app: App, workload: Workload, view: TargetView) -> None:
    issues = preflight.check_image(workload, view, app.targets, "--to", 0)
    if issues:
        raise InputError(
            f"--to {view.name}: "
            + "; ".join(i.message for i in issues)
            + f" (load the image on {view.name} first)"
        )


def _existing(app: App, namespace: str, name: str) -> Migration | None:
    record = app.store.get(KIND_MIGRATION, namespace, name)
    if record is None:
        return None
    return Migration.from_json(dict(record.spec))


def begin(
    app: App, namespace: str, name: str, to: str | None, *, keep_source: bool, resume: bool
) -> Started:
    """Plan a migration (or find the one in progress). A workload without
    named volumes of its own needs no data moved: its placement is changed
    and the controller moves it the usual way (surge: the new copy is ready
    before the old one goes)."""
    found = _existing(app, namespace, name)
    if found is not None and found.step is not Step.DONE:
        if to is not None and to != found.destination:
            raise ConflictError(
                f"migration {found.id} of {namespace}/{name} to {found.destination} is in "
                f"progress (step {found.step.value}); finish it with --resume or --abort"
            )
        return Started(found, resumed=True)
    if resume:
        raise NotFoundError(f"no migration of {namespace}/{name} is in progress to resume")
    if to is None:
        raise InputError("give --to TARGET (or --resume to finish a migration in progress)")
    record = app.store.get(KIND_WORKLOAD, namespace, name)
    if record is None or record.deleting:
        raise NotFoundError(f"workload {namespace}/{name} not found (see `portway get workloads`)")
    workload = workload_of(record)
    view, dest = _destination(app, to)
    source = _source_of(record, workload)
    if source == to:
        raise InputError(f"--to {to}: workload {namespace}/{name} already runs on {to}")
    _check_image(app, workload, view)
    objects = _owned_objects(app, workload, source)
    if not objects:
        moved = _switch_placement(app, namespace, name, to, workload.spec.replicas, None)
        note = f"no named volumes of its own: moved to {to} by a placement change"
        return Started(None, False, note, moved.generation)
    for obj in objects:  # found before the quiesce, not after it
        if dest.get_volume(engine_volume_name(namespace, obj)) is not None:
            raise ConflictError(
                f"--to {to}: target {to} already has volume {obj} (kept by an earlier "
                f"`migrate --keep-source`?); it is never overwritten: remove it first "
                f"(`portway volume rm {obj} -n {namespace} --target {to}`)"
            )
    migration = Migration(
        id=random_ids.token_hex(4),
        namespace=namespace,
        workload=name,
        source=source,
        destination=to,
        replicas=workload.spec.replicas,
        placement_targets=tuple(workload.spec.placement.targets),
        keep_source=keep_source,
        volumes=tuple(VolumeMove(o, engine_volume_name(namespace, o)) for o in objects),
    )
    saved = _save(app, migration)
    crash_if_asked(Step.PLANNED)
    return Started(saved, resumed=False)


def _save(app: App, migration: Migration) -> Migration:
    spec = migration.to_json()
    for _ in range(5):
        record = app.store.get(KIND_MIGRATION, migration.namespace, migration.workload)
        try:
            if record is None:
                app.store.create(KIND_MIGRATION, migration.namespace, migration.workload, spec)
            else:
                app.store.update_spec(record, spec)
            return migration
        except PortwayError:
            continue  # written meanwhile: read again
    raise ConflictError(f"the migration record of {migration.workload} keeps changing; retry")


# --- the workload record -------------------------------------------------------


def _edit_workload(
    app: App, namespace: str, name: str, edit: Callable[[dict[str, Any]], None]
) -> Record:
    """One compare-and-swap of the workload record's spec (retried on conflict:
    the controller writes the status meanwhile)."""
    for _ in range(10):
        record = app.store.require(KIND_WORKLOAD, namespace, name)
        envelope = _deep(record.spec)
        edit(envelope)
        if envelope == dict(record.spec):
            return record
        try:
            return app.store.update_spec(record, envelope)
        except ConflictError:
            continue
    raise ConflictError(f"workload {namespace}/{name} keeps changing under us; retry")


def _deep(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep(v) for v in value]
    return value


def _set_replicas(app: App, namespace: str, name: str, replicas: int) -> Record:
    def edit(envelope: dict[str, Any]) -> None:
        envelope["workload"]["spec"]["replicas"] = replicas

    return _edit_workload(app, namespace, name, edit)


def _switch_placement(
    app: App, namespace: str, name: str, to: str, replicas: int, migration_id: str | None
) -> Record:
    def edit(envelope: dict[str, Any]) -> None:
        spec = envelope["workload"]["spec"]
        spec["replicas"] = replicas
        spec.setdefault("placement", {})["targets"] = [to]
        excluded = envelope.get("excludedTargets")
        if isinstance(excluded, dict):  # the plan checked the image there
            excluded.pop(to, None)
            if not excluded:
                envelope.pop("excludedTargets")
        if migration_id is not None:
            envelope["migratedBy"] = migration_id

    return _edit_workload(app, namespace, name, edit)


# --- the steps -----------------------------------------------------------------


class Steps(StepActions):
    """Each step's work against the store and the real engines."""

    def __init__(self, app: App, timeout: float, say: Callable[[str], None]) -> None:
        self.app = app
        self.timeout = timeout
        self.say = say
        #: archives whose SHA-256 this process checked against the manifest
        #: (transfer); restore checks the others itself (a resumed migration)
        self.verified: set[str] = set()

    # helpers

    def _driver(self, target: str) -> VolumeManager:
        view = self.app.targets.view(target)
        if view is None:
            raise ConflictError(f"target {target} was removed")
        driver = self.app.targets.driver(view)
        if not isinstance(driver, VolumeManager):
            raise InputError(f"target {target} does not manage named volumes")
        return driver

    def _copies(self, m: Migration, target: str, *, running_only: bool) -> list[str]:
        view = self.app.targets.view(target)
        if view is None:
            return []
        driver = self.app.targets.driver(view)
        owned = driver.list_owned(
            {
                LABEL_CLUSTER: cluster_id(self.app.store),
                LABEL_NAMESPACE: m.namespace,
                LABEL_WORKLOAD: m.workload,
            }
        )
        return [
            s.handle.name
            for s in owned
            if not running_only or s.state in (ReplicaState.RUNNING, ReplicaState.RESTARTING)
        ]

    def _until(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() >= deadline:
                raise ConflictError(
                    f"timed out after {self.timeout:.0f}s waiting until {what}; "
                    "run `portway migrate --resume` to go on waiting (or --abort before the switch)"
                )
            time.sleep(POLL_SECONDS)

    # steps

    def quiesce(self, m: Migration) -> Migration:
        """Replicas to 0; done once none *runs* on the source. The controller
        removes the stopped containers meanwhile; waiting for that too would
        add the removal to the downtime and protect nothing (the snapshot
        refuses a volume a running container mounts)."""
        _set_replicas(self.app, m.namespace, m.workload, 0)
        self._until(
            f"the replicas of {m.workload} on {m.source} are stopped",
            lambda: not self._copies(m, m.source, running_only=True),
        )
        return m

    def snapshot(self, m: Migration) -> Migration:
        """The stopped state of each volume: a snapshot, unless a listing of
        the stopped volume proves it is what the pre-copy copied (then the
        destination holds it already, verified, and nothing is read)."""
        for move in m.volumes:
            if move.unchanged:
                continue
            unchanged = self._unchanged_since_precopy(m, move)
            if unchanged is not None:
                m = m.with_volume(unchanged)
            else:
                m = m.with_volume(self._stopped_snapshot(m, move))
        return m

    def _stopped_snapshot(self, m: Migration, move: VolumeMove) -> VolumeMove:
        name = f"{move.object}-mig-{m.id}"
        kept = [s for s in snapshot_store(self.app).list(m.namespace) if s.name == name]
        # the manifest is written last: one kept is complete
        manifest = kept[0] if kept else self._take_stopped(m, move, name)
        return replace(
            move,
            snapshot=name,
            archive_sha256=manifest.archive_sha256,
            files=len(manifest.files),
            bytes=sum(f.size for f in manifest.files),
            consistency=manifest.consistency.value,
            unchanged=False,
        )

    def _unchanged_since_precopy(self, m: Migration, move: VolumeMove) -> VolumeMove | None:
        """``move`` marked unchanged if the stopped source volume's listing is
        the one taken just before the pre-copy (``snapshots.tree``); None when
        it differs or cannot be read (then a snapshot is taken)."""
        if not move.precopy_tree:
            return None
        source = self._driver(m.source)
        users = self._idle_users(m, move, source)
        root = self._local_root(m.source, source, move.engine_volume)
        if root is None:
            return None
        try:
            now = tree_state(root)
        except OSError:
            return None
        if now.digest != move.precopy_tree:
            return None
        consistency = Consistency.STOPPED if users else Consistency.NONE
        return replace(
            move,
            unchanged=True,
            files=now.files,
            bytes=now.bytes,
            consistency=consistency.value,
        )

    def _idle_users(self, m: Migration, move: VolumeMove, source: VolumeManager) -> list[str]:
        """The containers that mount the source volume, none running (the
        quiesce made sure; refuse otherwise)."""
        users = source.volume_users(move.engine_volume)
        running = [u.handle.name for u in users if u.running]
        if running:
            raise ConflictError(
                f"volume {move.object} on {m.source} is mounted by running containers "
                f"({', '.join(running)}) after the quiesce; run `portway migrate --resume`"
            )
        return [u.handle.name for u in users]

    def _local_root(self, target: str, driver: VolumeManager, engine_volume: str) -> Path | None:
        """Where the volume's files are on this host, if this process can
        read them there: only for an engine on this host (a remote daemon's
        mount point names a directory of another machine)."""
        view = self.app.targets.view(target)
        if view is None or not _on_this_host(view.address):
            return None
        info = driver.get_volume(engine_volume)
        if info is None or not info.location:
            return None
        root = Path(info.location)
        readable = root.is_dir() and os.access(root, os.R_OK | os.X_OK)
        return root if readable and listable(root) else None

    def _take_stopped(self, m: Migration, move: VolumeMove, name: str) -> Manifest:
        """A snapshot of a volume nothing runs on (the quiesce made sure),
        asked of the source engine alone (``volume snapshot`` would look for
        the volume on every target first), kept in the snapshot store."""
        view = self.app.targets.view(m.source)
        source = self._driver(m.source)
        users = self._idle_users(m, move, source)
        with _scratch(self.app) as scratch:
            archive = scratch / "volume.tar"
            source.export_volume(move.engine_volume, archive)
            manifest = manifest_of(
                archive,
                name=name,
                namespace=m.namespace,
                volume=move.object,
                engine_volume=move.engine_volume,
                target=m.source,
                driver=view.driver if view is not None else "",
                consistency=Consistency.STOPPED if users else Consistency.NONE,
                quiesced=tuple(users),
            )
            snapshot_store(self.app).put(manifest, archive)
        return manifest

    def transfer(self, m: Migration) -> Migration:
        """Every target here shares this host, so the snapshot store is where
        the destination reads from; the transfer is checking that what it
        will read is what was written. (Across hosts this step copies the
        archive through a remote ``SnapshotStore`` and checks the same.)"""
        store = snapshot_store(self.app)
        for move in m.volumes:
            if move.unchanged:
                continue  # nothing to carry: the destination has the pre-copy
            stored = store.open(m.namespace, move.snapshot)
            digest = file_digest(stored.archive)
            if digest != move.archive_sha256:
                raise ConflictError(
                    f"snapshot {move.snapshot}: the archive's SHA-256 is {digest}, the "
                    f"migration recorded {move.archive_sha256}; abort and migrate again"
                )
            self.verified.add(move.snapshot)
        return m

    def _write_destination(
        self, m: Migration, move: VolumeMove, archive: Path, files: tuple[FileEntry, ...]
    ) -> None:
        """Make (or reuse, if this migration made it) the destination volume,
        write the archive into it, read it back and compare every file."""
        dest = self._driver(m.destination)
        existing = dest.get_volume(move.engine_volume)
        if existing is not None and existing.labels.get(LABEL_MIGRATION) != m.id:
            raise ConflictError(
                f"target {m.destination} already has a volume {move.engine_volume} "
                f"(not made by this migration); remove it (`portway volume rm "
                f"{move.object} -n {m.namespace} --target {m.destination}`) or abort"
            )
        if existing is None:
            origin = self._driver(m.source).get_volume(move.engine_volume)
            labels = dict(origin.labels) if origin is not None else {}
            labels[LABEL_TARGET] = m.destination
            labels[LABEL_MIGRATION] = m.id
            dest.create_volume(move.engine_volume, labels)
        dest.import_volume(move.engine_volume, archive)
        with _scratch(self.app) as scratch:
            readback = scratch / "readback.tar"
            dest.export_volume(move.engine_volume, readback)
            after = compare(files, scan_archive(readback))
        if not after.ok:
            raise ConflictError(
                f"volume {move.object} on {m.destination} does not hold what was "
                f"copied: {after.describe()}"
            )

    def precopy(self, m: Migration) -> Migration:
        """Copy each volume while the old copy still serves (no pause: this
        copy need not be consistent). The final, stopped snapshot decides:
        if its files are these, the restore has nothing left to write, so
        the downtime does not include the import and its read-back."""
        source = self._driver(m.source)
        for move in m.volumes:
            if move.precopy:
                continue
            # listed BEFORE the copy: a change after this point, even during
            # the copy, makes the stopped volume's listing differ
            tree = self._listing_before_copy(m.source, source, move.engine_volume)
            with _scratch(self.app) as scratch:
                archive = scratch / "volume.tar"
                source.export_volume(move.engine_volume, archive)
                files = scan_archive(archive)
                self._write_destination(m, move, archive, files)
            m = m.with_volume(replace(move, precopy=files_digest(files), precopy_tree=tree))
        return m

    def _listing_before_copy(self, target: str, driver: VolumeManager, engine_volume: str) -> str:
        """The digest of the volume's listing now (``snapshots.tree``), or ""
        when it cannot prove anything later: unreadable from here, or racy."""
        root = self._local_root(target, driver, engine_volume)
        if root is None:
            return ""
        try:
            settle(root)
            state = tree_state(root)
        except OSError:
            return ""
        return "" if state.racy else state.digest

    def restore(self, m: Migration) -> Migration:
        store = snapshot_store(self.app)
        for move in m.volumes:
            if move.restored:
                continue
            if move.unchanged:
                if self._holds_precopy(m, move):
                    m = m.with_volume(replace(move, restored=True, from_precopy=True))
                    continue
                # the pre-copy is gone from the destination: the source is
                # still quiesced and intact, so take its stopped state now
                move = self._stopped_snapshot(m, move)
                m = m.with_volume(move)
            stored = store.open(m.namespace, move.snapshot)
            if (
                move.precopy
                and move.precopy == files_digest(stored.manifest.files)
                and self._holds_precopy(m, move)
            ):
                m = m.with_volume(replace(move, restored=True, from_precopy=True))
                continue
            if move.snapshot not in self.verified:  # the archive's SHA-256 covers every file
                before = verify_archive(stored.archive, stored.manifest)
                if not before.ok:
                    raise ConflictError(f"snapshot {move.snapshot}: {before.describe()}")
            self._write_destination(m, move, stored.archive, stored.manifest.files)
            m = m.with_volume(replace(move, restored=True))
        return m

    def _holds_precopy(self, m: Migration, move: VolumeMove) -> bool:
        """The destination volume is the one this migration's pre-copy wrote
        and read back; nothing has mounted it since (no replica is placed
        there before the switch)."""
        info = self._driver(m.destination).get_volume(move.engine_volume)
        return info is not None and info.labels.get(LABEL_MIGRATION) == m.id

    def switch(self, m: Migration) -> Migration:
        _switch_placement(self.app, m.namespace, m.workload, m.destination, m.replicas, m.id)
        return m

    def start(self, m: Migration) -> Migration:
        record = self.app.store.require(KIND_WORKLOAD, m.namespace, m.workload)
        result = wait_for(
            self.app,
            [(m.namespace, m.workload, record.generation)],
            timeout=self.timeout,
        )
        outcome = result.get(f"{m.namespace}/{m.workload}")
        if outcome is not WaitResult.READY:
            raise ConflictError(
                f"workload {m.namespace}/{m.workload} is not ready on {m.destination} "
                f"({outcome.value if outcome else 'unknown'}); see `portway describe workload "
                f"{m.workload} -n {m.namespace}`, then `portway migrate {m.workload} --resume`"
            )
        dest = self._driver(m.destination)
        for move in m.volumes:
            users = [u for u in dest.volume_users(move.engine_volume) if u.running]
            if not users:
                raise ConflictError(
                    f"no running replica on {m.destination} mounts the restored volume "
                    f"{move.engine_volume}"
                )
        return m

    def cleanup(self, m: Migration) -> Migration:
        for name in self._copies(m, m.source, running_only=True):
            raise ConflictError(f"a copy of {m.workload} still runs on {m.source}: {name}")
        if not m.keep_source:
            source = self._driver(m.source)
            for move in m.volumes:
                source.remove_volume(move.engine_volume)  # missing is not an error
        store = snapshot_store(self.app)
        for move in m.volumes:
            if move.snapshot:
                store.delete(m.namespace, move.snapshot)
        return m


@contextlib.contextmanager
def _scratch(app: App) -> Iterator[Path]:
    base = app.settings.home / "snapshots" / ".work"
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _on_this_host(address: str) -> bool:
    """``docker:///var/run/docker.sock`` yes; ``docker+tcp://host:2375`` no."""
    parsed = urlparse(address)
    return not parsed.netloc and "+" not in parsed.scheme


def files_digest(files: tuple[FileEntry, ...]) -> str:
    """One digest of a file list (paths, sizes, SHA-256s, link targets)."""
    text = "\n".join(
        f"{f.path}\0{f.size}\0{f.sha256}\0{f.link}" for f in sorted(files, key=lambda f: f.path)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def run(
    app: App,
    migration: Migration,
    timeout: float,
    progress: Callable[[Step, float, Migration], None],
    say: Callable[[str], None],
) -> Migration:
    return advance(
        migration,
        Steps(app, timeout, say),
        lambda m: _save(app, m),
        progress,
        crash=crash_if_asked,
    )


def abort(app: App, namespace: str, name: str, timeout: float) -> Migration:
    """Give the workload back to its old target: remove what the migration
    made on the destination, drop its snapshots, scale the old copy back."""
    migration = _existing(app, namespace, name)
    if migration is None or migration.step is Step.DONE:
        raise NotFoundError(f"no migration of {namespace}/{name} is in progress to abort")
    check_abortable(migration)
    view = app.targets.view(migration.destination)
    if view is not None:
        dest = app.targets.driver(view)
        if isinstance(dest, VolumeManager):
            for move in migration.volumes:
                info = dest.get_volume(move.engine_volume)
                if info is not None and info.labels.get(LABEL_MIGRATION) == migration.id:
                    dest.remove_volume(move.engine_volume)
    store = snapshot_store(app)
    for move in migration.volumes:
        if move.snapshot:
            store.delete(namespace, move.snapshot)
    scaled = _set_replicas(app, namespace, name, migration.replicas)
    record = app.store.get(KIND_MIGRATION, namespace, name)
    if record is not None:
        app.store.delete(record)
    result = wait_for(app, [(namespace, name, scaled.generation)], timeout=timeout)
    if result.get(f"{namespace}/{name}") is not WaitResult.READY:
        raise ConflictError(
            f"migration {migration.id} aborted, but {namespace}/{name} is not ready again on "
            f"{migration.source} within {timeout:.0f}s; see `portway describe workload {name}`"
        )
    return migration


def in_progress(app: App, namespace: str, name: str) -> Migration | None:
    found = _existing(app, namespace, name)
    return found if found is not None and found.step is not Step.DONE else None
