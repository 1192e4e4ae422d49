"""The application object: settings, the store, targets.

The CLI (and later the HTTP API) talk to portway only through this layer,
so both see the same rules.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from portway.controller.namespaces import default_pod_security
from portway.controller.records import CLUSTER_NAMESPACE, KIND_TARGET, TargetView
from portway.controller.targets import TargetPool
from portway.errors import AlreadyExistsError
from portway.spec.namespace import PodSecurityLevel
from portway.store import Store

DEFAULT_TARGET = "local-docker"
WASM_TARGET = "local-wasm"
DOCKER_SOCKET = "/var/run/docker.sock"


def _split_paths(value: str) -> tuple[str, ...]:
    return tuple(p for p in value.split(":") if p)


@dataclass(frozen=True)
class Settings:
    home: Path = field(
        default_factory=lambda: Path(os.environ.get("PORTWAY_HOME", Path.home() / ".portway"))
    )
    """Where the default SQLite store lives (env PORTWAY_HOME, default ~/.portway)."""
    store_url: str = field(default_factory=lambda: os.environ.get("PORTWAY_STORE", ""))
    """Any SQLAlchemy URL (env PORTWAY_STORE); empty means SQLite under ``home``."""
    docker_socket: str = field(
        default_factory=lambda: os.environ.get("PORTWAY_DOCKER_SOCKET", DOCKER_SOCKET)
    )
    """Socket registered as target ``local-docker`` on first use."""
    local_wasm: bool = field(
        default_factory=lambda: (
            os.environ.get("PORTWAY_LOCAL_WASM", "1").lower() not in ("0", "false", "no", "off")
        )
    )
    """Register the wasm tier (state under ``home/wasm``) as target ``local-wasm``
    on first use (env PORTWAY_LOCAL_WASM=0: do not)."""
    bind_mount_prefixes: tuple[str, ...] = field(
        default_factory=lambda: _split_paths(os.environ.get("PORTWAY_ALLOW_BIND", ""))
    )
    """Host path prefixes bind volumes may use (env PORTWAY_ALLOW_BIND, ':'-separated).
    Empty by default: a bind mount hands a container part of the host. Namespace
    policy judges bind volumes on top of this (baseline refuses them)."""
    default_pod_security: PodSecurityLevel = field(default_factory=default_pod_security)
    """Pod Security level of a namespace with no Namespace object (env
    PORTWAY_DEFAULT_POD_SECURITY: privileged, baseline or restricted; default
    baseline, which refuses only known privilege escalations)."""

    secret_key_file: Path | None = field(
        default_factory=lambda: (
            Path(os.environ["PORTWAY_SECRET_KEY_FILE"])
            if os.environ.get("PORTWAY_SECRET_KEY_FILE")
            else None
        )
    )
    """The key that seals secrets (env PORTWAY_SECRET_KEY_FILE; None: ``home``
    /secret.key), made on first use with mode 0600. Back it up: without it no
    stored secret can be read."""

    def resolved_secret_key_file(self) -> Path:
        return self.secret_key_file or self.home / "secret.key"

    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{self.home / 'state.db'}"


class App:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        url = self.settings.resolved_store_url()
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.store = Store(url)
        self.targets = TargetPool(self.store)
        self.ensure_default_target()

    def close(self) -> None:
        self.store.close()

    def ensure_default_target(self) -> None:
        """On first use, register the local Docker socket as ``local-docker``
        and the wasm tier (wasmtime, state under ``home/wasm``) as ``local-wasm``."""
        if self.store.list(KIND_TARGET, CLUSTER_NAMESPACE):
            return
        local = {"portway.dev/local": "true"}
        defaults = []
        if Path(self.settings.docker_socket).exists():
            docker = {"driver": "docker", "address": f"docker://{self.settings.docker_socket}"}
            defaults.append((DEFAULT_TARGET, docker))
        if self.settings.local_wasm:
            state = (self.settings.home / "wasm").resolve()
            defaults.append((WASM_TARGET, {"driver": "wasm", "address": f"wasm://{state}"}))
        for name, spec in defaults:
            with contextlib.suppress(AlreadyExistsError):  # another process was first
                self.store.create(KIND_TARGET, CLUSTER_NAMESPACE, name, {**spec, "labels": local})

    def target_views(self) -> list[TargetView]:
        return self.targets.views()
