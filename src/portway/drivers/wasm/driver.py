"""wasm driver: each replica is a WASI module run by wasmtime in its own worker
process (``worker``), with all its state in files under the target's state
directory (``_state``), so replicas outlive the controller and a restarted
driver finds, inspects, stops and removes them from those files alone.

Address: ``wasm:///ABSOLUTE/STATE/DIR``. Images name modules in the target's
artifact store (``artifacts``) or, as ``file:///abs/path.wasm``, a file on
this host (stored by digest at create, like a pulled image).

What the tier cannot do, and so does not declare: ports and network probes
(no WASI sockets in preview 1), exec (a module has one entry point), CPU
shares (``extensions.wasm.fuel`` and ``timeoutSeconds`` bound a run instead),
pids, users, capabilities and the other Linux security settings (a module has
no syscalls to confine: WASI is its whole interface), tmpfs size limits.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from portway.capabilities.vocabulary import Feature
from portway.drivers.base import (
    LABEL_MANAGED,
    Artifact,
    DriverCapabilities,
    DriverEvent,
    Fingerprint,
    Handle,
    Health,
    LogLine,
    ReplicaRequest,
    ReplicaState,
    ReplicaStatus,
    RuntimeHandler,
    Stats,
)
from portway.drivers.follow import until_stopped
from portway.drivers.wasm import _logfile, _proc, _runtime
from portway.drivers.wasm._state import (
    Preopen,
    ReplicaFiles,
    Result,
    WorkerConfig,
    locked,
    read_json,
    write_json,
)
from portway.drivers.wasm.artifacts import ArtifactStore, StoredModule, file_url_path
from portway.errors import (
    ImageNotFoundError,
    InputError,
    PermanentDriverError,
    ReplicaGoneError,
    TargetUnavailableError,
)
from portway.spec.model import Isolation, VolumeType, WorkloadSpec

__all__ = ["WasmDriver"]

DRIVER_NAME = "wasm"
HANDLER = "wasmtime"
#: what one worker process costs beyond the module's own linear memory: the
#: RSS of a worker running a module that prints and waits (Python + wasmtime
#: + one compiled module), measured with bench/pwasm_cold_start.py: 31.9 MiB.
WORKER_OVERHEAD_BYTES = 32 * 1024 * 1024
_KILL_WAIT_SECONDS = 5.0
_READY_TIMEOUT_SECONDS = 10.0
_EVENT_POLL_SECONDS = 0.25
_POLL_SECONDS = 0.02
_FOLLOW_POLL_SECONDS = 0.1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
_EXTENSION_KEYS = ("fuel", "timeoutSeconds")
_MAX_TIMEOUT = 366 * 24 * 3600.0
_DEATH_REASON = "the worker process ended without recording a result (killed by a signal?)"

_FEATURES = frozenset(
    {
        Feature.COMMAND,
        Feature.ARGS,
        Feature.ENV,
        Feature.RESOURCES_MEMORY,
        Feature.OOM_REPORTED,
        Feature.RESTART_ALWAYS,
        Feature.RESTART_ON_FAILURE,
        Feature.RESTART_NEVER,
        Feature.VOLUMES_TMPFS,
        Feature.VOLUMES_NAMED,
        Feature.VOLUMES_BIND,
        Feature.VOLUMES_READ_ONLY,
        Feature.LOGS,
        Feature.LOGS_FOLLOW,
        Feature.STATS,
        Feature.ISOLATION_WASM,
    }
)


def parse_address(address: str) -> Path:
    """``wasm:///var/lib/portway/wasm`` -> the state directory. Raises ValueError."""
    parsed = urlparse(address)
    if parsed.scheme != DRIVER_NAME or parsed.netloc not in ("", "localhost"):
        raise ValueError(
            f"{address!r} is not a wasm address; expected wasm:///ABSOLUTE/STATE/DIR, "
            "e.g. wasm:///var/lib/portway/wasm"
        )
    if not parsed.path.startswith("/") or parsed.path == "/":
        raise ValueError(f"{address!r}: the state directory must be an absolute path below /")
    return Path(parsed.path)


def parse_extension(raw: Mapping[str, Any]) -> tuple[int | None, float | None]:
    """``extensions.wasm`` -> (fuel, timeoutSeconds). Raises ValueError."""
    problems, fuel, timeout = _check_extension(raw)
    if problems:
        raise ValueError("; ".join(problems))
    return fuel, timeout


