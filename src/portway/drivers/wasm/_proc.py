"""Worker processes as the kernel sees them: identity, liveness and usage.

A pid alone is not an identity: after the worker exits the kernel may give
its pid to any new process. A worker is (pid, start time in clock ticks since
boot, field 22 of ``/proc/PID/stat``); a process with that pid and another
start time is someone else. Standard library only (the worker imports it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    state: str  # R, S, D, Z (zombie), X (dead), ...
    start_ticks: int
    cpu_seconds: float  # user + system
    rss_bytes: int


def read_stat(pid: int) -> ProcStat | None:
    """The process's ``/proc`` stat line, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain spaces
    fields = text[text.rfind(")") + 2 :].split()
    # fields[0] is field 3 (state); field N is fields[N - 3]
    return ProcStat(
        state=fields[0],
        start_ticks=int(fields[19]),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / _CLOCK_TICKS,
        rss_bytes=int(fields[21]) * _PAGE_SIZE,
    )


def start_ticks(pid: int) -> int | None:
    stat = read_stat(pid)
    return None if stat is None else stat.start_ticks


def is_alive(pid: int, start: int) -> bool:
    """Whether the process ``(pid, start)`` still runs (a zombie does not)."""
    stat = read_stat(pid)
    return stat is not None and stat.start_ticks == start and stat.state not in ("Z", "X")
