"""A closed-loop HTTP/1.1 load generator: N keep-alive clients against one URL.

Runs as its own process (so the server under test does not share its event
loop or its GIL), on 127.0.0.1 only. Each of ``--connections`` clients opens
one connection and sends ``GET`` after ``GET`` on it, the next as soon as the
previous response is complete (no think time), for ``--warmup`` seconds (not
measured) and then ``--duration`` seconds (measured: requests *sent* in that
window). A client whose connection failed, timed out or was closed opens a new
one. Prints one JSON object (``loadstats.Summary``) on stdout.

Closed loop means latency and throughput are tied (Little's law: mean latency
= connections / throughput), and the generator waits for each response before
sending the next, so a slow server is not offered the requests it would have
got meanwhile ("coordinated omission"). That is what "N concurrent clients"
means here; it is not a fixed-rate test.

The HTTP side is a minimal asyncio Protocol (framing by Content-Length or
chunked encoding; nothing else is needed against uvicorn) to keep the client's
own CPU small: the client shares this machine's cores with the server.

Usage: python bench/loadgen.py --url http://127.0.0.1:PORT/PATH
           [--connections N] [--duration S] [--warmup S] [--timeout S]
           [--bearer-file F] [--header 'Name: value' ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import loadstats as ls

MAX_HEAD = 64 * 1024
RECONNECT_PAUSE = 0.05  # s; a client whose connect failed does not spin


class ProtocolError(Exception):
    """The server sent something this client cannot frame as an HTTP/1.1 response."""


def _chunked_end(buf: bytearray, pos: int) -> int | None:
    """Offset just past a chunked body starting at ``pos``; None while incomplete."""
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_field = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_field!r}") from None
        if size == 0:
            if buf[line_end + 2 : line_end + 4] == b"\r\n":
                return line_end + 4
            trailers_end = buf.find(b"\r\n\r\n", line_end)
            return None if trailers_end < 0 else trailers_end + 4
        pos = line_end + 2 + size + 2
        if len(buf) < pos:
            return None


def parse_response(buf: bytearray) -> tuple[int, int, bool] | None:
    """``(bytes consumed, status, keep-alive)`` for the first complete response in
    ``buf``, or None if it is not complete yet. Raises ProtocolError."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buf) > MAX_HEAD:
            raise ProtocolError(f"no end of headers in {MAX_HEAD} bytes")
        return None
    lines = bytes(buf[:head_end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(parts[1])
    keep_alive = parts[0] == "HTTP/1.1"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == "content-length":
            if not value.isdigit():
                raise ProtocolError(f"bad Content-Length {value!r}")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            if "close" in value:
                keep_alive = False
            elif "keep-alive" in value:
                keep_alive = True
    body = head_end + 4
    if 100 <= status < 200 or status in (204, 304):
        return body, status, keep_alive
    if chunked:
        end = _chunked_end(buf, body)
        return None if end is None else (end, status, keep_alive)
    if length is None:
        # a body delimited by closing the connection cannot be kept alive
        raise ProtocolError("response without Content-Length or chunked encoding")
    if len(buf) < body + length:
        return None
    return body + length, status, keep_alive


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bool]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is None or self._waiter.done():
            return
        try:
            parsed = parse_response(self._buf)
        except ProtocolError as exc:
            self._fail(exc)
            return
        if parsed is not None:
            consumed, status, keep_alive = parsed
            del self._buf[:consumed]
            self._settle()
            self._waiter.set_result((status, keep_alive))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionResetError(f"connection closed mid-request ({exc})"))

    def request(self, payload: bytes, timeout: float) -> asyncio.Future[tuple[int, bool]]:
        assert self._transport is not None
        self._waiter = self._loop.create_future()
        self._timer = self._loop.call_later(timeout, self._time_out)
        self._transport.write(payload)
        return self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _settle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, exc: Exception) -> None:
        self._settle()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _time_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError())
        self.close()


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    payload: bytes  # the whole request, sent as is every time


