"""The pure half of the merged log view: what a line is once it is known
where it came from, how ``--since`` is read, and the merger that puts the
lines of several replicas into time order.

Nothing here calls an engine or reads the clock: times are passed in, so the
ordering rules are tested without sleeping.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from portway.drivers.base import LogLine
from portway.errors import InputError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str, now: datetime, *, flag: str = "--since") -> datetime:
    """``10m``, ``1h30m``, ``45s`` (before ``now``) or an RFC 3339 time
    (``2026-12-06T05:00:00Z``, with an offset or Z) -> an aware UTC time."""
    value = text.strip()
    if value and _DURATION.sub("", value) == "" and _DURATION.match(value):
        seconds = sum(
            float(amount) * _UNIT_SECONDS[unit] for amount, unit in _DURATION.findall(value)
        )
        return now.astimezone(UTC) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in value.upper():
        raise InputError(
            f"{flag} {text!r}: expected a duration such as 10m, 1h or 90s, or an RFC 3339 "
            "time with a zone such as 2026-12-06T05:00:00Z"
        )
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Source:
    """One replica's container on one target: where a line came from."""

    workload: str
    replica: int
    target: str
    container_id: str

    @property
    def order(self) -> tuple[int, str, str]:
        """How lines with the same time are ordered: by replica, then target."""
        return (self.replica, self.target, self.container_id)


#: a line and where it came from; plain tuples, since a follow may carry
#: tens of thousands of them a second
Entry = tuple[Source, LogLine]


def format_time(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with microseconds and Z, or None for an unknown time."""
    if moment is None:
        return None
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.removesuffix("+00:00") + "Z"


def entry_json(entry: Entry) -> dict[str, Any]:
    """``{time, workload, replica, target, stream, line}``: ``-o json`` and the API."""
    source, line = entry
    return {
        "time": format_time(line.timestamp),
        "workload": source.workload,
        "replica": source.replica,
        "target": source.target,
        "stream": line.stream,
        "line": line.text,
    }


_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass
class _Lane:
    """What the merger knows of one source."""

    last_time: datetime = _EARLIEST  # newest time seen: nothing older will come
    open: bool = True


@dataclass
class Merger:
    """Merges the lines of several sources into time order.

    Each source delivers its own lines in time order (the engines do). A line
    is released once no open source can still deliver an older one, i.e. its
    time is at or before every open source's newest time (*watermark*), or
    once it has waited ``window`` seconds (a quiet source must not hold the
    others back forever; a line that arrives later than that with an older
    time is printed late rather than lost). Lines with the same time keep
    arrival order within a source and go by ``Source.order`` across sources.
    A line without a time takes its source's newest time. Sources are
    ``open``ed before their lines come: while only one source is known its
    lines pass straight through (the fast path of a one-replica follow).
    """

    window: float
    _lanes: dict[Source, _Lane] = field(default_factory=dict)
    _held: list[tuple[datetime, tuple[int, str, str], int, float, Entry]] = field(
        default_factory=list
    )
    _sequence: int = 0
    _ready: list[Entry] = field(default_factory=list)

    def open(self, source: Source) -> None:
        """A source that will deliver lines (again): it holds others back."""
        self._lanes.setdefault(source, _Lane()).open = True

    def close(self, source: Source) -> None:
        """The source ended (or was let go): it no longer holds others back."""
        lane = self._lanes.get(source)
        if lane is not None:
            lane.open = False

    def forget(self, source: Source) -> None:
        self._lanes.pop(source, None)

    @property
    def held(self) -> int:
        return len(self._held) + len(self._ready)

    def add(self, source: Source, lines: list[LogLine], now: float) -> None:
        lane = self._lanes.setdefault(source, _Lane())
        if len(self._lanes) == 1 and not self._held:
            # one source: its own order is the order, nothing to hold back
            # (the common case of a follow, and the fast one)
            for line in reversed(lines):  # the newest time is the last one given
                if line.timestamp is not None:
                    lane.last_time = max(lane.last_time, line.timestamp)
                    break
            self._ready.extend([(source, line) for line in lines])
            return
        order = source.order
        held = self._held
        for line in lines:
            moment = line.timestamp
            if moment is None or moment < lane.last_time:
                moment = lane.last_time
            else:
                lane.last_time = moment
            self._sequence += 1
            heapq.heappush(held, (moment, order, self._sequence, now, (source, line)))

    def release(self, now: float) -> list[Entry]:
        """Lines that can go out now, in order."""
        watermark = min(
            (lane.last_time for lane in self._lanes.values() if lane.open), default=None
        )
        held, out = self._held, self._ready
        self._ready = []
        deadline = now - self.window
        while held:
            moment, _, _, arrived, entry = held[0]
            if watermark is not None and moment > watermark and arrived > deadline:
                break
            heapq.heappop(held)
            out.append(entry)
        return out

    def drain(self) -> list[Entry]:
        """Everything held, in order (the end of a view)."""
        held, out = self._held, self._ready
        self._ready = []
        out.extend(heapq.heappop(held)[4] for _ in range(len(held)))
        return out
