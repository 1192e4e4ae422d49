"""HAProxy's two command sockets and what they answer, parsed.

- the worker's stats socket (``haproxy.sock``, level admin): ``show servers
  state``, ``show stat``, ``set server``, ``set map``. One command per
  connection; the socket is closed for writing after it, which is what makes
  HAProxy answer and hang up.
- the master socket (``master.sock``): ``show proc`` and ``reload``. It is
  spoken to in prompt mode, because after a failed reload HAProxy 2.6 resets
  non-interactive connections, and the prompt itself
  (``master[ReloadFailed]>``) is how a failed reload shows.

Parsers are pure functions over the text, unit-tested on captured answers.
"""

from __future__ import annotations

import csv
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from portway.ingress.errors import IngressRuntimeError
from portway.ingress.model import AdminState, OpState

#: longest unix socket path Linux accepts (sun_path is 108 bytes with the NUL)
MAX_SOCKET_PATH = 107
_PROMPT = re.compile(r"master(\[[A-Za-z]+\])?(\([a-z]*\))?> ")

# srv_admin_state bits (HAProxy's SRV_ADMF_*)
_ADMF_FMAINT = 0x01  # forced by the CLI or the state file
_ADMF_IMAINT = 0x02  # inherited from a tracked server
_ADMF_RMAINT = 0x20  # resolution failed
_ADMF_FDRAIN = 0x08
_ADMF_IDRAIN = 0x10
_MAINT_BITS = _ADMF_FMAINT | _ADMF_IMAINT | _ADMF_RMAINT
_DRAIN_BITS = _ADMF_FDRAIN | _ADMF_IDRAIN
# (0x04, CMAINT, is "disabled" in the config: it stays set after the CLI makes
# the server ready, and alone it does not keep the server in maintenance.)


class SocketUnavailable(OSError):
    """Nothing answers on a command socket (not running, or not yet)."""


def check_socket_path(path: Path) -> None:
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise ValueError(
            f"{path} is longer than the {MAX_SOCKET_PATH} bytes a unix socket path may have; "
            "use a shorter portway home"
        )


