"""Looking at replicas: logs (streams kept apart, tail, follow), exec, stats."""

from __future__ import annotations

import re
import threading
import time

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import LogLine, Stats
from portway.errors import DriverError

from .case import HTTP_PORT, Context, case
from .failures import CaseFailed, expect

SLEEPER = {"command": ["sleep", "600"]}
MAIN_FILE = "/tmp/made-by-main"  # noqa: S108 (a path inside the replica)
_NUMBERED = re.compile(r"^line-(\d+)$")


# --- logs ------------------------------------------------------------------


def _texts(lines: list[LogLine], stream: str) -> list[str]:
    return [line.text for line in lines if line.stream == stream]


@case(
    "logs.stdout",
    "logs return what the replica wrote to stdout, in order, after it exited",
    features=(Feature.LOGS,),
)
def logs_stdout(ctx: Context) -> None:
    handle = ctx.run({"command": ["sh", "-c", "echo one; echo two; echo three"]})
    ctx.wait_exited(handle)
    lines = list(ctx.log_source().logs(handle))
    got = _texts(lines, "stdout")
    expect(
        got == ["one", "two", "three"],
        f"stdout lines {got}, expected ['one', 'two', 'three'] (all lines: {lines})",
    )


@case(
    "logs.stderr_separated",
    "stderr lines are told apart from stdout lines",
    features=(Feature.LOGS,),
)
def logs_stderr_separated(ctx: Context) -> None:
    script = "echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2"
    handle = ctx.run({"command": ["sh", "-c", script]})
    ctx.wait_exited(handle)
    lines = list(ctx.log_source().logs(handle))
    out, err = _texts(lines, "stdout"), _texts(lines, "stderr")
    expect(out == ["out-1", "out-2"], f"stdout lines {out}, expected ['out-1', 'out-2']")
    expect(err == ["err-1", "err-2"], f"stderr lines {err}, expected ['err-1', 'err-2']")


@case("logs.tail", "tail=N returns the last N lines", features=(Feature.LOGS,))
def logs_tail(ctx: Context) -> None:
    script = "i=1; while [ $i -le 10 ]; do echo line-$i; i=$((i+1)); done"
    handle = ctx.run({"command": ["sh", "-c", script]})
    ctx.wait_exited(handle)
    got = [line.text for line in ctx.log_source().logs(handle, tail=3)]
    expect(got == ["line-8", "line-9", "line-10"], f"tail=3 returned {got}")


@case(
    "logs.follow",
    "follow streams lines written after it began, and ends when stop is set",
    features=(Feature.LOGS, Feature.LOGS_FOLLOW),
)
def logs_follow(ctx: Context) -> None:
    script = "i=0; while [ $i -lt 600 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"
    handle = ctx.run({"command": ["sh", "-c", script]})
    ctx.wait_running(handle)
    source = ctx.log_source()
    ctx.wait_for(
        lambda: any(_NUMBERED.match(line.text) for line in source.logs(handle)),
        5,
        "the replica wrote its first line",
    )
    before = max(
        int(m.group(1)) for line in source.logs(handle) if (m := _NUMBERED.match(line.text))
    )
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def follow() -> None:
        try:
            for line in source.logs(handle, follow=True, tail=0, stop=stop):
                match = _NUMBERED.match(line.text)
                if match:
                    seen.append(int(match.group(1)))
        except BaseException as exc:  # reported by the case, not lost in the thread
            errors.append(exc)

    reader = threading.Thread(target=follow, name="portway-conformance-follow", daemon=True)
    reader.start()
    try:
        ctx.wait_for(
            lambda: sum(n > before for n in seen) >= 5 or bool(errors),
            8,
            f"follow delivered 5 lines written after line-{before}",
            detail=lambda: f"got {seen[-10:]}",
        )
    finally:
        stop.set()
    if errors:
        raise CaseFailed(f"follow failed: {errors[0]!r}")
    expect(seen == sorted(seen), f"followed lines out of order: {seen[:20]}")
    reader.join(timeout=5)
    expect(not reader.is_alive(), "follow did not end within 5s after stop was set")


# --- exec ------------------------------------------------------------------


@case(
    "exec.output",
    "exec returns the command's output and exit code 0",
    features=(Feature.EXEC,),
)
def exec_output(ctx: Context) -> None:
    handle = ctx.run(SLEEPER)
    ctx.wait_running(handle)
    result = ctx.executor().exec(handle, ["sh", "-c", "echo hello-exec"], timeout=10)
    expect(result.exit_code == 0, f"exit code {result.exit_code}, expected 0")
    expect(b"hello-exec" in result.output, f"output {result.output!r} lacks 'hello-exec'")


