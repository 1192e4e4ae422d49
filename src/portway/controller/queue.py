"""A work queue of keys, in the manner of client-go's workqueue.

- A key waits in the queue at most once, however often it is added.
- A key being processed is never handed to a second worker; adding it
  meanwhile marks it dirty and it comes back once the worker calls ``done``.
- ``add_after`` wakes a key later (the earliest requested time wins).
- ``add_rate_limited`` backs off per key, exponentially, until ``forget``.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable


class WorkQueue:
    def __init__(
        self,
        *,
        base_delay: float = 0.2,
        max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._base = base_delay
        self._max = max_delay
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._seq = 0
        self._shutdown = False

    # --- producers --------------------------------------------------------

    def add(self, key: str) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: str) -> None:
        if self._shutdown:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutdown:
                return
            when = self._clock() + delay
            if key in self._due and self._due[key] <= when:
                return  # an earlier wake-up is already scheduled
            self._due[key] = when
            self._seq += 1
            heapq.heappush(self._delayed, (when, self._seq, key))
            self._cond.notify()

    def add_rate_limited(self, key: str) -> float:
        """Re-add after this key's backoff; returns the delay used."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        # cap the exponent: a key failing for days must not overflow a float
        delay = float(min(self._base * (2 ** min(failures, 32)), self._max))
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    # --- consumers --------------------------------------------------------

    def get(self, timeout: float | None = None) -> str | None:
        """Next key to work on, or None on timeout or shutdown."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                self._promote_due_locked()
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                if self._shutdown:
                    return None
                wait = None if deadline is None else deadline - self._clock()
                if self._delayed:
                    until_due = self._delayed[0][0] - self._clock()
                    wait = until_due if wait is None else min(wait, until_due)
                if wait is not None and wait <= 0:
                    if deadline is not None and self._clock() >= deadline:
                        return None
                    continue
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add_locked(key)

    def _promote_due_locked(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            when, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) != when:
                continue  # superseded by an earlier wake-up
            del self._due[key]
            self._add_locked(key)

    # --- lifecycle --------------------------------------------------------

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def depth(self) -> tuple[int, int]:
        """Keys ready for a worker now, and keys waiting for a later time."""
        with self._cond:
            return len(self._ready), len(self._due)

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)
