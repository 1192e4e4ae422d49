"""Named volumes as objects of their own: the optional protocols a driver
implements to list, create, remove, export and import them (``VolumeManager``)
and to pause the replicas that write to them (``Pauser``), plus what the
engine drivers share to do so.

Docker and Podman copy a volume's contents through a short-lived helper
container (busybox ``tar``) that mounts the volume and a staging directory of
this host; containerd volumes are portway's own directories, copied directly.
Either way the exchange format is one plain tar of the volume's root, so a tar
made on one engine restores on any other.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from stat import S_ISREG
from typing import Protocol, runtime_checkable

from portway.drivers.base import (
    LABEL_CLUSTER,
    LABEL_EPOCH,
    LABEL_GENERATION,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_PREFIX,
    LABEL_REPLICA,
    LABEL_TARGET,
    LABEL_TEMPLATE,
    Handle,
    ReplicaRequest,
)
from portway.drivers.engine_common import LABEL_VOLUME
from portway.spec.model import Volume
from portway.spec.volumes import volume_object

#: the Volume object (``portway volume ls`` name) an engine volume stands for
LABEL_VOLUME_OBJECT = LABEL_PREFIX + "volume-object"
#: marks helper containers: never replicas (no ``managed`` label), never adopted
LABEL_HELPER = LABEL_PREFIX + "helper"

#: the image helper containers run: it needs ``sh``, ``tar``, ``rm`` (busybox)
HELPER_IMAGE = os.environ.get("PORTWAY_VOLUME_HELPER_IMAGE", "portway/busybox:latest")
#: where a helper container sees the volume and the staging directory
HELPER_VOLUME_PATH = "/volume"
HELPER_IO_PATH = "/portway-io"
ARCHIVE_NAME = "volume.tar"
# Through sh: the image's busybox runs its applets (tar) from the shell; there
# may be no tar executable in PATH.
HELPER_EXPORT_COMMAND = [
    "sh",
    "-c",
    f"tar -cf {HELPER_IO_PATH}/{ARCHIVE_NAME} -C {HELPER_VOLUME_PATH} .",
]
# Empty the volume first: a restore replaces its contents, it does not merge.
# The three globs cover every name but . and .. (unmatched ones stay literal
# and rm -f ignores them).
HELPER_IMPORT_COMMAND = [
    "sh",
    "-c",
    f"rm -rf {HELPER_VOLUME_PATH}/..?* {HELPER_VOLUME_PATH}/.[!.]* {HELPER_VOLUME_PATH}/* && "
    f"tar -xf {HELPER_IO_PATH}/{ARCHIVE_NAME} -C {HELPER_VOLUME_PATH}",
]
#: how long a helper container may take (a 100 MB volume takes about a second)
HELPER_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class VolumeInfo:
    """One engine volume as its engine reports it."""

    name: str  # the engine's name (Docker/Podman volume name, containerd directory name)
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    #: where the data lives on the engine's host ("" when the engine does not say)
    location: str = ""
    #: bytes used, when asked for and readable (None: unknown)
    size: int | None = None


@dataclass(frozen=True)
class VolumeUser:
    """A container (replica or not) that mounts a volume."""

    handle: Handle
    running: bool
    labels: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class VolumeManager(Protocol):
    """A target whose named volumes portway can manage as objects."""

    def get_volume(self, name: str, *, size: bool = False) -> VolumeInfo | None:
        """The volume, or None if the engine has none by that name."""
        ...

    def list_volumes(self, selector: Mapping[str, str]) -> list[VolumeInfo]:
        """Every volume whose labels include ``selector``."""
        ...

    def create_volume(self, name: str, labels: Mapping[str, str]) -> VolumeInfo:
        """Create the volume (an existing one of that name is returned as is)."""
        ...

    def remove_volume(self, name: str) -> None:
        """Remove the volume; missing is not an error, in use is (the engine's word)."""
        ...

    def volume_users(self, name: str) -> list[VolumeUser]:
        """Every container, in any state, that mounts the volume."""
        ...

    def export_volume(self, name: str, dest: Path) -> None:
        """Write a tar of the volume's root to ``dest`` (a file on this host)."""
        ...

    def import_volume(self, name: str, source: Path) -> None:
        """Replace the volume's contents with the tar at ``source``."""
        ...


@runtime_checkable
class Pauser(Protocol):
    """A target that can freeze a running container's processes (cgroup
    freezer) and thaw them: how a volume's writers are held still while it is
    copied."""

    def pause(self, handle: Handle) -> None: ...

    def unpause(self, handle: Handle) -> None: ...


def replica_volume_labels(request: ReplicaRequest, target: str, volume: Volume) -> dict[str, str]:
    """Labels of a volume a replica's create makes: the replica's owner labels
    minus what is per replica or revision (a per-replica volume keeps its
    index, which is its identity), plus which Volume object it is."""
    per_replica = {LABEL_GENERATION, LABEL_TEMPLATE, LABEL_EPOCH}
    if not volume.per_replica:
        per_replica.add(LABEL_REPLICA)
    labels = {k: v for k, v in request.labels(target).items() if k not in per_replica}
    labels[LABEL_VOLUME] = volume.name
    obj = volume_object(request.workload, volume, request.index)
    if obj is not None:
        labels[LABEL_VOLUME_OBJECT] = obj
    return labels


def object_volume_labels(
    cluster: str, namespace: str, obj: str, target: str, extra: Mapping[str, str]
) -> dict[str, str]:
    """Labels of a volume made as an object (``portway volume create|import``)."""
    return {
        **extra,
        LABEL_MANAGED: "true",
        LABEL_CLUSTER: cluster,
        LABEL_NAMESPACE: namespace,
        LABEL_TARGET: target,
        LABEL_VOLUME_OBJECT: obj,
    }


def directory_size(path: Path) -> int | None:
    """Bytes of the regular files under ``path`` (None: not readable here)."""
    if not path.is_dir():
        return None
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                stat = (Path(root) / name).lstat()
            except OSError:
                continue  # removed while we walked
            if S_ISREG(stat.st_mode):
                total += stat.st_size
    return total


@contextmanager
def staging_dir(near: Path) -> Iterator[Path]:
    """A private directory next to ``near`` that a helper container bind-mounts
    (the same filesystem, so the result moves into place without a copy)."""
    near.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".portway-volume-", dir=near.parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def stage_archive(source: Path, staging: Path) -> None:
    """Put the tar at ``source`` where an import helper reads it (a hard link
    when it can, so a large archive is not copied)."""
    target = staging / ARCHIVE_NAME
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copyfile(source, target)


def take_archive(staging: Path, dest: Path) -> None:
    """Move the tar an export helper wrote into ``dest``."""
    written = staging / ARCHIVE_NAME
    if not written.is_file():
        raise FileNotFoundError(f"the helper container wrote no {ARCHIVE_NAME}")
    written.replace(dest)