@case(
    "exec.exit_code",
    "exec reports a non-zero exit code as it is",
    features=(Feature.EXEC,),
)
def exec_exit_code(ctx: Context) -> None:
    handle = ctx.run(SLEEPER)
    ctx.wait_running(handle)
    executor = ctx.executor()
    result = executor.exec(handle, ["sh", "-c", "exit 42"], timeout=10)
    expect(result.exit_code == 42, f"sh -c 'exit 42' reported exit code {result.exit_code}")
    result = executor.exec(handle, ["false"], timeout=10)
    expect(result.exit_code == 1, f"false reported exit code {result.exit_code}")


@case(
    "exec.stderr",
    "exec output includes what the command wrote to stderr",
    features=(Feature.EXEC,),
)
def exec_stderr(ctx: Context) -> None:
    handle = ctx.run(SLEEPER)
    ctx.wait_running(handle)
    result = ctx.executor().exec(handle, ["sh", "-c", "echo to-stderr >&2; exit 2"], timeout=10)
    expect(result.exit_code == 2, f"exit code {result.exit_code}, expected 2")
    expect(b"to-stderr" in result.output, f"output {result.output!r} lacks 'to-stderr'")


@case(
    "exec.sees_replica",
    "exec runs inside the replica: its environment and its files",
    features=(Feature.EXEC,),
    requires=(Feature.ENV, Feature.COMMAND),
)
def exec_sees_replica(ctx: Context) -> None:
    handle = ctx.run(
        {
            "command": ["sh", "-c", f"echo main > {MAIN_FILE}; exec sleep 600"],
            "env": {"PW_REPLICA": "yes"},
        }
    )
    ctx.wait_running(handle)
    executor = ctx.executor()
    ctx.wait_for(
        lambda: executor.exec(handle, ["cat", MAIN_FILE], timeout=10).exit_code == 0,
        5,
        f"exec sees {MAIN_FILE}, written by the replica's main process",
    )
    result = executor.exec(handle, ["sh", "-c", 'echo "PW_REPLICA=$PW_REPLICA"'], timeout=10)
    expect(
        b"PW_REPLICA=yes" in result.output,
        f"exec does not see the replica's environment: {result.output!r}",
    )


@case(
    "exec.not_running",
    "exec in a replica that is not running fails with a DriverError, promptly",
    features=(Feature.EXEC,),
)
def exec_not_running(ctx: Context) -> None:
    handle = ctx.run({"command": ["true"]})
    ctx.wait_exited(handle)
    started = time.monotonic()
    try:
        result = ctx.executor().exec(handle, ["sh", "-c", "echo ran"], timeout=5)
    except DriverError:
        took = time.monotonic() - started
        expect(took < 10, f"exec in an exited replica took {took:.1f}s to fail")
        return
    raise CaseFailed(
        f"exec in an exited replica returned exit code {result.exit_code} with output "
        f"{result.output!r} instead of failing"
    )


# --- stats -----------------------------------------------------------------


@case(
    "stats.usage",
    "stats of a running replica report memory in use (> 0) and CPU time",
    features=(Feature.STATS,),
)
def stats_usage(ctx: Context) -> None:
    handle = ctx.run({"ports": [{"containerPort": HTTP_PORT}]})
    ctx.wait_running(handle)
    source = ctx.stats_source()
    readings: list[Stats] = []

    def measured() -> bool:
        readings.append(source.stats(handle))
        return readings[-1].memory_bytes > 0

    ctx.wait_for(measured, 5, "stats report memory in use", detail=lambda: str(readings[-1]))
    stats = readings[-1]
    expect(stats.cpu_seconds >= 0, f"negative CPU time: {stats}")
    expect(stats.pids is None or stats.pids >= 1, f"a running replica reports {stats.pids} pids")


@case(
    "stats.memory_limit",
    "stats report the memory limit (64Mi), and no 64Mi limit where none is set",
    features=(Feature.STATS, Feature.RESOURCES_MEMORY),
)
def stats_memory_limit(ctx: Context) -> None:
    limited = ctx.run({**SLEEPER, "resources": {"memory": "64Mi"}})
    free = ctx.run(SLEEPER, workload="free")
    ctx.wait_running(limited)
    ctx.wait_running(free)
    source = ctx.stats_source()
    stats = source.stats(limited)
    expect(
        stats.memory_limit_bytes == 64 * 1024 * 1024,
        f"memory limit reported as {stats.memory_limit_bytes}, expected {64 * 1024 * 1024}",
    )
    unlimited = source.stats(free).memory_limit_bytes
    expect(
        unlimited is None or unlimited > 64 * 1024 * 1024,
        f"a replica without a memory limit reports a limit of {unlimited}",
    )
