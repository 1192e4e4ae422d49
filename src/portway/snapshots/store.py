"""Where snapshots are kept: a small ``SnapshotStore`` protocol and the
default, a local directory (``$PORTWAY_HOME/snapshots``).

A store keeps, per namespace and snapshot name, the manifest and the
archive. Another store (restic, an S3 bucket) implements the same four
calls; docs/volumes.md sketches both.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from portway.errors import AlreadyExistsError, NotFoundError
from portway.snapshots.manifest import Manifest, check_snapshot_name

MANIFEST_FILE = "manifest.json"
ARCHIVE_FILE = "volume.tar"


@dataclass(frozen=True)
class StoredSnapshot:
    manifest: Manifest
    #: a local file holding the archive (a store that keeps archives
    #: elsewhere fetches it to a local file for ``open``)
    archive: Path


@runtime_checkable
class SnapshotStore(Protocol):
    def put(self, manifest: Manifest, archive: Path) -> StoredSnapshot:
        """Keep ``archive`` (moved or copied) under the manifest's namespace
        and name; refuses a name already taken."""
        ...

    def open(self, namespace: str, name: str) -> StoredSnapshot:
        """The snapshot; raises ``NotFoundError`` if there is none."""
        ...

    def list(self, namespace: str | None = None) -> list[Manifest]: ...

    def delete(self, namespace: str, name: str) -> bool:
        """Forget the snapshot; False if there was none."""
        ...


class LocalSnapshotStore:
    """``<root>/<namespace>/<name>/{manifest.json,volume.tar}``. The manifest is
    written last, so a snapshot interrupted while being stored is not listed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, namespace: str, name: str) -> Path:
        check_snapshot_name(name)
        return self.root / namespace / name

    def put(self, manifest: Manifest, archive: Path) -> StoredSnapshot:
        directory = self._dir(manifest.namespace, manifest.name)
        if (directory / MANIFEST_FILE).exists():
            raise AlreadyExistsError(
                f"snapshot {manifest.namespace}/{manifest.name} already exists; "
                "choose another --name"
            )
        directory.mkdir(parents=True, exist_ok=True)
        kept = directory / ARCHIVE_FILE
        try:
            archive.replace(kept)
        except OSError:  # another filesystem
            shutil.copyfile(archive, kept)
        partial = directory / f".{MANIFEST_FILE}.partial"
        partial.write_text(manifest.dumps())
        partial.replace(directory / MANIFEST_FILE)
        return StoredSnapshot(manifest, kept)

    def open(self, namespace: str, name: str) -> StoredSnapshot:
        directory = self._dir(namespace, name)
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise NotFoundError(f"snapshot {namespace}/{name} not found in {self.root}")
        return StoredSnapshot(Manifest.load(manifest_path), directory / ARCHIVE_FILE)

    def list(self, namespace: str | None = None) -> list[Manifest]:
        if not self.root.is_dir():
            return []
        spaces = [self.root / namespace] if namespace else sorted(self.root.iterdir())
        found = []
        for space in spaces:
            if not space.is_dir():
                continue
            for directory in sorted(space.iterdir()):
                path = directory / MANIFEST_FILE
                if path.is_file():
                    found.append(Manifest.load(path))
        return sorted(found, key=lambda m: (m.namespace, m.created_at, m.name))

    def delete(self, namespace: str, name: str) -> bool:
        directory = self._dir(namespace, name)
        if not directory.exists():
            return False
        # the manifest first: a half-deleted snapshot is never listed
        (directory / MANIFEST_FILE).unlink(missing_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
        return True
