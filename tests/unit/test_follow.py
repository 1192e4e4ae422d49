"""until_stopped: the "no line after stop" contract of every driver's logs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from portway.drivers.follow import until_stopped


def test_lines_read_in_the_same_block_are_not_handed_out_after_stop() -> None:
    stop = threading.Event()
    closed: list[bool] = []

    def block_reader() -> Iterator[str]:
        try:
            yield from ["a", "b", "c", "d", "e"]  # one engine read brought all five
        finally:
            closed.append(True)

    seen = []
    for line in until_stopped(block_reader(), stop):
        seen.append(line)
        if len(seen) == 3:
            stop.set()
    assert seen == ["a", "b", "c"]
    assert closed == [True]  # the engine stream under it was closed


def test_without_stop_every_line_comes_through_unchanged() -> None:
    source = iter(["a", "b"])
    assert until_stopped(source, None) is source
    assert list(until_stopped(iter(["x", "y"]), threading.Event())) == ["x", "y"]


def test_closing_early_closes_the_source() -> None:
    closed: list[bool] = []

    def reader() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            closed.append(True)

    lines = until_stopped(reader(), threading.Event())
    assert next(lines) == 0
    lines.close()  # type: ignore[attr-defined]
    assert closed == [True]
