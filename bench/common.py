"""Shared helpers for the portway benchmarks in this directory.

Every benchmark runs portway with a fresh temporary ``PORTWAY_HOME`` (never the
user's state), labels everything it creates with a unique namespace, and removes
it again in ``finally`` blocks, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
PORTWAY = VENV_BIN / "portway"
PYTHON = VENV_BIN / "python"

IMAGE = "portway/busybox:latest"
HTTPD_COMMAND = ("httpd",)
HTTPD_ARGS = ("-f", "-p", "8080", "-h", "/www")

LABEL_NAMESPACE = "portway.dev/namespace"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark cannot go on; ``main`` prints it and exits non-zero."""


def fail(message: str, code: int = 2) -> None:
    print(f"bench: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays a clean report."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def unique_id(prefix: str) -> str:
    """A DNS-1123 label such as ``bench-p1-3fa9c2``, unique per run."""
    return f"{prefix}-{secrets.token_hex(3)}"


# --- signals / entry point ----------------------------------------------------


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_main(main: Callable[[], int | None]) -> None:
    """Run ``main()`` with SIGTERM acting like Ctrl-C (so ``finally`` blocks clean
    up), and turn failures into a clear message and a non-zero exit status."""
    signal.signal(signal.SIGTERM, _sigterm)
    # also when started with SIGINT ignored (a background job of a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main()
    except KeyboardInterrupt:
        print("bench: interrupted; cleaned up", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except BenchError as exc:
        fail(str(exc), 1)
    raise SystemExit(code or 0)


# --- processes -------------------------------------------------------------------


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (never through a shell), capturing its output."""
    args = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(args)}") from exc
    except FileNotFoundError as exc:
        raise BenchError(f"not found: {args[0]}") from exc
    if check and proc.returncode != 0:
        raise BenchError(
            f"exit status {proc.returncode}: {' '.join(args)}\n"
            f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
        )
    return proc


def timed(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    cwd: Path | None = None,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall-clock seconds from spawning ``cmd`` until it exited 0 (else BenchError)."""
    start = time.perf_counter()
    proc = run(cmd, env=env, timeout=timeout, cwd=cwd)
    return time.perf_counter() - start, proc


# --- preflight -------------------------------------------------------------------


def require_docker(*, compose: bool = False) -> None:
    """Fail loudly when dockerd, the test image or a needed CLI is missing."""
    if shutil.which("docker") is None:
        fail("the docker CLI is not on PATH")
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if info.returncode != 0 or not info.stdout.strip():
        fail(f"dockerd does not answer ({info.stderr.strip()}); start it: bash scripts/engines.sh")
    image = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if image.returncode != 0:
        fail(f"image {IMAGE} is missing; build it: bash scripts/build-images.sh")
    if not PORTWAY.exists():
        fail(f"{PORTWAY} is missing; install portway into .venv (bash scripts/setup.sh)")
    if compose and shutil.which("docker-compose") is None:
        fail("docker-compose is not on PATH (Debian package docker-compose)")


def docker_server_version() -> str:
    return run(["docker", "info", "--format", "{{.ServerVersion}}"]).stdout.strip()


# --- portway state ------------------------------------------------------------------


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def portway_env(home: Path) -> dict[str, str]:
    """Environment for a portway CLI process that only sees ``home``'s state."""
    env = dict(os.environ)
    env["PORTWAY_HOME"] = str(home)
    env.pop("PORTWAY_STORE", None)  # would override PORTWAY_HOME
    env.pop("PORTWAY_ALLOW_BIND", None)
    env["NO_COLOR"] = "1"
    return env


def workload_yaml(
    name: str,
    namespace: str,
    replicas: int,
    *,
    image: str = IMAGE,
    command: Sequence[str] = HTTPD_COMMAND,
    args: Sequence[str] = HTTPD_ARGS,
) -> str:
    """A minimal workload: no ports, no probes, default restart policy."""

    def flow(items: Sequence[str]) -> str:
        return "[" + ", ".join(f'"{i}"' for i in items) + "]"

    return (
        "apiVersion: portway.dev/v1\n"
        "kind: Workload\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"  namespace: {namespace}\n"
        "spec:\n"
        f"  image: {image}\n"
        f"  command: {flow(command)}\n"
        f"  args: {flow(args)}\n"
        f"  replicas: {replicas}\n"
    )


def write_workload(path: Path, name: str, namespace: str, replicas: int) -> Path:
    path.write_text(workload_yaml(name, namespace, replicas))
    return path


def portway(
    *args: str, home: Path, timeout: float = 600.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run([PORTWAY, *args], env=portway_env(home), timeout=timeout, check=check)


# --- docker queries / cleanup --------------------------------------------------------


def container_ids(labels: Sequence[str], *, running_only: bool = False) -> list[str]:
    """IDs of containers carrying every ``key=value`` in ``labels``."""
    cmd = ["docker", "ps", "-q", "--no-trunc"]
    if not running_only:
        cmd.append("-a")
    else:
        cmd += ["--filter", "status=running"]
    for label in labels:
        cmd += ["--filter", f"label={label}"]
    return run(cmd).stdout.split()


def namespace_label(namespace: str) -> str:
    return f"{LABEL_NAMESPACE}={namespace}"


def count_running(labels: Sequence[str]) -> int:
    return len(container_ids(labels, running_only=True))


def wait_until_running(labels: Sequence[str], count: int, timeout: float = 120.0) -> float:
    """Poll ``docker ps`` until ``count`` containers with ``labels`` run; returns seconds."""
    start = time.perf_counter()
    while True:
        have = count_running(labels)
        if have >= count:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise BenchError(f"only {have}/{count} containers with {labels} run after {timeout}s")
        time.sleep(0.1)


def remove_containers(labels: Sequence[str]) -> int:
    """``docker rm -f`` every container with ``labels``; returns how many there were."""
    ids = container_ids(labels)
    for i in range(0, len(ids), 100):
        run(["docker", "rm", "-f", "-v", *ids[i : i + 100]], check=False, timeout=300)
    return len(ids)


@contextlib.contextmanager
def portway_sandbox(prefix: str) -> Iterator[tuple[Path, str]]:
    """A fresh PORTWAY_HOME and a unique namespace; on exit (even on Ctrl-C),
    force-removes every container of that namespace and deletes the home."""
    namespace = unique_id(prefix)
    with temp_dir(f"portway-{prefix}-") as home:
        try:
            yield home, namespace
        finally:
            with contextlib.suppress(BenchError):
                left = remove_containers([namespace_label(namespace)])
                if left:
                    log(f"cleanup: force-removed {left} leftover container(s) of {namespace}")


# --- /proc -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise BenchError(f"no Threads line in /proc/{pid}/status")


def descendants(pid: int) -> list[int]:
    """PIDs of all processes below ``pid`` (children, grandchildren, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def pidof(name: str) -> list[int]:
    proc = run(["pidof", name], check=False)
    return [int(p) for p in proc.stdout.split()]


# --- reporting --------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    if not values:
        raise BenchError("no samples")
    return float(statistics.median(values))


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float]
    unit: str = "s"


def print_table(series: Sequence[Series], *, index_header: str = "pair") -> None:
    """Raw figures (one row per pair/run) and a median row."""
    width = max(12, *(len(s.name) + 2 for s in series))
    rows = max(len(s.values) for s in series)
    header = f"{index_header:>6}" + "".join(f"{s.name:>{width}}" for s in series)
    print(header)
    for i in range(rows):
        cells = "".join(
            f"{s.values[i]:>{width}.3f}" if i < len(s.values) else " " * width for s in series
        )
        print(f"{i + 1:>6}{cells}")
    print(f"{'median':>6}" + "".join(f"{median(s.values):>{width}.3f}" for s in series))
    units = "".join(f"{'(' + s.unit + ')':>{width}}" for s in series)
    print(f"{'':>6}{units}")


def result_line(name: str, value: float, target: float, *, decimals: int = 3) -> str:
    return f"RESULT {name} {value:.{decimals}f} target {target:g}"
