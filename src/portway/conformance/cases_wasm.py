"""The wasm tier's cases: the features the wasm driver declares, proved with
WASI test modules (``wasm_modules``) instead of the busybox image.

Selected with ``all_cases("wasm")`` / ``select_cases(only, tier="wasm")``:
every case here has ``tiers=("wasm",)``, so the container suites never see
them and the wasm suite never runs a busybox case. Each case imports the
modules it runs into the driver's artifact store first (importing is
idempotent: the same text gives the same digest), as ``conformance/NAME:1``.
"""

from __future__ import annotations

import threading
from typing import Any

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import (
    LABEL_NAMESPACE,
    ArtifactImporter,
    Handle,
    ReplicaState,
)
from portway.drivers.registry import open_driver

from . import wasm_modules
from .case import Context, case
from .failures import CaseFailed, expect

WASM = ("wasm",)
BACKOFF = {"initialBackoffSeconds": 0.2, "maxBackoffSeconds": 0.8}


def module(ctx: Context, name: str) -> str:
    """Import test module ``name`` into the driver's store; its image reference."""
    driver = ctx.driver
    if not isinstance(driver, ArtifactImporter):
        raise CaseFailed(f"the {driver.name} driver runs wasm but keeps no artifact store")
    source = ctx.bind_dir() / f"{name}.wat"
    source.write_text(wasm_modules.MODULES[name])
    image = f"conformance/{name}:1"
    driver.import_artifact(image, source)
    return image


def wasm(ctx: Context, name: str, **fields: Any) -> dict[str, Any]:
    """A spec running test module ``name`` in the wasm tier."""
    return {"image": module(ctx, name), "isolation": "wasm", **fields}


def lines(ctx: Context, handle: Handle, **kwargs: Any) -> list[tuple[str, str]]:
    return [(line.stream, line.text) for line in ctx.log_source().logs(handle, **kwargs)]


def expect_lines(ctx: Context, handle: Handle, wanted: list[tuple[str, str]], what: str) -> None:
    got = lines(ctx, handle)
    expect(got == wanted, f"{what}: expected output {wanted}, got {got}")


# --- lifecycle ------------------------------------------------------------------


@case(
    "lifecycle.wasm_run_to_exit",
    "a module is created, started, runs and exits 0 with its times recorded",
    features=(Feature.ISOLATION_WASM,),
    tiers=WASM,
)
def run_to_exit(ctx: Context) -> None:
    handle = ctx.create(wasm(ctx, "hello"))
    created = ctx.inspect(handle)
    expect(created.state is ReplicaState.CREATED, f"before start: {created.state.value}")
    ctx.driver.start(handle)
    status = ctx.wait_exited(handle)
    expect(status.exit_code == 0, f"hello exited {status.exit_code}: {status.error}")
    expect(
        status.started_at is not None
        and status.finished_at is not None
        and status.started_at <= status.finished_at,
        f"started_at {status.started_at} and finished_at {status.finished_at}",
    )


@case(
    "lifecycle.wasm_stop",
    "stop ends a running module within the timeout, reported as exit 143 (SIGTERM)",
    features=(Feature.ISOLATION_WASM,),
    tiers=WASM,
)
def stop(ctx: Context) -> None:
    for name in ("spin", "tick"):  # in wasm code, and asleep in a host call
        handle = ctx.run(wasm(ctx, name), workload=name)
        ctx.wait_running(handle)
        ctx.driver.stop(handle, 5.0)
        status = ctx.inspect(handle)
        expect(
            status.state is ReplicaState.EXITED and status.exit_code == 143,
            f"{name}: after stop: {status.state.value}, exit code {status.exit_code}",
        )


