"""Settings under ``extensions.<driver>`` shared by engines that speak
Docker's vocabulary (Docker, Podman): parsed in one place so both drivers
accept and refuse exactly the same keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from portway.drivers.base import LABEL_PREFIX
from portway.errors import PermanentDriverError
from portway.spec.model import parse_bytes

ENGINE_EXTENSION_KEYS = ("runtime", "labels", "shmSize", "init")


@dataclass(frozen=True)
class EngineExtension:
    runtime: str | None = None
    labels: Mapping[str, str] | None = None
    shm_size: int | None = None
    # An init process as PID 1 forwards SIGTERM and reaps zombies. Without it,
    # a program that installs no SIGTERM handler (busybox httpd, sleep) ignores
    # SIGTERM as PID 1 and every graceful stop waits for the full timeout.
    # ``extensions.<driver>.init: false`` turns it off.
    init: bool = True


def parse_engine_extension(driver: str, target: str, raw: Mapping[str, Any]) -> EngineExtension:
    """Check and read ``extensions.<driver>`` for an engine with Docker's API
    vocabulary (Docker, Podman). Raises ``PermanentDriverError`` naming the key."""
    unknown = sorted(set(raw) - set(ENGINE_EXTENSION_KEYS))
    if unknown:
        raise PermanentDriverError(
            target,
            f"extensions.{driver}.{unknown[0]} is not supported by the {driver} driver "
            f"(supported keys: {', '.join(ENGINE_EXTENSION_KEYS)})",
        )
    runtime = raw.get("runtime")
    if runtime is not None and (not isinstance(runtime, str) or not runtime):
        raise PermanentDriverError(
            target, f"extensions.{driver}.runtime must be a runtime handler name"
        )
    labels = raw.get("labels")
    if labels is not None:
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise PermanentDriverError(
                target, f"extensions.{driver}.labels must map strings to strings"
            )
        reserved = sorted(k for k in labels if k.startswith(LABEL_PREFIX))
        if reserved:
            raise PermanentDriverError(
                target,
                f"extensions.{driver}.labels may not set {reserved[0]!r}: "
                f"the {LABEL_PREFIX} prefix is reserved for portway",
            )
    shm_size: int | None = None
    if raw.get("shmSize") is not None:
        try:
            shm_size = parse_bytes(raw["shmSize"])
        except (TypeError, ValueError) as exc:
            raise PermanentDriverError(target, f"extensions.{driver}.shmSize: {exc}") from None
    init = raw.get("init", True)
    if not isinstance(init, bool):
        raise PermanentDriverError(target, f"extensions.{driver}.init must be true or false")
    return EngineExtension(runtime=runtime, labels=labels, shm_size=shm_size, init=init)
