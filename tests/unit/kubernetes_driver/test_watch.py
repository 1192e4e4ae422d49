"""The list+watch cache without a server: events applied in order, bookmarks
move the resourceVersion, 410 (as an ERROR event or as HTTP 410) re-lists."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from tests.unit.kubernetes_driver.fixtures import load

from portway.drivers.kubernetes.client import GoneError
from portway.drivers.kubernetes.watch import (
    PodCache,
    ResourceExpired,
    WatchEvent,
    label_selector,
    watch_events,
)


def _pod(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version, "labels": {"a": "1"}}}


class Stream:
    """A watch response: its events split at awkward places across chunks."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        blob = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.chunks = [blob[i : i + 7] for i in range(0, len(blob), 7)]
        self.closed = False

    def stream(self, amount: int, decode_content: bool = True) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        self.closed = True


class Source:
    def __init__(self, watches: list[Any]) -> None:
        self.watches = watches
        self.lists: list[str] = []
        self.watched_from: list[str] = []

    def list_pods(self, selector: str) -> tuple[list[dict[str, Any]], str]:
        self.lists.append(selector)
        return [_pod("a", "5")], str(10 * len(self.lists))

    def watch_pods(self, selector: str, version: str, seconds: int) -> Any:
        self.watched_from.append(version)
        answer = self.watches.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_events_bookmarks_and_deletes() -> None:
    stream = Stream(
        [
            {"type": "ADDED", "object": _pod("b", "11")},
            {"type": "MODIFIED", "object": _pod("a", "12")},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
            {"type": "DELETED", "object": _pod("b", "16")},
        ]
    )
    source = Source([stream, Stream([])])
    cache = PodCache(source, label_selector({"a": "1"}))
    seen: list[WatchEvent] = []
    cache.subscribe(seen.append)
    cache.relist()
    cache.watch_once()
    assert stream.closed
    assert [p["metadata"]["name"] for p in cache.pods()] == ["a"]
    assert cache.get("a") == _pod("a", "12")
    # relist's ADDED, then ADDED b, MODIFIED a, DELETED b (no bookmark)
    assert [(e.kind, e.pod["metadata"]["name"]) for e in seen] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    cache.watch_once()
    assert source.watched_from == ["10", "16"]  # the list's version, then the last seen


def test_410_as_an_event_or_as_an_answer_means_list_again() -> None:
    expired = Stream([load("watch-expired")])
    cache = PodCache(Source([expired]), "a=1")
    cache.relist()
    with pytest.raises(ResourceExpired, match="too old resource version"):
        cache.watch_once()
    cache = PodCache(Source([GoneError("t", "watch pods: too old")]), "a=1")
    cache.relist()
    with pytest.raises(ResourceExpired):
        cache.watch_once()


class Open(Stream):
    """A watch that stays open until it is shut, as a quiet cluster's does."""

    def __init__(self) -> None:
        super().__init__([])
        self.shut = threading.Event()
        # what client.shutdown_stream reaches for: the connection's socket
        self.connection = SimpleNamespace(
            sock=SimpleNamespace(shutdown=lambda how: self.shut.set())
        )

    def stream(self, amount: int, decode_content: bool = True) -> Iterator[bytes]:
        self.shut.wait(10)
        yield from ()

    def close(self) -> None:
        self.shut.set()
        super().close()


def test_the_thread_relists_after_410_and_keeps_watching() -> None:
    last = Open()
    source = Source([Stream([load("watch-expired")]), last])
    errors: list[BaseException] = []
    cache = PodCache(source, "a=1", on_error=errors.append, retry_seconds=0.01)
    cache.start()
    try:
        end = time.monotonic() + 5
        while len(source.watched_from) < 2 and time.monotonic() < end:
            time.sleep(0.01)
        assert cache.synced
    finally:
        cache.close()  # shuts the open watch's socket down; the thread ends
    assert last.closed
    assert source.lists == ["a=1", "a=1"]  # listed again after the 410
    assert source.watched_from == ["10", "20"]  # each watch from its own list's version
    assert not errors


def test_undecodable_lines_are_errors_not_crashes() -> None:
    class Garbage(Stream):
        def __init__(self) -> None:
            self.chunks = [b"{not json\n"]
            self.closed = False

    [event] = list(watch_events(Garbage()))
    assert event.kind == "ERROR"
    cache = PodCache(Source([]), "a=1")
    with pytest.raises(ValueError, match="undecodable"):
        cache.apply(event)
