"""Logs and exec over the API server: line parsing and the exec channels.

Logs: ``GET .../pods/NAME/log?timestamps=true`` prefixes each line with an
RFC 3339 timestamp. The log API interleaves stdout and stderr (telling them
apart needs the alpha ``PodLogsQuerySplitStreams`` gate, and then not with
``tailLines``), so every line is reported as ``stdout``.

Exec: the websocket stream API (``v4/v5.channel.k8s.io``: channel 1 stdout, 2
stderr, 3 a final ``Status`` carrying the exit code).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from portway.drivers.base import ExecResult, LogLine
from portway.drivers.engine_common import EXEC_TIMEOUT_EXIT_CODE, obj, parse_engine_time, text

ERROR_CHANNEL = 3


def log_line(raw: bytes) -> LogLine:
    line = raw.decode("utf-8", errors="replace").rstrip("\r")
    stamp, space, rest = line.partition(" ")
    moment = parse_engine_time(stamp) if space else None
    if moment is None:
        return LogLine(None, "stdout", line)
    return LogLine(moment, "stdout", rest)


def log_lines(
    response: Any, stop: threading.Event | None, since: datetime | None
) -> Iterator[LogLine]:
    """Lines of a (streamed) log response until it ends or ``stop`` is set.
    ``since`` filters to the second the API cannot: its sinceSeconds is whole."""
    pending = b""
    try:
        for chunk in response.stream(4096, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                if stop is not None and stop.is_set():
                    return
                line = log_line(raw)
                if since is None or line.timestamp is None or line.timestamp >= since:
                    yield line
            if stop is not None and stop.is_set():
                return
        if pending and not (stop is not None and stop.is_set()):
            line = log_line(pending)
            if since is None or line.timestamp is None or line.timestamp >= since:
                yield line
    finally:
        response.close()


def exit_code_of(status_text: str) -> int | None:
    """The exit code in the error channel's final ``Status``: Success -> 0,
    ``NonZeroExitCode`` -> its ``ExitCode`` cause; None if it says neither
    (e.g. the container is not running: the message is then in the text)."""
    try:
        status = obj(json.loads(status_text or "{}"))
    except ValueError:
        return None
    if status.get("status") == "Success":
        return 0
    for cause in obj(status.get("details")).get("causes") or []:
        item = obj(cause)
        if item.get("reason") == "ExitCode":
            try:
                return int(text(item.get("message")))
            except ValueError:
                return None
    return None


def status_message(status_text: str) -> str:
    try:
        return text(obj(json.loads(status_text or "{}")).get("message"))
    except ValueError:
        return status_text


def run_exec(ws: Any, timeout: float) -> tuple[ExecResult, str]:
    """Drive an open exec websocket (``kubernetes.stream.ws_client.WSClient``
    made with ``binary=True``) to its end or ``timeout``. Returns the result
    and, when no exit code came, the API's message."""
    output: list[bytes] = []
    status = b""
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.daemon = True
    timer.start()
    try:
        while ws.is_open() and not deadline.is_set():
            ws.update(timeout=0.2)
            for channel in (1, 2):
                data = ws.read_channel(channel)
                if data:
                    output.append(data)
            status += ws.read_channel(ERROR_CHANNEL) or b""
        for channel in (1, 2):
            data = ws.read_channel(channel)
            if data:
                output.append(data)
        status += ws.read_channel(ERROR_CHANNEL) or b""
    finally:
        timer.cancel()
        # don't wait the client's default 3 s for the server's close frame
        ws.close(timeout=0.2)
        # after the server closed first, the websocket client thinks itself
        # disconnected and close() leaves the socket open: close it ourselves
        sock = getattr(ws, "sock", None)
        if sock is not None:
            sock.shutdown()
    body = b"".join(output)
    if deadline.is_set() and not status:
        return ExecResult(EXEC_TIMEOUT_EXIT_CODE, body), ""
    decoded = status.decode("utf-8", errors="replace")
    code = exit_code_of(decoded)
    if code is None:
        return ExecResult(EXEC_TIMEOUT_EXIT_CODE, body), status_message(decoded)
    return ExecResult(code, body), ""
