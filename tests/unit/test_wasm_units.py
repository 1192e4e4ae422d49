"""The wasm tier's pieces without worker processes: addresses, extension
checks, how a run's end is classified, the log format, the artifact store,
module checks, process identity, and the worker's run logic in-process."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
import wasmtime

from portway.conformance import wasm_modules
from portway.drivers.base import ArtifactImporter, ExtensionChecker, LogSource, StatsSource
from portway.drivers.wasm import _proc, _runtime
from portway.drivers.wasm._logfile import MAX_LINE, LogWriter, decode, split_records
from portway.drivers.wasm._state import Preopen, ReplicaFiles, WorkerConfig, write_json
from portway.drivers.wasm.artifacts import ArtifactStore, normalize
from portway.drivers.wasm.driver import WasmDriver, parse_address, parse_extension
from portway.drivers.wasm.worker import Interrupt, Run, classify_trap, format_bytes
from portway.errors import PermanentDriverError
from portway.spec.model import WorkloadSpec

MiB = 1024 * 1024


def test_address_names_an_absolute_state_directory() -> None:
    assert parse_address("wasm:///var/lib/portway/wasm") == Path("/var/lib/portway/wasm")
    for bad in ("wasm://relative/dir", "docker:///x", "wasm:///", "wasm://host/x"):
        with pytest.raises(ValueError, match="wasm"):
            parse_address(bad)
    with pytest.raises(PermanentDriverError, match="expected wasm:///ABSOLUTE/STATE/DIR"):
        WasmDriver("t", "wasm://nope")


def test_driver_offers_the_optional_protocols_it_implements(tmp_path: Path) -> None:
    driver = WasmDriver("t", f"wasm://{tmp_path}")
    for protocol in (ExtensionChecker, LogSource, StatsSource, ArtifactImporter):
        assert isinstance(driver, protocol)
    caps = driver.capabilities()
    assert caps.isolation_tiers == frozenset({"wasm"})
    handler = caps.handler_for("wasm")
    assert handler is not None and handler.handler == "wasmtime" and handler.overhead_memory > 0
    assert not {"ports.tcp", "exec", "probes.http", "isolation.standard"} & {
        str(f) for f in caps.features
    }


def test_extension_block_is_checked_with_clear_messages(tmp_path: Path) -> None:
    driver = WasmDriver("t", f"wasm://{tmp_path}")
    assert parse_extension({"fuel": 1000, "timeoutSeconds": 2}) == (1000, 2.0)
    assert driver.check_extension({"fuel": 5, "timeoutSeconds": 0.5}) == []
    problems = driver.check_extension({"fuel": -1, "timeoutSeconds": "soon", "cpu": 1})
    assert len(problems) == 3
    assert "unknown key(s) cpu; known keys: fuel, timeoutSeconds" in problems[0]
    assert "extensions.wasm.fuel: expected a positive whole number" in problems[1]
    assert "got -1" in problems[1]
    assert "extensions.wasm.timeoutSeconds: expected seconds" in problems[2]
    assert driver.check_extension({"fuel": True}) != []  # a bool is not a number here


def _config(**kwargs: object) -> WorkerConfig:
    return WorkerConfig(argv=["m"], **kwargs)  # type: ignore[arg-type]


def test_a_run_ending_in_a_trap_is_classified_like_an_engine_would() -> None:
    fuel = classify_trap(
        wasmtime.TrapCode.OUT_OF_FUEL, "", memory_used=0, config=_config(fuel=10), interrupt=None
    )
    assert (fuel.exit_code, fuel.reason) == (137, "CPU limit: fuel exhausted (10 units)")
    stopped = classify_trap(
        wasmtime.TrapCode.INTERRUPT,
        "",
        memory_used=0,
        config=_config(),
        interrupt=Interrupt(143, "stopped (SIGTERM)"),
    )
    assert (stopped.exit_code, stopped.reason, stopped.oom_killed) == (
        143,
        "stopped (SIGTERM)",
        False,
    )
    oom = classify_trap(
        wasmtime.TrapCode.UNREACHABLE,
        "wasm trap: unreachable",
        memory_used=16 * MiB,
        config=_config(memory_limit=16 * MiB),
        interrupt=None,
    )
    assert (oom.exit_code, oom.oom_killed, oom.reason) == (137, True, "memory limit 16Mi reached")
    # far below the limit, the same trap is the module's own crash
    crash = classify_trap(
        wasmtime.TrapCode.UNREACHABLE,
        "error while executing\nbacktrace",
        memory_used=MiB,
        config=_config(memory_limit=16 * MiB),
        interrupt=None,
    )
    assert crash.exit_code == 134 and not crash.oom_killed
    assert crash.reason == "wasm trap (unreachable): error while executing"


def test_sizes_are_shown_in_the_spec_s_own_units() -> None:
    assert format_bytes(16 * MiB) == "16Mi"
    assert format_bytes(2 * 1024**3) == "2Gi"
    assert format_bytes(5 * 1024 + 1) == "5121 bytes"


def test_log_writer_keeps_lines_streams_and_an_unfinished_tail(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    writer = LogWriter(path)
    writer.feed("stdout", b"one\ntw")
    writer.feed("stderr", b"err line\n")
    writer.feed("stdout", b"o\nno newline")
    writer.feed("stdout", b"x" * (MAX_LINE * 2 + 5) + b"\n")
    writer.close()
    records, rest = split_records(path.read_bytes())
    assert rest == b""
    texts = [(r.stream, r.text) for r in records]
    assert texts[:4] == [
        ("stdout", "one"),
        ("stderr", "err line"),
        ("stdout", "two"),
        # "no newline" continues with the x's: one line, cut into MAX_LINE pieces
        ("stdout", "no newline" + "x" * (MAX_LINE - len("no newline"))),
    ]
    assert [len(t) for _, t in texts[4:]] == [MAX_LINE, len("no newline") + 5]
    assert all(r.timestamp is not None and r.timestamp.tzinfo is not None for r in records)
    assert decode(b"plain text").text == "plain text" and decode(b"plain").timestamp is None


def test_artifact_store_is_content_addressed(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    assert normalize("portway/hello") == "portway/hello:latest"
    with pytest.raises(ValueError, match="not a valid artifact name"):
        normalize("Bad Name")
    digest, path = store.put_blob(b"\0asm-one")
    assert store.put_blob(b"\0asm-one") == (digest, path)
    store.tag("a/one:1", digest, 8)
    store.tag("a/same:1", digest, 8)
    assert [m.name for m in store.list()] == ["a/one:1", "a/same:1"]
    assert store.get("a/one:1") is not None and store.get("a/one:1").digest == digest  # type: ignore[union-attr]
    store.remove("a/one:1")
    assert path.exists()  # still named by a/same:1
    store.remove("a/same:1")
    assert not path.exists()
    assert store.remove("a/same:1") is None


def test_modules_are_checked_for_what_a_worker_can_run() -> None:
    engine = _runtime.new_engine()
    binary = _runtime.to_binary(wasm_modules.HELLO.encode())
    assert binary.startswith(b"\0asm")
    assert _runtime.to_binary(binary) == binary
    _runtime.compile_module(engine, binary)
    with pytest.raises(ValueError, match="invalid WAT"):
        _runtime.to_binary(b"(module (func $broken")
    with pytest.raises(ValueError, match="not WASI preview 1"):
        _runtime.compile_module(
            engine,
            _runtime.to_binary(b'(module (import "env" "f" (func)) (func (export "_start")))'),
        )
    with pytest.raises(ValueError, match="no _start"):
        _runtime.compile_module(engine, _runtime.to_binary(b"(module)"))


def test_a_process_is_its_pid_and_start_time() -> None:
    ticks = _proc.start_ticks(os.getpid())
    assert ticks is not None
    assert _proc.is_alive(os.getpid(), ticks)
    assert not _proc.is_alive(os.getpid(), ticks + 1)  # a recycled pid is someone else
    assert not _proc.is_alive(2**22 + 7, 0)


def test_worker_config_round_trips() -> None:
    config = WorkerConfig(
        argv=["m", "a"],
        env={"K": "V"},
        memory_limit=4 * MiB,
        fuel=9,
        timeout_seconds=1.5,
        preopens=[Preopen("/h", "/g", writable=False)],
        scratch=["/s"],
    )
    assert WorkerConfig.from_json(config.to_json()) == config


def test_file_images_need_the_wasm_tier() -> None:
    spec = WorkloadSpec.model_validate({"image": "file:///opt/a.wasm", "isolation": "wasm"})
    assert spec.image == "file:///opt/a.wasm"
    with pytest.raises(ValueError, match="needs isolation: wasm"):
        WorkloadSpec.model_validate({"image": "file:///opt/a.wasm"})
    with pytest.raises(ValueError, match="absolute path"):
        WorkloadSpec.model_validate({"image": "file://a.wasm", "isolation": "wasm"})


# --- the worker's run, in this process ------------------------------------------


def _replica(tmp_path: Path, wat: str, config: WorkerConfig) -> ReplicaFiles:
    files = ReplicaFiles(tmp_path / "replica")
    files.root.mkdir(parents=True)
    binary = _runtime.to_binary(wat.encode())
    files.module.write_bytes(binary)
    digest = hashlib.sha256(binary).hexdigest()
    write_json(files.replica, {"digest": f"sha256:{digest}", "labels": {}})
    write_json(files.config, config.to_json())
    return files


def _records(files: ReplicaFiles) -> list[tuple[str, str]]:
    return [(r.stream, r.text) for r in split_records(files.log.read_bytes())[0]]


def test_run_passes_argv_and_env_and_captures_output(tmp_path: Path) -> None:
    files = _replica(
        tmp_path, wasm_modules.HELLO, WorkerConfig(argv=["hello", "a b"], env={"K": "V"})
    )
    run = Run(files, tmp_path / "cache")
    result = run.execute()
    run.finish(result)
    assert result.exit_code == 0 and result.reason == ""
    assert _records(files) == [
        ("stdout", "hello from wasm"),
        ("stdout", "arg: hello"),
        ("stdout", "arg: a b"),
        ("stdout", "env: K=V"),
    ]
    digest = hashlib.sha256(files.module.read_bytes()).hexdigest()
    assert (tmp_path / "cache" / f"{digest}.cwasm").exists()  # compiled once, then cached


def test_run_reports_proc_exit_fuel_and_memory_limits(tmp_path: Path) -> None:
    cases = [
        (wasm_modules.EXIT_3, WorkerConfig(argv=["x"]), 3, ""),
        (
            wasm_modules.SPIN,
            WorkerConfig(argv=["x"], fuel=1_000_000),
            137,
            "CPU limit: fuel exhausted (1000000 units)",
        ),
        (
            wasm_modules.GROW,
            WorkerConfig(argv=["x"], memory_limit=8 * MiB),
            137,
            "memory limit 8Mi reached",
        ),
    ]
    for number, (wat, config, code, reason) in enumerate(cases):
        files = _replica(tmp_path / str(number), wat, config)
        run = Run(files, tmp_path / "cache")
        result = run.execute()
        run.finish(result)
        assert (result.exit_code, result.reason) == (code, reason)
        assert result.oom_killed == reason.startswith("memory")


def test_an_interrupt_from_another_thread_ends_a_spinning_module(tmp_path: Path) -> None:
    files = _replica(tmp_path, wasm_modules.SPIN, WorkerConfig(argv=["x"]))
    run = Run(files, tmp_path / "cache")
    timer = threading.Timer(0.2, run.interrupt, (Interrupt(143, "stopped (SIGTERM)"),))
    timer.start()
    result = run.execute()
    run.finish(result)  # before the interrupt's fallback (1s) would end the process
    assert (result.exit_code, result.reason) == (143, "stopped (SIGTERM)")
    assert _records(files)[-1] == ("stderr", "portway: stopped (SIGTERM)")


def test_placement_puts_each_tier_only_where_it_is_offered(tmp_path: Path) -> None:
    from portway.controller.records import CLUSTER_NAMESPACE, KIND_TARGET
    from portway.controller.targets import TargetPool
    from portway.scheduler.model import Ask, Overhead, TargetState
    from portway.scheduler.state import ClusterState
    from portway.store import Store

    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        address = f"wasm://{tmp_path / 'wasm'}"
        spec = {"driver": "wasm", "address": address, "labels": {}}
        store.create(KIND_TARGET, CLUSTER_NAMESPACE, "local-wasm", spec)
        pool = TargetPool(store)
        [view] = pool.views()
        assert pool.isolation_tiers(view) == frozenset({"wasm"})
    finally:
        store.close()
    targets = [
        TargetState("a-docker", tiers={"standard": Overhead()}),
        TargetState("local-wasm", tiers={"wasm": Overhead()}),
    ]
    for tier, where in (("standard", "a-docker"), ("wasm", "local-wasm")):
        placed = ClusterState(targets).schedule(Ask("ns/w", (0,), tier=tier))
        assert [p.target for p in placed.placed] == [where]
    nowhere = ClusterState(targets).schedule(Ask("ns/w", (0,), tier="sandboxed"))
    assert nowhere.placed == () and nowhere.unplaced == (0,)
