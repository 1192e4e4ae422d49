"""The sandboxed isolation tier on containerd: gVisor's ``runsc``, run by the
same runc v2 shim as the standard tier.

containerd's runc shim (``io.containerd.runc.v2``) drives any binary that
speaks runc's command line; its ``Options.binary_name`` says which. runsc
speaks it (that is how Docker runs gVisor), so a sandboxed replica is an
ordinary replica whose runtime options name runsc, and everything the driver
does around the task (binary logger, exec, kill, CNI netns) stays the same.

On this kind of host runsc works only with host-mode networking, i.e. inside
the network namespace the driver made with CNI, using the host kernel's stack
rather than gVisor's netstack. The runc shim takes a binary, not extra
arguments, so scripts/gvisor.sh installs a wrapper that adds
``--network=host``; that wrapper is the handler.

Nothing here talks to containerd: the driver feeds it what it read. Only the
few helpers at the end run runsc itself (see there why).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: containerd's runtime name for the runc v2 shim, used for both tiers
RUNC_SHIM = "io.containerd.runc.v2"
#: the handlers' names, as ``portway get targets -o wide`` shows them
STANDARD_HANDLER = "runc"
SANDBOXED_HANDLER = "runsc"
DEFAULT_WRAPPER = "/usr/local/lib/portway/runsc-hostnet"
WRAPPER_ENV = "PORTWAY_RUNSC_WRAPPER"

#: the type URL containerd's typeurl registry gives the runc shim's options
#: (gogo-registered, so no ``type.googleapis.com/`` prefix)
RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options"
#: ``binary_name`` in containerd 1.6's runtime/v2/runc/options/oci.proto
#: (``message Options``: 6 is binary_name, 7 root, 8 criu_path)
_BINARY_NAME_FIELD = 6
_WIRE_VARINT, _WIRE_FIXED64, _WIRE_BYTES, _WIRE_FIXED32 = 0, 1, 2, 5

# What a gVisor sandbox costs beyond the workload, counted by placement like a
# RuntimeClass overhead. Measured with bench/ctd_sandbox_overhead.py on this
# host (containerd 1.6.20, runsc release 20221219, Debian 12, cgroup v1, 2
# cores): one idle busybox ``sleep`` replica under tini, PSS summed over the
# replica's shim and every process under it, one replica at a time, 5 rounds
# per tier, order alternating. runc: 4 processes, PSS 15.6-21.4 MiB (median
# 20.6); runsc: 8 processes (shim, logger, gofer, sandbox and its Sentry
# helpers), PSS 49.1-49.9 MiB (median 49.3). Median overhead 28.6 MiB, worst
# pair 34.3 MiB (RSS, which counts shared pages again per process: 44 MiB);
# rounded up to 40 MiB. Of it, about 12 MiB sits in the replica's own memory
# cgroup (the Sentry and gofer run there), so it also counts against the
# workload's memory limit; the rest (shim side) does not.
OVERHEAD_MEMORY = 40 * 1024 * 1024  # bytes
# Idle, the sandbox used 0-20 ms of CPU per 5 s window (median 0; runc: 0):
# at most 0.004 cores, rounded up. Under load, the Sentry's syscall handling
# runs in the replica's cgroup, within the workload's own CPU limit.
OVERHEAD_CPU = 0.01  # cores

# Declared features that gVisor does not honour on this host, found by running
# the conformance cases with every replica in the sandboxed tier (runsc release
# 20221219, --network=host). Docker and Podman with runsc show the same.
#
# Not a gap, but a known defect of the same cause: since a server may read an
# accepted connection before the client's first bytes arrive, some requests to
# such servers are dropped even when the client sends at once (busybox httpd:
# 20 of 300 sequential HTTP GETs through a published port got no answer; 11 of
# 300 with Docker and runsc; 0 under runc). Ports and HTTP probes stay declared
# (they work, and clients retry), but a probe with failureThreshold 1 flaps.
# Inside the sandbox there are no cgroup files (limits are enforced on the
# sandbox's host cgroup, see adapt_runtime_spec), and gVisor mounts its own
# tmpfs on /tmp when the image's /tmp is empty, so /tmp is empty again after a
# restart while the rest of the root filesystem persists.


def adapt_runtime_spec(runtime_spec: dict[str, Any]) -> None:
    """What the runc-shaped OCI spec must lose for runsc: the pids limit (see
    GVISOR_GAPS: on the host it would count the Sentry's threads, not the
    workload's processes). The memory and CPU limits stay: runsc applies them
    to the sandbox's host cgroup, which holds the Sentry and gofer too."""
    resources = runtime_spec.get("linux", {}).get("resources", {})
    resources.pop("pids", None)


def wrapper_path() -> Path:
    """Where the runsc wrapper should be (``PORTWAY_RUNSC_WRAPPER`` overrides)."""
    return Path(os.environ.get(WRAPPER_ENV) or DEFAULT_WRAPPER)


def find_wrapper() -> Path | None:
    """The runsc wrapper if it exists and is executable.

    The driver only ever talks to containerd over a unix socket, so the shim
    that will exec this path runs on this host and sees this file system (a
    socket forwarded from another machine or mount namespace is not supported
    by the driver anyway: its CNI setup and log files are local too)."""
    path = wrapper_path()
    if path.is_file() and os.access(path, os.X_OK):
        return path
    return None


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def encode_runc_options(binary_name: str) -> bytes:
    """The serialized ``containerd.runc.v1.Options`` with only ``binary_name``
    set (the containerd package ships no stub for this message, and it is one
    length-delimited field)."""
    data = binary_name.encode()
    return _varint(_BINARY_NAME_FIELD << 3 | _WIRE_BYTES) + _varint(len(data)) + data


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def decode_binary_name(data: bytes) -> str:
    """``binary_name`` of a serialized runc Options message ("" when unset),
    skipping every other field. Raises ValueError on a malformed message."""
    name = ""
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == _WIRE_VARINT:
            _, at = _read_varint(data, at)
        elif wire == _WIRE_BYTES:
            size, at = _read_varint(data, at)
            if at + size > len(data):
                raise ValueError("truncated field")
            if number == _BINARY_NAME_FIELD:
                name = data[at : at + size].decode()
            at += size
        elif wire in (_WIRE_FIXED64, _WIRE_FIXED32):
            at += 8 if wire == _WIRE_FIXED64 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if at != len(data):
        raise ValueError("truncated field")
    return name


def handler_of(type_url: str, options: bytes) -> str:
    """Which handler a container's runtime options select: ``runsc`` when they
    tell the runc shim to run runsc (directly or through a wrapper named like
    ours), else ``runc`` (no options: the shim's default binary)."""
    if type_url != RUNC_OPTIONS_TYPE_URL or not options:
        return STANDARD_HANDLER
    try:
        binary = Path(decode_binary_name(options))
    except (ValueError, UnicodeDecodeError):
        return STANDARD_HANDLER
    if binary == wrapper_path() or binary.name in (SANDBOXED_HANDLER, Path(DEFAULT_WRAPPER).name):
        return SANDBOXED_HANDLER
    return binary.name or STANDARD_HANDLER


# --- processes inside a sandbox ---------------------------------------------------
#
# The runc shim signals an exec by the host pid in the pid file the runtime
# wrote. runc writes the process's own pid; ``runsc exec`` writes the pid of
# its host-side proxy, so the shim's SIGKILL for a timed-out exec kills the
# proxy and leaves the process running inside the sandbox (and its output
# pipes open). gVisor's own shim asks runsc for the in-sandbox pid; the runc
# shim cannot, so the driver finds it with ``runsc ps`` and kills it with
# ``runsc kill --pid``.

#: where the runc shim keeps the runtime's state (``--root``): containerd's
#: fixed runc root plus the namespace (``process.RuncRoot`` in the shim)
RUNC_ROOT = Path("/run/containerd/runc")
_RUNSC_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class SandboxProcess:
    pid: int  # inside the sandbox
    ppid: int  # 0 for the container's init and for exec'd processes
    command: str  # the name, as ``ps`` shows it


def parse_ps(table: str) -> list[SandboxProcess]:
    """``runsc ps`` (table format): ``UID PID PPID C TTY STIME TIME CMD``."""
    found: list[SandboxProcess] = []
    lines = table.splitlines()
    for line in lines[1:] if lines and lines[0].split()[:1] == ["UID"] else lines:
        fields = line.split(None, 7)
        if len(fields) == 8 and fields[1].isdigit() and fields[2].isdigit():
            found.append(SandboxProcess(int(fields[1]), int(fields[2]), fields[7].strip()))
    return found


def newest_pid(processes: list[SandboxProcess]) -> int:
    return max((p.pid for p in processes), default=0)


def exec_tree(processes: list[SandboxProcess], after: int, upto: int) -> list[int]:
    """The pids of an exec whose process started while the newest pid in the
    sandbox went from ``after`` to ``upto`` (gVisor hands out pids in increasing
    order): its root (parent 0 and not the init; its name is no help, a shell
    may have exec'd another program) and all the root's descendants, root first.
    Another exec started in the same instant falls in the same bracket and would
    be taken too; the bracket is the few ms of one Start call."""
    tree = [p.pid for p in processes if p.ppid == 0 and p.pid != 1 and after < p.pid <= upto]
    for pid in tree:  # grows while it is walked: breadth first
        tree.extend(p.pid for p in processes if p.ppid == pid and p.pid not in tree)
    return tree


def _runsc(binary: str, namespace: str, *args: str) -> str:
    done = subprocess.run(
        [binary, "--root", str(RUNC_ROOT / namespace), *args],
        capture_output=True,
        text=True,
        timeout=_RUNSC_TIMEOUT_SECONDS,
        check=True,
    )
    return done.stdout


def processes(binary: str, namespace: str, container_id: str) -> list[SandboxProcess]:
    """What runs in the container's sandbox; raises OSError/SubprocessError."""
    return parse_ps(_runsc(binary, namespace, "ps", container_id))


def kill(binary: str, namespace: str, container_id: str, pids: list[int]) -> None:
    """SIGKILL each in-sandbox pid (one already gone is no error)."""
    for pid in pids:
        with contextlib.suppress(subprocess.CalledProcessError):
            _runsc(binary, namespace, "kill", "--pid", str(pid), container_id, "KILL")


def force_delete(binary: str, namespace: str, container_id: str) -> None:
    """Tear down the container's sandbox whatever its state (``runsc delete --force``)."""
    _runsc(binary, namespace, "delete", "--force", container_id)


def host_processes(container_id: str) -> list[int]:
    """Host pids of the container's runsc processes (sandbox, gofer, exec
    proxies: their argv[0] is ``runsc-<role>`` and their arguments name it)."""
    wanted = container_id.encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].startswith(b"runsc") and any(wanted in arg for arg in argv[1:]):
            found.append(int(entry.name))
    return found


def wait_gone(container_id: str, timeout: float) -> list[int]:
    """Wait until the container's runsc processes have exited (the gofer goes a
    few ms after the sandbox); returns those still there after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = host_processes(container_id)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.01)
