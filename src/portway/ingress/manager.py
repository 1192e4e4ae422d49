"""``IngressManager``: one managed HAProxy under ``home/ingress``, driven by
``apply(IngressState)``.

Each apply is level-triggered and idempotent:

1. ``validate`` the state (conflicts raise ``IngressConflictError``);
2. give every endpoint a slot (it keeps the one it had);
3. no HAProxy running -> render, ``haproxy -c``, start it;
   structure changed -> render, ``haproxy -c``, carry servers' health over,
   seamless reload through the master socket;
   otherwise -> runtime API only: read what HAProxy holds (``show servers
   state``) and send the commands that make it what the state asks;
4. record the slot layout and the structure digest in ``state.json``, so a
   restarted controller adopts the running HAProxy and carries on.

A failure at any step leaves the running HAProxy on its last good config.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from portway.ingress import config as cfg
from portway.ingress.diff import carry_server_state, runtime_commands, structural_changes
from portway.ingress.errors import (
    IngressConfigError,
    IngressConflictError,
    IngressError,
    IngressProcessError,
)
from portway.ingress.model import IngressSettings, IngressState, ServerState
from portway.ingress.process import (
    HaproxyProcess,
    bind_failure,
    check_config,
    ensure_port_free,
    find_binary,
    log_size,
    log_tail,
    pid_alive,
    read_pid,
    runs_config,
    start_master,
)
from portway.ingress.runtime import (
    MasterSocket,
    ProcInfo,
    SocketUnavailable,
    StatsSocket,
    check_socket_path,
    op_state,
    parse_servers_state,
    parse_stat,
)
from portway.ingress.slots import Layout, SlotView, allocate_all, slot_index, slot_name
from portway.ingress.validate import format_listen, parse_listen, validate

RECORD_FORMAT = 1
_POLL = 0.05


class Action(StrEnum):
    STARTED = "started"  # no HAProxy was running: one was started
    RELOADED = "reloaded"  # structure changed: new config, seamless reload
    RUNTIME = "runtime"  # endpoints changed: runtime API commands, no reload
    UNCHANGED = "unchanged"  # HAProxy already held the state


@dataclass(frozen=True)
class ApplyResult:
    """What one ``apply`` did, for the controller's events and logs."""

    action: Action
    reasons: tuple[str, ...]
    """Why a reload or a start (empty for runtime changes)."""
    commands: tuple[str, ...]
    """Runtime API commands sent."""
    master_pid: int
    worker_pid: int


@dataclass
class _Record:
    """What portway keeps about the running HAProxy (``state.json``)."""

    digest: str = ""
    summary: dict[str, Any] | None = None
    layout: dict[str, tuple[str | None, ...]] = field(default_factory=dict)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Replica label per slot (what the map files say, for http backends)."""
    backend_ids: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": RECORD_FORMAT,
                "digest": self.digest,
                "summary": self.summary,
                "layout": {name: list(slots) for name, slots in self.layout.items()},
                "labels": {name: list(labels) for name, labels in self.labels.items()},
                "backend_ids": self.backend_ids,
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> _Record | None:
        try:
            raw = json.loads(text)
            if raw.get("format") != RECORD_FORMAT:
                return None
            return cls(
                digest=str(raw["digest"]),
                summary=raw["summary"],
                layout={name: tuple(slots) for name, slots in raw["layout"].items()},
                labels={name: tuple(labels) for name, labels in raw["labels"].items()},
                backend_ids={str(k): str(v) for k, v in raw["backend_ids"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class _Target:
    """One apply's goal, computed once."""

    state: IngressState
    layout: dict[str, tuple[str | None, ...]]
    views: dict[str, tuple[SlotView, ...]]
    digest: str
    summary: dict[str, Any]
    backend_ids: dict[str, str]
    map_files: dict[str, str]