def build_target(url: str, headers: Sequence[str]) -> Target:
    """Check ``url`` (http, loopback only) and pre-render the request bytes."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise SystemExit(f"loadgen: --url must be http://127.0.0.1:PORT/PATH, got {url!r}")
    host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"loadgen: only loopback addresses are allowed (--url host {host!r})")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}"]
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip() or "\r" in header or "\n" in header:
            raise SystemExit(f"loadgen: --header must be 'Name: value', got {header!r}")
        lines.append(f"{name.strip()}: {value.strip()}")
    payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Target(host, parts.port, payload)


async def _connect(
    loop: asyncio.AbstractEventLoop, target: Target, timeout: float
) -> _Connection | None:
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: _Connection(loop), target.host, target.port), timeout
        )
    except (OSError, TimeoutError):
        return None
    return conn


async def _client(target: Target, timeout: float, recorder: ls.Recorder, stop_at: float) -> None:
    loop = asyncio.get_running_loop()
    conn: _Connection | None = None
    first = True  # the next request is the first on its connection
    while time.perf_counter() < stop_at:
        if conn is None or conn.lost:
            conn = await _connect(loop, target, timeout)
            if conn is None:
                recorder.error(ls.ErrorKind.CONNECT)
                await asyncio.sleep(RECONNECT_PAUSE)
                continue
            first = True
        was_first, first = first, False
        sent = time.perf_counter()
        try:
            status, keep_alive = await conn.request(target.payload, timeout)
        except TimeoutError:
            recorder.error(ls.ErrorKind.TIMEOUT, first_request=was_first)
            conn.close()
            conn = None
            continue
        except (ConnectionError, ProtocolError):
            recorder.error(ls.ErrorKind.READ)
            conn.close()
            conn = None
            continue
        recorder.response(sent, time.perf_counter(), status)
        if not keep_alive:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


async def run_load(
    target: Target, *, connections: int, duration: float, warmup: float, timeout: float
) -> ls.Recorder:
    start = time.perf_counter()
    recorder = ls.Recorder(connections, start + warmup, start + warmup + duration)
    await asyncio.gather(
        *(_client(target, timeout, recorder, recorder.window_end) for _ in range(connections))
    )
    return recorder


def raise_fd_limit(needed: int) -> None:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; fail clearly if too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"loadgen: {needed} file descriptors needed but the hard limit (ulimit -Hn) is {hard}"
        )
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/PATH")
    parser.add_argument("--connections", type=int, default=200, help="clients (default 200)")
    parser.add_argument("--duration", type=_positive, default=5.0, help="measured s (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured s first (default 1)")
    parser.add_argument("--timeout", type=_positive, default=5.0, help="per request s (default 5)")
    parser.add_argument("--bearer-file", type=Path, help="send 'Authorization: Bearer <file>'")
    parser.add_argument("--header", action="append", default=[], help="'Name: value' (repeat)")
    opts = parser.parse_args(argv)
    if opts.connections < 1:
        parser.error("--connections must be at least 1")
    if opts.warmup < 0:
        parser.error("--warmup must be >= 0")
    headers = list(opts.header)
    if opts.bearer_file is not None:
        try:
            token = opts.bearer_file.read_text().strip()
        except OSError as exc:
            parser.error(f"--bearer-file {opts.bearer_file}: {exc.strerror}")
        headers.append(f"Authorization: Bearer {token}")
    target = build_target(opts.url, headers)
    raise_fd_limit(opts.connections + 64)
    with contextlib.suppress(ImportError):
        import uvloop  # the server under test gets it too (uvicorn's "auto" loop)

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    recorder = asyncio.run(
        run_load(
            target,
            connections=opts.connections,
            duration=opts.duration,
            warmup=opts.warmup,
            timeout=opts.timeout,
        )
    )
    print(json.dumps(recorder.summary(_cpu_seconds()).to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
