"""Docker volumes as portway Volume objects (``VolumeManager``) and pausing
writers (``Pauser``), mixed into ``DockerDriver``.

Kept out of ``docker.py`` so the driver's replica code and its volume code
change apart. Contents move through a short-lived busybox helper container
that mounts the volume and a staging directory of this host, so the engine
itself reads and writes the files (ownership and modes preserved, whatever
the volume driver).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager, suppress
from pathlib import Path

import docker
from docker.types import Mount

from portway.drivers.base import Handle
from portway.drivers.engine_common import obj, text
from portway.drivers.helper_volumes import HelperCopy, matching, volume_info, volume_users
from portway.drivers.volumes import (
    HELPER_IMAGE,
    HELPER_IO_PATH,
    HELPER_TIMEOUT_SECONDS,
    HELPER_VOLUME_PATH,
    LABEL_HELPER,
    VolumeInfo,
    VolumeUser,
)
from portway.errors import PermanentDriverError, ReplicaGoneError

#: container states in which a volume's user may be writing
_RUNNING = frozenset(("running", "paused", "restarting"))


class DockerVolumes(HelperCopy):
    """The volume half of the Docker driver; the driver supplies the plumbing."""

    target: str

    # supplied by DockerDriver
    def _client(self) -> docker.APIClient:
        raise NotImplementedError

    def _engine(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _handle(self, container_id: str, name: str) -> Handle:
        raise NotImplementedError

    # --- VolumeManager ----------------------------------------------------------

    def get_volume(self, name: str, *, size: bool = False) -> VolumeInfo | None:
        try:
            with self._engine(f"inspect volume {name}"):
                raw = obj(self._client().inspect_volume(name))
        except ReplicaGoneError:
            return None
        return volume_info(raw, size)

    def list_volumes(self, selector: Mapping[str, str]) -> list[VolumeInfo]:
        filters = {"label": [f"{k}={v}" for k, v in selector.items()]}
        with self._engine("list volumes"):
            found = obj(self._client().volumes(filters=filters)).get("Volumes") or []
        infos = [volume_info(obj(raw), False) for raw in found]
        return matching(infos, selector)

    def create_volume(self, name: str, labels: Mapping[str, str]) -> VolumeInfo:
        with self._engine(f"create volume {name}"):
            # Docker answers an existing name with that volume (labels unchanged)
            raw = obj(self._client().create_volume(name, driver="local", labels=dict(labels)))
        return volume_info(raw, False)

    def remove_volume(self, name: str) -> None:
        with suppress(ReplicaGoneError), self._engine(f"remove volume {name}"):
            self._client().remove_volume(name)

    def volume_users(self, name: str) -> list[VolumeUser]:
        with self._engine(f"list containers using volume {name}"):
            rows = self._client().containers(all=True, filters={"volume": name})
        return volume_users(rows or [], self._handle, _RUNNING)

    def _run_helper(self, volume: str, command: list[str], io: Path, *, read_only: bool) -> None:
        """Run ``command`` in a helper container with ``volume`` at /volume and
        ``io`` at /portway-io; raise unless it exits 0. The helper has no
        network and no owner labels, so the controller never adopts it."""
        if self.get_volume(volume) is None:
            raise ReplicaGoneError(self.target, f"volume {volume}: no such volume")
        client = self._client()
        mounts = [
            Mount(HELPER_VOLUME_PATH, volume, type="volume", read_only=read_only),
            Mount(HELPER_IO_PATH, str(io), type="bind"),
        ]
        name = f"pw-volume-helper-{uuid.uuid4().hex[:10]}"
        with self._engine(f"create helper container for volume {volume}"):
            created = obj(
                client.create_container(
                    HELPER_IMAGE,
                    name=name,
                    entrypoint=command,
                    labels={LABEL_HELPER: "volume"},
                    host_config=client.create_host_config(mounts=mounts, network_mode="none"),
                )
            )
        container = text(created.get("Id"))
        try:
            with self._engine(f"run helper container {name}"):
                client.start(container)
                waited = obj(client.wait(container, timeout=int(HELPER_TIMEOUT_SECONDS)))
                code = waited.get("StatusCode")
                if code != 0:
                    logs = client.logs(container, tail=20).decode(errors="replace").strip()
                    raise PermanentDriverError(
                        self.target,
                        f"helper container for volume {volume} exited {code}: {logs}",
                    )
        finally:
            with suppress(Exception), self._engine(f"remove helper {name}"):
                client.remove_container(container, force=True)

    # --- Pauser -----------------------------------------------------------------

    def pause(self, handle: Handle) -> None:
        with self._engine(f"pause {handle.name}"):
            self._client().pause(handle.id)

    def unpause(self, handle: Handle) -> None:
        with self._engine(f"unpause {handle.name}"):
            self._client().unpause(handle.id)
