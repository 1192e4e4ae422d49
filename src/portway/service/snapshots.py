"""Snapshots of volumes: ``portway volume snapshot|snapshots|restore|export|import``.

A snapshot is the volume's contents as one tar plus a manifest (each file's
size and SHA-256, where it came from, and how the copy was kept consistent).
No engine here offers an atomic volume snapshot, so a volume that running
containers mount is copied while they are paused (cgroup freezer) and
thawed right after; a restore needs the volume's writers stopped. Every
restore and import verifies the archive against its manifest before it
writes and the volume's new contents after, and says what it checked.

These steps are the building blocks of migration (docs/volumes.md):
snapshot on the old target, export, import on the new one, verify.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from portway.drivers.base import Handle
from portway.drivers.volumes import Pauser, VolumeManager
from portway.errors import ConflictError, InputError, PortwayError
from portway.service.app import App
from portway.service.volumes import (
    ORIGIN_IMPORT,
    VolumeView,
    create_volume,
    find_volume,
    remove_volume,
    volume_target,
)
from portway.snapshots.bundle import read_bundle, write_bundle
from portway.snapshots.manifest import (
    Consistency,
    Manifest,
    Verification,
    check_snapshot_name,
    compare,
    file_digest,
    scan_archive,
    verify_archive,
)
from portway.snapshots.store import LocalSnapshotStore, SnapshotStore, StoredSnapshot


def snapshot_store(app: App) -> SnapshotStore:
    """The default store: ``$PORTWAY_HOME/snapshots``."""
    return LocalSnapshotStore(app.settings.home / "snapshots")


@contextmanager
def _workdir(app: App) -> Iterator[Path]:
    """Scratch space beside the snapshots (same filesystem: archives are
    moved into the store, not copied); engines bind-mount parts of it."""
    base = app.settings.home / "snapshots" / ".work"
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _manager(app: App, volume: VolumeView) -> VolumeManager:
    view = app.targets.view(volume.target)
    if view is None:
        raise InputError(f"volume {volume.namespace}/{volume.name}: {volume.problem}")
    driver = app.targets.driver(view)
    if not isinstance(driver, VolumeManager):
        raise InputError(f"target {volume.target} does not manage named volumes")
    return driver


def _existing(app: App, namespace: str, name: str, target: str | None = None) -> VolumeView:
    volume = find_volume(app, namespace, name, size=False, target=target)
    if volume.info is None:
        raise ConflictError(f"volume {namespace}/{name}: {volume.problem}")
    return volume


# --- taking -------------------------------------------------------------------


@contextmanager
def _quiesced(driver: VolumeManager, volume: VolumeView) -> Iterator[tuple[Consistency, list[str]]]:
    """Hold the volume's writers still for the copy: pause the running ones
    (thawed on the way out, whatever happens), or note that none runs."""
    running = [u for u in volume.users if u.running]
    if not volume.users:
        yield Consistency.NONE, []
        return
    if not running:
        yield Consistency.STOPPED, [u.handle.name for u in volume.users]
        return
    if not isinstance(driver, Pauser):
        raise ConflictError(
            f"volume {volume.namespace}/{volume.name} is written by running containers "
            f"({', '.join(volume.in_use_by())}) and target {volume.target} cannot pause them; "
            "stop them (scale the workload to 0) and snapshot again"
        )
    paused: list[Handle] = []
    try:
        for user in running:
            driver.pause(user.handle)
            paused.append(user.handle)
        yield Consistency.PAUSED, [h.name for h in paused]
    finally:
        problems = []
        for handle in paused:
            try:
                driver.unpause(handle)
            except PortwayError as exc:
                problems.append(f"{handle.name}: {exc}")
        if problems:
            raise ConflictError(
                "the snapshot was taken but these containers could not be thawed: "
                + "; ".join(problems)
            )


def _default_name(volume: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{volume}-{stamp}-{secrets.token_hex(2)}"


def _take(app: App, volume: VolumeView, name: str, workdir: Path) -> tuple[Manifest, Path]:
    driver = _manager(app, volume)
    archive = workdir / "volume.tar"
    with _quiesced(driver, volume) as (consistency, containers):
        driver.export_volume(volume.engine_volume, archive)
    manifest = manifest_of(
        archive,
        name=name,
        namespace=volume.namespace,
        volume=volume.name,
        engine_volume=volume.engine_volume,
        target=volume.target,
        driver=volume.driver,
        consistency=consistency,
        quiesced=tuple(containers),
    )
    return manifest, archive


def manifest_of(
    archive: Path,
    *,
    name: str,
    namespace: str,
    volume: str,
    engine_volume: str,
    target: str,
    driver: str,
    consistency: Consistency,
    quiesced: tuple[str, ...],
) -> Manifest:
    """The manifest of a freshly exported ``archive``: every file's size and
    SHA-256, the archive's own digest and size, and how it was made."""
    return Manifest(
        name=name,
        namespace=namespace,
        volume=volume,
        engine_volume=engine_volume,
        target=target,
        driver=driver,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        consistency=consistency,
        files=scan_archive(archive),
        archive_sha256=file_digest(archive),
        archive_size=archive.stat().st_size,
        quiesced=quiesced,
    )


