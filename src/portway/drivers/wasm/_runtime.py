"""wasmtime itself: one engine configuration, and compiled modules cached on disk.

Every replica's engine has fuel metering and epoch interruption on, whether
its spec limits CPU or not: a module compiled for one configuration cannot be
loaded into an engine with another, and one cache per state directory is
simpler than one per limit combination. (Unlimited fuel is 2**63-1.)

The cache keeps ``Module.serialize`` output under ``cache/wasmtime-V-C/``,
keyed by the module's sha256: V is wasmtime's version and C a digest of the
configuration below, so an upgrade or a configuration change never loads
stale machine code (wasmtime would refuse it anyway, with an error we turn
into a recompile).
"""

from __future__ import annotations

import hashlib
import uuid
from importlib import metadata
from pathlib import Path

import wasmtime

#: fuel when the spec sets none: effectively unlimited
UNLIMITED_FUEL = 2**63 - 1
WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")
_CONFIG_FLAGS = "consume_fuel=1,epoch_interruption=1"


def wasmtime_version() -> str:
    try:
        return metadata.version("wasmtime")
    except metadata.PackageNotFoundError:
        return "unknown"


def new_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def cache_dir(state_dir: Path) -> Path:
    flags = hashlib.sha256(_CONFIG_FLAGS.encode()).hexdigest()[:8]
    return state_dir / "cache" / f"wasmtime-{wasmtime_version()}-{flags}"


def to_binary(data: bytes) -> bytes:
    """A module's bytes as wasm binary: ``.wat`` text is compiled. Raises
    ValueError with wasmtime's message if it is neither."""
    if data.startswith(b"\0asm"):
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("neither a wasm binary (no \\0asm header) nor UTF-8 WAT text") from None
    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as exc:
        raise ValueError(f"invalid WAT: {_first_line(exc)}") from None


def check_module(module: wasmtime.Module) -> None:
    """Refuse what a WASI worker cannot run: imports beyond WASI, no ``_start``.
    Raises ValueError."""
    imports = module.imports
    foreign = sorted({f"{i.module}.{i.name}" for i in imports if i.module not in WASI_MODULES})
    if foreign:
        raise ValueError(
            f"imports {', '.join(foreign[:5])}, which are not WASI preview 1; "
            "portway's wasm tier offers only wasi_snapshot_preview1"
        )
    if "_start" not in {e.name for e in module.exports}:
        raise ValueError("exports no _start function (a WASI command module needs one)")


def compile_module(engine: wasmtime.Engine, binary: bytes) -> wasmtime.Module:
    """Compile and check a wasm binary; raises ValueError."""
    try:
        module = wasmtime.Module(engine, binary)
    except wasmtime.WasmtimeError as exc:
        raise ValueError(f"invalid wasm module: {_first_line(exc)}") from None
    check_module(module)
    return module


def load_module(engine: wasmtime.Engine, source: Path, digest: str, cache: Path) -> wasmtime.Module:
    """The compiled module from the cache, or compiled from ``source`` (a wasm
    binary) and cached."""
    cached = cache / f"{digest.removeprefix('sha256:')}.cwasm"
    if cached.exists():
        try:
            return wasmtime.Module.deserialize_file(engine, str(cached))
        except wasmtime.WasmtimeError:
            cached.unlink(missing_ok=True)  # stale or damaged: compile again
    module = wasmtime.Module(engine, source.read_bytes())
    store_compiled(module, cached)
    return module


def store_compiled(module: wasmtime.Module, cached: Path) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    temporary = cached.with_name(f".{cached.name}.{uuid.uuid4().hex[:8]}")
    try:
        temporary.write_bytes(bytes(module.serialize()))
        temporary.replace(cached)
    finally:
        temporary.unlink(missing_ok=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
