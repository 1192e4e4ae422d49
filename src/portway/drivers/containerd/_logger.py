"""The replicas' log files: a binary logger for the runc v2 shim, and their reader.

Writer. The driver creates each task with ``binary:///…/portway-containerd-logger-HASH?path=LOG``
as its stdio, so the shim starts this module (through that small wrapper, see
``wrapper_script``) with:

* the container's stdout pipe as fd 3, its stderr pipe as fd 4, and a "ready"
  pipe as fd 5 that the shim blocks on until it is closed;
* the URI's query as arguments, ``key value`` pairs in no fixed order
  (here ``path LOG`` and, for a replica that publishes ports, ``hold PORTS``);
* only ``CONTAINER_ID`` and ``CONTAINER_NAMESPACE`` in the environment, and the
  task's bundle directory (which holds runc's ``init.pid``) as working directory.

It appends one JSON object per line to LOG::

    {"t": "2024-05-01T12:00:00.123456789Z", "s": "stdout", "l": "the line"}

``t`` is when the line was read (RFC 3339, nanoseconds, UTC), ``s`` the stream,
``l`` the text without its newline (UTF-8, undecodable bytes replaced). A line
longer than ``MAX_LINE`` bytes is cut into pieces; every piece but the last has
``"p": true``. Output without a final newline is written when the stream ends.

The shim keeps its own ends of the pipes open until the task is deleted, so the
pipes do not reach end-of-file when the container exits. To tell readers when
the file is complete, the logger holds an exclusive ``flock`` on LOG from
before it reports ready until the container's init process has exited and both
pipes are drained (it watches that process with a pidfd). It exits when both
pipes close, or shortly after SIGTERM (the shim closes the pipes, sends SIGTERM
and waits when the task is deleted).

Ports. ``hold`` lists the replica's published host ports
(``tcp:0.0.0.0:34567,udp:127.0.0.1:5353``). CNI's portmap publishes them
with iptables DNAT alone: no socket is bound, so the kernel would hand such
a port to the next program that asks for a free one, or let one bind it, and
that program's connections would silently go to the container. The logger
lives as long as the task, so it binds each of them (``_Logger.hold``),
without listening, as Podman's conmon and Docker's proxy hold theirs:
another program's bind() then fails with "address in use". SO_REUSEPORT
lets the logger of the task that replaces this one bind them while this one
is still exiting.

Only the standard library is used here: the logger runs as a plain script
(``python -I _logger.py``), without importing the driver, grpc or protobuf.

Reader. ``read_records``, ``tail_offset`` and ``wait_complete`` are what the
driver's ``logs`` uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

MAX_LINE = 64 * 1024
READ_SIZE = 64 * 1024
STREAM_FDS = ((3, "stdout"), (4, "stderr"))
READY_FD = 5
TERM_GRACE_SECONDS = 5.0  # the shim kills the logger 12s after SIGTERM
LOCK_WAIT_SECONDS = 2.0
INIT_PID_SEARCH_SECONDS = 10.0
_INIT_PID_POLL_SECONDS = 0.02


# --- the format ----------------------------------------------------------------


def rfc3339nano(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


_ENCODE_STR = json.JSONEncoder(ensure_ascii=False).encode


def encode(stream: str, data: bytes, stamp: str, *, partial: bool = False) -> bytes:
    """One record; ``stamp`` is an ``rfc3339nano`` time. (Formatted by hand around
    the one string that needs escaping: a few µs a line matter to a chatty replica.)"""
    text = _ENCODE_STR(data.decode("utf-8", errors="replace"))
    rest = ', "p": true}\n' if partial else "}\n"
    return f'{{"t": "{stamp}", "s": "{stream}", "l": {text}{rest}'.encode()


class Record:
    """One line of a log file (a plain class: dataclasses would slow the
    logger's start, which the shim waits for, by importing inspect)."""

    __slots__ = ("stream", "text", "timestamp")

    def __init__(self, timestamp: datetime | None, stream: str, text: str) -> None:
        self.timestamp = timestamp
        self.stream = stream
        self.text = text

    def __repr__(self) -> str:
        return f"Record({self.timestamp!r}, {self.stream!r}, {self.text!r})"


def decode(line: bytes) -> Record:
    """One line of a log file. A line that is not a record (a file written by an
    older portway, whose shim copied raw output) is stdout text without time."""
    try:
        entry = json.loads(line)
    except ValueError:
        entry = None
    if isinstance(entry, dict) and isinstance(entry.get("l"), str):
        stream = entry.get("s")
        return Record(
            _parse_time(entry.get("t")),
            stream if stream in ("stdout", "stderr") else "stdout",
            entry["l"],
        )
    return Record(None, "stdout", line.decode("utf-8", errors="replace"))


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --- the reader ----------------------------------------------------------------


def tail_offset(fd: int, end: int, lines: int, block: int = 64 * 1024) -> int:
    """Offset in the first ``end`` bytes of ``fd`` where its last ``lines``
    complete lines begin (0: all of them). Bytes after the last newline are an
    unfinished line and are not counted. Reads backwards, block by block, so a
    long file is not read whole."""
    wanted = max(lines, 0) + 1  # the newline before the first line wanted
    found = 0
    position = end
    while position > 0:
        start = max(0, position - block)
        chunk = os.pread(fd, position - start, start)
        index = len(chunk)
        while (index := chunk.rfind(b"\n", 0, index)) >= 0:
            found += 1
            if found == wanted:
                return start + index + 1
        position = start
    return 0


def read_records(data: bytes) -> tuple[list[Record], bytes]:
    """Complete records in ``data``, and the incomplete rest."""
    *lines, rest = data.split(b"\n")
    return [decode(line) for line in lines], rest


def wait_complete(path: Path, timeout: float) -> bool:
    """Wait until no logger holds ``path`` (the replica's output is all in the
    file); False if one still does after ``timeout``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
    finally:
        os.close(fd)


# --- the writer ----------------------------------------------------------------


def wrapper_script(python: str, module_file: str) -> str:
    """The executable the shim starts: the logger without the package's imports."""
    import shlex  # the driver needs it, the logger does not

    return (
        "#!/bin/sh\n"
        "# portway's containerd logger (written by portway's containerd driver)\n"
        f'exec {shlex.quote(python)} -I {shlex.quote(module_file)} "$@"\n'
    )


class _Stream:
    """One pipe: bytes in, complete records out."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        self.pending = b""
        self.open = True

    def feed(self, data: bytes, stamp: str) -> list[bytes]:
        buffer = self.pending + data
        out: list[bytes] = []
        start = 0  # one slice at the end: many short lines must not copy the rest each
        while True:
            newline = buffer.find(b"\n", start, start + MAX_LINE + 1)
            if newline >= 0:
                out.append(encode(self.name, buffer[start:newline], stamp))
                start = newline + 1
            elif len(buffer) - start > MAX_LINE:
                cut = _cut(buffer, start + MAX_LINE)
                out.append(encode(self.name, buffer[start:cut], stamp, partial=True))
                start = cut
            else:
                self.pending = buffer[start:]
                return out

    def flush(self, stamp: str) -> list[bytes]:
        if not self.pending:
            return []
        out = [encode(self.name, self.pending, stamp)]
        self.pending = b""
        return out


def _cut(data: bytes, limit: int) -> int:
    """Where to cut ``data`` at ``limit`` or up to 3 bytes before it, so as not
    to split a UTF-8 character (``data[limit]`` exists)."""
    for cut in range(limit, limit - 4, -1):
        if data[cut] & 0xC0 != 0x80:  # not a continuation byte: a character starts
            return cut
    return limit  # not UTF-8 anyway


class _Logger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.out: int | None = None
        self.locked = False
        self.failed = False
        self.streams = [_Stream(fd, name) for fd, name in STREAM_FDS]
        self.selector = selectors.DefaultSelector()
        self.terminating_since: float | None = None
        self.init_fd: int | None = None
        self.searching_init = True
        self.search_until = time.monotonic() + INIT_PID_SEARCH_SECONDS
        self.held: list[object] = []  # sockets on the replica's host ports, see hold()

    # -- set-up

    def open(self) -> None:
        try:
            self.out = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
        except OSError as exc:
            # keep reading the pipes anyway: a container must not block or get
            # SIGPIPE because its log cannot be written
            self.complain(f"cannot open {self.path}: {exc}")
            return
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while not self.locked:
            try:
                fcntl.flock(self.out, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.locked = True
            except BlockingIOError:
                if time.monotonic() >= deadline:  # a logger of an earlier task lingers
                    break
                time.sleep(0.01)

    def hold(self, spec: str) -> None:
        """Bind every ``protocol:host_ip:port`` of ``spec`` (comma-separated)
        for as long as the logger runs. A port that cannot be bound is reported
        and skipped: the container runs either way."""
        if not spec:
            return
        # here, not at the top: 2.5 ms of the start the shim waits for, paid
        # only by a replica that publishes ports
        import socket

        for item in filter(None, spec.split(",")):
            protocol, _, address = item.partition(":")
            host, _, port = address.rpartition(":")
            kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
            sock = socket.socket(socket.AF_INET, kind)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host or "0.0.0.0", int(port)))  # noqa: S104 - held, never listening
            except (OSError, ValueError) as exc:
                sock.close()
                self.complain(
                    f"cannot hold host port {item}: {exc}: another program may get its traffic"
                )
                continue
            self.held.append(sock)

    def complain(self, message: str) -> None:
        """Errors go beside the log: the shim gives the logger no stderr."""
        print(f"portway-containerd-logger: {message}", file=sys.stderr)
        if str(self.path) == os.devnull:
            return
        with contextlib.suppress(OSError), (self.path.parent / "logger.err").open("a") as errors:
            errors.write(f"{rfc3339nano(time.time_ns())} {message}\n")

    # -- output

    def write(self, records: list[bytes]) -> None:
        if not records or self.out is None:
            return
        data = b"".join(records)
        try:
            while data:
                written = os.write(self.out, data)
                data = data[written:]
        except OSError as exc:
            if not self.failed:  # say it once; keep draining the pipes
                self.failed = True
                self.complain(f"writing {self.path}: {exc}")

    def read(self, stream: _Stream) -> bool:
        """Read what the pipe holds now; False once it is empty or closed."""
        try:
            data = os.read(stream.fd, READ_SIZE)
        except BlockingIOError:
            return False
        except OSError as exc:
            self.complain(f"reading {stream.name}: {exc}")
            data = b""
        stamp = rfc3339nano(time.time_ns())
        if data:
            self.write(stream.feed(data, stamp))
            return True
        self.write(stream.flush(stamp))
        stream.open = False
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(stream.fd)
        os.close(stream.fd)
        return False

    def drain(self) -> None:
        """Everything the pipes hold now, and the unterminated rests."""
        for stream in self.streams:
            while stream.open and self.read(stream):
                pass
            self.write(stream.flush(rfc3339nano(time.time_ns())))

    def release(self) -> None:
        """Tell readers that the file holds all the container's output."""
        if self.locked and self.out is not None:
            fcntl.flock(self.out, fcntl.LOCK_UN)
            self.locked = False

    # -- the container's init process

    def find_init(self) -> None:
        """Watch the process in runc's init.pid (in the bundle directory, our
        working directory; written once runc created it). Once it has exited,
        the pid namespace is empty and nothing writes the pipes any more."""
        try:
            pid = int(Path("init.pid").read_text().strip())
        except (OSError, ValueError):
            if time.monotonic() >= self.search_until:
                self.searching_init = False
                self.complain("no init.pid in the task's bundle: completion is not tracked")
                self.release()
            return
        self.searching_init = False
        try:
            self.init_fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.init_exited()
            return
        except OSError as exc:
            self.complain(f"pidfd_open({pid}): {exc}: completion is not tracked")
            self.release()
            return
        self.selector.register(self.init_fd, selectors.EVENT_READ, None)

    def init_exited(self) -> None:
        if self.init_fd is not None:
            self.selector.unregister(self.init_fd)
            os.close(self.init_fd)
            self.init_fd = None
        self.drain()
        self.release()

    # -- the loop

    def run(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        for stream in self.streams:
            os.set_blocking(stream.fd, False)
            self.selector.register(stream.fd, selectors.EVENT_READ, stream)
        while any(stream.open for stream in self.streams):
            if self.searching_init:
                self.find_init()
            timeout = _INIT_PID_POLL_SECONDS if self.searching_init else None
            if self.terminating_since is not None:
                left = self.terminating_since + TERM_GRACE_SECONDS - time.monotonic()
                if left <= 0:
                    break
                timeout = left if timeout is None else min(timeout, left)
            for key, _ in self.selector.select(timeout):
                if isinstance(key.data, _Stream):
                    if key.data.open:
                        self.read(key.data)
                elif key.fd == self.init_fd:
                    self.init_exited()
                elif key.fd == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 256)
        self.drain()
        self.release()


def _arguments(argv: list[str]) -> dict[str, str]:
    """The shim passes the URI's query as ``key value`` pairs, in any order."""
    return {argv[i]: argv[i + 1] if i + 1 < len(argv) else "" for i in range(0, len(argv), 2)}


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(sys.argv[1:] if argv is None else argv)
    path = arguments.get("path", "")
    logger = _Logger(Path(path or os.devnull))
    if not path:  # still read the pipes: the container must not get SIGPIPE
        logger.complain("no 'path' argument: the output is discarded")

    def terminate(signum: int, frame: object) -> None:
        if logger.terminating_since is None:
            logger.terminating_since = time.monotonic()

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logger.open()
    logger.hold(arguments.get("hold", ""))
    with contextlib.suppress(OSError):
        os.close(READY_FD)  # the shim goes on: the task is created
    try:
        logger.run()
    except Exception as exc:
        logger.complain(f"logger failed: {exc!r}")
        raise
    # Done. The shim closes the pipes and then sends SIGTERM; Python's exit puts
    # back the default action for signals that have a Python handler, so a
    # SIGTERM arriving then would turn this clean exit into a kill (seen in CI).
    # An ignored signal is left ignored.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