def take_snapshot(
    app: App, namespace: str, volume: str, name: str | None, target: str | None = None
) -> StoredSnapshot:
    snapshot = check_snapshot_name(name, "--name") if name else _default_name(volume)
    store = snapshot_store(app)
    found = _existing(app, namespace, volume, target)
    if any(m.name == snapshot for m in store.list(namespace)):
        raise ConflictError(
            f"snapshot {namespace}/{snapshot} already exists; choose another --name"
        )
    with _workdir(app) as workdir:
        manifest, archive = _take(app, found, snapshot, workdir)
        return store.put(manifest, archive)


def list_snapshots(app: App, namespace: str | None, volume: str | None) -> list[Manifest]:
    found = snapshot_store(app).list(namespace)
    return [m for m in found if volume is None or m.volume == volume]


def delete_snapshots_of(app: App, namespace: str, volume: str) -> tuple[str, ...]:
    store = snapshot_store(app)
    gone = []
    for manifest in store.list(namespace):
        if manifest.volume == volume and store.delete(namespace, manifest.name):
            gone.append(manifest.name)
    return tuple(gone)


# --- restoring ----------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    volume: VolumeView
    manifest: Manifest
    before: Verification  # the archive against its manifest, before writing
    after: Verification  # the volume's new contents against the manifest

    def describe(self) -> str:
        return f"archive: {self.before.describe()}; volume after restore: {self.after.describe()}"


def _refuse_running(volume: VolumeView, action: str) -> None:
    running = [u for u in volume.users if u.running]
    if running:
        names = ", ".join(volume.in_use_by())
        raise ConflictError(
            f"cannot {action} volume {volume.namespace}/{volume.name} while running containers "
            f"use it ({names}); scale the workload to 0 (or delete it), then retry"
        )


def _write_verified(
    driver: VolumeManager, volume: VolumeView, manifest: Manifest, archive: Path, workdir: Path
) -> tuple[Verification, Verification]:
    before = verify_archive(archive, manifest)
    if not before.ok:
        raise ConflictError(
            f"snapshot {manifest.namespace}/{manifest.name} does not match its manifest, "
            f"nothing was written: {before.describe()}"
        )
    driver.import_volume(volume.engine_volume, archive)
    readback = workdir / "readback.tar"
    driver.export_volume(volume.engine_volume, readback)
    after = compare(manifest.files, scan_archive(readback))
    if not after.ok:
        raise ConflictError(
            f"volume {volume.namespace}/{volume.name} does not hold what snapshot "
            f"{manifest.name} holds after the restore: {after.describe()}"
        )
    return before, after


def restore_snapshot(
    app: App, namespace: str, volume: str, snapshot: str, target: str | None = None
) -> Restored:
    stored = snapshot_store(app).open(namespace, snapshot)
    found = _existing(app, namespace, volume, target)
    _refuse_running(found, "restore")
    with _workdir(app) as workdir:
        before, after = _write_verified(
            _manager(app, found), found, stored.manifest, stored.archive, workdir
        )
    return Restored(found, stored.manifest, before, after)


# --- moving between installations and targets -----------------------------------


@dataclass(frozen=True)
class Exported:
    manifest: Manifest
    path: Path
    size: int


def export_volume(
    app: App,
    namespace: str,
    volume: str | None,
    snapshot: str | None,
    out: Path,
    target: str | None = None,
) -> Exported:
    """Write the export file of a stored snapshot, or of a fresh one of
    ``volume`` (taken like ``volume snapshot`` but not kept)."""
    if (volume is None) == (snapshot is None):
        raise InputError("give either VOLUME or --snapshot NAME")
    if out.exists() and out.is_dir():
        raise InputError(f"-o {out}: is a directory; give a file name, e.g. {out}/volume.tar")
    if snapshot is not None:
        stored = snapshot_store(app).open(namespace, snapshot)
        write_bundle(stored.manifest, stored.archive, out)
        manifest = stored.manifest
    else:
        assert volume is not None
        found = _existing(app, namespace, volume, target)
        with _workdir(app) as workdir:
            manifest, archive = _take(app, found, _default_name(volume), workdir)
            write_bundle(manifest, archive, out)
    return Exported(manifest, out, out.stat().st_size)


def import_volume(app: App, file: Path, namespace: str, name: str, target: str | None) -> Restored:
    """Make volume ``name`` on ``target`` from an export file, verified
    before and after writing. The new volume is removed again if anything
    fails, so an import either completes or leaves nothing."""
    view, driver = volume_target(app, target)
    with _workdir(app) as workdir:
        manifest, archive = read_bundle(file, workdir)
        check = verify_archive(archive, manifest)
        if not check.ok:
            raise ConflictError(
                f"{file}: the archive does not match its manifest: {check.describe()}"
            )
        created = create_volume(
            app,
            namespace,
            name,
            view.name,
            {},
            origin=ORIGIN_IMPORT,
            extra_spec={
                "importedFrom": {
                    "snapshot": manifest.name,
                    "volume": f"{manifest.namespace}/{manifest.volume}",
                    "target": manifest.target,
                    "driver": manifest.driver,
                    "archiveSha256": manifest.archive_sha256,
                }
            },
        )
        try:
            before, after = _write_verified(driver, created, manifest, archive, workdir)
        except BaseException:
            # the first error says more; a volume left behind is listed for removal
            with contextlib.suppress(PortwayError):
                remove_volume(app, namespace, name)
            raise
    return Restored(created, manifest, before, after)