class IngressManager:
    """A managed HAProxy under ``home/ingress``. Thread-safe; one apply at a
    time per home, also across processes (a lock file)."""

    def __init__(
        self,
        home: Path,
        *,
        haproxy: str = "haproxy",
        settings: IngressSettings | None = None,
    ) -> None:
        self.paths = cfg.Paths.under(home)
        self.settings = settings or IngressSettings()
        self._binary_name = haproxy
        self._binary: str | None = None
        for path in (self.paths.master_socket, self.paths.stats_socket):
            try:
                check_socket_path(path)
            except ValueError as exc:
                raise IngressError(str(exc)) from None
        self._stats = StatsSocket(self.paths.stats_socket)
        self._master = MasterSocket(self.paths.master_socket)
        self._lock = threading.RLock()
        self._process: HaproxyProcess | None = None
        self._record: _Record | None = None
        self.reloads = 0
        """Reloads this manager did (a controller's metric; a test's witness)."""

    # --- public -----------------------------------------------------------

    def apply(self, state: IngressState) -> ApplyResult:
        """Make HAProxy serve ``state``. See the module's docstring."""
        problems = validate(state)
        if problems:
            raise IngressConflictError(problems)
        with self._lock, self._home_lock(), self._translated():
            self._attach()
            target = self._target(state)
            if self._process is None:
                return self._start(target)
            record = self._record
            reasons = structural_changes(
                record.summary if record else None,
                target.summary,
                record.digest if record else "",
                target.digest,
            )
            if reasons:
                return self._reload(target, reasons)
            actual = self._stats.send("show servers state")
            missing = _missing_slot(target, parse_servers_state(actual))
            if missing is not None:
                return self._reload(target, (f"HAProxy has no server {missing}",))
            return self._sync(target, actual)

    def status(self) -> dict[str, list[ServerState]]:
        """Per backend name, each endpoint's slot as HAProxy reports it now.
        Empty when no HAProxy runs."""
        with self._lock, self._translated():
            self._attach()
            if self._process is None:
                return {}
            rows = parse_stat(self._stats.send("show stat"))
            record = self._record or _Record()
        names = {ident: name for name, ident in record.backend_ids.items()}
        result: dict[str, list[ServerState]] = {name: [] for name in record.backend_ids}
        for row in rows:
            name = names.get(row.backend_id)
            if name is None:
                continue
            index = slot_index(row.slot)
            layout = record.layout.get(name, ())
            endpoint = layout[index] if index < len(layout) else None
            if endpoint is None:
                continue
            labels = record.labels.get(name, ())
            address, _, port = row.address.rpartition(":")
            result[name].append(
                ServerState(
                    backend=name,
                    slot=row.slot,
                    endpoint=endpoint,
                    replica=labels[index] if index < len(labels) else "",
                    address=address.strip("[]"),
                    port=int(port) if port.isdigit() else 0,
                    state=op_state(row.status),
                    detail=row.status,
                    check=row.check_status,
                    check_detail=row.check_desc,
                    sessions=row.sessions,
                    since_change=row.last_change,
                )
            )
        return result

    def process_info(self) -> ProcInfo | None:
        """``show proc`` of the running master (pids, reload count), or None."""
        with self._lock, self._translated():
            self._attach()
            if self._process is None:
                return None
            return self._master.show_proc()

    def stop(self, timeout: float | None = None) -> None:
        """Stop HAProxy gracefully: open connections get ``timeout`` seconds
        (default ``settings.stop_timeout``) to finish, then SIGTERM."""
        grace = self.settings.stop_timeout if timeout is None else timeout
        with self._lock, self._home_lock(), self._translated():
            self._attach()
            process = self._process
            if process is None:
                return
            process.signal(signal.SIGUSR1)  # soft stop: workers finish, then exit
            if not process.wait_exit(grace):
                process.signal(signal.SIGTERM)
                if not process.wait_exit(3.0):
                    process.signal(signal.SIGKILL)
                    process.wait_exit(3.0)
            self._process = None
            with contextlib.suppress(FileNotFoundError):
                self.paths.pid.unlink()

    @property
    def adopted(self) -> bool:
        """Whether the HAProxy in use was started by an earlier controller."""
        return self._process is not None and self._process.adopted

    # --- attach / adopt ---------------------------------------------------

    def _attach(self) -> None:
        """Know the running HAProxy, if any: ours, or one a previous
        controller left (pid file + master socket answer)."""
        # The file is the truth: another manager on this home may have applied.
        self._record = self._load_record()
        if self._process is not None:
            if self._process.alive():
                return
            self._process = None
        pid = read_pid(self.paths.pid)
        if pid is None or not pid_alive(pid):
            return
        ours = runs_config(pid, self.paths.config)
        deadline = time.monotonic() + (self.settings.start_timeout if ours else 0.0)
        while True:
            try:
                info = self._master.show_proc()
                break
            except SocketUnavailable:
                if time.monotonic() >= deadline:
                    if not ours:
                        return  # a stale pid file naming some other process
                    raise IngressProcessError(
                        f"HAProxy pid {pid} from a previous run serves {self.paths.config} but "
                        f"its master socket {self.paths.master_socket} does not answer; "
                        f"stop it (kill {pid}) and apply again",
                        log_tail(self.paths),
                    ) from None
                time.sleep(_POLL)
        if info.master_pid != pid:
            raise IngressProcessError(
                f"{self.paths.pid} names pid {pid} but {self.paths.master_socket} answers for "
                f"master {info.master_pid}; stop the stray HAProxy and apply again"
            )
        self._process = HaproxyProcess(pid=pid, adopted=True)

    def _load_record(self) -> _Record | None:
        try:
            return _Record.from_json(self.paths.record.read_text())
        except OSError:
            return None

    def _save_record(self, target: _Target) -> None:
        record = _Record(
            digest=target.digest,
            summary=target.summary,
            layout=dict(target.layout),
            labels={name: tuple(v.replica for v in views) for name, views in target.views.items()},
            backend_ids=dict(target.backend_ids),
        )
        if record != self._record:
            self._record = record
            _write_atomic(self.paths.record, record.to_json())

    def _forget_labels(self) -> None:
        """HAProxy may hold other map values than recorded: the next apply
        sets them all again."""
        if self._record is not None and self._record.labels:
            self._record.labels = {}
            _write_atomic(self.paths.record, self._record.to_json())

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Socket and process failures as portway errors, with HAProxy's log."""
        try:
            yield
        except IngressError:
            raise
        except (OSError, subprocess.SubprocessError) as exc:
            raise IngressProcessError(
                f"ingress under {self.paths.dir} failed: {exc}", log_tail(self.paths)
            ) from exc

    @contextlib.contextmanager
    def _home_lock(self) -> Iterator[None]:
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        sockets = self.paths.socket_dir
        if sockets != self.paths.dir:
            sockets.mkdir(mode=0o700, exist_ok=True)
            if sockets.stat().st_uid != os.getuid():  # a temp dir someone else made
                raise IngressProcessError(
                    f"the ingress socket directory {sockets} belongs to another user", ""
                )
        with self.paths.lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- the three paths --------------------------------------------------

    def _target(self, state: IngressState) -> _Target:
        previous: Layout = self._record.layout if self._record else {}
        layout = allocate_all(state.backends, previous, self.settings.min_slots)
        return _Target(
            state=state,
            layout=layout,
            views=cfg.layout_views(state, layout),
            digest=cfg.structure_digest(state, layout, self.settings, self.paths),
            summary=cfg.structure_summary(state, layout, self.settings),
            backend_ids={name: cfg.backend_id(name) for name in state.backends},
            map_files={
                name: str(path)
                for name, path in cfg.map_paths(state, self.settings, self.paths).items()
            },
        )

    def _start(self, target: _Target) -> ApplyResult:
        self._prepare(target)
        with _discard_on_error(self.paths.candidate):
            for listen in cfg.listeners(target.state):
                ensure_port_free(*parse_listen(listen))
        _write_atomic(self.paths.server_state, "1\n")
        self.paths.candidate.replace(self.paths.config)
        since = log_size(self.paths)
        process = start_master(self._haproxy(), self.paths)
        try:
            info = self._wait_started(process, since)
        except BaseException:
            # SIGTERM lets the master take its worker down with it.
            process.signal(signal.SIGTERM)
            if not process.wait_exit(3.0):
                process.signal(signal.SIGKILL)
                process.wait_exit(3.0)
            raise
        self._process = process
        commands = self._send(self._commands(target, fresh=True))
        self._save_record(target)
        return ApplyResult(
            Action.STARTED, ("no HAProxy running",), tuple(commands), process.pid, info
        )

    def _reload(self, target: _Target, reasons: tuple[str, ...]) -> ApplyResult:
        assert self._process is not None
        self._prepare(target)
        running = _bound_listens(self.paths.config)
        with _discard_on_error(self.paths.candidate):
            for listen in cfg.listeners(target.state):
                if listen not in running:
                    ensure_port_free(*parse_listen(listen))
        dump = self._stats.send("show servers state")
        desired = {
            (target.backend_ids[name], slot_name(index)): view
            for name, views in target.views.items()
            for index, view in enumerate(views)
        }
        _write_atomic(self.paths.server_state, carry_server_state(dump, desired))
        good = self.paths.config.read_text()
        before = self._master.show_proc()
        since = log_size(self.paths)
        self.paths.candidate.replace(self.paths.config)
        try:
            worker = self._reload_master(before, since)
        except IngressError:
            # Back to the last good config. The map files already hold the new
            # labels, so what HAProxy holds after this reload is not recorded.
            _write_atomic(self.paths.config, good)
            self._forget_labels()
            with contextlib.suppress(IngressError, OSError):
                self._reload_master(self._master.show_proc(), log_size(self.paths))
            raise
        self.reloads += 1
        commands = self._send(self._commands(target, fresh=True))
        self._save_record(target)
        return ApplyResult(Action.RELOADED, reasons, tuple(commands), self._process.pid, worker)

    def _sync(self, target: _Target, actual: str) -> ApplyResult:
        assert self._process is not None
        commands = self._send(self._commands(target, fresh=False, actual=actual))
        if commands:
            # Keep the files describing what runs; HAProxy reads them at the
            # next reload only, and the structure is the one -c accepted.
            self._write_files(target, self.paths.config)
        self._save_record(target)
        action = Action.RUNTIME if commands else Action.UNCHANGED
        return ApplyResult(action, (), tuple(commands), self._process.pid, self._stats.worker_pid())

    # --- helpers ----------------------------------------------------------

    def _haproxy(self) -> str:
        if self._binary is None:
            self._binary = find_binary(self._binary_name)
        return self._binary

    def _write_files(self, target: _Target, config_path: Path) -> None:
        self.paths.maps.mkdir(parents=True, exist_ok=True)
        text = cfg.render_config(target.state, target.layout, self.settings, self.paths)
        for path, content in cfg.render_maps(
            target.state, target.layout, self.settings, self.paths
        ).items():
            _write_atomic(path, content)
        _write_atomic(config_path, text)

    def _prepare(self, target: _Target) -> None:
        """Write the candidate config and the maps; ``haproxy -c`` judges them."""
        self._write_files(target, self.paths.candidate)
        accepted, output = check_config(self._haproxy(), self.paths.candidate)
        if not accepted:
            rejected = self.paths.dir / "haproxy.cfg.rejected"
            self.paths.candidate.replace(rejected)
            raise IngressConfigError(str(rejected), output)

    def _commands(self, target: _Target, *, fresh: bool, actual: str | None = None) -> list[str]:
        """Commands from what HAProxy holds now (``actual``: its ``show servers
        state``, read here if not given). ``fresh``: HAProxy just read the map
        files written for ``target``, so its map values are known."""
        if actual is None:
            actual = self._stats.send("show servers state")
        if fresh:
            labels = {name: tuple(v.replica for v in views) for name, views in target.views.items()}
        else:
            labels = dict(self._record.labels) if self._record else {}
        return runtime_commands(
            target.views,
            target.backend_ids,
            parse_servers_state(actual),
            map_files=target.map_files,
            replicas_now=labels,
        )

    def _send(self, commands: list[str]) -> list[str]:
        try:
            for command in commands:
                self._stats.run(command)
        except BaseException:
            self._forget_labels()  # some may have been set: do not trust the record
            raise
        return commands

    def _wait_started(self, process: HaproxyProcess, since: int) -> int:
        """Wait for a new master's worker to answer; its pid."""
        deadline = time.monotonic() + self.settings.start_timeout
        while time.monotonic() < deadline:
            if not process.alive():
                tail = log_tail(self.paths, since)
                failure = bind_failure(tail)
                if failure is not None:
                    raise failure
                raise IngressProcessError("HAProxy exited right after it started", tail)
            try:
                info = self._master.show_proc()
                if info.worker_pid is not None and self._stats.worker_pid() == info.worker_pid:
                    return info.worker_pid
            except (SocketUnavailable, ValueError):
                pass
            time.sleep(_POLL)
        raise IngressProcessError(
            f"HAProxy did not answer on {self.paths.master_socket} within "
            f"{self.settings.start_timeout:g}s",
            log_tail(self.paths, since),
        )

    def _reload_master(self, before: ProcInfo, since: int) -> int:
        """Reload through the master socket; wait for the new worker; its pid."""
        self._master.reload()
        deadline = time.monotonic() + self.settings.reload_timeout
        while time.monotonic() < deadline:
            time.sleep(_POLL)
            try:
                info = self._master.show_proc()
            except SocketUnavailable:
                continue  # the master is re-executing itself
            if info.reload_failed:
                tail = log_tail(self.paths, since)
                failure = bind_failure(tail)
                if failure is not None:
                    raise failure
                raise IngressProcessError("HAProxy refused to reload its configuration", tail)
            worker = info.worker_pid
            if worker is None or worker == before.worker_pid or info.reloads <= before.reloads:
                continue
            try:
                if self._stats.worker_pid() == worker:
                    return worker
            except (SocketUnavailable, ValueError):
                continue
        raise IngressProcessError(
            f"no new HAProxy worker within {self.settings.reload_timeout:g}s of a reload",
            log_tail(self.paths, since),
        )


def _missing_slot(target: _Target, actual: Mapping[tuple[str, str], object]) -> str | None:
    """A server the target needs that HAProxy lacks (its config is not ours)."""
    for name, views in target.views.items():
        for index in range(len(views)):
            key = (target.backend_ids[name], slot_name(index))
            if key not in actual:
                return "/".join(key)
    return None


def _bound_listens(config: Path) -> set[str]:
    """Listen addresses the running config binds (from its ``bind`` lines)."""
    try:
        text = config.read_text()
    except OSError:
        return set()
    bound: set[str] = set()
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "bind":
            with contextlib.suppress(ValueError):
                bound.add(format_listen(*parse_listen(words[1])))
    return bound


@contextlib.contextmanager
def _discard_on_error(path: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)
