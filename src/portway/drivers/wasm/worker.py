"""One replica's worker: ``python -m portway.drivers.wasm.worker REPLICA_DIR CACHE_DIR``.

The driver starts it detached (its own session), so it outlives the
controller that started it, like a container outlives a Docker client. It
runs the module's ``_start`` once in a wasmtime store set up from
``config.json`` (argv, env, preopened directories, memory limit, fuel and
deadline), appends the module's output to ``output.log``, writes how the run
ended to ``result.json`` and exits. The controller's restart policy starts a
new worker; the worker never restarts anything itself.

Why a run ended, and the exit code reported for it (like an engine would):

- ``proc_exit(n)``: n; returning from ``_start``: 0;
- memory limit (a trap after linear memory reached the limit): 137, OOM-killed;
- fuel exhausted or deadline passed: 137, "CPU limit: ...";
- SIGTERM/SIGINT (``stop``): 143 / 130;
- any other trap: 134 (as an aborted process), with wasmtime's trap message;
- a module that cannot even be instantiated: 127.

Signals are blocked in every thread and taken by one watcher thread
(``sigwait``): the main thread sits inside wasmtime, where a Python signal
handler would never run. The watcher interrupts the module through the
engine's epoch; a module blocked in a host call (a long ``poll_oneoff``)
does not notice that, so after ``INTERRUPT_GRACE_SECONDS`` the watcher
records the outcome itself and exits the process.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import wasmtime

from portway.drivers.wasm import _runtime
from portway.drivers.wasm._logfile import LogWriter
from portway.drivers.wasm._state import ReplicaFiles, Result, WorkerConfig, read_json, write_json

INTERRUPT_GRACE_SECONDS = 1.0
WASM_PAGE = 64 * 1024
EXIT_OOM = 137
EXIT_CPU = 137
EXIT_TRAP = 134
EXIT_CANNOT_RUN = 127
_SIGNAL_EXITS = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGHUP: 129}


def format_bytes(size: int) -> str:
    """16777216 -> '16Mi' (the spec's own units), else bytes."""
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"


@dataclass(frozen=True)
class Interrupt:
    """Why the worker interrupted the module from outside."""

    exit_code: int
    reason: str


def classify_trap(
    code: wasmtime.TrapCode | None,
    message: str,
    *,
    memory_used: int | None,
    config: WorkerConfig,
    interrupt: Interrupt | None,
) -> Result:
    """The outcome of a run that ended in a trap."""
    if code is wasmtime.TrapCode.INTERRUPT and interrupt is not None:
        return Result(interrupt.exit_code, interrupt.reason)
    if code is wasmtime.TrapCode.OUT_OF_FUEL:
        return Result(EXIT_CPU, f"CPU limit: fuel exhausted ({config.fuel} units)")
    limit = config.memory_limit
    # wasmtime's store limit makes memory.grow return -1 rather than trap;
    # a module (or its allocator) that cannot go on without the memory then
    # traps. Memory within one page of the limit when it does means the
    # limit is what stopped it.
    if limit is not None and memory_used is not None and memory_used + WASM_PAGE > limit:
        return Result(EXIT_OOM, f"memory limit {format_bytes(limit)} reached", oom_killed=True)
    first = message.strip().splitlines()[0] if message.strip() else "trap"
    name = code.name.lower() if code is not None else "trap"
    return Result(EXIT_TRAP, f"wasm trap ({name}): {first}")


class Run:
    """One run of one replica's module."""

    def __init__(self, files: ReplicaFiles, cache: Path) -> None:
        self.files = files
        self.cache = cache
        self.config = files.load_config()
        self.engine = _runtime.new_engine()
        self.log = LogWriter(files.log)
        self._lock = threading.Lock()
        self._interrupt: Interrupt | None = None
        self._finished = False
        self._memory: wasmtime.Memory | None = None
        self._store: wasmtime.Store | None = None

    # --- from other threads -------------------------------------------------

    def interrupt(self, why: Interrupt) -> None:
        with self._lock:
            if self._interrupt is None:
                self._interrupt = why
        self.engine.increment_epoch()
        timer = threading.Timer(INTERRUPT_GRACE_SECONDS, self.finish, (why_result(why),))
        timer.daemon = True
        timer.start()

    def watch_signals(self) -> None:
        while True:
            number = signal.sigwait(set(_SIGNAL_EXITS))
            name = signal.Signals(number).name
            self.interrupt(Interrupt(_SIGNAL_EXITS[signal.Signals(number)], f"stopped ({name})"))

    # --- the run ---------------------------------------------------------------

    def execute(self) -> Result:
        config = self.config
        for directory in config.scratch:  # a tmpfs starts empty
            shutil.rmtree(directory, ignore_errors=True)
            Path(directory).mkdir(parents=True, exist_ok=True)
        digest = str((read_json(self.files.replica) or {}).get("digest", ""))
        try:
            module = _runtime.load_module(self.engine, self.files.module, digest, self.cache)
            store = wasmtime.Store(self.engine)
            store.set_fuel(config.fuel if config.fuel is not None else _runtime.UNLIMITED_FUEL)
            store.set_epoch_deadline(1)  # the next increment_epoch interrupts
            if config.memory_limit is not None:
                store.set_limits(memory_size=config.memory_limit)
            store.set_wasi(self._wasi())
            linker = wasmtime.Linker(self.engine)
            linker.define_wasi()
            instance = linker.instantiate(store, module)
        except (wasmtime.WasmtimeError, OSError) as exc:
            return Result(EXIT_CANNOT_RUN, f"cannot start the module: {_first_line(exc)}")
        exports = instance.exports(store)
        memory = exports.get("memory")
        self._memory = memory if isinstance(memory, wasmtime.Memory) else None
        self._store = store
        start = exports.get("_start")
        if not isinstance(start, wasmtime.Func):
            return Result(EXIT_CANNOT_RUN, "the module exports no _start function")
        if config.timeout_seconds is not None:
            seconds = config.timeout_seconds
            deadline = Interrupt(EXIT_CPU, f"CPU limit: deadline of {seconds:g}s exceeded")
            timer = threading.Timer(seconds, self.interrupt, (deadline,))
            timer.daemon = True
            timer.start()
        try:
            start(store)
        except wasmtime.ExitTrap as exc:
            return Result(exc.code)
        except wasmtime.Trap as exc:
            with self._lock:
                interrupt = self._interrupt
            used = self._memory.data_len(store) if self._memory is not None else None
            return classify_trap(
                exc.trap_code, str(exc), memory_used=used, config=config, interrupt=interrupt
            )
        except wasmtime.WasmtimeError as exc:
            return Result(EXIT_TRAP, f"wasm error: {_first_line(exc)}")
        return Result(0)

    def _wasi(self) -> wasmtime.WasiConfig:
        wasi = wasmtime.WasiConfig()
        wasi.argv = list(self.config.argv)
        wasi.env = sorted(self.config.env.items())
        wasi.stdout_custom = lambda data: self.log.feed("stdout", data)
        wasi.stderr_custom = lambda data: self.log.feed("stderr", data)
        for preopen in self.config.preopens:
            wasi.preopen_dir(preopen.host, preopen.guest, preopen.writable)
        return wasi

    def finish(self, result: Result) -> None:
        """Record the outcome once (the main thread or the interrupt fallback)
        and, from the fallback, end the process."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        if result.reason:
            self.log.note("stderr", f"portway: {result.reason}")
        self.log.close()
        stamped = Result(
            result.exit_code & 0xFF if result.exit_code >= 0 else 1,
            result.reason,
            result.oom_killed,
            datetime.now(UTC).isoformat(),
        )
        write_json(self.files.result, stamped.__dict__)
        if threading.current_thread() is not threading.main_thread():
            os._exit(stamped.exit_code)


def why_result(why: Interrupt) -> Result:
    return Result(why.exit_code, why.reason)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(
            "usage: python -m portway.drivers.wasm.worker REPLICA_DIR CACHE_DIR [READY_FD]",
            file=sys.stderr,
        )
        return 2
    # before any thread starts, so that every thread inherits the mask
    signal.pthread_sigmask(signal.SIG_BLOCK, set(_SIGNAL_EXITS))
    if len(argv) == 3:
        # the driver's start() waits for this: from here on a stop is recorded
        # as one, where before it would have killed us without a result
        ready = int(argv.pop())
        os.write(ready, b"1")
        os.close(ready)
    run = Run(ReplicaFiles(Path(argv[0])), Path(argv[1]))
    threading.Thread(target=run.watch_signals, name="signals", daemon=True).start()
    result = run.execute()
    run.finish(result)
    return result.exit_code & 0xFF


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
