"""Helpers for tests of the wasm tier: a driver on a private state directory
with the test modules imported, and a look at the worker processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from portway.conformance import wasm_modules
from portway.drivers.base import Handle, ReplicaRequest, ReplicaState, ReplicaStatus
from portway.drivers.wasm import WasmDriver
from portway.spec.model import WorkloadSpec

T = TypeVar("T")


def import_modules(driver: Any, folder: Path) -> None:
    for name, wat in wasm_modules.MODULES.items():
        path = folder / f"{name}.wat"
        path.write_text(wat)
        driver.import_artifact(f"test/{name}:1", path)


def request(
    name: str, index: int = 0, *, namespace: str = "wt", generation: int = 1, **spec: Any
) -> ReplicaRequest:
    spec.setdefault("isolation", "wasm")
    model = WorkloadSpec.model_validate(spec)
    return ReplicaRequest(namespace, name, index, generation, model.template_hash(), model)


def wait_for(check: Callable[[], T | None], timeout: float = 15.0, what: str = "it") -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def wait_exited(driver: WasmDriver, handle: Handle, timeout: float = 15.0) -> ReplicaStatus:
    def exited() -> ReplicaStatus | None:
        status = driver.inspect(handle)
        return status if status.state is ReplicaState.EXITED else None

    return wait_for(exited, timeout, f"{handle.name} to exit")


def worker_pids(state_dir: Path) -> list[int]:
    """Live (non-zombie) worker processes whose command line names ``state_dir``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z" or b"portway.drivers.wasm.worker" not in cmdline:
            continue
        if any(arg.startswith(str(state_dir).encode()) for arg in cmdline):
            found.append(int(proc.name))
    return found
