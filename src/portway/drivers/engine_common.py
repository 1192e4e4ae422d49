"""Helpers shared by the drivers of engines that speak Docker's HTTP
vocabulary (Docker and Podman): JSON accessors, engine timestamps, the
multiplexed log/exec stream, stream cancellation and exception chains.
Engine-specific mapping (states, events, ports, errors) stays in each driver.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import datetime
from typing import Any, cast

from portway.drivers.base import LABEL_PREFIX

CLIENT_TIMEOUT_SECONDS = 30
MAX_POOL_SIZE = 32
# How long a stream watcher blocks on ``stop`` before checking whether its
# stream ended by itself. Waking is cheap but not free: an idle controller
# keeps an event stream open all day, so this is not a 50 ms busy-ish poll.
STOP_POLL_SECONDS = 0.5
# Exit code reported when ``exec`` hits its timeout (as coreutils ``timeout``).
EXEC_TIMEOUT_EXIT_CODE = 124
LABEL_VOLUME = LABEL_PREFIX + "volume"
ZERO_TIME_PREFIX = "0001-01-01"
TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$")
STREAMS = {0: "stdout", 1: "stdout", 2: "stderr"}
Json = dict[str, Any]


def obj(value: Any) -> Json:
    return cast(Json, value) if isinstance(value, dict) else {}


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in obj(value).items()}


def parse_engine_time(text: str) -> datetime | None:
    """RFC 3339 with nanoseconds -> aware datetime; the engines' zero time -> None."""
    if not text or text.startswith(ZERO_TIME_PREFIX):
        return None
    match = TIME_RE.match(text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    offset = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{base}.{micros}{offset}")


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def read_exact(raw: Any, size: int) -> bytes:
    """Read ``size`` bytes from a urllib3 response, fewer only at EOF."""
    chunks: list[bytes] = []
    missing = size
    while missing > 0:
        chunk = raw.read(missing)
        if not chunk:
            break
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def frames(response: Any) -> Iterator[tuple[int, bytes]]:
    """The multiplexed stream Docker and Podman send: 8-byte header (stream id, size), payload."""
    raw = response.raw
    while True:
        header = read_exact(raw, 8)
        if len(header) < 8:
            return
        size = int.from_bytes(header[4:8], "big")
        if size == 0:
            continue
        payload = read_exact(raw, size)
        if payload:
            yield header[0], payload
        if len(payload) < size:
            return


class StreamWatch:
    """Cancels a stream from a helper thread as soon as ``stop`` is set.

    A thread blocked reading a socket only wakes up when the socket is shut
    down, so cancellation has to come from outside the reading thread. The
    reading thread calls ``finish`` when done, and closes the stream itself.
    """

    def __init__(self, stop: threading.Event | None, cancel: Callable[[], None]) -> None:
        self._stop = stop
        self._cancel = cancel
        self._done = threading.Event()
        self.cancelled = False
        if stop is not None:
            threading.Thread(target=self._watch, name="portway-engine-stream", daemon=True).start()

    def _watch(self) -> None:
        assert self._stop is not None
        while not self._done.is_set():
            if self._stop.wait(STOP_POLL_SECONDS):
                self.cancelled = True
                with suppress(Exception):
                    self._cancel()
                return

    @property
    def stopping(self) -> bool:
        return self.cancelled or (self._stop is not None and self._stop.is_set())

    def finish(self) -> None:
        self._done.set()


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(e, kinds) for e in chain(exc))


def root_message(exc: BaseException) -> str:
    *_, root = chain(exc)
    text = str(root) or type(root).__name__
    return text if len(text) <= 200 else text[:197] + "..."
