"""Serialized workloads for ``GET one workload``, never stale past a bound.

The idea of the kube-apiserver's watch cache, cut down to what a local
SQLite store allows cheaply: the store's ``change_token()`` (the database and
WAL files' mtime and size, two ``stat`` calls, no query) differs after any
commit by any process, so it is read on every request and the whole cache is
dropped when it moved. Two rules make that safe, not merely likely:

* the token is read BEFORE the record: a commit between the two makes the
  next request see another token, so at worst the cached body is newer than
  its token, never older;
* a body is kept only when the files were last modified more than
  ``SETTLE_SECONDS`` before the token was read: a file's mtime comes from the
  kernel's coarse clock (a few ms behind), so a later write to the same
  files could otherwise leave an identical token (same coarse mtime, and the
  same size when SQLite rewrites a reset WAL in place).

On top of that an entry lives at most ``MAX_AGE_SECONDS``: the hard bound,
even on a filesystem with coarse timestamps (where the rules above can be
fooled). A store without a change token (PostgreSQL) is read through: no
caching at all, every request reads the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from portway.controller.records import KIND_WORKLOAD
from portway.store import Record, Store

#: a body is cached only if the store files were last written longer ago
#: than this when its token was read (coarse file-time granularity: <= 10 ms)
SETTLE_SECONDS = 0.05
#: no entry is served for longer than this, whatever the token says
MAX_AGE_SECONDS = 1.0
#: a bound on memory: the cache is emptied when it holds this many bodies
MAX_ENTRIES = 10_000


class WorkloadBodies:
    """Bodies by (namespace, name) for one store; used from one thread (the
    event loop), so it needs no lock."""

    def __init__(self, store: Store, serialize: Callable[[Record], bytes]) -> None:
        self._store = store
        self._serialize = serialize
        self._token: tuple[int, ...] | None = None
        self._bodies: dict[tuple[str, str], tuple[bytes, float]] = {}

    def body(self, namespace: str, name: str) -> bytes:
        """The serialized workload (raises NotFoundError like the store)."""
        wall = time.time_ns()  # before the token: see _settled
        token = self._store.change_token()
        now = time.monotonic()
        if token is None:  # no cheap freshness check: read through
            return self._serialize(self._store.require(KIND_WORKLOAD, namespace, name))
        if token != self._token:
            self._bodies = {}
            self._token = token
        key = (namespace, name)
        found = self._bodies.get(key)
        if found is not None and now - found[1] < MAX_AGE_SECONDS:
            return found[0]
        body = self._serialize(self._store.require(KIND_WORKLOAD, namespace, name))
        if _settled(token, wall):
            if len(self._bodies) >= MAX_ENTRIES:
                self._bodies = {}
            self._bodies[key] = (body, now)
        return body


def _settled(token: tuple[int, ...], wall_ns: int) -> bool:
    """Whether the newest mtime in ``token`` (every even position holds one)
    was more than ``SETTLE_SECONDS`` before ``wall_ns``, a wall-clock time
    taken before the token was read."""
    newest = max(token[0::2], default=0)
    return wall_ns - newest > SETTLE_SECONDS * 1e9
