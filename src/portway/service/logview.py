"""One merged log view of a workload: every replica on every target, in time
order, and with ``follow`` a view that outlives the replicas it started with.

Each source (one replica's container on one target) is read by its own
thread through the engine's streaming log API (``LogSource.logs`` with
``follow``): no polling of the engines for lines. The reader threads hand
lines over through one deque; the thread that iterates the view merges them
(``logmerge.Merger``) and hands out batches.

Following across changes: every ``poll`` seconds the view reads the replica
records from the store (no engine call). A container it has not seen (a
replacement, a rolling update, a move to another target, a scale-up) gets a
reader from its first line. A container that left the store keeps its reader
until the engine ends the stream (it stopped) or ``drain_grace`` seconds
passed, so its last lines are not lost. A stream that ends while its
container is still the replica's (a crash, before the controller restarts it
in place) is attached again with ``since`` its last line's time, and the
lines seen already are skipped.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from portway.controller.records import KIND_WORKLOAD, ReplicaView
from portway.drivers.base import Handle, LogBatchSource, LogLine, LogSource
from portway.errors import InputError, NotFoundError, PortwayError
from portway.service.app import App
from portway.service.logmerge import Entry, Merger, Source
from portway.service.workloads import replicas_of, resolve_workload

#: seconds a line may wait for an older line of a quiet replica (follow only)
REORDER_WINDOW = 0.2
#: seconds between reads of the replica records while following
STORE_POLL = 0.5
#: seconds a container that left the store may still deliver its last lines
DRAIN_GRACE = 5.0
#: batches (one per engine read) waiting for the merger before readers pause
_MAX_INBOX = 2_000


@dataclass(frozen=True)
class LogQuery:
    namespace: str
    workload: str
    follow: bool = False
    tail: int | None = None  # last N lines per replica's container
    since: datetime | None = None
    replica: int | None = None
    target: str | None = None


@dataclass(frozen=True)
class SourceError:
    source: Source
    message: str


@dataclass
class _Reader:
    source: Source
    stop: threading.Event = field(default_factory=threading.Event)
    ended: bool = False  # set by the reader thread when its stream is over
    #: newest time delivered and how many lines carried it (re-attach dedupe)
    last_time: datetime | None = None
    at_last_time: int = 0
    left_store_at: float | None = None
    next_attach: float = 0.0


def check_query(app: App, query: LogQuery) -> None:
    """Bad input is refused before anything is read, naming the flag."""
    _, workload = resolve_workload(app, query.namespace, query.workload)
    if query.tail is not None and query.tail < 0:
        raise InputError(f"--tail {query.tail}: expected 0 or more lines")
    wanted = workload.spec.replicas
    known_indices = {v.index for v in replicas_of(app, query.namespace, query.workload)}
    if query.replica is not None and not (
        0 <= query.replica < wanted or query.replica in known_indices
    ):
        top = wanted - 1
        known = f"0..{top}" if top >= 0 else "none (scaled to 0)"
        raise InputError(
            f"--replica {query.replica}: workload {query.namespace}/{query.workload} "
            f"has replicas {known}"
        )
    if query.target is not None and app.targets.view(query.target) is None:
        names = ", ".join(sorted(v.name for v in app.target_views())) or "none"
        raise InputError(f"--target {query.target!r}: no such target (known: {names})")


class LogView:
    """Iterate for batches of entries in time order; ``close`` from any thread."""

    def __init__(
        self,
        app: App,
        query: LogQuery,
        *,
        window: float = REORDER_WINDOW,
        poll: float = STORE_POLL,
        drain_grace: float = DRAIN_GRACE,
    ) -> None:
        check_query(app, query)
        self._app, self._query = app, query
        self._poll, self._drain_grace = poll, drain_grace
        # without follow every stream ends: wait for all, order exactly
        self._merger = Merger(window if query.follow else math.inf)
        self._readers: dict[Source, _Reader] = {}
        self._inbox: deque[tuple[Source, list[LogLine] | None]] = deque()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self.errors: list[SourceError] = []
        self._first = True

    def speakers(self) -> int:
        """How many replicas the view reads now (the CLI decorates lines when
        more than one speaks)."""
        return len({view.index for view in self._wanted() or []})

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        for reader in list(self._readers.values()):
            reader.stop.set()

    # --- the iterating thread ------------------------------------------------

    def __iter__(self) -> Iterator[list[Entry]]:
        try:
            yield from self._run()
        finally:
            self.close()

    def start(self) -> None:
        """Attach to the replicas running now; without ``follow`` none is an
        error (NotFoundError). Iterating starts the view if this was not called."""
        if not self._first:
            return
        self._sync(time.monotonic())
        if not self._readers and not self._query.follow:
            raise NotFoundError(self._nothing_running())

    def _run(self) -> Iterator[list[Entry]]:
        query, merger = self._query, self._merger
        self.start()
        next_poll = time.monotonic() + self._poll
        while not self._closed.is_set():
            self._wake.clear()
            self._take_inbox()
            now = time.monotonic()
            batch = merger.release(now)
            if batch:
                yield batch
            if query.follow and now >= next_poll:
                if not self._sync(now):
                    break  # the workload is gone
                next_poll = now + self._poll
            finished = all(r.ended for r in self._readers.values())
            if finished and not self._inbox and not query.follow:
                break
            if self._inbox:
                continue
            timeout = next_poll - time.monotonic() if query.follow else 0.5
            if merger.held and query.follow:
                timeout = min(timeout, max(merger.window / 2, 0.01))
            self._wake.wait(max(timeout, 0.001))
        self._take_inbox()
        rest = merger.drain()
        if rest:
            yield rest

    def _take_inbox(self) -> None:
        inbox, merger = self._inbox, self._merger
        if not inbox:
            return
        now = time.monotonic()
        groups: dict[Source, list[LogLine]] = {}
        ended: list[Source] = []
        for _ in range(len(inbox)):
            source, batch = inbox.popleft()
            if batch is None:
                ended.append(source)
                continue
            lines = groups.get(source)
            if lines is None:
                groups[source] = batch
            else:
                lines.extend(batch)
        for source, lines in groups.items():
            merger.add(source, lines, now)
        for source in ended:
            merger.close(source)

    # --- which containers to read ----------------------------------------------

    def _nothing_running(self) -> str:
        query = self._query
        where = f" on target {query.target}" if query.target else ""
        which = f" replica {query.replica}" if query.replica is not None else " replicas"
        return f"workload {query.namespace}/{query.workload} has no{which} running{where} yet"

    def _wanted(self) -> list[ReplicaView] | None:
        """The replica records the query selects (None: the workload is gone)."""
        query, app = self._query, self._app
        if app.store.get(KIND_WORKLOAD, query.namespace, query.workload) is None:
            return None
        views = []
        for view in replicas_of(app, query.namespace, query.workload):
            if not view.container_id:
                continue
            if query.replica is not None and view.index != query.replica:
                continue
            if query.target is not None and view.target != query.target:
                continue
            views.append(view)
        return views

    def _sync(self, now: float) -> bool:
        wanted = self._wanted()
        gone = wanted is None
        views = wanted or []
        present = set()
        for view in views:
            source = Source(view.workload, view.index, view.target, view.container_id)
            present.add(source)
            reader = self._readers.get(source)
            if reader is None:
                self._attach(view, _Reader(source), initial=self._first)
            elif reader.ended and self._query.follow and now >= reader.next_attach:
                # same container, stream over: it exited; read on once it runs again
                reader.next_attach = now + max(self._poll, 1.0)
                self._attach(view, reader, initial=False)
            reader = self._readers.get(source)
            if reader is not None:
                reader.left_store_at = None
        for source, reader in list(self._readers.items()):
            if source in present:
                continue
            if reader.left_store_at is None:
                reader.left_store_at = now
            elif now - reader.left_store_at >= self._drain_grace or reader.ended:
                reader.stop.set()
                if reader.ended:
                    del self._readers[source]
                    self._merger.forget(source)
        self._first = False
        return not (gone and not self._readers)

    def _attach(self, view: ReplicaView, reader: _Reader, *, initial: bool) -> None:
        target = self._app.targets.view(view.target)
        if target is None:
            return
        driver = self._app.targets.driver(target)
        if not isinstance(driver, LogSource):
            raise PortwayError(f"target {view.target} ({target.driver}) cannot show logs")
        handle = Handle(driver.name, target.name, view.container_id, view.container_name)
        query = self._query
        since: datetime | None
        if reader.last_time is not None:  # re-attach: from where it stopped
            tail, since = None, reader.last_time
        elif initial:
            tail, since = query.tail, query.since
        else:  # a container that appeared while following: all of it is new
            tail, since = None, query.since
        reader.ended = False
        reader.stop = threading.Event()
        if self._closed.is_set():
            reader.stop.set()
        self._readers[reader.source] = reader
        self._merger.open(reader.source)
        threading.Thread(
            target=self._read,
            args=(driver, handle, reader, tail, since),
            name=f"portway-logs-{view.workload}-{view.index}",
            daemon=True,
        ).start()

    # --- reader threads ------------------------------------------------------------

    def _read(
        self,
        source_api: LogSource,
        handle: Handle,
        reader: _Reader,
        tail: int | None,
        since: datetime | None,
    ) -> None:
        inbox, wake, source, stop = self._inbox, self._wake, reader.source, reader.stop
        skip_before, skip_at = reader.last_time, reader.at_last_time
        # kept in locals while streaming and saved on the reader when the
        # stream ends, for the next attach
        last_time, at_last_time = reader.last_time, reader.at_last_time
        try:
            for batch in _batches(source_api, handle, self._query.follow, tail, since, stop):
                if skip_before is not None:
                    # a re-attach starts at the last time seen: skip what was shown
                    batch, skip_before, skip_at = _skip_seen(batch, skip_before, skip_at)
                    if not batch:
                        continue
                last_time, at_last_time = _advance(last_time, at_last_time, batch)
                inbox.append((source, batch))
                if not wake.is_set():
                    wake.set()
                while len(inbox) > _MAX_INBOX and not stop.is_set():
                    time.sleep(0.005)  # the writer is slower than the engine
        except PortwayError as exc:
            if not reader.stop.is_set():
                self.errors.append(SourceError(source, str(exc)))
        except Exception as exc:  # an engine failure mid-stream ends this source only
            if not reader.stop.is_set():
                self.errors.append(SourceError(source, f"{type(exc).__name__}: {exc}"))
        finally:
            reader.last_time, reader.at_last_time = last_time, at_last_time
            reader.ended = True
            inbox.append((source, None))
            wake.set()


def _batches(
    source_api: LogSource,
    handle: Handle,
    follow: bool,
    tail: int | None,
    since: datetime | None,
    stop: threading.Event,
) -> Iterator[list[LogLine]]:
    """The engine's lines a read at a time when the driver can (LogBatchSource),
    else one by one."""
    if isinstance(source_api, LogBatchSource):
        return source_api.log_batches(handle, follow=follow, tail=tail, since=since, stop=stop)
    lines = source_api.logs(handle, follow=follow, tail=tail, since=since, stop=stop)
    return ([line] for line in lines)


def _skip_seen(
    batch: list[LogLine], before: datetime, at: int
) -> tuple[list[LogLine], datetime | None, int]:
    """Drops the lines a re-attach (``since`` = ``before``) sees again: older
    ones, and the first ``at`` with time ``before``. Returns the rest and the
    skip state (None once the first new line came)."""
    for position, line in enumerate(batch):
        moment = line.timestamp
        if moment is None or moment > before:
            return batch[position:], None, 0
        if moment == before:
            if at > 0:
                at -= 1
                continue
            return batch[position:], None, 0
    return [], before, at


def _advance(
    last_time: datetime | None, at_last_time: int, batch: list[LogLine]
) -> tuple[datetime | None, int]:
    """The newest time delivered and how many lines carried it, after ``batch``."""
    for line in batch:
        moment = line.timestamp
        if moment is None:
            continue
        if moment == last_time:
            at_last_time += 1
        else:
            last_time, at_last_time = moment, 1
    return last_time, at_last_time
