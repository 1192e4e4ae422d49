"""Resource limits: enforced by the kernel, visible in the replica's cgroup
(v1 or v2), and an out-of-memory kill reported as such."""

from __future__ import annotations

import time

from portway.capabilities.vocabulary import Feature

from .case import Context, case, describe
from .failures import expect

MEBIBYTE = 1024 * 1024
PIDS_LIMIT = 20

# the first existing file among a cgroup v2 and a cgroup v1 path
_PICK = 'f={v2}; [ -f "$f" ] || f={v1}; echo "$f=$(cat $f)"; '

#: tail buffers a "line" of /dev/zero that never ends: memory grows until
#: killed. A second's wait first: Docker misses an OOM kill in a replica's
#: first moments (drivers.docker.OOM_MISSED_AT_START, said in its plans);
#: these cases prove the reporting of the kills it does see.
_GROW_AFTER_START = ["sh", "-c", "sleep 1; exec tail /dev/zero"]


@case(
    "resources.oom_killed",
    "exceeding the memory limit kills the replica: exit 137, reported OOMKilled",
    features=(Feature.RESOURCES_MEMORY, Feature.OOM_REPORTED),
)
def oom_killed(ctx: Context) -> None:
    done = ctx.finish({"command": _GROW_AFTER_START, "resources": {"memory": "16Mi"}})
    status = done.status
    expect(
        status.exit_code == 137,
        f"a replica over its 16Mi limit should die by SIGKILL (exit 137): {describe(status)}",
    )
    expect(status.oom_killed, f"the OOM kill is not reported as OOMKilled: {describe(status)}")


@case(
    "resources.oom_reason",
    "the controller records an OOM kill as the replica's last reason and an event, OOMKilled",
    features=(Feature.RESOURCES_MEMORY, Feature.OOM_REPORTED),
    requires=(Feature.RESTART_NEVER,),
)
def oom_reason(ctx: Context) -> None:
    harness = ctx.controller(
        {
            "command": _GROW_AFTER_START,
            "resources": {"memory": "16Mi"},
            "restart": {"policy": "never"},
        }
    )
    harness.converge(
        lambda: harness.replica().get("state") == "exited",
        timeout=20,
        what="replica 0 is killed for memory",
    )
    replica = harness.replica()
    expect(
        replica.get("last_reason") == "OOMKilled" and replica.get("last_exit_code") == 137,
        f"recorded exit: {replica.get('last_reason')!r} with code "
        f"{replica.get('last_exit_code')!r}, expected OOMKilled with 137; {harness.describe()}",
    )
    # the event reason is a contract: metrics and `portway events --reason` count by it
    killed = [m for r, m in harness.events() if r == "OOMKilled"]
    expect(
        len(killed) == 1 and "exit code 137" in killed[0],
        f"expected one OOMKilled event with exit code 137; {harness.describe()}",
    )


@case(
    "resources.memory_enforced",
    "exceeding a 16Mi memory limit ends the replica (killed, whatever the engine calls it)",
    features=(Feature.RESOURCES_MEMORY,),
)
def memory_enforced(ctx: Context) -> None:
    # the behaviour itself, with no claim about OOM reporting or about what the
    # replica can see of its cgroup (gVisor enforces on the sandbox's host cgroup)
    done = ctx.finish(
        {"command": ["tail", "/dev/zero"], "resources": {"memory": "16Mi"}}, timeout=30
    )
    expect(
        done.status.exit_code not in (None, 0),
        f"a replica growing past its 16Mi limit was not stopped: {describe(done.status)}",
    )


@case(
    "resources.cpu_enforced",
    "a busy replica with a CPU limit of 0.5 uses at most about half a core",
    features=(Feature.RESOURCES_CPU,),
    requires=(Feature.STATS,),
)
def cpu_enforced(ctx: Context) -> None:
    stats = ctx.stats_source()
    handle = ctx.run({"command": ["sh", "-c", "while :; do :; done"], "resources": {"cpu": 0.5}})
    ctx.wait_running(handle)
    time.sleep(1.0)  # past start-up
    first, started = stats.stats(handle).cpu_seconds, time.monotonic()
    time.sleep(3.0)
    used = (stats.stats(handle).cpu_seconds - first) / (time.monotonic() - started)
    # an upper bound only: on a busy machine a replica may get less than its limit
    expect(0.02 < used <= 0.65, f"a busy loop limited to 0.5 cores used {used:.2f} cores")


@case(
    "resources.memory_cgroup",
    "a memory limit of 64Mi is the replica's cgroup memory limit",
    features=(Feature.RESOURCES_MEMORY,),
    # gVisor shows a replica no cgroup files: it enforces on the sandbox's host
    # cgroup (memory_enforced proves that tier)
    tiers=("standard", "microvm"),
)
def memory_cgroup(ctx: Context) -> None:
    script = _PICK.format(
        v2="/sys/fs/cgroup/memory.max", v1="/sys/fs/cgroup/memory/memory.limit_in_bytes"
    )
    script += f'[ "$(cat $f)" = {64 * MEBIBYTE} ]'
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "resources": {"memory": "64Mi"}},
        0,
        f"cgroup memory limit {64 * MEBIBYTE}",
    )


@case(
    "resources.pids",
    f"a pids limit of {PIDS_LIMIT}: forks fail beyond it",
    features=(Feature.RESOURCES_PIDS,),
)
def pids(ctx: Context) -> None:
    script = _PICK.format(v2="/sys/fs/cgroup/pids.max", v1="/sys/fs/cgroup/pids/pids.max")
    # each successful round leaves one sleep behind; stop at the first failed fork
    script += (
        "n=0; while [ $n -lt 64 ]; do (sleep 30 &) 2>/dev/null || break; n=$((n+1)); done; "
        f'echo "forked $n"; [ $n -gt 0 ] && [ $n -lt {PIDS_LIMIT} ]'
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "resources": {"pids": PIDS_LIMIT}},
        0,
        f"pids limit {PIDS_LIMIT}: between 1 and {PIDS_LIMIT - 1} forks may succeed",
    )


@case(
    "resources.cpu",
    "a CPU limit of 0.5 is the replica's CFS quota (quota/period = 0.5)",
    features=(Feature.RESOURCES_CPU,),
    tiers=("standard", "microvm"),  # as for memory_cgroup
)
def cpu(ctx: Context) -> None:
    script = (
        "if [ -f /sys/fs/cgroup/cpu.max ]; then read q p < /sys/fs/cgroup/cpu.max; "
        "else q=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); "
        "p=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); fi; "
        'echo "quota=$q period=$p"; [ "$q" != max ] && [ "$q" -gt 0 ] && '
        "[ $((q * 1000 / p)) -ge 495 ] && [ $((q * 1000 / p)) -le 505 ]"
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "resources": {"cpu": 0.5}},
        0,
        "cpu 0.5 as CFS quota/period",
    )
