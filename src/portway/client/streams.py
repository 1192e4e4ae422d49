"""Readers of the server's two streaming formats: newline-delimited JSON
(logs) and server-sent events (watches)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


def iter_ndjson(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """One JSON object per non-empty line; a line that is not an object is
    the server's bug, reported rather than skipped."""
    for line in lines:
        if not line.strip():
            continue
        item = json.loads(line)
        if not isinstance(item, dict):
            raise ValueError(f"expected a JSON object per line, got {line[:80]!r}")
        yield item


@dataclass(frozen=True)
class ServerSentEvent:
    event: str  # "message" when the server names none
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def iter_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events of a ``text/event-stream`` (the WHATWG rules that matter here:
    ``field: value`` lines, ``:`` comments are heartbeats, a blank line ends
    an event, several ``data`` lines join with newlines)."""
    event, last_id = "", None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            last_id = value
    if data:
        yield ServerSentEvent(event or "message", "\n".join(data), last_id)
