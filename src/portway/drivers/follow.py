"""The contract every driver's ``logs(..., stop=)`` keeps: once ``stop`` is
set, no further line comes out.

Why a wrapper: drivers read the engine in blocks (a socket read, the new end of
a log file), so several lines arrive at once. A follower that sets ``stop``
after the line it wanted would otherwise still get the rest of that block
(``portway logs -f`` ending after N lines printed N+3 under load).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def until_stopped(items: Iterator[T], stop: threading.Event | None) -> Iterator[T]:
    """``items`` until ``stop`` is set; closing the result closes ``items``
    (and with it the engine's stream or the open log file)."""
    if stop is None:
        return items
    return _until(items, stop)


def _until(items: Iterator[T], stop: threading.Event) -> Iterator[T]:
    try:
        for item in items:
            # checked after the pull too: the item may have been read in the
            # same block as the one after which the follower set stop
            if stop.is_set():
                return
            yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
