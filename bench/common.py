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
import socket
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

PODMAN_SOCKET = "/run/podman/podman.sock"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CONTAINERD_NAMESPACE = "portway"  # where scripts/engines-containerd.sh imports the images
CTR = ("ctr", "--address", CONTAINERD_SOCKET, "-n", CONTAINERD_NAMESPACE)
CTR_IMAGE = f"docker.io/{IMAGE}"  # containerd keeps the normalised reference


@dataclass(frozen=True)
class Engine:
    """A container engine a benchmark can run portway and its peer on."""

    name: str  # docker | podman | containerd
    target: str  # the portway target name for it
    address: str  # `portway target add --address`
    setup: str  # what brings it up


DOCKER = Engine(
    "docker", "local-docker", "docker:///var/run/docker.sock", "bash scripts/engines.sh"
)
PODMAN = Engine(
    "podman", "local-podman", f"podman://{PODMAN_SOCKET}", "bash scripts/engines-podman.sh"
)
CONTAINERD = Engine(
    "containerd",
    "local-containerd",
    f"containerd://{CONTAINERD_SOCKET}",
    "bash scripts/engines-containerd.sh",
)
ENGINES = {e.name: e for e in (DOCKER, PODMAN, CONTAINERD)}


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


def timed_start(
    what: str,
    cmd: Sequence[str | os.PathLike[str]],
    labels: Sequence[str],
    expected: int,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 700.0,
) -> float:
    """Seconds ``cmd`` took to exit 0, a tool that returns once it started
    ``expected`` containers; then Docker must show exactly that many running
    with ``labels`` (else BenchError: a fast wrong answer is no result)."""
    log(f"{what} ...")
    seconds, proc = timed(cmd, env=env, timeout=timeout, cwd=cwd)
    running = count_running(labels)
    log(f"{what}: {seconds:.2f}s, {running} running")
    if running != expected:
        raise BenchError(
            f"{what} exited 0 but {running}/{expected} containers run\n"
            f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
        )
    return seconds


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


def _unix_http_ok(path: str, url: str, timeout: float = 5.0) -> bool:
    """True when an HTTP server on the unix socket ``path`` answers ``GET url`` with 200."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(f"GET {url} HTTP/1.0\r\nHost: d\r\n\r\n".encode())
            head = sock.recv(64).decode(errors="replace")
    except OSError:
        return False
    return head.startswith("HTTP/") and head.split()[1:2] == ["200"]


def _quiet(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(cmd), 127, "", str(exc))


def require_engine(engine: Engine) -> None:
    """Fail loudly when ``engine``, its CLI or the test image in its store is missing."""
    if engine.name == "docker":
        require_docker()
        return
    if engine.name == "podman":
        if shutil.which("podman") is None:
            fail(f"the podman CLI is not on PATH; set podman up: {engine.setup}")
        if not _unix_http_ok(PODMAN_SOCKET, "/_ping"):
            fail(
                f"the podman API service does not answer on {PODMAN_SOCKET}; "
                f"start it: {engine.setup}"
            )
        if _quiet(["podman", "image", "exists", IMAGE]).returncode != 0:
            fail(f"image {IMAGE} is missing in podman's store; build it: {engine.setup}")
    elif engine.name == "containerd":
        if shutil.which("ctr") is None:
            fail(f"the ctr CLI is not on PATH; set containerd up: {engine.setup}")
        if not Path(CONTAINERD_SOCKET).is_socket():
            fail(f"containerd's socket {CONTAINERD_SOCKET} is missing; start it: {engine.setup}")
        version = _quiet(["ctr", "--address", CONTAINERD_SOCKET, "version"])
        if version.returncode != 0:
            fail(
                f"containerd does not answer on {CONTAINERD_SOCKET} "
                f"({version.stderr.strip()}); start it: {engine.setup}"
            )
        images = _quiet([*CTR, "images", "ls", "-q"])
        if CTR_IMAGE not in images.stdout.split():
            fail(
                f"image {CTR_IMAGE} is missing in containerd namespace {CONTAINERD_NAMESPACE}; "
                f"import it: {engine.setup}"
            )
    else:
        fail(f"unknown engine {engine.name!r}; known: {', '.join(ENGINES)}")
    if not PORTWAY.exists():
        fail(f"{PORTWAY} is missing; install portway into .venv (bash scripts/setup.sh)")


def engine_version(engine: Engine) -> str:
    """E.g. ``dockerd 20.10.24``, ``podman 4.3.1``, ``containerd 1.6.20``."""
    if engine.name == "docker":
        return f"dockerd {docker_server_version()}"
    if engine.name == "podman":
        out = run(["podman", "info", "--format", "{{.Version.Version}}"]).stdout.strip()
        return f"podman {out}"
    text = run(["ctr", "--address", CONTAINERD_SOCKET, "version"]).stdout
    server = text.partition("Server:")[2].split()
    version = server[server.index("Version:") + 1] if "Version:" in server else "?"
    return f"containerd {version}"


# --- portway state ------------------------------------------------------------------


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def portway_env(home: Path) -> dict[str, str]:
    """Environment for a portway CLI process that only sees ``home``'s state
    and runs this checkout's ``src`` (the venv may be shared with another
    checkout whose portway is installed in it: a worktree's bench would
    otherwise measure that one)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
    )
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
    targets: Sequence[str] = (),
    portability: str = "",
) -> str:
    """A minimal workload: no ports, no probes, default restart policy; with
    ``targets``, placed only on those targets (``placement.targets``); with
    ``portability``, that ``spec.portability`` (default: portway's, strict)."""

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
        + (f"  placement: {{targets: {flow(targets)}}}\n" if targets else "")
        + (f"  portability: {portability}\n" if portability else "")
    )