def _check_extension(raw: Mapping[str, Any]) -> tuple[list[str], int | None, float | None]:
    problems: list[str] = []
    unknown = sorted(set(raw) - set(_EXTENSION_KEYS))
    if unknown:
        problems.append(
            f"extensions.wasm: unknown key(s) {', '.join(unknown)}; "
            f"known keys: {', '.join(_EXTENSION_KEYS)}"
        )
    fuel = raw.get("fuel")
    if fuel is not None and (isinstance(fuel, bool) or not isinstance(fuel, int) or fuel < 1):
        problems.append(
            f"extensions.wasm.fuel: expected a positive whole number of fuel units "
            f"(about one per wasm instruction), got {fuel!r}"
        )
        fuel = None
    timeout = raw.get("timeoutSeconds")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= _MAX_TIMEOUT
    ):
        problems.append(
            f"extensions.wasm.timeoutSeconds: expected seconds, more than 0 and at most "
            f"{_MAX_TIMEOUT:g} (a year), got {timeout!r}"
        )
        timeout = None
    return problems, fuel, None if timeout is None else float(timeout)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _worker_environment() -> dict[str, str]:
    """Ours, with the directory this portway was imported from first on the
    path: the worker must run the same portway, whatever the working directory
    (a relative PYTHONPATH=src would not survive ``cwd``)."""
    import portway

    root = str(Path(portway.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


class WasmDriver:
    """Runs replicas as WASI modules under wasmtime, one worker process each."""

    name = DRIVER_NAME

    def __init__(self, target: str, address: str) -> None:
        self.target = target
        self.address = address
        try:
            self.state_dir = parse_address(address)
        except ValueError as exc:
            raise PermanentDriverError(target, str(exc)) from None
        self.store = ArtifactStore(self.state_dir / "artifacts")
        self.cache = _runtime.cache_dir(self.state_dir)
        self._replicas = self.state_dir / "replicas"
        self._volumes = self.state_dir / "volumes"
        self._engine_lock = threading.Lock()
        self._engine: Any = None

    def __repr__(self) -> str:
        return f"WasmDriver(target={self.target!r}, address={self.address!r})"

    # --- plumbing -------------------------------------------------------------

    def _wasm_engine(self) -> Any:
        """One engine for compiling at create/import (the workers have their own)."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = _runtime.new_engine()
            return self._engine

    def _files(self, name: str) -> ReplicaFiles:
        return ReplicaFiles(self._replicas / name)

    def _handle(self, name: str) -> Handle:
        return Handle(driver=DRIVER_NAME, target=self.target, id=name, name=name)

    def _existing(self, handle: Handle, action: str) -> ReplicaFiles:
        if handle.driver != DRIVER_NAME:
            raise PermanentDriverError(
                self.target, f"handle {handle.name!r} belongs to driver {handle.driver!r}"
            )
        files = self._files(handle.id)
        if not _NAME_RE.match(handle.id) or not files.replica.exists():
            raise ReplicaGoneError(self.target, f"{action} {handle.name}: no such replica")
        return files

    # --- health -----------------------------------------------------------------

    def ping(self) -> None:
        if not os.access(self.state_dir, os.W_OK):
            raise TargetUnavailableError(
                self.target, f"state directory {self.state_dir} is missing or not writable"
            )

    def fingerprint(self) -> Fingerprint:
        try:
            self._replicas.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return Fingerprint(
                Health.UNHEALTHY,
                detail=f"cannot use state directory {self.state_dir}: {exc.strerror}",
            )
        if not os.access(self._replicas, os.W_OK):
            return Fingerprint(
                Health.UNHEALTHY, detail=f"state directory {self.state_dir} is not writable"
            )
        version = _runtime.wasmtime_version()
        return Fingerprint(
            Health.HEALTHY,
            detail=f"wasmtime {version} (WASI preview 1, state {self.state_dir})",
            version=version,
            runtime_handlers=(HANDLER,),
            attributes={"os": "linux", "stateDir": str(self.state_dir), "wasi": "preview1"},
        )

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(
            _FEATURES,
            handlers=(RuntimeHandler("wasm", HANDLER, overhead_memory=WORKER_OVERHEAD_BYTES),),
        )

    def check_extension(self, settings: Mapping[str, Any]) -> list[str]:
        return _check_extension(settings)[0]

    # --- artifacts (ArtifactImporter) ---------------------------------------------

    def image_present(self, image: str) -> bool:
        path = file_url_path(image)
        if path is not None:
            return path.is_file()
        return self.store.get(image) is not None

    def import_artifact(self, name: str, path: Path) -> Artifact:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            binary = _runtime.to_binary(data)
            module = _runtime.compile_module(self._wasm_engine(), binary)
            stored = self.store.tag(name, *self._put(binary, module))
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from None
        return self._artifact(stored)

    def _put(self, binary: bytes, module: Any) -> tuple[str, int]:
        """Store a compiled-and-checked module; its digest and size."""
        digest, _ = self.store.put_blob(binary)
        cached = self.cache / f"{digest.removeprefix('sha256:')}.cwasm"
        if not cached.exists():
            _runtime.store_compiled(module, cached)
        return digest, len(binary)

    def list_artifacts(self) -> list[Artifact]:
        return [self._artifact(m) for m in self.store.list()]

    def remove_artifact(self, name: str) -> Artifact | None:
        try:
            removed = self.store.remove(name)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return None if removed is None else self._artifact(removed)

    @staticmethod
    def _artifact(module: StoredModule) -> Artifact:
        return Artifact(module.name, module.digest, module.size, _parse_time(module.imported_at))

    def _resolve(self, name: str, image: str) -> tuple[str, Path]:
        """The module an image names, stored by digest and compiled: (digest, blob)."""
        path = file_url_path(image)
        if path is None:
            stored = self.store.get(image)
            if stored is None:
                raise ImageNotFoundError(
                    self.target,
                    f"{name}: module {image!r} is not in the artifact store of target "
                    f"{self.target}; import it first: portway artifact import {image} FILE",
                )
            blob = self.store.blob_path(stored.digest)
            if not (self.cache / f"{stored.hex}.cwasm").exists():
                module = _runtime.compile_module(self._wasm_engine(), blob.read_bytes())
                self._put(blob.read_bytes(), module)
            return stored.digest, blob
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageNotFoundError(
                self.target, f"{name}: module file {path} cannot be read ({exc.strerror})"
            ) from None
        try:
            binary = _runtime.to_binary(data)
            module = _runtime.compile_module(self._wasm_engine(), binary)
        except ValueError as exc:
            raise PermanentDriverError(self.target, f"{name}: {image}: {exc}") from None
        digest, _ = self._put(binary, module)
        return digest, self.store.blob_path(digest)

    # --- create -----------------------------------------------------------------------

    def create(self, request: ReplicaRequest) -> Handle:
        spec = request.spec
        name = request.name
        if request.secret_files:  # the planner refuses this first (no secrets.files)
            raise PermanentDriverError(
                self.target, f"{name}: the wasm driver cannot deliver secret files"
            )
        if spec.isolation is not Isolation.WASM:
            raise PermanentDriverError(
                self.target,
                f"{name}: isolation {spec.isolation.value!r} is not offered by the wasm driver "
                "(only 'wasm'); place the workload on a target that offers it",
            )
        if spec.ports:
            raise PermanentDriverError(
                self.target,
                f"{name}: the wasm driver cannot publish ports (WASI preview 1 has no "
                "sockets); remove spec.ports or use a container tier",
            )
        if not _NAME_RE.match(name):
            raise PermanentDriverError(self.target, f"{name!r} is not a valid replica name")
        try:
            fuel, timeout = parse_extension(spec.extensions.get(DRIVER_NAME, {}))
        except ValueError as exc:
            raise PermanentDriverError(self.target, f"{name}: {exc}") from None
        files = self._files(name)
        if files.replica.exists():
            return self._handle(name)  # a repeated create finds the first one
        digest, blob = self._resolve(name, spec.image)
        self._replicas.mkdir(parents=True, exist_ok=True)
        staging = ReplicaFiles(self._replicas / f".new-{name}-{uuid.uuid4().hex[:8]}")
        staging.root.mkdir()
        try:
            config = WorkerConfig(
                argv=self._argv(spec),
                env=dict(spec.env),
                memory_limit=spec.resources.memory,
                fuel=fuel,
                timeout_seconds=timeout,
                preopens=self._preopens(request, files),
                scratch=[
                    str(files.scratch / v.name) for v in spec.volumes if v.type is VolumeType.TMPFS
                ],
            )
            write_json(staging.config, config.to_json())
            try:
                os.link(blob, staging.module)
            except OSError:  # another file system: a copy does as well
                shutil.copyfile(blob, staging.module)
            write_json(
                staging.replica,
                {
                    "labels": request.labels(self.target),
                    "image": spec.image,
                    "digest": digest,
                    "created_at": datetime.now(UTC).isoformat(),
                },
            )
            try:
                staging.root.rename(files.root)
            except OSError:
                if not files.replica.exists():  # not a concurrent create that won
                    raise
        except OSError as exc:
            raise PermanentDriverError(self.target, f"create {name}: {exc}") from exc
        finally:
            shutil.rmtree(staging.root, ignore_errors=True)
        return self._handle(name)

    @staticmethod
    def _argv(spec: WorkloadSpec) -> list[str]:
        """WASI argv: ``command`` (argv[0] is the program's name) then ``args``;
        without a command, the module's name stands as argv[0]."""
        head = list(spec.command) if spec.command else [spec.image.rsplit("/", 1)[-1]]
        return head + list(spec.args or [])

    def _preopens(self, request: ReplicaRequest, files: ReplicaFiles) -> list[Preopen]:
        """Only what the spec mounts is visible to the module."""
        spec = request.spec
        found: list[Preopen] = []
        for volume in spec.volumes:
            if volume.type is VolumeType.TMPFS:
                host = files.scratch / volume.name
            elif volume.type is VolumeType.NAMED:
                source = volume.source or f"{request.namespace}-{request.workload}-{volume.name}"
                if not _NAME_RE.match(source):
                    raise PermanentDriverError(
                        self.target, f"{request.name}: named volume source {source!r} is invalid"
                    )
                host = self._volumes / source
                host.mkdir(parents=True, exist_ok=True)
            else:
                host = Path(str(volume.source))
                if not host.is_dir():
                    raise PermanentDriverError(
                        self.target,
                        f"{request.name}: bind volume {volume.name!r}: {host} is not a "
                        "directory on this host (the wasm tier can preopen directories only)",
                    )
            found.append(Preopen(str(host), volume.mount_path, writable=not volume.read_only))
        return found

    # --- start / stop -------------------------------------------------------------------

    def _worker(self, files: ReplicaFiles) -> tuple[int, int, str] | None:
        """(pid, start ticks, started_at) of the replica's last worker, if any."""
        data = read_json(files.worker)
        if not isinstance(data, dict):
            return None
        try:
            return int(data["pid"]), int(data["start_ticks"]), str(data["started_at"])
        except (KeyError, TypeError, ValueError):
            return None

    def _live(self, files: ReplicaFiles) -> tuple[int, int] | None:
        worker = self._worker(files)
        if worker is None or not _proc.is_alive(worker[0], worker[1]):
            return None
        return worker[0], worker[1]

    def start(self, handle: Handle) -> None:
        files = self._existing(handle, "start")
        with locked(files.lock):
            if self._live(files) is not None:
                return
            files.result.unlink(missing_ok=True)
            started = datetime.now(UTC)
            ready_read, ready_write = os.pipe()
            try:
                with files.worker_err.open("ab") as err:
                    process = subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "portway.drivers.wasm.worker",
                            str(files.root),
                            str(self.cache),
                            str(ready_write),
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=err,
                        stderr=err,
                        cwd=files.root,
                        env=_worker_environment(),
                        pass_fds=(ready_write,),
                        start_new_session=True,  # outlives us, and our terminal's signals
                    )
            except OSError as exc:
                os.close(ready_read)
                raise PermanentDriverError(
                    self.target, f"start {handle.name}: cannot run the worker: {exc}"
                ) from exc
            finally:
                os.close(ready_write)
            with os.fdopen(ready_read, "rb") as ready:
                # one byte once its signal handling is in place; end-of-file if it died
                select.select([ready], [], [], _READY_TIMEOUT_SECONDS)
            # read before anyone reaps it: a zombie still has its /proc entry
            ticks = _proc.start_ticks(process.pid) or 0
            write_json(
                files.worker,
                {"pid": process.pid, "start_ticks": ticks, "started_at": started.isoformat()},
            )
        # reap it when it ends, while this process lives (afterwards init does)
        threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()

    def _signal(self, pid: int, ticks: int, sig: signal.Signals) -> None:
        """Signal the worker, never a process that got its pid later."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return  # gone
        try:
            if _proc.is_alive(pid, ticks):  # the pidfd now pins this very process
                signal.pidfd_send_signal(fd, sig)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _wait_gone(self, pid: int, ticks: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while _proc.is_alive(pid, ticks):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)
        return True

    def stop(self, handle: Handle, timeout: float) -> None:
        files = self._existing(handle, "stop")
        live = self._live(files)
        if live is None:
            return
        pid, ticks = live
        self._signal(pid, ticks, signal.SIGTERM)
        if self._wait_gone(pid, ticks, max(0.0, timeout)):
            return
        self._signal(pid, ticks, signal.SIGKILL)
        self._wait_gone(pid, ticks, _KILL_WAIT_SECONDS)
        self._record_death(files, f"killed (SIGKILL) after the stop timeout of {timeout:g}s")

    def _record_death(self, files: ReplicaFiles, reason: str) -> None:
        """A worker that died without writing its result gets one from us, once,
        so its exit has a stable time and is reported once."""
        with locked(files.lock):
            if files.result.exists() or self._live(files) is not None:
                return
            if self._worker(files) is None:
                return
            result = Result(137, reason, finished_at=datetime.now(UTC).isoformat())
            write_json(files.result, result.__dict__)

    def destroy(self, handle: Handle) -> None:
        files = self._files(handle.id)
        if not _NAME_RE.match(handle.id) or not files.root.exists():
            return
        live = self._live(files)
        if live is not None:
            self._signal(live[0], live[1], signal.SIGKILL)
            self._wait_gone(live[0], live[1], _KILL_WAIT_SECONDS)
        # renamed first: a concurrent list_owned sees the replica or nothing
        doomed = self._replicas / f".gone-{handle.id}-{uuid.uuid4().hex[:8]}"
        try:
            files.root.rename(doomed)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise PermanentDriverError(self.target, f"destroy {handle.name}: {exc}") from exc
        shutil.rmtree(doomed, ignore_errors=True)

    def remove_volume(self, name: str) -> None:
        """Remove named volume ``name`` (its directory); missing is not an error."""
        if not _NAME_RE.match(name):
            raise PermanentDriverError(self.target, f"{name!r} is not a volume name")
        shutil.rmtree(self._volumes / name, ignore_errors=True)

    def recover(self, handle: Handle) -> ReplicaStatus | None:
        try:
            return self.inspect(handle)
        except ReplicaGoneError:
            return None

    # --- status ---------------------------------------------------------------------------

    def inspect(self, handle: Handle) -> ReplicaStatus:
        files = self._existing(handle, "inspect")
        status = self._status(files)
        if status is None:
            raise ReplicaGoneError(self.target, f"inspect {handle.name}: no such replica")
        return status

    def list_owned(self, selector: Mapping[str, str]) -> list[ReplicaStatus]:
        found: list[ReplicaStatus] = []
        try:
            entries = sorted(self._replicas.iterdir())
        except FileNotFoundError:
            return []
        wanted = {LABEL_MANAGED: "true", **selector}
        for root in entries:
            if root.name.startswith("."):
                continue
            status = self._status(ReplicaFiles(root))
            if status is None:
                continue
            if all(status.labels.get(k, "") == v for k, v in wanted.items()):
                found.append(status)
        return found

    def _status(self, files: ReplicaFiles) -> ReplicaStatus | None:
        replica = read_json(files.replica)
        if not isinstance(replica, dict):
            return None
        labels = {str(k): str(v) for k, v in dict(replica.get("labels", {})).items()}
        base: dict[str, Any] = {
            "handle": self._handle(files.root.name),
            "labels": labels,
            "created_at": _parse_time(replica.get("created_at")),
            "image": str(replica.get("image", "")),
        }
        worker = self._worker(files)
        if worker is None:
            return ReplicaStatus(state=ReplicaState.CREATED, **base)
        started_at = _parse_time(worker[2])
        if _proc.is_alive(worker[0], worker[1]):
            return ReplicaStatus(state=ReplicaState.RUNNING, started_at=started_at, **base)
        result = Result.from_json(read_json(files.result))
        if result is None:
            self._record_death(files, _DEATH_REASON)
            result = Result.from_json(read_json(files.result)) or Result(137, _DEATH_REASON)
        return ReplicaStatus(
            state=ReplicaState.EXITED,
            exit_code=result.exit_code,
            oom_killed=result.oom_killed,
            error=result.reason,
            started_at=started_at,
            finished_at=_parse_time(result.finished_at),
            **base,
        )

    # --- LogSource -------------------------------------------------------------------------

    def logs(
        self,
        handle: Handle,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        """The module's output, each line with its stream and the time the worker
        received it. ``follow`` goes on until ``stop`` is set or the worker has
        ended and its last lines are read (the worker writes each line before it
        returns to the module, so once it is gone the file is complete)."""
        files = self._existing(handle, "logs of")
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return until_stopped(self._log_lines(files, follow, tail, since, stop), stop)

    def _log_lines(
        self,
        files: ReplicaFiles,
        follow: bool,
        tail: int | None,
        since: datetime | None,
        stop: threading.Event | None,
    ) -> Iterator[LogLine]:
        try:
            stream = files.log.open("rb")
        except FileNotFoundError:
            if not follow:
                return
            stream = None
        pending = b""

        def lines(data: bytes, final: bool) -> list[LogLine]:
            nonlocal pending
            records, pending = _logfile.split_records(pending + data)
            if final and pending:
                records.append(_logfile.decode(pending))
                pending = b""
            return [
                LogLine(r.timestamp, r.stream, r.text)
                for r in records
                if since is None or r.timestamp is None or r.timestamp >= since
            ]

        with contextlib.ExitStack() as stack:
            if stream is not None:
                stack.enter_context(stream)
                first = lines(stream.read(), not follow)
                if tail is not None:
                    first = first[-tail:] if tail > 0 else []
                yield from first
            if not follow:
                return
            while not (stop is not None and stop.is_set()):
                if stream is None:
                    with contextlib.suppress(FileNotFoundError):
                        stream = stack.enter_context(files.log.open("rb"))
                chunk = stream.read() if stream is not None else b""
                if chunk:
                    yield from lines(chunk, False)
                    continue
                if self._live(files) is None and self._worker(files) is not None:
                    if stream is not None:
                        yield from lines(stream.read(), True)
                    return
                if stop is not None:
                    stop.wait(_FOLLOW_POLL_SECONDS)
                else:
                    time.sleep(_FOLLOW_POLL_SECONDS)

    # --- EventSource -------------------------------------------------------------------------

    def events(self, stop: threading.Event) -> Iterator[DriverEvent]:
        """ "start", "die" and "destroy" of replicas, found by looking at their
        files every ``_EVENT_POLL_SECONDS``: a worker records its end in
        ``result.json``, one killed without a word is found dead by its pid.
        Without events the controller would notice an exit only at its resync."""
        seen: dict[str, tuple[float, float, bool]] = {}
        labels: dict[str, Mapping[str, str]] = {}
        first = True
        while not stop.is_set():
            current: dict[str, tuple[float, float, bool]] = {}
            try:
                roots = [p for p in self._replicas.iterdir() if not p.name.startswith(".")]
            except FileNotFoundError:
                roots = []
            for root in roots:
                files = ReplicaFiles(root)
                worker, result = _mtime(files.worker), _mtime(files.result)
                before = seen.get(root.name)
                # only a worker seen alive can die without its files changing
                if before is not None and before[:2] == (worker, result) and not before[2]:
                    live = False
                else:
                    live = self._live(files) is not None
                current[root.name] = (worker, result, live)
                if before == current[root.name]:
                    continue
                if root.name not in labels:
                    replica = read_json(files.replica)
                    if not isinstance(replica, dict):
                        del current[root.name]  # still being made: next time
                        continue
                    raw = dict(replica.get("labels", {}))
                    labels[root.name] = {str(k): str(v) for k, v in raw.items()}
                if not first:
                    action = "start" if live else "die" if worker else "create"
                    yield DriverEvent(labels[root.name], action, root.name)
            for name in seen.keys() - current.keys():
                if not (self._replicas / name).exists():
                    yield DriverEvent(labels.pop(name, {}), "destroy", name)
            seen, first = current, False
            stop.wait(_EVENT_POLL_SECONDS)

    # --- StatsSource -------------------------------------------------------------------------

    def stats(self, handle: Handle) -> Stats:
        """The worker process's CPU time and resident memory (Python, wasmtime
        and the module's linear memory); the limit is the module's."""
        files = self._existing(handle, "stats of")
        live = self._live(files)
        stat = _proc.read_stat(live[0]) if live is not None else None
        if stat is None:
            raise ReplicaGoneError(
                self.target, f"stats of {handle.name}: its worker is not running"
            )
        config = read_json(files.config) or {}
        limit = config.get("memory_limit") if isinstance(config, dict) else None
        return Stats(
            cpu_seconds=stat.cpu_seconds,
            memory_bytes=stat.rss_bytes,
            memory_limit_bytes=int(limit) if isinstance(limit, int) else None,
            pids=1,
        )
