"""Lifecycle: create, start, stop, destroy, and what each does twice.

Every replica here runs with the standard isolation tier, so these cases are
what proves ``isolation.standard``.
"""

from __future__ import annotations

import time

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import (
    LABEL_CLUSTER,
    LABEL_NAMESPACE,
    LABEL_WORKLOAD,
    Handle,
    ReplicaState,
)
from portway.errors import DriverError, ImageNotFoundError, ReplicaGoneError

from .case import Context, case, describe
from .failures import CaseFailed, expect

STANDARD = (Feature.ISOLATION_STANDARD,)
SLEEPER = {"command": ["sleep", "600"]}
MISSING_IMAGE = "portway/conformance-missing:never"
# registry prefixes engines add to short names (Podman: localhost/, containerd: docker.io/)
_IMPLIED_PREFIXES = ("docker.io/library/", "docker.io/", "localhost/")


def _same_image(reported: str, requested: str) -> bool:
    """Equal up to the registry an engine fills in for a short name."""

    def short(name: str) -> str:
        for prefix in _IMPLIED_PREFIXES:
            if name.startswith(prefix):
                return name.removeprefix(prefix)
        return name

    return short(reported) == short(requested)


@case("lifecycle.image_present", "the test image is reported present", features=STANDARD)
def image_present(ctx: Context) -> None:
    expect(
        ctx.driver.image_present(ctx.image),
        f"image_present({ctx.image!r}) is False; build it with scripts/build-images.sh",
    )
    expect(
        not ctx.driver.image_present(MISSING_IMAGE),
        f"image_present({MISSING_IMAGE!r}) is True for an image that does not exist",
    )


@case(
    "lifecycle.missing_image",
    "create with a missing image fails with ImageNotFoundError (never pulls)",
    features=STANDARD,
)
def missing_image(ctx: Context) -> None:
    try:
        handle = ctx.create({"image": MISSING_IMAGE})
    except ImageNotFoundError:
        return
    except DriverError as exc:
        raise CaseFailed(
            f"create with a missing image raised {type(exc).__name__}, not "
            f"ImageNotFoundError: {exc}"
        ) from None
    raise CaseFailed(f"create with missing image {MISSING_IMAGE!r} succeeded ({handle.name})")


@case(
    "lifecycle.create_created",
    "create makes a replica in state created, labelled, not running",
    features=STANDARD,
)
def create_created(ctx: Context) -> None:
    request = ctx.request(SLEEPER, index=2, generation=3)
    handle = ctx.driver.create(request)
    expect(
        handle.name == request.name,
        f"handle name {handle.name!r}, expected the request's {request.name!r}",
    )
    expect(handle.driver == ctx.driver.name, f"handle driver {handle.driver!r}")
    status = ctx.inspect(handle)
    expect(
        status.state is ReplicaState.CREATED,
        f"after create the state is {status.state.value}, expected created",
    )
    expect(status.exit_code is None, f"a created replica reports exit code {status.exit_code}")
    wanted = request.labels(ctx.driver.target)
    wrong = {k: status.labels.get(k) for k, v in wanted.items() if status.labels.get(k) != v}
    expect(not wrong, f"owner labels differ from the request's: {wrong}")
    expect((status.index, status.generation) == (2, 3), "index/generation labels not read back")


@case("lifecycle.create_start", "start runs a created replica", features=STANDARD)
def create_start(ctx: Context) -> None:
    handle = ctx.create(SLEEPER)
    before = time.time()
    ctx.driver.start(handle)
    status = ctx.wait_running(handle)
    expect(status.exit_code is None, f"a running replica reports exit code {status.exit_code}")
    expect(status.started_at is not None, "a running replica reports no start time")
    assert status.started_at is not None
    expect(
        abs(status.started_at.timestamp() - before) < 60,
        f"start time {status.started_at.isoformat()} is not around now",
    )
    expect(
        _same_image(status.image, ctx.image) or status.image == "",
        f"running replica reports image {status.image!r}, expected {ctx.image!r}",
    )


@case(
    "lifecycle.create_idempotent",
    "creating the same replica twice returns the first one",
    features=STANDARD,
)
def create_idempotent(ctx: Context) -> None:
    request = ctx.request(SLEEPER)
    first = ctx.driver.create(request)
    second = ctx.driver.create(request)
    expect(first.id == second.id, f"second create made {second.id}, first was {first.id}")
    owned = ctx.driver.list_owned({LABEL_NAMESPACE: ctx.namespace})
    expect(len(owned) == 1, f"{len(owned)} replicas listed after two creates, expected 1")


@case(
    "lifecycle.start_running_noop",
    "start of a running replica changes nothing",
    features=STANDARD,
)
def start_running_noop(ctx: Context) -> None:
    handle = ctx.run(SLEEPER)
    first = ctx.wait_running(handle)
    ctx.driver.start(handle)
    again = ctx.inspect(handle)
    expect(again.state is ReplicaState.RUNNING, f"after a second start: {describe(again)}")
    expect(
        again.started_at == first.started_at,
        f"a second start restarted the replica (started {first.started_at} -> {again.started_at})",
    )


