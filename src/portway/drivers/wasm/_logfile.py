"""A replica's log file: one JSON record per line, written by its worker.

::

    {"t": "2026-05-01T12:00:00.123456+00:00", "s": "stdout", "l": "the line"}

``t`` is when the worker received the output (UTC), ``s`` the stream, ``l``
the text without its newline (UTF-8, undecodable bytes replaced). A line longer
than ``MAX_LINE`` bytes is cut into pieces. Output without a final newline is
written when the module ends. The worker appends across restarts, as engines
keep a container's log across its restarts. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class Record:
    timestamp: datetime | None
    stream: str
    text: str


def encode(stream: str, data: bytes, when: datetime) -> bytes:
    text = data.decode("utf-8", errors="replace")
    entry = {"t": when.isoformat(), "s": stream, "l": text}
    return (json.dumps(entry, ensure_ascii=False) + "\n").encode()


def decode(line: bytes) -> Record:
    """One line of the file; a line that is not a record is stdout text without time."""
    try:
        entry = json.loads(line)
    except ValueError:
        entry = None
    if isinstance(entry, dict) and isinstance(entry.get("l"), str):
        stream = entry.get("s")
        when = None
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(str(entry.get("t")))
        return Record(when, stream if stream in ("stdout", "stderr") else "stdout", entry["l"])
    return Record(None, "stdout", line.decode("utf-8", errors="replace"))


def split_records(data: bytes) -> tuple[list[Record], bytes]:
    """Complete records in ``data`` and the incomplete rest."""
    *lines, rest = data.split(b"\n")
    return [decode(line) for line in lines if line], rest


class LogWriter:
    """Turns the module's stdout/stderr chunks into records, appended with one
    ``write`` each (O_APPEND), so a reader never sees half a record unless the
    worker is killed mid-write (readers treat an unfinished last line as such)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._pending = {"stdout": b"", "stderr": b""}
        self._lock = threading.Lock()

    def feed(self, stream: str, data: bytes) -> None:
        with self._lock:
            buffer = self._pending[stream] + data
            now = datetime.now(UTC)
            out: list[bytes] = []
            start = 0
            while True:
                end = buffer.find(b"\n", start)
                if end < 0:
                    break
                out.extend(self._pieces(stream, buffer[start:end], now))
                start = end + 1
            rest = buffer[start:]
            while len(rest) >= MAX_LINE:  # a line with no end in sight: write what we have
                out.append(encode(stream, rest[:MAX_LINE], now))
                rest = rest[MAX_LINE:]
            self._pending[stream] = rest
            if out:
                os.write(self._fd, b"".join(out))

    @staticmethod
    def _pieces(stream: str, line: bytes, when: datetime) -> list[bytes]:
        if len(line) <= MAX_LINE:
            return [encode(stream, line, when)]
        return [encode(stream, line[i : i + MAX_LINE], when) for i in range(0, len(line), MAX_LINE)]

    def note(self, stream: str, text: str) -> None:
        """A line from portway itself (e.g. why the module was stopped)."""
        self.feed(stream, text.encode() + b"\n")

    def close(self) -> None:
        with self._lock:
            now = datetime.now(UTC)
            tail = [encode(s, rest, now) for s, rest in self._pending.items() if rest]
            self._pending = {"stdout": b"", "stderr": b""}
            if tail:
                os.write(self._fd, b"".join(tail))
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
