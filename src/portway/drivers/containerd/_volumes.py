"""Named volumes for containerd, which has no volume objects: portway keeps
each one as a directory under a data root (``<root>/<target>/<name>/_data``,
with its labels and creation time in ``volume.json`` beside it) and
bind-mounts it. Mixed into ``ContainerdDriver``; kept out of ``driver.py`` so
replica code and volume code change apart.

Contents are copied directly (Python's ``tarfile``), in the same plain tar
format the Docker and Podman helpers write, so archives move between engines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from portway.drivers.base import Handle, ReplicaRequest, ReplicaState, ReplicaStatus
from portway.drivers.containerd import _api
from portway.drivers.volumes import VolumeInfo, VolumeUser, directory_size, replica_volume_labels
from portway.errors import PermanentDriverError, ReplicaGoneError
from portway.spec.model import Volume, VolumeType, WorkloadSpec
from portway.spec.volumes import native_volume_name

#: where volume directories live (env PORTWAY_CONTAINERD_VOLUME_ROOT); one
#: subdirectory per target, so two targets on one host never share a volume
VOLUME_ROOT = Path(os.environ.get("PORTWAY_CONTAINERD_VOLUME_ROOT", "/var/lib/portway/volumes"))
#: containers list the volumes they mount here (comma-separated engine names):
#: containerd cannot be asked "who mounts this directory"
LABEL_MOUNTS = "portway.dev/volumes"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_META = "volume.json"
_DATA = "_data"


class ContainerdVolumes:
    """The volume half of the containerd driver; the driver supplies the plumbing."""

    target: str

    # supplied by ContainerdDriver
    def _client(self) -> _api.Api:
        raise NotImplementedError

    def _engine(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def list_owned(self, selector: Mapping[str, str]) -> list[ReplicaStatus]:
        raise NotImplementedError

    # --- paths ------------------------------------------------------------------

    def _volume_dir(self, name: str) -> Path:
        if not _NAME_RE.match(name):
            raise PermanentDriverError(
                self.target,
                f"{name!r} is not a volume name: use letters, digits, '_', '.' and '-' "
                "(at most 128, starting with a letter or digit)",
            )
        return VOLUME_ROOT / self.target / name

    def _read_info(self, directory: Path, size: bool) -> VolumeInfo | None:
        try:
            meta = json.loads((directory / _META).read_text())
        except (OSError, ValueError):
            return None  # not a volume (or one half made: create writes volume.json last)
        created = meta.get("createdAt")
        return VolumeInfo(
            name=directory.name,
            labels={str(k): str(v) for k, v in dict(meta.get("labels") or {}).items()},
            created_at=datetime.fromisoformat(created) if isinstance(created, str) else None,
            location=str(directory / _DATA),
            size=directory_size(directory / _DATA) if size else None,
        )

    # --- mounting (create) --------------------------------------------------------

    def mountable_spec(self, request: ReplicaRequest) -> tuple[WorkloadSpec, str]:
        """The spec with each named volume turned into a bind of its directory
        (made on first use), and the ``LABEL_MOUNTS`` value naming them."""
        spec = request.spec
        volumes: list[Volume] = []
        names: list[str] = []
        for volume in spec.volumes:
            if volume.type is not VolumeType.NAMED:
                volumes.append(volume)
                continue
            name = native_volume_name(request.namespace, request.workload, volume, request.index)
            info = self.create_volume(name, replica_volume_labels(request, self.target, volume))
            names.append(name)
            volumes.append(
                volume.model_copy(update={"type": VolumeType.BIND, "source": info.location})
            )
        if not names:
            return spec, ""
        return spec.model_copy(update={"volumes": volumes}), ",".join(names)

    # --- VolumeManager ----------------------------------------------------------

    def get_volume(self, name: str, *, size: bool = False) -> VolumeInfo | None:
        return self._read_info(self._volume_dir(name), size)

    def list_volumes(self, selector: Mapping[str, str]) -> list[VolumeInfo]:
        root = VOLUME_ROOT / self.target
        if not root.is_dir():
            return []
        found = []
        for directory in sorted(root.iterdir()):
            info = self._read_info(directory, False)
            if info and all(info.labels.get(k) == v for k, v in selector.items()):
                found.append(info)
        return found

    def create_volume(self, name: str, labels: Mapping[str, str]) -> VolumeInfo:
        directory = self._volume_dir(name)
        found = self._read_info(directory, False)
        if found is not None:
            return found
        meta = {"labels": dict(labels), "createdAt": datetime.now(UTC).isoformat()}
        with self._engine(f"create volume {name}"):
            (directory / _DATA).mkdir(parents=True, exist_ok=True)
            partial = directory / f".{_META}.tmp"
            partial.write_text(json.dumps(meta, sort_keys=True))
            partial.replace(directory / _META)
        info = self._read_info(directory, False)
        assert info is not None
        return info

    def remove_volume(self, name: str) -> None:
        directory = self._volume_dir(name)
        if not directory.exists():
            return
        users = self.volume_users(name)
        if users:
            # as Docker and Podman do: a volume a container mounts stays
            raise PermanentDriverError(
                self.target,
                f"remove volume {name}: in use by {', '.join(u.handle.name for u in users)}",
            )
        with self._engine(f"remove volume {name}"):
            shutil.rmtree(directory)

    def volume_users(self, name: str) -> list[VolumeUser]:
        return [
            VolumeUser(
                status.handle,
                status.state in (ReplicaState.RUNNING, ReplicaState.PAUSED),
                status.labels,
            )
            for status in self.list_owned({})
            if name in status.labels.get(LABEL_MOUNTS, "").split(",")
        ]

    def export_volume(self, name: str, dest: Path) -> None:
        data = self._data(name)
        partial = dest.with_name(f".{dest.name}.partial")
        with self._engine(f"export volume {name}"):
            # GNU format: busybox tar (the other engines' helpers) reads it
            with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as archive:
                archive.add(data, arcname=".", recursive=True)
            partial.replace(dest)

    def import_volume(self, name: str, source: Path) -> None:
        data = self._data(name)
        with self._engine(f"import volume {name}"):
            for child in data.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            with tarfile.open(source, "r") as archive:
                # "tar" keeps owners and modes but refuses paths that leave
                # the volume (absolute names, .., links pointing outside)
                archive.extractall(data, filter="tar")

    def _data(self, name: str) -> Path:
        data = self._volume_dir(name) / _DATA
        if self._read_info(data.parent, False) is None:
            raise ReplicaGoneError(self.target, f"volume {name}: no such volume")
        return data

    # --- Pauser -----------------------------------------------------------------

    def pause(self, handle: Handle) -> None:
        api = self._client()
        with self._engine(f"pause {handle.name}"):
            api.call(api.tasks.Pause, _api.tasks.PauseTaskRequest(container_id=handle.id))

    def unpause(self, handle: Handle) -> None:
        api = self._client()
        with self._engine(f"unpause {handle.name}"):
            api.call(api.tasks.Resume, _api.tasks.ResumeTaskRequest(container_id=handle.id))
