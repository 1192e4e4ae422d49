"""The CLI's contexts file: named servers, each with a token file.

``~/.portway/config.yaml`` (``PORTWAY_CONFIG`` overrides)::

    current: prod            # or null: the embedded local store
    contexts:
      prod: {server: https://cp.example:8443, tokenFile: ~/.portway/prod.token,
             caFile: ~/.portway/ca.pem, insecure: false}

The file holds paths, never tokens, yet it says where credentials are, so it
is written with mode 0600 like the token files themselves.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from portway.errors import InputError, Issue

#: env var naming the contexts file
CONFIG_ENV = "PORTWAY_CONFIG"
#: env var naming the context to use, overriding the file's ``current``
CONTEXT_ENV = "PORTWAY_CONTEXT"
#: ``PORTWAY_CONTEXT`` value (and ``--context`` value) meaning the embedded store
LOCAL = "local"

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")


def config_path() -> Path:
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    return Path("~/.portway/config.yaml").expanduser()


@dataclass(frozen=True)
class Context:
    """How to reach one server."""

    name: str
    server: str  # base URL, e.g. https://127.0.0.1:8443
    token_file: Path
    ca_file: Path | None = None
    #: skip TLS verification (a test server with a throw-away certificate)
    insecure: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"server": self.server, "tokenFile": str(self.token_file)}
        if self.ca_file is not None:
            data["caFile"] = str(self.ca_file)
        if self.insecure:
            data["insecure"] = True
        return data

    def read_token(self) -> str:
        """The bearer token, read now (so a rotated file takes effect at once)."""
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(
                f"context {self.name!r}: cannot read token file {self.token_file}: "
                f"{exc.strerror or exc}; fix it with `portway context add {self.name} "
                "--server URL --token-file F`"
            ) from None
        if not token:
            raise InputError(f"context {self.name!r}: token file {self.token_file} is empty")
        return token


def check_name(name: str) -> str:
    if not _NAME.match(name) or name == LOCAL:
        raise InputError(
            f"context name {name!r}: expected lowercase letters, digits, '-', '_' or '.' "
            f"(at most 63, starting and ending with a letter or digit), not {LOCAL!r}"
        )
    return name


def check_server(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--server {url}: expected an http:// or https:// URL with a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InputError(f"--server {url}: expected only scheme, host and port (no path)")
    return url.rstrip("/")


@dataclass(frozen=True)
class ContextConfig:
    """The whole contexts file."""

    current: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)

    def with_context(self, context: Context) -> ContextConfig:
        return replace(self, contexts={**self.contexts, context.name: context})

    def without(self, name: str) -> ContextConfig:
        self.require(name)
        rest = {k: v for k, v in self.contexts.items() if k != name}
        return ContextConfig(None if self.current == name else self.current, rest)

    def using(self, name: str | None) -> ContextConfig:
        if name is not None:
            self.require(name)
        return replace(self, current=name)

    def require(self, name: str) -> Context:
        context = self.contexts.get(name)
        if context is None:
            known = ", ".join(sorted(self.contexts)) or "none"
            raise InputError(
                f"no context named {name!r} (known: {known}); add it with "
                f"`portway context add {name} --server URL --token-file F`"
            )
        return context

    def active(self, override: str | None = None) -> Context | None:
        """The context commands use: ``override`` (``--context``), else
        ``PORTWAY_CONTEXT``, else the file's ``current``; None means local."""
        name = override or os.environ.get(CONTEXT_ENV) or self.current
        if not name or name == LOCAL:
            return None
        return self.require(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "contexts": {name: c.to_json() for name, c in sorted(self.contexts.items())},
        }


def _parse(path: Path, data: Any) -> ContextConfig:
    def bad(where: str, expected: str) -> InputError:
        return InputError(Issue(f"expected {expected}", file=str(path), path=where))

    if data is None:
        return ContextConfig()
    if not isinstance(data, dict):
        raise bad("", "a mapping with `current` and `contexts`")
    raw_contexts = data.get("contexts") or {}
    if not isinstance(raw_contexts, dict):
        raise bad("contexts", "a mapping of name to {server, tokenFile}")
    contexts: dict[str, Context] = {}
    for name, raw in raw_contexts.items():
        where = f"contexts.{name}"
        if not isinstance(raw, dict):
            raise bad(where, "a mapping with server and tokenFile")
        server, token_file = raw.get("server"), raw.get("tokenFile")
        if not isinstance(server, str) or not server:
            raise bad(f"{where}.server", "a URL string")
        if not isinstance(token_file, str) or not token_file:
            raise bad(f"{where}.tokenFile", "a file path")
        ca_file = raw.get("caFile")
        if ca_file is not None and not isinstance(ca_file, str):
            raise bad(f"{where}.caFile", "a file path")
        insecure = raw.get("insecure", False)
        if not isinstance(insecure, bool):
            raise bad(f"{where}.insecure", "true or false")
        contexts[str(name)] = Context(
            name=str(name),
            server=server,
            token_file=Path(token_file).expanduser(),
            ca_file=Path(ca_file).expanduser() if ca_file else None,
            insecure=insecure,
        )
    current = data.get("current")
    if current is not None and not isinstance(current, str):
        raise bad("current", "a context name or null")
    return ContextConfig(current, contexts)


def load_config(path: Path | None = None) -> ContextConfig:
    """The contexts file (an empty config when there is none)."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ContextConfig()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    return _parse(path, data)


def save_config(config: ContextConfig, path: Path | None = None) -> Path:
    """Write atomically with mode 0600 (a rename over the old file)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config.to_json(), handle, sort_keys=False)
    temporary.chmod(0o600)  # a stale temporary file kept its old mode through O_TRUNC
    temporary.replace(path)
    return path