@case("lifecycle.exit_code", "a replica's exit code is reported", features=STANDARD)
def exit_code(ctx: Context) -> None:
    done = ctx.finish({"command": ["sh", "-c", "exit 3"]})
    status = done.status
    expect(status.exit_code == 3, f"exit 3 reported as {describe(status)}")
    expect(not status.oom_killed, "a plain exit is reported as an OOM kill")
    expect(status.finished_at is not None, "an exited replica reports no finish time")


@case(
    "lifecycle.stop_exited",
    "stop ends a running replica: state exited with an exit code",
    features=STANDARD,
)
def stop_exited(ctx: Context) -> None:
    handle = ctx.run(SLEEPER)
    ctx.wait_running(handle)
    ctx.driver.stop(handle, ctx.stop_timeout)
    status = ctx.wait_exited(handle, timeout=5)
    expect(status.exit_code is not None, f"stopped replica reports no exit code: {status}")
    ctx.driver.stop(handle, ctx.stop_timeout)  # stopping an exited replica: nothing to do
    expect(ctx.inspect(handle).state is ReplicaState.EXITED, "a second stop changed the state")


@case(
    "lifecycle.stop_timeout_kills",
    "stop kills a replica that ignores SIGTERM once the timeout passes",
    features=STANDARD,
)
def stop_timeout_kills(ctx: Context) -> None:
    # the trap makes the shell ignore SIGTERM; the loop keeps it the main process
    script = "trap '' TERM; while true; do sleep 0.2; done"
    handle = ctx.run({"command": ["sh", "-c", script]})
    ctx.wait_running(handle)
    timeout = 1.0
    started = time.monotonic()
    ctx.driver.stop(handle, timeout)
    status = ctx.wait_exited(handle, timeout=10)
    took = time.monotonic() - started
    expect(took < timeout + 6, f"stop with timeout {timeout:g}s took {took:.1f}s")
    expect(status.exit_code is not None, f"killed replica reports no exit code: {status}")


@case(
    "lifecycle.restart_in_place",
    "stop then start restarts the same replica: same id, same filesystem",
    features=STANDARD,
)
def restart_in_place(ctx: Context) -> None:
    # first run: leave a mark in the replica's own filesystem and keep running;
    # a second run of the same replica finds the mark and exits 7
    # (not under /tmp: gVisor gives an image whose /tmp is empty a fresh tmpfs
    # there on every start, which is its own, documented difference)
    script = "[ -f /portway-mark ] && exit 7; touch /portway-mark; exec sleep 600"
    handle = ctx.run({"command": ["sh", "-c", script]})
    first = ctx.wait_running(handle)
    _wait_for_mark(ctx, handle)
    ctx.driver.stop(handle, ctx.stop_timeout)
    ctx.wait_exited(handle)
    ctx.driver.start(handle)
    second = ctx.wait_exited(handle)
    expect(second.handle.id == handle.id, f"restart changed the id to {second.handle.id}")
    expect(second.handle.name == handle.name, f"restart changed the name to {second.handle.name}")
    expect(
        second.exit_code == 7,
        f"the restarted replica did not find the file its first run wrote (exit code "
        f"{second.exit_code}, expected 7): the restart did not keep its filesystem",
    )
    if first.started_at is not None and second.started_at is not None:
        # (a driver reporting no start times fails lifecycle.create_start instead)
        expect(
            second.started_at > first.started_at,
            f"start time did not move on restart ({first.started_at} -> {second.started_at})",
        )


def _wait_for_mark(ctx: Context, handle: Handle) -> None:
    """Wait until the first run has written its mark. "running" only says the
    engine started the process, not that the script got past its first line:
    on gVisor a stop right after start can kill the shell before ``touch``, and
    the second run then writes the mark itself and sleeps instead of exiting 7."""
    if Feature.EXEC in ctx.declared:
        executor = ctx.executor()
        ctx.wait_for(
            lambda: executor.exec(handle, ["sh", "-c", "[ -f /portway-mark ]"], 10).exit_code == 0,
            10,
            f"{handle.name} has written /portway-mark",
            interval=0.1,
        )
    else:
        # no way to look inside: give the script a generous moment
        time.sleep(1.0)


@case(
    "lifecycle.destroy",
    "destroy removes a running replica: no longer listed or inspectable",
    features=STANDARD,
)
def destroy(ctx: Context) -> None:
    handle = ctx.run(SLEEPER)
    ctx.wait_running(handle)
    ctx.driver.destroy(handle)
    owned = ctx.driver.list_owned({LABEL_NAMESPACE: ctx.namespace})
    expect(not owned, f"still listed after destroy: {[s.handle.name for s in owned]}")
    try:
        status = ctx.inspect(handle)
    except ReplicaGoneError:
        return
    raise CaseFailed(f"inspect after destroy answered {describe(status)}")


