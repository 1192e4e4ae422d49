"""The on-disk layout of a wasm target, and the files the driver and the
worker exchange. Everything a replica is lives in files, so a restarted driver
(or controller) knows every replica from the state directory alone::

    STATE/
      artifacts/            the artifact store (``artifacts``)
      cache/wasmtime-V-C/   compiled modules, by module digest (``_runtime``)
      volumes/NAME/         named volumes: outlive replicas
      replicas/NAME/        one replica (NAME = ReplicaRequest.name)
        replica.json        owner labels, image, digest, when created (driver)
        config.json         what the worker runs: argv, env, limits, preopens
        module.wasm         hard link to the module's blob: rm of the artifact
                            does not break a replica that still uses it
        worker.json         pid + start time of the current worker, when started
        result.json         how the last run ended (worker; driver if it had to kill)
        output.log          the module's output (``_logfile``)
        worker.err          the worker's own stderr (Python errors), for debugging
        tmp/NAME/           tmpfs volumes: emptied at each start, removed on destroy

Standard library only (the worker imports it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Atomically: readers see the old file or the new one, never half."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        temporary.write_text(json.dumps(data, sort_keys=True))
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    """The file's JSON, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` (created if needed), across processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Preopen:
    host: str
    guest: str
    writable: bool


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker runs; written by the driver at create."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    memory_limit: int | None = None  # bytes of linear memory (wasmtime store limit)
    fuel: int | None = None  # fuel per run
    timeout_seconds: float | None = None  # wall-clock deadline per run
    preopens: list[Preopen] = field(default_factory=list)
    #: tmpfs directories to empty before each run (a tmpfs starts empty)
    scratch: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerConfig:
        raw = dict(data)
        raw["preopens"] = [Preopen(**p) for p in raw.get("preopens", [])]
        return cls(**raw)


@dataclass(frozen=True)
class Result:
    """How one run ended."""

    exit_code: int
    reason: str = ""  # empty for a plain exit
    oom_killed: bool = False
    finished_at: str = ""  # ISO 8601, UTC

    @classmethod
    def from_json(cls, data: Any) -> Result | None:
        if not isinstance(data, dict) or not isinstance(data.get("exit_code"), int):
            return None
        return cls(
            exit_code=data["exit_code"],
            reason=str(data.get("reason", "")),
            oom_killed=bool(data.get("oom_killed", False)),
            finished_at=str(data.get("finished_at", "")),
        )


class ReplicaFiles:
    """Paths of one replica's files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.replica = root / "replica.json"
        self.config = root / "config.json"
        self.module = root / "module.wasm"
        self.worker = root / "worker.json"
        self.result = root / "result.json"
        self.log = root / "output.log"
        self.worker_err = root / "worker.err"
        self.lock = root / ".lock"
        self.scratch = root / "tmp"

    def load_config(self) -> WorkerConfig:
        data = read_json(self.config)
        if not isinstance(data, dict):
            raise ValueError(f"{self.config} is missing or not JSON")
        return WorkerConfig.from_json(data)