def write_workload(
    path: Path,
    name: str,
    namespace: str,
    replicas: int,
    *,
    targets: Sequence[str] = (),
    portability: str = "",
) -> Path:
    path.write_text(
        workload_yaml(name, namespace, replicas, targets=targets, portability=portability)
    )
    return path


def portway(
    *args: str, home: Path, timeout: float = 600.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run([PORTWAY, *args], env=portway_env(home), timeout=timeout, check=check)


def compose_cmd(project: str, file: Path, *args: str) -> list[str]:
    """A docker-compose (Debian's 1.29) command on ``file`` as project ``project``."""
    return ["docker-compose", "-p", project, "-f", str(file), *args]


def compose_label(project: str) -> str:
    """The label docker-compose puts on every container of ``project``."""
    return f"com.docker.compose.project={project}"


def compose_cleanup(project: str, file: Path) -> None:
    """Whatever a bench's compose project left, gone: ``down`` (untimed), its
    containers by label, then its default network, which ``down`` leaves when
    dockerd still held an endpoint at that moment. (A network whose endpoint
    dockerd never lets go of, listing no container, stays until dockerd
    restarts; that rm fails and is let be.)"""
    for step in (
        lambda: run(compose_cmd(project, file, "down", "-t", "0", "--remove-orphans"), check=False),
        lambda: remove_containers([compose_label(project)]),
        lambda: run(["docker", "network", "rm", f"{project}_default"], check=False),
    ):
        with contextlib.suppress(BenchError):
            step()


# --- engine queries / cleanup --------------------------------------------------------


def ctr_running_tasks() -> set[str]:
    """IDs of the containerd containers (namespace CONTAINERD_NAMESPACE) whose task runs."""
    rows = run([*CTR, "tasks", "ls"]).stdout.splitlines()[1:]
    return {row.split()[0] for row in rows if len(row.split()) >= 3 and row.split()[2] == "RUNNING"}


def container_ids(
    labels: Sequence[str], *, running_only: bool = False, engine: Engine = DOCKER
) -> list[str]:
    """IDs of containers carrying every ``key=value`` in ``labels`` on ``engine``."""
    if engine.name == "containerd":
        terms = []
        for label in labels:
            key, _, value = label.partition("=")
            terms.append(f'labels."{key}"=="{value}"')
        ids = run([*CTR, "containers", "ls", "-q", ",".join(terms)]).stdout.split()
        if running_only:
            running = ctr_running_tasks()
            ids = [i for i in ids if i in running]
        return ids
    cmd = [engine.name, "ps", "-q", "--no-trunc"]
    if not running_only:
        cmd.append("-a")
    else:
        cmd += ["--filter", "status=running"]
    for label in labels:
        cmd += ["--filter", f"label={label}"]
    return run(cmd).stdout.split()


def namespace_label(namespace: str) -> str:
    return f"{LABEL_NAMESPACE}={namespace}"


def count_running(labels: Sequence[str], *, engine: Engine = DOCKER) -> int:
    return len(container_ids(labels, running_only=True, engine=engine))


def wait_until_running(
    labels: Sequence[str], count: int, timeout: float = 120.0, *, engine: Engine = DOCKER
) -> float:
    """Poll the engine until ``count`` containers with ``labels`` run; returns seconds."""
    start = time.perf_counter()
    while True:
        have = count_running(labels, engine=engine)
        if have >= count:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise BenchError(f"only {have}/{count} containers with {labels} run after {timeout}s")
        time.sleep(0.1)


def engine_floor_seconds(count: int, *, prefix: str, concurrency: int = 8) -> float:
    """Seconds dockerd itself needs to create and start ``count`` containers
    (the bench image running httpd) on one new user-defined network, asked
    straight through the API by ``concurrency`` threads: no CLI, no planning,
    no waiting on status. It is the floor under any tool that starts the same
    containers on this engine, so a ratio target below floor ÷ peer cannot be
    met here. The containers and the network are removed afterwards (untimed).
    """
    from concurrent.futures import ThreadPoolExecutor

    import docker  # the bench's one use of the SDK: the floor must not pay for a CLI

    client = docker.from_env(timeout=300)
    label = {"portway.bench.floor": unique_id(prefix)}
    network = client.networks.create(label["portway.bench.floor"], labels=label)

    def create_and_start(_: int) -> None:
        container = client.containers.create(
            IMAGE, [*HTTPD_COMMAND, *HTTPD_ARGS], labels=label, network=network.name
        )
        container.start()

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(create_and_start, range(count)))
        return time.perf_counter() - start
    finally:
        selector = {"label": [f"{k}={v}" for k, v in label.items()]}
        for container in client.containers.list(all=True, filters=selector):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            network.remove()
        client.close()


