"""wasm driver: WebAssembly (WASI preview 1) modules run by wasmtime, one worker
process per replica.

``WasmDriver`` is loaded lazily: the worker (``python -m
portway.drivers.wasm.worker``) imports this package first, and must not pay
for the driver's imports (pydantic, the spec model) on every cold start.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WasmDriver"]


def __getattr__(name: str) -> Any:
    if name == "WasmDriver":
        from portway.drivers.wasm.driver import WasmDriver

        return WasmDriver
    raise AttributeError(name)
