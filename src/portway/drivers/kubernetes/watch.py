"""A watch-based cache of portway's Pods in one namespace (an informer, small).

List once (remembering the list's ``resourceVersion``), then watch from
there; every event replaces or removes one Pod in the cache and wakes the
listeners (the driver's ``events``). A watch the server ends (its timeout)
resumes from the last resourceVersion seen, bookmarks included; an
``ERROR`` event with code 410 (Gone: that version was compacted away) or a
``GoneError`` means list again. While the cache is not synced, readers fall
back to a direct list call (``synced`` is False).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from portway.drivers.engine_common import Json, obj, text
from portway.drivers.kubernetes.client import GoneError, shutdown_stream
from portway.errors import DriverError

#: how long the server keeps one watch open before we resume it
WATCH_SECONDS = 300
#: after a failed list or watch, wait before trying again (seconds)
RETRY_SECONDS = 1.0


class PodSource(Protocol):
    def list_pods(self, label_selector: str) -> tuple[list[Json], str]: ...

    def watch_pods(self, label_selector: str, resource_version: str, timeout_seconds: int) -> Any:
        """A response with ``stream()``/``close()``: one JSON event per line."""
        ...


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    pod: Json


class ResourceExpired(Exception):
    """The watch's resourceVersion is gone (HTTP 410): list again."""


def watch_events(response: Any) -> Iterator[WatchEvent]:
    """Decode a watch stream: newline-separated JSON objects, possibly split
    across chunks. Ends when the server closes the stream."""
    pending = b""
    for chunk in response.stream(4096, decode_content=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield _event(line)
    if pending.strip():
        yield _event(pending)


def _event(line: bytes) -> WatchEvent:
    try:
        raw = obj(json.loads(line))
    except ValueError:
        return WatchEvent("ERROR", {"code": 0, "message": f"undecodable watch line {line[:80]!r}"})
    return WatchEvent(text(raw.get("type")), obj(raw.get("object")))


def _resource_version(pod: Json) -> str:
    return text(obj(pod.get("metadata")).get("resourceVersion"))


def _name(pod: Json) -> str:
    return text(obj(pod.get("metadata")).get("name"))


class PodCache:
    """Pods by name, kept current by list+watch in a daemon thread."""

    def __init__(
        self,
        source: PodSource,
        label_selector: str,
        *,
        on_error: Callable[[BaseException], None] = lambda exc: None,
        watch_seconds: int = WATCH_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._source = source
        self._selector = label_selector
        self._on_error = on_error
        self._watch_seconds = watch_seconds
        self._retry_seconds = retry_seconds
        self._lock = threading.Condition()
        self._pods: dict[str, Json] = {}
        self._version = ""
        self._synced = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self._listeners: list[Callable[[WatchEvent], None]] = []
        #: how many times the cache listed (1 + re-lists after 410): for tests and logs
        self.lists = 0

    # --- reading ---------------------------------------------------------------

    @property
    def synced(self) -> bool:
        with self._lock:
            return self._synced

    def pods(self) -> list[Json]:
        with self._lock:
            return list(self._pods.values())

    def get(self, name: str) -> Json | None:
        with self._lock:
            return self._pods.get(name)

    def wait_synced(self, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self._synced, timeout)

    def subscribe(self, listener: Callable[[WatchEvent], None]) -> Callable[[], None]:
        """Call ``listener`` for every event (from the watch thread); returns
        the unsubscribe function."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # --- running -----------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="portway-kubernetes-watch", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            shutdown_stream(response)  # the watch thread sees the end and closes it
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.relist()
                while not self._stop.is_set():
                    self.watch_once()
            except ResourceExpired:
                continue  # list again at once
            except (DriverError, OSError, ValueError) as exc:
                with self._lock:
                    self._synced = False
                if self._stop.is_set():
                    return
                self._on_error(exc)
                self._stop.wait(self._retry_seconds)
            except Exception as exc:  # the stream died under close, or a bug: retry
                with self._lock:
                    self._synced = False
                if self._stop.is_set():
                    return
                self._on_error(exc)
                self._stop.wait(self._retry_seconds)

    def relist(self) -> None:
        items, version = self._source.list_pods(self._selector)
        fresh = {_name(p): p for p in items}
        with self._lock:
            gone = [p for n, p in self._pods.items() if n not in fresh]
            self._pods = fresh
            self._version = version
            self._synced = True
            self.lists += 1
            self._lock.notify_all()
        for pod in gone:
            self._notify(WatchEvent("DELETED", pod))
        for pod in items:
            self._notify(WatchEvent("ADDED", pod))

    def watch_once(self) -> None:
        """One watch request, applied until the server ends it. Raises
        ``ResourceExpired`` on 410."""
        with self._lock:
            version = self._version
        try:
            response = self._source.watch_pods(self._selector, version, self._watch_seconds)
        except GoneError as exc:
            raise ResourceExpired(str(exc)) from exc
        self._response = response
        try:
            for event in watch_events(response):
                if self._stop.is_set():
                    return
                self.apply(event)
        finally:
            self._response = None
            response.close()

    def apply(self, event: WatchEvent) -> None:
        """Apply one watch event to the cache."""
        if event.kind == "ERROR":
            code = event.pod.get("code")
            if code == 410:
                raise ResourceExpired(text(event.pod.get("message")))
            raise ValueError(f"watch error: {text(event.pod.get('message')) or event.pod}")
        version = _resource_version(event.pod)
        with self._lock:
            if version:
                self._version = version
            if event.kind == "BOOKMARK":
                return
            name = _name(event.pod)
            if event.kind == "DELETED":
                self._pods.pop(name, None)
            elif event.kind in ("ADDED", "MODIFIED"):
                self._pods[name] = event.pod
            else:
                return
        self._notify(event)

    def _notify(self, event: WatchEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)


def label_selector(selector: Mapping[str, str]) -> str:
    """``{"a": "1", "b": "2"}`` -> ``a=1,b=2`` (sorted, for stable requests)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def matches(pod: Json, selector: Mapping[str, str]) -> bool:
    labels = obj(obj(pod.get("metadata")).get("labels"))
    return all(labels.get(k) == v for k, v in selector.items())


def select(pods: Iterable[Json], selector: Mapping[str, str]) -> list[Json]:
    return [p for p in pods if matches(p, selector)]