def remove_ctr_container(name: str, *, check: bool = True) -> None:
    """Remove a container made by `ctr run -d` (no CNI): kill its task, wait
    until it stopped, delete task and container (and with it its snapshot)."""
    run([*CTR, "tasks", "kill", "-s", "KILL", name], check=False)
    deadline = time.monotonic() + 30
    while name in ctr_running_tasks() and time.monotonic() < deadline:
        time.sleep(0.05)
    run([*CTR, "tasks", "rm", name], check=check)
    run([*CTR, "containers", "rm", name], check=check)


def _destroy_containerd_replicas(labels: Sequence[str]) -> int:
    """Remove portway's containerd replicas through its own driver, which also
    tears down their CNI network namespace, snapshot and log files."""
    from portway.drivers.registry import open_driver

    selector = dict(label.partition("=")[::2] for label in labels)
    driver = open_driver(CONTAINERD.target, CONTAINERD.name, CONTAINERD.address)
    try:
        statuses = driver.list_owned(selector)
        for status in statuses:
            driver.destroy(status.handle)
    finally:
        close = getattr(driver, "close", None)
        if callable(close):
            close()
    return len(statuses)


def remove_containers(labels: Sequence[str], *, engine: Engine = DOCKER) -> int:
    """Force-remove every container with ``labels`` on ``engine``; returns how many
    there were."""
    if engine.name == "containerd":
        try:
            return _destroy_containerd_replicas(labels)
        except Exception as exc:  # last resort below, and say why
            log(
                f"cleanup: portway's containerd driver could not remove replicas ({exc}); "
                "falling back to ctr (their CNI network namespaces may be left)"
            )
            ids = container_ids(labels, engine=engine)
            for name in ids:
                remove_ctr_container(name, check=False)
            return len(ids)
    ids = container_ids(labels, engine=engine)
    for i in range(0, len(ids), 100):
        run([engine.name, "rm", "-f", "-v", *ids[i : i + 100]], check=False, timeout=300)
    return len(ids)


@contextlib.contextmanager
def portway_sandbox(prefix: str, *, engine: Engine = DOCKER) -> Iterator[tuple[Path, str]]:
    """A fresh PORTWAY_HOME and a unique namespace; on exit (even on Ctrl-C),
    force-removes every container of that namespace on ``engine`` and deletes the home."""
    namespace = unique_id(prefix)
    with temp_dir(f"portway-{prefix}-") as home:
        try:
            yield home, namespace
        finally:
            with contextlib.suppress(BenchError):
                left = remove_containers([namespace_label(namespace)], engine=engine)
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


@contextlib.contextmanager
def portway_controller(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `portway controller` on ``home``'s store for the block (its output in
    home/controller.log), stopped with SIGTERM (SIGKILL after 30 s) after it."""
    with (home / "controller.log").open("ab") as log:
        controller = subprocess.Popen(
            [str(PORTWAY), "controller"],
            env=portway_env(home),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield controller
    finally:
        with contextlib.suppress(ProcessLookupError):
            controller.send_signal(signal.SIGTERM)
        try:
            controller.wait(timeout=30)
        except subprocess.TimeoutExpired:
            controller.kill()
            controller.wait()


def stop_ingress(home: Path) -> None:
    """Stop the HAProxy portway started for ``home`` (it outlives controllers)."""
    pidfile = home / "ingress" / "haproxy.pid"
    if pidfile.exists():
        for pid in pidfile.read_text().split():
            run(["kill", pid], check=False)


def podman_service_up() -> None:
    """Podman's API service, (re)started by the project's own script."""
    run(["bash", str(REPO / "scripts" / "engines-podman.sh")], timeout=300)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
