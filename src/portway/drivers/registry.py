"""Drivers registered by import path and loaded on first use.

Loading lazily keeps ``portway schema`` and ``portway plan`` fast and keeps a
missing backend SDK from breaking targets that don't need it. Third parties
can ``register`` their own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from urllib.parse import urlparse

from portway.drivers.base import Driver
from portway.errors import DriverNotFoundError

# factory signature: (target name, address) -> Driver
DriverFactory = Callable[[str, str], Driver]

_PATHS: dict[str, str] = {
    "docker": "portway.drivers.docker:DockerDriver",
    "podman": "portway.drivers.podman:PodmanDriver",
    "containerd": "portway.drivers.containerd:ContainerdDriver",
    "wasm": "portway.drivers.wasm:WasmDriver",
    "kubernetes": "portway.drivers.kubernetes:KubernetesDriver",
}
_LOADED: dict[str, DriverFactory] = {}


def register(name: str, import_path: str) -> None:
    """Register ``module:attribute`` as the factory for driver ``name``."""
    _PATHS[name] = import_path
    _LOADED.pop(name, None)


def known_drivers() -> list[str]:
    return sorted(_PATHS)


def _factory(name: str) -> DriverFactory:
    if name in _LOADED:
        return _LOADED[name]
    path = _PATHS.get(name)
    if path is None:
        raise DriverNotFoundError(
            f"no driver named {name!r}; known drivers: {', '.join(known_drivers())}"
        )
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DriverNotFoundError(
            f"driver {name!r} cannot load ({exc}); is its SDK installed?"
        ) from exc
    factory: DriverFactory | None = getattr(module, attribute, None)
    if factory is None:
        raise DriverNotFoundError(f"driver {name!r}: {module_name} has no {attribute}")
    _LOADED[name] = factory
    return factory


def driver_name_from_address(address: str) -> str:
    """``docker:///var/run/docker.sock`` and ``docker+tcp://…`` -> ``docker``."""
    scheme = urlparse(address).scheme.partition("+")[0]
    if not scheme:
        raise DriverNotFoundError(
            f"target address {address!r} has no scheme; expected e.g. docker:///var/run/docker.sock"
        )
    return scheme


def open_driver(target: str, driver: str, address: str) -> Driver:
    return _factory(driver)(target, address)
