"""Podman volumes as portway Volume objects (``VolumeManager``) and pausing
writers (``Pauser``), mixed into ``PodmanDriver`` through the libpod API.

Kept out of ``podman.py`` so the driver's replica code and its volume code
change apart. Contents move through a short-lived busybox helper container,
as on Docker, so a tar made on either engine restores on the other.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

from podman.api import APIClient

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

_JSON = {"Content-Type": "application/json"}


#: container states in which a volume's user may be writing
_RUNNING = frozenset(("running", "paused"))


class PodmanVolumes(HelperCopy):
    """The volume half of the Podman driver; the driver supplies the plumbing."""

    target: str

    # supplied by PodmanDriver
    def _client(self) -> APIClient:
        raise NotImplementedError

    def _engine(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _handle(self, container_id: str, name: str) -> Handle:
        raise NotImplementedError

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        client = self._client()
        if method == "get":
            response = client.get(path, params=params or None)
        elif method == "delete":
            response = client.delete(path, params=params or None)
        else:
            response = client.post(
                path,
                params=params or None,
                data=None if body is None else json.dumps(body),
                headers=_JSON,
                timeout=HELPER_TIMEOUT_SECONDS,
            )
        response.raise_for_status()
        return response.json() if response.content else None

    # --- VolumeManager ----------------------------------------------------------

    def get_volume(self, name: str, *, size: bool = False) -> VolumeInfo | None:
        try:
            with self._engine(f"inspect volume {name}"):
                raw = obj(self._call("get", f"/volumes/{quote(name)}/json"))
        except ReplicaGoneError:
            return None
        return volume_info(raw, size)

    def list_volumes(self, selector: Mapping[str, str]) -> list[VolumeInfo]:
        filters = json.dumps({"label": [f"{k}={v}" for k, v in selector.items()]})
        with self._engine("list volumes"):
            rows = self._call("get", "/volumes/json", filters=filters)
        infos = [volume_info(obj(raw), False) for raw in rows or []]
        return matching(infos, selector)

    def create_volume(self, name: str, labels: Mapping[str, str]) -> VolumeInfo:
        found = self.get_volume(name)
        if found is not None:
            return found
        body = {"Name": name, "Driver": "local", "Label": dict(labels)}
        with self._engine(f"create volume {name}"):
            raw = obj(self._call("post", "/volumes/create", body))
        return volume_info(raw, False)

    def remove_volume(self, name: str) -> None:
        with suppress(ReplicaGoneError), self._engine(f"remove volume {name}"):
            self._call("delete", f"/volumes/{quote(name)}")

    def volume_users(self, name: str) -> list[VolumeUser]:
        filters = json.dumps({"volume": [name]})
        with self._engine(f"list containers using volume {name}"):
            rows = self._call("get", "/containers/json", all="true", filters=filters)
        return volume_users(rows or [], self._handle, _RUNNING)

    def _run_helper(self, volume: str, command: list[str], io: Path, *, read_only: bool) -> None:
        """Run ``command`` in a helper container with ``volume`` at /volume and
        ``io`` at /portway-io; raise unless it exits 0. No network and no owner
        labels: the controller never adopts it."""
        if self.get_volume(volume) is None:
            raise ReplicaGoneError(self.target, f"volume {volume}: no such volume")
        name = f"pw-volume-helper-{uuid.uuid4().hex[:10]}"
        spec = {
            "name": name,
            "image": HELPER_IMAGE,
            "entrypoint": command,
            "command": [],
            "labels": {LABEL_HELPER: "volume"},
            "netns": {"nsmode": "none"},
            "mounts": [
                {
                    "type": "bind",
                    "source": str(io),
                    "destination": HELPER_IO_PATH,
                    "options": ["rbind", "rw"],
                }
            ],
            "volumes": [
                {
                    "Name": volume,
                    "Dest": HELPER_VOLUME_PATH,
                    "Options": ["ro" if read_only else "rw"],
                }
            ],
        }
        with self._engine(f"create helper container for volume {volume}"):
            container = text(obj(self._call("post", "/containers/create", spec)).get("Id"))
        try:
            with self._engine(f"run helper container {name}"):
                self._call("post", f"/containers/{container}/start")
                code = self._call("post", f"/containers/{container}/wait", condition="exited")
            if code != 0:
                raise PermanentDriverError(
                    self.target, f"helper container for volume {volume} exited {code}"
                )
        finally:
            with suppress(Exception), self._engine(f"remove helper {name}"):
                self._call("delete", f"/containers/{container}", force="true")

    # --- Pauser -----------------------------------------------------------------

    def pause(self, handle: Handle) -> None:
        with self._engine(f"pause {handle.name}"):
            self._call("post", f"/containers/{quote(handle.id)}/pause")

    def unpause(self, handle: Handle) -> None:
        with self._engine(f"unpause {handle.name}"):
            self._call("post", f"/containers/{quote(handle.id)}/unpause")