@case(
    "lifecycle.wasm_recover",
    "a new driver on the same address lists, inspects and destroys running replicas",
    features=(Feature.ISOLATION_WASM,),
    tiers=WASM,
)
def recover(ctx: Context) -> None:
    handle = ctx.run(wasm(ctx, "tick"))
    ctx.wait_running(handle)
    address = str(getattr(ctx.driver, "address", ""))
    fresh = open_driver(ctx.driver.target, ctx.driver.name, address)
    owned = fresh.list_owned({LABEL_NAMESPACE: ctx.namespace})
    expect(
        [s.handle.id for s in owned] == [handle.id], f"a new driver lists {owned} for {handle.id}"
    )
    found = fresh.recover(handle)
    expect(found is not None and found.state is ReplicaState.RUNNING, f"recovered: {found}")
    fresh.destroy(handle)
    expect(ctx.driver.recover(handle) is None, "destroyed through the new driver, still there")


# --- command ----------------------------------------------------------------------


@case(
    "command.wasm_command_args",
    "command is argv[0..], args follow it, in order, verbatim",
    features=(Feature.COMMAND, Feature.ARGS),
    requires=(Feature.LOGS,),
    tiers=WASM,
)
def command_args(ctx: Context) -> None:
    done = ctx.finish(wasm(ctx, "hello", command=["prog"], args=["one", "two words", "$X"]))
    expect(done.status.exit_code == 0, f"hello exited {done.status.exit_code}")
    expect_lines(
        ctx,
        done.status.handle,
        [
            ("stdout", "hello from wasm"),
            ("stdout", "arg: prog"),
            ("stdout", "arg: one"),
            ("stdout", "arg: two words"),
            ("stdout", "arg: $X"),
        ],
        "argv",
    )


@case(
    "command.wasm_env",
    "env reaches the module as its whole environment, values verbatim",
    features=(Feature.ENV,),
    requires=(Feature.LOGS,),
    tiers=WASM,
)
def env(ctx: Context) -> None:
    done = ctx.finish(wasm(ctx, "hello", args=[], env={"PW_A": "a b=c", "PW_EMPTY": ""}))
    got = [text for stream, text in lines(ctx, done.status.handle) if text.startswith("env: ")]
    expect(got == ["env: PW_A=a b=c", "env: PW_EMPTY="], f"environment seen: {got}")


@case(
    "command.wasm_exit_code",
    "proc_exit's code is the replica's exit code",
    features=(Feature.ISOLATION_WASM,),
    tiers=WASM,
)
def exit_code(ctx: Context) -> None:
    ctx.expect_exit(wasm(ctx, "exit3"), 3, "a module calling proc_exit(3)")


# --- volumes ---------------------------------------------------------------------------


def _volume(kind: str, **fields: Any) -> dict[str, Any]:
    return {"name": "data", "type": kind, "mountPath": "/data", **fields}


@case(
    "volumes.wasm_only_mounted",
    "a module sees no host directory the spec does not mount",
    features=(Feature.ISOLATION_WASM,),
    tiers=WASM,
)
def only_mounted(ctx: Context) -> None:
    ctx.expect_exit(wasm(ctx, "write-file"), 1, "write-file with no volume must fail to open")


@case(
    "volumes.wasm_tmpfs",
    "a tmpfs volume is writable and starts empty",
    features=(Feature.VOLUMES_TMPFS,),
    tiers=WASM,
)
def tmpfs(ctx: Context) -> None:
    ctx.expect_exit(wasm(ctx, "write-file", volumes=[_volume("tmpfs")]), 0, "write to a tmpfs")
    ctx.expect_exit(
        wasm(ctx, "read-file", volumes=[_volume("tmpfs")]),
        1,
        "a new replica's tmpfs must not hold the other's file",
        workload="fresh",
    )


@case(
    "volumes.wasm_bind",
    "a bind volume shows the module's writes on the host",
    features=(Feature.VOLUMES_BIND,),
    tiers=WASM,
)
def bind(ctx: Context) -> None:
    host = ctx.bind_dir()
    ctx.expect_exit(
        wasm(ctx, "write-file", volumes=[_volume("bind", source=str(host))]), 0, "write to a bind"
    )
    written = (host / "out.txt").read_text() if (host / "out.txt").exists() else None
    expect(written == "written by wasm\n", f"the host file holds {written!r}")


