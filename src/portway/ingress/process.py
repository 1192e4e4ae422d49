"""The HAProxy master process: found, judged (``-c``), started, recognised
after a controller restart, signalled, and waited for.

HAProxy runs in master-worker mode in the foreground of its own session
(``start_new_session``), so it outlives the controller that started it; its
stdout and stderr go to ``haproxy.log``. A controller that did not start it
knows it by the pid file and the master socket.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from portway.ingress.config import Paths
from portway.ingress.errors import IngressError, IngressPortInUseError, IngressProcessError
from portway.ingress.validate import format_listen

_BIND_FAILURE = re.compile(r"cannot bind socket \(([^)]*)\) for \[([^\]]+)\]")


def find_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise IngressProcessError(
            f"HAProxy executable {name!r} not found; install HAProxy 2.6 or newer "
            "(Debian: apt-get install haproxy) or pass its path"
        )
    return found


def check_config(binary: str, config: Path) -> tuple[bool, str]:
    """``haproxy -c``: whether HAProxy accepts the file, and what it said."""
    done = subprocess.run(
        [binary, "-c", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=config.parent,
    )
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: with no reaper it may linger)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def runs_config(pid: int, config: Path) -> bool:
    """Whether ``pid`` is a HAProxy running ``config`` (not a reused pid)."""
    args = cmdline(pid)
    return bool(args) and "haproxy" in Path(args[0]).name and str(config) in args


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().split()
    except OSError:
        return None
    return int(text[0]) if text and text[0].isdigit() else None


@dataclass
class HaproxyProcess:
    """One master process, started here (``popen``) or adopted (pid only)."""

    pid: int
    popen: subprocess.Popen[bytes] | None = None
    adopted: bool = False

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def wait_exit(self, timeout: float) -> bool:
        """Wait until the master has exited; False if it still runs after ``timeout``."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while pid_alive(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def start_master(binary: str, paths: Paths) -> HaproxyProcess:
    """Start ``haproxy -W -S master.sock -f haproxy.cfg -p haproxy.pid``."""
    with paths.log.open("ab") as log:
        popen = subprocess.Popen(
            [
                binary,
                "-W",
                "-S",
                f"{paths.master_socket},mode,600",
                "-f",
                str(paths.config),
                "-p",
                str(paths.pid),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=paths.dir,
            start_new_session=True,
        )
    return HaproxyProcess(pid=popen.pid, popen=popen)


def log_size(paths: Paths) -> int:
    try:
        return paths.log.stat().st_size
    except OSError:
        return 0


def log_tail(paths: Paths, since: int = 0, lines: int = 15) -> str:
    try:
        with paths.log.open("rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def bind_failure(log_text: str) -> IngressPortInUseError | None:
    """The port-in-use error in HAProxy's words, if that is why it failed."""
    for reason, address in _BIND_FAILURE.findall(log_text):
        if "in use" in reason.lower():
            port = address.rpartition(":")[2]
            return IngressPortInUseError(address, int(port) if port.isdigit() else 0, reason)
    return None


def ensure_port_free(host: str, port: int) -> None:
    """Raise IngressPortInUseError if something listens on ``host:port``.

    Binds and closes a socket the way HAProxy will (SO_REUSEADDR, so a port
    with connections in TIME_WAIT is free); racy by nature, so HAProxy's own
    bind error is also translated (``bind_failure``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            listen = format_listen(host, port)
            if exc.errno == errno.EADDRINUSE:
                raise IngressPortInUseError(listen, port) from exc
            raise IngressError(f"ingress cannot listen on {listen}: {exc.strerror}") from exc
