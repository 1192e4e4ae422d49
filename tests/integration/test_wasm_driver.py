"""The wasm driver against real wasmtime and real worker processes. Nothing
outside this machine's Python is needed, so no engine marker: these tests
never skip."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from portway.conformance import wasm_modules
from portway.drivers.base import LABEL_NAMESPACE, LABEL_WORKLOAD, ReplicaState
from portway.drivers.wasm import WasmDriver
from portway.drivers.wasm._state import write_json
from portway.errors import ImageNotFoundError, PermanentDriverError, ReplicaGoneError
from tests.integration.wasm_helpers import (
    import_modules,
    request,
    wait_exited,
    wait_for,
    worker_pids,
)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[WasmDriver]:
    state = tmp_path / "state"
    wasm = WasmDriver("it-wasm", f"wasm://{state}")
    import_modules(wasm, tmp_path)
    yield wasm
    for status in wasm.list_owned({}):
        wasm.destroy(status.handle)
    assert worker_pids(state) == []


def lines(driver: WasmDriver, handle: object, **kwargs: object) -> list[tuple[str, str]]:
    return [(line.stream, line.text) for line in driver.logs(handle, **kwargs)]  # type: ignore[arg-type]


def test_hello_gets_args_and_env_and_its_output_is_logged(driver: WasmDriver) -> None:
    before = datetime.now(UTC)
    handle = driver.create(
        request("hello", image="test/hello:1", command=["hello"], args=["a", "b c"], env={"K": "V"})
    )
    assert driver.inspect(handle).state is ReplicaState.CREATED
    driver.start(handle)
    status = wait_exited(driver, handle)
    assert (status.exit_code, status.oom_killed, status.error) == (0, False, "")
    assert status.created_at and status.started_at and status.finished_at
    assert before <= status.started_at <= status.finished_at
    assert status.image == "test/hello:1"
    assert lines(driver, handle) == [
        ("stdout", "hello from wasm"),
        ("stdout", "arg: hello"),
        ("stdout", "arg: a"),
        ("stdout", "arg: b c"),
        ("stdout", "env: K=V"),
    ]
    assert lines(driver, handle, tail=1) == [("stdout", "env: K=V")]
    logged = list(driver.logs(handle))
    assert all(line.timestamp is not None and line.timestamp >= before for line in logged)
    assert list(driver.logs(handle, since=datetime.now(UTC))) == []


def test_exit_codes_come_from_proc_exit_and_a_restart_runs_again(driver: WasmDriver) -> None:
    handle = driver.create(request("crash", image="test/exit3:1"))
    driver.start(handle)
    first = wait_exited(driver, handle)
    assert first.exit_code == 3 and first.error == ""
    driver.start(handle)  # what the controller's restart policy does
    second = wait_for(
        lambda: (
            (s := driver.inspect(handle)).state is ReplicaState.EXITED
            and s.finished_at != first.finished_at
            and s
        ),
        what="the second run to end",
    )
    assert second.exit_code == 3
    assert second.started_at and first.finished_at and second.started_at >= first.finished_at
    # the log is kept across restarts, as engines do
    assert lines(driver, handle) == [("stdout", "crashing"), ("stderr", "exit code 3")] * 2


def test_limits_end_a_run_with_the_reason(driver: WasmDriver) -> None:
    fuel = driver.create(request("fuel", image="test/spin:1", extensions={"wasm": {"fuel": 10**8}}))
    deadline = driver.create(
        request("deadline", image="test/spin:1", extensions={"wasm": {"timeoutSeconds": 0.5}})
    )
    memory = driver.create(request("memory", image="test/grow:1", resources={"memory": "16Mi"}))
    for handle in (fuel, deadline, memory):
        driver.start(handle)
    fuel_status = wait_exited(driver, fuel)
    assert (fuel_status.exit_code, fuel_status.oom_killed) == (137, False)
    assert fuel_status.error == "CPU limit: fuel exhausted (100000000 units)"
    deadline_status = wait_exited(driver, deadline)
    assert deadline_status.error == "CPU limit: deadline of 0.5s exceeded"
    assert deadline_status.started_at and deadline_status.finished_at
    ran = (deadline_status.finished_at - deadline_status.started_at).total_seconds()
    assert 0.5 <= ran < 5
    memory_status = wait_exited(driver, memory)
    assert (memory_status.exit_code, memory_status.oom_killed) == (137, True)
    assert memory_status.error == "memory limit 16Mi reached"
    assert lines(driver, memory)[-1] == ("stderr", "portway: memory limit 16Mi reached")


def test_only_mounted_volumes_are_visible_and_read_only_is_honored(
    driver: WasmDriver, tmp_path: Path
) -> None:
    host = tmp_path / "bind"
    host.mkdir()
    bind = driver.create(
        request(
            "bind",
            image="test/write-file:1",
            volumes=[{"name": "data", "type": "bind", "source": str(host), "mountPath": "/data"}],
        )
    )
    driver.start(bind)
    assert wait_exited(driver, bind).exit_code == 0
    assert (host / "out.txt").read_text() == "written by wasm\n"

    (host / "out.txt").unlink()
    read_only = driver.create(
        request(
            "ro",
            image="test/write-file:1",
            volumes=[
                {
                    "name": "data",
                    "type": "bind",
                    "source": str(host),
                    "mountPath": "/data",
                    "readOnly": True,
                }
            ],
        )
    )
    driver.start(read_only)
    assert wait_exited(driver, read_only).exit_code == 1
    assert lines(driver, read_only)[0][1].startswith("open failed: errno")
    assert not (host / "out.txt").exists()

    nothing = driver.create(request("none", image="test/write-file:1"))
    driver.start(nothing)
    assert wait_exited(driver, nothing).exit_code == 1  # no preopened directory at all


def test_tmpfs_is_per_replica_and_named_volumes_outlive_replicas(driver: WasmDriver) -> None:
    volumes = [
        {"name": "scratch", "type": "tmpfs", "mountPath": "/tmp"},
    ]
    tmpfs = driver.create(request("tmp", image="test/write-file:1", volumes=volumes))
    driver.start(tmpfs)
    assert wait_exited(driver, tmpfs).exit_code == 0
    scratch = driver.state_dir / "replicas" / tmpfs.id / "tmp" / "scratch"
    assert (scratch / "out.txt").exists()
    driver.destroy(tmpfs)
    assert not scratch.exists()

    named = [{"name": "data", "type": "named", "mountPath": "/data"}]
    first = driver.create(request("keep", image="test/write-file:1", volumes=named))
    driver.start(first)
    assert wait_exited(driver, first).exit_code == 0
    driver.destroy(first)
    kept = driver.state_dir / "volumes" / "wt-keep-data" / "out.txt"
    assert kept.read_text() == "written by wasm\n"


def test_stop_ends_the_worker_like_an_engine_stops_a_container(driver: WasmDriver) -> None:
    spin = driver.create(request("spin", image="test/spin:1"))
    tick = driver.create(request("tick", image="test/tick:1"))
    for handle in (spin, tick):
        driver.start(handle)
        assert driver.inspect(handle).state is ReplicaState.RUNNING
    wait_for(lambda: len(lines(driver, tick)) >= 2, what="two ticks")
    for handle in (spin, tick):
        began = time.monotonic()
        driver.stop(handle, timeout=10)
        assert time.monotonic() - began < 5
        status = driver.inspect(handle)
        assert (status.state, status.exit_code, status.error) == (
            ReplicaState.EXITED,
            143,
            "stopped (SIGTERM)",
        )
    driver.stop(spin, timeout=1)  # stopping an exited replica does nothing
    assert worker_pids(driver.state_dir) == []


def test_a_worker_killed_behind_our_back_is_reported_once(driver: WasmDriver) -> None:
    handle = driver.create(request("killed", image="test/tick:1"))
    driver.start(handle)
    [pid] = wait_for(lambda: worker_pids(driver.state_dir), what="the worker")
    os.kill(pid, signal.SIGKILL)
    status = wait_exited(driver, handle)
    assert status.exit_code == 137 and "without recording a result" in status.error
    assert driver.inspect(handle).finished_at == status.finished_at  # stable: one exit


def test_a_recycled_pid_is_not_mistaken_for_the_worker(driver: WasmDriver) -> None:
    handle = driver.create(request("recycled", image="test/hello:1"))
    files = driver.state_dir / "replicas" / handle.id
    # a worker.json naming a live process (this one) with another start time
    write_json(
        files / "worker.json",
        {"pid": os.getpid(), "start_ticks": 1, "started_at": datetime.now(UTC).isoformat()},
    )
    status = driver.inspect(handle)
    assert status.state is ReplicaState.EXITED and status.exit_code == 137
    driver.stop(handle, timeout=0.1)  # must not signal this test process
    driver.destroy(handle)


def test_a_new_driver_finds_and_controls_running_replicas(driver: WasmDriver) -> None:
    handles = [driver.create(request("web", i, image="test/tick:1")) for i in range(2)]
    other = driver.create(request("other", image="test/hello:1"))
    for handle in handles:
        driver.start(handle)
    # as after a controller restart: nothing but the address
    fresh = WasmDriver("it-wasm", driver.address)
    owned = fresh.list_owned({LABEL_NAMESPACE: "wt", LABEL_WORKLOAD: "web"})
    assert sorted(s.index for s in owned) == [0, 1]
    assert all(s.state is ReplicaState.RUNNING for s in owned)
    assert {s.handle.id for s in fresh.list_owned({})} == {h.id for h in [*handles, other]}
    recovered = fresh.recover(handles[0])
    assert recovered is not None and recovered.state is ReplicaState.RUNNING
    assert fresh.stats(handles[0]).memory_bytes > 1024 * 1024
    fresh.stop(handles[0], timeout=5)
    assert driver.inspect(handles[0]).exit_code == 143
    fresh.destroy(handles[1])
    assert fresh.recover(handles[1]) is None
    with pytest.raises(ReplicaGoneError):
        driver.inspect(handles[1])
    fresh.destroy(handles[1])  # idempotent


def test_create_is_idempotent_and_refuses_what_the_tier_cannot_run(
    driver: WasmDriver, tmp_path: Path
) -> None:
    req = request("same", image="test/hello:1")
    assert driver.create(req) == driver.create(req)
    assert len(driver.list_owned({LABEL_WORKLOAD: "same"})) == 1
    with pytest.raises(ImageNotFoundError, match="portway artifact import test/missing:1"):
        driver.create(request("missing", image="test/missing:1"))
    with pytest.raises(PermanentDriverError, match="only 'wasm'"):
        driver.create(request("std", image="test/hello:1", isolation="standard"))
    with pytest.raises(PermanentDriverError, match="cannot publish ports"):
        driver.create(request("ports", image="test/hello:1", ports=[{"containerPort": 80}]))
    with pytest.raises(PermanentDriverError, match=r"extensions\.wasm\.fuel"):
        driver.create(request("fuel", image="test/hello:1", extensions={"wasm": {"fuel": 0}}))
    assert driver.image_present("test/hello:1") and not driver.image_present("test/nope:1")


def test_file_images_and_the_compiled_module_cache(driver: WasmDriver, tmp_path: Path) -> None:
    module = tmp_path / "direct.wat"
    module.write_text(wasm_modules.HELLO)
    image = f"file://{module}"
    assert driver.image_present(image)
    handle = driver.create(request("direct", image=image))
    cached = sorted(driver.cache.glob("*.cwasm"))
    assert cached, "create compiles the module into the cache"
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    driver.start(handle)
    assert wait_exited(driver, handle).exit_code == 0
    assert lines(driver, handle)[0] == ("stdout", "hello from wasm")
    # the worker loaded the cached machine code: nothing was compiled again
    assert {p: p.stat().st_mtime_ns for p in driver.cache.glob("*.cwasm")} == stamps
    # removing the artifact does not break a replica made from it
    made = driver.create(request("made", image="test/hello:1"))
    assert driver.remove_artifact("test/hello:1") is not None
    driver.start(made)
    assert wait_exited(driver, made).exit_code == 0


def test_follow_streams_until_stopped_or_the_module_ends(driver: WasmDriver) -> None:
    tick = driver.create(request("follow", image="test/tick:1"))
    driver.start(tick)
    stop = threading.Event()
    seen: list[str] = []
    for line in driver.logs(tick, follow=True, stop=stop):
        seen.append(line.text)
        if len(seen) == 3:
            stop.set()
    assert seen == ["tick 1", "tick 2", "tick 3"]
    crash = driver.create(request("ends", image="test/exit3:1"))
    driver.start(crash)
    followed = [line.text for line in driver.logs(crash, follow=True)]  # ends by itself
    assert followed == ["crashing", "exit code 3"]
    with pytest.raises(ReplicaGoneError):
        driver.stats(crash)


def test_events_say_when_replicas_start_die_and_go(driver: WasmDriver) -> None:
    stop = threading.Event()
    seen: list[tuple[str, str]] = []
    watching = threading.Event()

    def watch() -> None:
        for event in driver.events(stop):
            seen.append((event.action, event.labels.get(LABEL_WORKLOAD, "")))
        watching.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.4)  # the first look only takes stock
    handle = driver.create(request("evented", image="test/exit3:1"))
    driver.start(handle)
    wait_for(lambda: ("die", "evented") in seen, what="a die event")
    driver.destroy(handle)
    wait_for(lambda: ("destroy", "evented") in seen, what="a destroy event")
    stop.set()
    assert watching.wait(5)