@case(
    "volumes.wasm_read_only",
    "a read-only volume can be read and not written",
    features=(Feature.VOLUMES_READ_ONLY, Feature.VOLUMES_BIND),
    requires=(Feature.LOGS,),
    tiers=WASM,
)
def read_only(ctx: Context) -> None:
    host = ctx.bind_dir()
    (host / "out.txt").write_text("from the host\n")
    volume = _volume("bind", source=str(host), readOnly=True)
    ctx.expect_exit(wasm(ctx, "write-file", volumes=[volume]), 1, "write to a read-only bind")
    expect((host / "out.txt").read_text() == "from the host\n", "the read-only file changed")
    done = ctx.expect_exit(
        wasm(ctx, "read-file", volumes=[volume]), 0, "read a read-only bind", workload="reader"
    )
    got = lines(ctx, done.status.handle)
    expect(got == [("stdout", "read: from the host")], f"read-file printed {got}")


@case(
    "volumes.wasm_named_outlives",
    "a named volume keeps what one replica wrote for the next",
    features=(Feature.VOLUMES_NAMED,),
    requires=(Feature.LOGS,),
    tiers=WASM,
)
def named_outlives(ctx: Context) -> None:
    volume = _volume("named", source=f"{ctx.namespace}-data")
    first = ctx.expect_exit(wasm(ctx, "write-file", volumes=[volume]), 0, "write a named volume")
    ctx.driver.destroy(first.status.handle)
    done = ctx.expect_exit(
        wasm(ctx, "read-file", volumes=[volume]), 0, "read it back", workload="second"
    )
    got = lines(ctx, done.status.handle)
    expect(got == [("stdout", "read: written by wasm")], f"the second replica read {got}")


# --- restart (portway's controller, on the wasm driver's exit reports) ------------------


def _exits(harness: Any) -> int:
    return sum(reason in ("Crashed", "Completed") for reason, _ in harness.events())


@case(
    "restart.wasm_on_failure",
    "on-failure: a module exiting 3 is restarted maxRetries times, then left exited",
    features=(Feature.RESTART_ON_FAILURE,),
    tiers=WASM,
)
def on_failure(ctx: Context) -> None:
    spec = wasm(ctx, "exit3", restart={"policy": "on-failure", "maxRetries": 2, **BACKOFF})
    harness = ctx.controller(spec)
    harness.converge(
        lambda: (
            _exits(harness) == 3
            and harness.restarts() == 2
            and harness.replica().get("state") == "exited"
        ),
        timeout=20,
        what="replica 0 (exits 3) restarted twice, then exited a third time",
    )
    harness.hold(lambda: harness.restarts() == 2, seconds=1.5, what="no restart past maxRetries 2")
    code = harness.replica().get("last_exit_code")
    expect(code == 3, f"last exit code {code!r}, expected 3")


@case(
    "restart.wasm_always",
    "always: a module that exits 0 is started again and again",
    features=(Feature.RESTART_ALWAYS,),
    tiers=WASM,
)
def always(ctx: Context) -> None:
    harness = ctx.controller(wasm(ctx, "hello", restart={"policy": "always", **BACKOFF}))
    harness.converge(lambda: harness.restarts() >= 2, timeout=20, what="two restarts")


@case(
    "restart.wasm_never",
    "never: a failed module is left exited",
    features=(Feature.RESTART_NEVER,),
    tiers=WASM,
)
def never(ctx: Context) -> None:
    harness = ctx.controller(wasm(ctx, "exit3", restart={"policy": "never", **BACKOFF}))
    harness.converge(
        lambda: harness.replica().get("state") == "exited", timeout=15, what="replica 0 exits"
    )
    harness.hold(lambda: harness.restarts() == 0, seconds=1.5, what="no restart (never)")


# --- resources ---------------------------------------------------------------------------


