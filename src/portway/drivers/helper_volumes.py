"""What the Docker and Podman volume halves share: both engines answer a
volume inspect and a container listing with the same JSON shapes, and both
move contents through a busybox helper container (so a tar made on either
engine restores on the other). Each driver supplies its own API calls."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from portway.drivers.base import Handle
from portway.drivers.engine_common import obj, parse_engine_time, text
from portway.drivers.volumes import (
    HELPER_EXPORT_COMMAND,
    HELPER_IMPORT_COMMAND,
    VolumeInfo,
    VolumeUser,
    directory_size,
    stage_archive,
    staging_dir,
    take_archive,
)


def volume_info(raw: Mapping[str, Any], size: bool) -> VolumeInfo:
    """A volume inspect (or listing row) as a ``VolumeInfo``; ``size`` walks
    its mount point, which only a local engine can do."""
    location = text(raw.get("Mountpoint"))
    labels = obj(raw.get("Labels"))
    return VolumeInfo(
        name=text(raw.get("Name")),
        labels={str(k): str(v) for k, v in labels.items()},
        created_at=parse_engine_time(text(raw.get("CreatedAt"))),
        location=location,
        size=directory_size(Path(location)) if size and location else None,
    )


def matching(infos: Iterable[VolumeInfo], selector: Mapping[str, str]) -> list[VolumeInfo]:
    """The volumes carrying every label of ``selector``: Podman 4.3 ORs several
    label filters of a volume listing, so every listing is checked again."""
    return [i for i in infos if all(i.labels.get(k) == v for k, v in selector.items())]


def volume_users(
    rows: Iterable[Any], handle: Callable[[str, str], Handle], running_states: frozenset[str]
) -> list[VolumeUser]:
    """Containers of an engine's container listing, as users of a volume."""
    users = []
    for raw in rows:
        row = obj(raw)
        names = row.get("Names")
        shown = text(names[0]).lstrip("/") if isinstance(names, list) and names else ""
        labels = obj(row.get("Labels"))
        users.append(
            VolumeUser(
                handle=handle(text(row.get("Id")), shown),
                running=text(row.get("State")) in running_states,
                labels={str(k): str(v) for k, v in labels.items()},
            )
        )
    return users


class HelperCopy:
    """``export_volume``/``import_volume`` through a helper container; the
    driver's volume half supplies ``_run_helper``."""

    def _run_helper(self, volume: str, command: list[str], io: Path, *, read_only: bool) -> None:
        raise NotImplementedError

    def export_volume(self, name: str, dest: Path) -> None:
        with staging_dir(dest) as staging:
            self._run_helper(name, HELPER_EXPORT_COMMAND, staging, read_only=True)
            take_archive(staging, dest)

    def import_volume(self, name: str, source: Path) -> None:
        with staging_dir(source) as staging:
            stage_archive(source, staging)
            self._run_helper(name, HELPER_IMPORT_COMMAND, staging, read_only=False)
