"""``portway logs``: prints a merged log view, locally or from a server, in
one format. The merging and following live in ``service.logview``.

Output is written a batch at a time (one ``write`` per stream per batch, and
one flush): a follow of a fast replica delivers thousands of lines per batch,
and a quiet one still shows each line as soon as it arrives.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from portway.drivers.base import LogLine
from portway.service.logmerge import Entry, Source, entry_json, format_time


@dataclass(frozen=True)
class LogStyle:
    json_lines: bool = False  # -o json: one object per line, all on stdout
    timestamps: bool = False  # the engine's time before each line
    prefix: bool = False  # [workload-replica target] before each line


def decorated(style: LogStyle, speakers: int, replica: int | None) -> LogStyle:
    """A merged view of several replicas is prefixed and timestamped, so the
    lines can be told apart and their order seen (one replica: bare lines)."""
    if style.json_lines or replica is not None or speakers < 2:
        return style
    return LogStyle(json_lines=False, timestamps=True, prefix=True)


class LogPrinter:
    def __init__(self, style: LogStyle, out: TextIO | None = None, err: TextIO | None = None):
        self.style = style
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._prefixes: dict[Source, str] = {}

    def _prefix(self, source: Source) -> str:
        text = self._prefixes.get(source)
        if text is None:
            text = f"[{source.workload}-{source.replica} {source.target}] "
            self._prefixes[source] = text
        return text

    def write(self, entries: list[Entry]) -> None:
        if self.style.json_lines:
            self._out.write("".join(json.dumps(entry_json(e)) + "\n" for e in entries))
            self._out.flush()
            return
        out: list[str] = []
        err: list[str] = []
        stamps, prefix = self.style.timestamps, self.style.prefix
        for source, line in entries:
            text = line.text
            if prefix:
                text = self._prefix(source) + text
            if stamps:
                text = f"{format_time(line.timestamp) or '-'} {text}"
            (err if line.stream == "stderr" else out).append(text)
        if out:
            out.append("")
            self._out.write("\n".join(out))
            self._out.flush()
        if err:
            err.append("")
            self._err.write("\n".join(err))
            self._err.flush()


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's
    final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def entries_from_json(items: Iterable[Mapping[str, Any]], workload: str) -> Iterable[Entry]:
    """The server's ndjson objects back into entries (remote mode prints alike)."""
    for item in items:
        stamp = item.get("time") or item.get("ts")
        moment = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        source = Source(
            str(item.get("workload") or workload),
            int(item.get("replica") or 0),
            str(item.get("target") or ""),
            "",
        )
        line = LogLine(moment, str(item.get("stream") or "stdout"), str(item.get("line", "")))
        yield source, line