@case(
    "resources.wasm_memory_limit",
    "resources.memory bounds linear memory; reaching it is reported as OOM-killed",
    features=(Feature.RESOURCES_MEMORY, Feature.OOM_REPORTED),
    tiers=WASM,
)
def memory_limit(ctx: Context) -> None:
    done = ctx.finish(wasm(ctx, "grow", resources={"memory": "16Mi"}))
    status = done.status
    expect(
        status.oom_killed and status.exit_code == 137,
        f"grow-forever under 16Mi: exit {status.exit_code}, oom_killed={status.oom_killed}",
    )
    expect("memory limit 16Mi reached" in status.error, f"reason {status.error!r}")


@case(
    "resources.wasm_cpu_limits",
    "extensions.wasm fuel and timeoutSeconds end a spinning module with the reason",
    features=(Feature.ISOLATION_WASM,),
    tiers=WASM,
)
def cpu_limits(ctx: Context) -> None:
    fuel = ctx.finish(wasm(ctx, "spin", extensions={"wasm": {"fuel": 50_000_000}}))
    expect(
        fuel.status.exit_code == 137 and "fuel exhausted" in fuel.status.error,
        f"fuel: exit {fuel.status.exit_code}, reason {fuel.status.error!r}",
    )
    late = ctx.finish(
        wasm(ctx, "spin", extensions={"wasm": {"timeoutSeconds": 0.5}}), workload="deadline"
    )
    expect(
        late.status.exit_code == 137 and "deadline of 0.5s exceeded" in late.status.error,
        f"deadline: exit {late.status.exit_code}, reason {late.status.error!r}",
    )


# --- logs and stats ---------------------------------------------------------------------------


@case(
    "logs.wasm_streams",
    "stdout and stderr lines are kept apart, in order, with times",
    features=(Feature.LOGS,),
    tiers=WASM,
)
def streams(ctx: Context) -> None:
    done = ctx.finish(wasm(ctx, "exit3"))
    expect_lines(
        ctx, done.status.handle, [("stdout", "crashing"), ("stderr", "exit code 3")], "exit3"
    )
    stamped = list(ctx.log_source().logs(done.status.handle))
    expect(all(line.timestamp is not None for line in stamped), "a line without a time")


@case(
    "logs.wasm_follow",
    "follow streams new lines until stopped, and ends when the module ends",
    features=(Feature.LOGS_FOLLOW,),
    requires=(Feature.LOGS,),
    tiers=WASM,
)
def follow(ctx: Context) -> None:
    handle = ctx.run(wasm(ctx, "tick"))
    stop_event = threading.Event()
    timer = threading.Timer(10.0, stop_event.set)  # never hang the suite
    timer.start()
    seen: list[str] = []
    try:
        for line in ctx.log_source().logs(handle, follow=True, stop=stop_event):
            seen.append(line.text)
            if len(seen) == 3:
                stop_event.set()
    finally:
        timer.cancel()
    expect(seen == ["tick 1", "tick 2", "tick 3"], f"followed {seen}")
    ended = ctx.run(wasm(ctx, "exit3"), workload="ends")
    followed = [line.text for line in ctx.log_source().logs(ended, follow=True)]
    expect(followed == ["crashing", "exit code 3"], f"followed {followed} to the end")


@case(
    "stats.wasm_worker",
    "stats report a running replica's worker CPU time and memory",
    features=(Feature.STATS,),
    tiers=WASM,
)
def stats(ctx: Context) -> None:
    handle = ctx.run(wasm(ctx, "tick", resources={"memory": "32Mi"}))
    ctx.wait_running(handle)
    found = ctx.stats_source().stats(handle)
    expect(found.memory_bytes > 0, f"memory {found.memory_bytes}")
    expect(found.cpu_seconds >= 0, f"cpu {found.cpu_seconds}")
    expect(found.memory_limit_bytes == 32 * 1024 * 1024, f"limit {found.memory_limit_bytes}")