@case(
    "lifecycle.gone_stop_destroy",
    "stop and destroy of a replica that is gone are not errors",
    features=STANDARD,
)
def gone_stop_destroy(ctx: Context) -> None:
    handle = ctx.create(SLEEPER)
    ctx.driver.destroy(handle)
    try:
        ctx.driver.stop(handle, ctx.stop_timeout)
        ctx.driver.destroy(handle)
    except DriverError as exc:
        raise CaseFailed(f"stop/destroy of a removed replica raised {exc!r}") from None


@case(
    "lifecycle.inspect_gone",
    "inspect of a gone replica raises ReplicaGoneError; recover returns None",
    features=STANDARD,
)
def inspect_gone(ctx: Context) -> None:
    handle = ctx.create(SLEEPER)
    ctx.driver.destroy(handle)
    try:
        status = ctx.inspect(handle)
    except ReplicaGoneError:
        pass
    except DriverError as exc:
        raise CaseFailed(
            f"inspect of a removed replica raised {type(exc).__name__}, not ReplicaGoneError: {exc}"
        ) from None
    else:
        raise CaseFailed(f"inspect of a removed replica answered {describe(status)}")
    recovered = ctx.driver.recover(handle)
    expect(recovered is None, f"recover of a removed replica answered {recovered}")


@case(
    "lifecycle.recover",
    "recover re-attaches to a live replica by its handle",
    features=STANDARD,
)
def recover(ctx: Context) -> None:
    handle = ctx.run(SLEEPER)
    ctx.wait_running(handle)
    status = ctx.driver.recover(handle)
    expect(status is not None, "recover of a running replica returned None")
    assert status is not None
    expect(status.handle.id == handle.id, f"recover found {status.handle.id}, not {handle.id}")
    expect(status.state is ReplicaState.RUNNING, f"recovered: {describe(status)}")


@case(
    "lifecycle.list_owned",
    "list_owned returns exactly the replicas whose labels match, with their labels",
    features=STANDARD,
)
def list_owned(ctx: Context) -> None:
    web = [ctx.create(SLEEPER, index=i, workload="web") for i in range(2)]
    other = ctx.create(SLEEPER, workload="db")
    ctx.driver.start(web[0])
    selector = {
        LABEL_CLUSTER: ctx.cluster,
        LABEL_NAMESPACE: ctx.namespace,
        LABEL_WORKLOAD: "web",
    }
    owned = ctx.driver.list_owned(selector)
    ids = sorted(s.handle.id for s in owned)
    expect(
        ids == sorted(h.id for h in web),
        f"list_owned(workload=web) returned {[s.handle.name for s in owned]}, "
        f"expected {[h.name for h in web]}",
    )
    expect(
        sorted(s.index for s in owned) == [0, 1], f"indices {[s.index for s in owned]} not [0, 1]"
    )
    expect(all(s.generation == 1 for s in owned), "generation labels not read back as 1")
    everything = ctx.driver.list_owned({LABEL_NAMESPACE: ctx.namespace})
    expect(
        other.id in {s.handle.id for s in everything} and len(everything) == 3,
        f"list_owned(namespace) returned {len(everything)} replicas, expected 3",
    )
    nobody = ctx.driver.list_owned({LABEL_NAMESPACE: ctx.namespace, LABEL_WORKLOAD: "nobody"})
    expect(not nobody, f"a selector matching nothing returned {len(nobody)} replicas")


# gVisor's kernel greets in its ring buffer; runc replicas read the host's
# (usually unreadable without CAP_SYSLOG, hence the /proc/version comparison).
_GVISOR_SIGNATURE = "gVisor"


def _host_kernel() -> str:
    """The kernel of the host the suite runs on (the engines under test are local)."""
    with open("/proc/version", encoding="utf-8") as f:  # noqa: PTH123 -- one small read
        return f.read().strip()


@case(
    "lifecycle.tier_kernel",
    "the replica runs on the kernel its isolation tier promises (host kernel for "
    "standard, gVisor's user-space kernel for sandboxed)",
    features=STANDARD,
    requires=(Feature.COMMAND, Feature.ENV),
)
def tier_kernel(ctx: Context) -> None:
    if ctx.tier == "standard":
        script = 'cat /proc/version; [ "$(cat /proc/version)" = "$HOST_KERNEL" ]'
        what = "a standard replica shares the host's kernel"
    elif ctx.tier == "sandboxed":
        script = (
            'cat /proc/version; dmesg 2>&1 | head -3; [ "$(cat /proc/version)" != "$HOST_KERNEL" ]'
            f" && dmesg 2>&1 | grep -q {_GVISOR_SIGNATURE}"
        )
        what = "a sandboxed replica runs on gVisor's kernel, not the host's"
    else:
        raise CaseFailed(f"no kernel check is defined for the {ctx.tier} tier")
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "env": {"HOST_KERNEL": _host_kernel()}}, 0, what
    )
