"""An exec's output, through two fifos the runc shim copies its stdout and stderr into.

The shim's ``file://`` stdio would be simpler, but it writes both streams into
one file through one shared writer, and with a short-lived exec the stdout
copier can close that writer before the stderr copier starts using it: then
stderr is lost (containerd 1.6, a few percent of runs of
``echo out; echo err >&2``). With fifos every stream has its own copier, and
this side reads both as the data arrives, keeping the order of delivery.

A plain path as stdio URI is a fifo to the shim. The fifos are opened here
(non-blocking, for reading) before the exec starts, so the shim's opens for
writing do not block; a fifo that no writer has opened yet does not poll as
readable, so reading may begin before the shim has opened it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
from pathlib import Path
from types import TracebackType

_READ_SIZE = 64 * 1024
_POLL_SECONDS = 0.1


class ExecOutput:
    """``with ExecOutput(dir, exec_id) as output:`` pass ``output.stdout`` and
    ``output.stderr`` to the exec, ``start()`` once it started, ``result()`` once
    it ended (and its process was deleted, which closes the shim's ends)."""

    def __init__(self, directory: Path, exec_id: str) -> None:
        self._paths = (directory / f"{exec_id}.stdout", directory / f"{exec_id}.stderr")
        self._fds: list[int] = []
        self._chunks: list[bytes] = []
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def stdout(self) -> str:
        return str(self._paths[0])

    @property
    def stderr(self) -> str:
        return str(self._paths[1])

    def __enter__(self) -> ExecOutput:
        try:
            for path in self._paths:
                os.mkfifo(path, 0o600)
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                self._fds.append(fd)
                self._selector.register(fd, selectors.EVENT_READ)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join()
        self._close()

    def start(self) -> None:
        """Read both fifos in a thread, until both end or ``result`` gives up."""
        self._reader = threading.Thread(
            target=self._read, name="portway-containerd-exec-output", daemon=True
        )
        self._reader.start()

    def result(self, timeout: float) -> bytes:
        """All output, once both streams ended or after ``timeout`` (a process
        the exec left behind may hold them open): what arrived by then."""
        if self._reader is not None:
            self._reader.join(timeout)
            self._stop.set()
            self._reader.join()
        return b"".join(self._chunks)

    def _read(self) -> None:
        while self._selector.get_map() and not self._stop.is_set():
            for key, _ in self._selector.select(_POLL_SECONDS):
                self._read_from(key.fd)
        for key in list(self._selector.get_map().values()):  # given up: take what is there
            while self._read_from(key.fd):
                pass

    def _read_from(self, fd: int) -> bool:
        """One read; False when the fifo is empty or ended."""
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return False
        if data:
            self._chunks.append(data)
            return True
        self._selector.unregister(fd)  # the shim closed its end: the stream ended
        return False

    def _close(self) -> None:
        self._selector.close()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        for path in self._paths:
            path.unlink(missing_ok=True)
