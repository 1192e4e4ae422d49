"""Volume snapshots: manifests with a checksum per file, the export file
format, and where snapshots are kept (``SnapshotStore``)."""

from portway.snapshots.manifest import Consistency, FileEntry, Manifest, Verification
from portway.snapshots.store import LocalSnapshotStore, SnapshotStore, StoredSnapshot

__all__ = [
    "Consistency",
    "FileEntry",
    "LocalSnapshotStore",
    "Manifest",
    "SnapshotStore",
    "StoredSnapshot",
    "Verification",
]
