"""Names of named volumes: one rule shared by every driver, the controller and
the ``portway volume`` commands, so all of them find the same engine volume.

A Volume object ``NAME`` of namespace ``NS`` is the engine volume ``NS-NAME``.
A workload's own volume is the Volume object ``<workload>-<volume>`` (with
``-<index>`` for a per-replica volume), so its engine name is the documented
default ``<namespace>-<workload>-<volume>``. ``claim`` names a Volume object
instead; ``source`` names an engine volume outright (no object behind it).
"""

from __future__ import annotations

from portway.spec.model import Volume, VolumeType


def volume_object(workload: str, volume: Volume, index: int) -> str | None:
    """The Volume object replica ``index`` of ``workload`` mounts for
    ``volume`` (None: ``source`` names an engine volume outright)."""
    if volume.type is not VolumeType.NAMED:
        raise ValueError(f"volume {volume.name!r} is {volume.type.value}, not named")
    if volume.source is not None:
        return None
    base = volume.claim or f"{workload}-{volume.name}"
    return f"{base}-{index}" if volume.per_replica else base


def engine_volume_name(namespace: str, obj: str) -> str:
    """The engine's name for Volume object ``obj`` of ``namespace``."""
    return f"{namespace}-{obj}"


def native_volume_name(namespace: str, workload: str, volume: Volume, index: int) -> str:
    """The engine volume replica ``index`` of ``workload`` mounts for ``volume``."""
    obj = volume_object(workload, volume, index)
    if obj is None:
        assert volume.source is not None
        return volume.source
    return engine_volume_name(namespace, obj)