def _connect(path: Path, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise SocketUnavailable(f"{path}: {exc}") from exc
    return sock


def _read_all(sock: socket.socket) -> str:
    chunks: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(data)


class StatsSocket:
    """The worker's admin socket."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def send(self, command: str) -> str:
        """One command, its whole answer. Raises SocketUnavailable if nothing listens."""
        with _connect(self.path, self.timeout) as sock:
            try:
                sock.sendall(command.encode() + b"\n")
                sock.shutdown(socket.SHUT_WR)
                return _read_all(sock)
            except OSError as exc:
                raise SocketUnavailable(f"{self.path}: {exc} (during {command!r})") from exc

    def run(self, command: str) -> None:
        """A command that changes something; raises IngressRuntimeError unless it took."""
        answer = self.send(command)
        if not command_succeeded(command, answer):
            raise IngressRuntimeError(command, answer)

    def worker_pid(self) -> int:
        return parse_info(self.send("show info")).pid


class MasterSocket:
    """The master's CLI."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def ask(self, command: str) -> tuple[str, bool]:
        """Run one command in prompt mode: (its answer, whether the last reload failed)."""
        with _connect(self.path, self.timeout) as sock:
            try:
                sock.sendall(f"prompt\n{command}\n".encode())
                text = ""
                deadline = time.monotonic() + self.timeout
                while len(_PROMPT.findall(text)) < 2:
                    if time.monotonic() > deadline:
                        raise SocketUnavailable(f"{self.path}: no prompt after {command!r}")
                    data = sock.recv(65536)
                    if not data:
                        break
                    text += data.decode(errors="replace")
            except OSError as exc:
                raise SocketUnavailable(f"{self.path}: {exc} (during {command!r})") from exc
        prompts = list(_PROMPT.finditer(text))
        if len(prompts) < 2:
            raise SocketUnavailable(f"{self.path}: answer to {command!r} ended early: {text!r}")
        answer = text[prompts[0].end() : prompts[1].start()]
        failed = prompts[1].group(1) == "[ReloadFailed]"
        return answer, failed

    def show_proc(self) -> ProcInfo:
        answer, failed = self.ask("show proc")
        return parse_proc(answer, reload_failed=failed)

    def reload(self) -> None:
        """Ask for a reload; HAProxy closes the connection when it re-executes."""
        with _connect(self.path, self.timeout) as sock:
            try:
                sock.sendall(b"reload\n")
                sock.shutdown(socket.SHUT_WR)
                _read_all(sock)
            except OSError as exc:
                raise SocketUnavailable(f"{self.path}: {exc} (during 'reload')") from exc


def command_succeeded(command: str, answer: str) -> bool:
    """HAProxy answers a change with nothing, except ``set server … addr``,
    which says what it changed."""
    text = answer.strip()
    if " addr " in command and command.startswith("set server "):
        return text.startswith(("IP changed", "no need to change"))
    return text == ""


# --- parsed answers -------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    """``show proc``: the master and its workers."""

    master_pid: int
    reloads: int
    failed_reloads: int
    workers: tuple[tuple[int, int], ...]
    """Current workers as (pid, reloads survived): after a good reload one
    worker with 0; after a failed one the old worker, with 1 more."""
    old_workers: tuple[int, ...]
    """Workers still finishing their connections after a reload."""
    reload_failed: bool = False

    @property
    def worker_pid(self) -> int | None:
        return self.workers[0][0] if self.workers else None


def parse_proc(text: str, *, reload_failed: bool = False) -> ProcInfo:
    master_pid = reloads = failed = 0
    workers: list[tuple[int, int]] = []
    old: list[int] = []
    section = "master"
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if "old workers" in line:
                section = "old"
            elif "workers" in line:
                section = "workers"
            elif "programs" in line:
                section = "programs"
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        pid = int(fields[0])
        if fields[1] == "master":
            master_pid = pid
            reloads = int(fields[2]) if fields[2].isdigit() else 0
            found = re.search(r"\[failed:\s*(\d+)\]", line)
            failed = int(found.group(1)) if found else 0
        elif section == "workers":
            workers.append((pid, int(fields[2]) if fields[2].isdigit() else 0))
        elif section == "old":
            old.append(pid)
    return ProcInfo(
        master_pid=master_pid,
        reloads=reloads,
        failed_reloads=failed,
        workers=tuple(workers),
        old_workers=tuple(old),
        reload_failed=reload_failed or failed > 0,
    )


@dataclass(frozen=True)
class Info:
    pid: int


def parse_info(text: str) -> Info:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Pid" and value.strip().isdigit():
            return Info(pid=int(value.strip()))
    raise ValueError(f"no Pid in 'show info' answer: {text[:200]!r}")


@dataclass(frozen=True)
class RuntimeServer:
    """One line of ``show servers state``."""

    backend_id: str
    slot: str
    address: str
    port: int
    admin: AdminState
    admin_bits: int
    op_state: int


def admin_from_bits(bits: int) -> AdminState:
    if bits & _MAINT_BITS:
        return AdminState.MAINT
    if bits & _DRAIN_BITS:
        return AdminState.DRAIN
    return AdminState.READY


def servers_state_columns(text: str) -> list[str]:
    for line in text.splitlines():
        if line.startswith("# be_id"):
            return line[2:].split()
    return []


def parse_servers_state(text: str) -> dict[tuple[str, str], RuntimeServer]:
    """``show servers state`` -> (backend id, slot) -> what HAProxy holds."""
    columns = servers_state_columns(text)
    if not columns:
        return {}
    at = {name: index for index, name in enumerate(columns)}
    servers: dict[tuple[str, str], RuntimeServer] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or line.strip() == "1":
            continue
        fields = line.split()
        if len(fields) < len(columns):
            continue
        bits = int(fields[at["srv_admin_state"]])
        server = RuntimeServer(
            backend_id=fields[at["be_name"]],
            slot=fields[at["srv_name"]],
            address=fields[at["srv_addr"]],
            port=int(fields[at["srv_port"]]),
            admin=admin_from_bits(bits),
            admin_bits=bits,
            op_state=int(fields[at["srv_op_state"]]),
        )
        servers[(server.backend_id, server.slot)] = server
    return servers


@dataclass(frozen=True)
class StatRow:
    """The ``show stat`` columns the ingress reports, for one server."""

    backend_id: str
    slot: str
    status: str
    check_status: str
    check_desc: str
    address: str
    sessions: int
    last_change: int | None


def parse_stat(text: str) -> list[StatRow]:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        return []
    lines[0] = lines[0][2:]
    rows: list[StatRow] = []
    for record in csv.DictReader(lines):
        name = record.get("svname", "")
        if name in ("FRONTEND", "BACKEND") or not name:
            continue
        last = record.get("lastchg", "")
        rows.append(
            StatRow(
                backend_id=record.get("pxname", ""),
                slot=name,
                status=record.get("status", ""),
                check_status=(record.get("check_status") or "").lstrip("* "),
                check_desc=record.get("check_desc") or "",
                address=record.get("addr") or "",
                sessions=int(record.get("scur") or 0),
                last_change=int(last) if last.isdigit() else None,
            )
        )
    return rows


def op_state(status: str) -> OpState:
    """HAProxy's status words -> UP/DOWN/DRAIN/MAINT. ``UP 1/2`` (up, one check
    failed) is UP; ``DOWN 1/2`` (down, one check passed) is DOWN; ``no check``
    (checks off) serves, so it is UP; ``NOLB`` takes no new traffic: DRAIN."""
    word = status.split(" ", 1)[0].upper()
    if word == "MAINT":
        return OpState.MAINT
    if word in ("DRAIN", "NOLB"):
        return OpState.DRAIN
    if word == "DOWN":
        return OpState.DOWN
    return OpState.UP
