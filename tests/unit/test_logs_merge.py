"""The merged log view's pure parts: the merger's ordering rules (ties, the
reorder window, a replica handing over to its replacement), ``--since``, the
printer, and the socket-level reading of Docker's log stream."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from portway.cli.logs import LogPrinter, LogStyle, decorated, entries_from_json
from portway.drivers.base import LogLine
from portway.drivers.stream_body import _dechunked, split_frames
from portway.errors import InputError
from portway.service.logmerge import Merger, Source, entry_json, format_time, parse_since

T0 = datetime(2026, 12, 6, 5, 0, 0, tzinfo=UTC)
A = Source("web", 0, "docker-a", "c0")
B = Source("web", 1, "podman-b", "c1")


def at(seconds: float, text: str, stream: str = "stdout") -> LogLine:
    return LogLine(T0 + timedelta(seconds=seconds), stream, text)


def texts(entries: list[tuple[Source, LogLine]]) -> list[str]:
    return [line.text for _, line in entries]


def test_lines_of_two_sources_come_out_in_time_order() -> None:
    merger = Merger(window=1.0)
    merger.open(A)
    merger.open(B)
    merger.add(A, [at(1, "a1"), at(3, "a3")], now=0)
    assert texts(merger.release(now=0)) == []  # B may still send something older
    merger.add(B, [at(2, "b2"), at(4, "b4")], now=0)
    assert texts(merger.release(now=0)) == ["a1", "b2", "a3"]  # b4: A may still send 3.5
    merger.close(A)
    assert texts(merger.release(now=0)) == ["b4"]


def test_ties_go_by_replica_then_keep_arrival_order() -> None:
    merger = Merger(window=1.0)
    merger.open(A)
    merger.open(B)
    merger.add(B, [at(1, "b-first"), at(1, "b-second")], now=0)
    merger.add(A, [at(1, "a-first"), at(1, "a-second")], now=0)
    assert texts(merger.drain()) == ["a-first", "a-second", "b-first", "b-second"]


def test_a_quiet_source_holds_lines_back_only_for_the_window() -> None:
    merger = Merger(window=0.2)
    merger.open(A)
    merger.open(B)  # B says nothing
    merger.add(A, [at(1, "a1")], now=10.0)
    assert texts(merger.release(now=10.1)) == []
    assert texts(merger.release(now=10.2)) == ["a1"]
    # a line older than what went out, arriving late, is printed late, not lost
    merger.add(B, [at(0.5, "b-late")], now=10.3)
    assert texts(merger.release(now=10.5)) == ["b-late"]


def test_one_source_is_never_held_back() -> None:
    merger = Merger(window=5.0)
    merger.add(A, [at(2, "a2"), at(1, "a1-clock-stepped-back")], now=0)
    assert texts(merger.release(now=0)) == ["a2", "a1-clock-stepped-back"]


def test_lines_without_a_time_take_their_sources_newest_time() -> None:
    merger = Merger(window=1.0)
    merger.open(A)
    merger.open(B)
    merger.add(A, [at(1, "a1"), LogLine(None, "stdout", "a-untimed"), at(3, "a3")], now=0)
    merger.add(B, [at(2, "b2")], now=0)
    assert texts(merger.drain()) == ["a1", "a-untimed", "b2", "a3"]


def test_a_replacement_takes_over_without_waiting_for_the_replaced() -> None:
    old = Source("web", 0, "docker-a", "old")
    new = Source("web", 0, "docker-a", "new")
    merger = Merger(window=10.0)
    merger.open(old)
    merger.add(old, [at(1, "old-1")], now=0)
    merger.open(new)
    merger.add(new, [at(2, "new-2")], now=0)
    assert texts(merger.release(now=0)) == ["old-1"]  # old may still finish its last lines
    merger.add(old, [at(1.5, "old-last")], now=0)
    merger.close(old)  # the replaced container stopped: its stream ended
    assert texts(merger.release(now=0)) == ["old-last", "new-2"]
    merger.forget(old)
    merger.add(new, [at(3, "new-3")], now=0)
    assert texts(merger.release(now=0)) == ["new-3"]


def test_a_reattached_source_holds_others_back_again() -> None:
    merger = Merger(window=10.0)
    merger.open(A)
    merger.open(B)
    merger.close(A)  # A's container exited
    merger.add(B, [at(5, "b5")], now=0)
    assert texts(merger.release(now=0)) == ["b5"]
    merger.open(A)  # restarted in place: read again
    merger.add(B, [at(6, "b6")], now=0)
    assert texts(merger.release(now=0)) == []
    merger.add(A, [at(5.5, "a5.5")], now=0)
    assert texts(merger.release(now=0)) == ["a5.5"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", T0 - timedelta(minutes=10)),
        ("1h30m", T0 - timedelta(hours=1, minutes=30)),
        ("90s", T0 - timedelta(seconds=90)),
        ("2026-12-06T04:00:00Z", datetime(2026, 12, 6, 4, tzinfo=UTC)),
        ("2026-12-06T06:00:00+02:00", datetime(2026, 12, 6, 4, tzinfo=UTC)),
    ],
)
def test_since_reads_durations_and_rfc3339(text: str, expected: datetime) -> None:
    assert parse_since(text, T0) == expected


@pytest.mark.parametrize("text", ["yesterday", "10", "10x", "2026-12-06", "2026-12-06T04:00:00"])
def test_since_refuses_anything_else_naming_the_flag(text: str) -> None:
    with pytest.raises(InputError, match=r"--since .*expected a duration"):
        parse_since(text, T0)


def test_json_records_carry_every_field_and_read_back() -> None:
    entry = (A, at(1.5, "hello", "stderr"))
    record = entry_json(entry)
    assert record == {
        "time": "2026-12-06T05:00:01.500000Z",
        "workload": "web",
        "replica": 0,
        "target": "docker-a",
        "stream": "stderr",
        "line": "hello",
    }
    [(source, line)] = list(entries_from_json([json.loads(json.dumps(record))], "web"))
    assert (source.replica, source.target, line) == (0, "docker-a", entry[1])
    assert format_time(None) is None


def test_printer_prefixes_and_stamps_a_merged_view_and_splits_streams() -> None:
    out, err = io.StringIO(), io.StringIO()
    style = decorated(LogStyle(), speakers=2, replica=None)
    LogPrinter(style, out, err).write([(A, at(1, "a")), (B, at(2, "b", "stderr"))])
    assert out.getvalue() == "2026-12-06T05:00:01.000000Z [web-0 docker-a] a\n"
    assert err.getvalue() == "2026-12-06T05:00:02.000000Z [web-1 podman-b] b\n"
    assert decorated(LogStyle(), speakers=2, replica=1) == LogStyle()  # one replica: bare
    out = io.StringIO()
    LogPrinter(LogStyle(json_lines=True), out, err).write([(A, at(1, "a"))])
    assert json.loads(out.getvalue())["line"] == "a"


class _Socket:
    """A socket file whose reads return the given blocks (read1 semantics)."""

    def __init__(self, blocks: list[bytes]) -> None:
        self._blocks = list(blocks)

    def read1(self, size: int) -> bytes:
        return self._blocks.pop(0) if self._blocks else b""


def _frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_chunked_body_and_frames_are_cut_across_any_block_boundary() -> None:
    frames = [_frame(1, b"2026-12-06T05:00:00.1Z one\n"), _frame(2, b"two\n" * 50)]
    body = b"".join(f"{len(f):x}\r\n".encode() + f + b"\r\n" for f in frames) + b"0\r\n\r\n"
    for cut in range(1, len(body), 7):  # every split point, roughly
        blocks = [body[:cut], body[cut:]]
        got = [frame for batch in split_frames(_dechunked(_Socket(blocks))) for frame in batch]
        assert got == [(1, frames[0][8:]), (2, frames[1][8:])], cut
