"""Desired and observed state in one SQL database (SQLite file by default).

Every object has a ``version``; every write names the version it read and
fails with ``ConflictError`` if another writer got there first (compare and
swap), like etcd's resourceVersion. ``generation`` counts changes of the
desired part (``spec``) only, so a status write never looks like a new spec.

Every object write also appends a row to the ``changes`` log in the same
transaction; its id is the global *revision* (one counter for all kinds), so
a watcher can ask "what changed after revision N" (``changes``) and resume
where it stopped. The log keeps the newest ``CHANGES_KEEP`` rows.

Backends: SQLite (one file, default) and PostgreSQL (``postgresql+psycopg://``),
for several servers sharing one store. Leases elect one controller among them;
their fencing tokens let a store refuse writes of a controller that lost its
lease (``Store.fenced``). See docs/store.md.
"""

from __future__ import annotations

import builtins
import copy
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from portway.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    PortwayError,
    StoreError,
)
from portway.store.schema import audit, changes, events, leases, objects, upgrade

#: changes kept in the log; older ones are pruned (a watch resuming from before
#: them is told to list again, like Kubernetes' "resourceVersion too old")
CHANGES_KEEP = 10_000
#: every this many revisions, a write prunes the log (amortises the delete)
PRUNE_EVERY = 256
#: key of the PostgreSQL advisory lock that orders object writes, so that
#: revisions become visible in increasing order and a watcher never skips one
_REVISION_LOCK = 0x706F7274

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


class FencedError(PortwayError):
    """A lease holder wrote after it lost the lease; nothing was written.

    Deliberately not a ``ConflictError``: callers retry those, while a fenced
    writer must stop."""


@dataclass(frozen=True)
class Fence:
    """Writes made under it commit only while ``holder`` holds lease ``lease``
    with fencing token ``token`` (checked in the write's own transaction)."""

    lease: str
    holder: str
    token: int


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: float
    token: int


@dataclass(frozen=True)
class Record:
    kind: str
    namespace: str
    name: str
    version: int
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    deleting: bool
    created_at: float
    updated_at: float
    revision: int = 0
    """Global revision of the object's last write (see ``Store.changes``)."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Event:
    id: int
    ts: float
    kind: str
    namespace: str
    name: str
    type: str
    reason: str
    message: str
    replica: int | None = None
    """The replica index the event is about (None: the whole object)."""
    target: str = ""
    """The target it happened on ("" when none)."""
    count: int = 1
    """How many times it happened (repeats are aggregated into one event)."""
    first_ts: float = 0.0
    """When it first happened; ``ts`` is the last time."""


#: a repeat of an event (same object, replica, target, type, reason and
#: message) within this many seconds of its last occurrence bumps its count
#: instead of adding a row, as Kubernetes' event aggregation does: a flapping
#: probe cannot flood the table
EVENT_AGGREGATE_SECONDS = 600.0


@dataclass(frozen=True)
class Change:
    """One write of one object; ``revision`` orders all writes of all kinds."""

    revision: int
    kind: str
    namespace: str
    name: str
    type: str  # ADDED | MODIFIED | DELETED
    ts: float
    writer: str = ""
    """The lease holder of a fenced write (the controller), else ""."""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: float
    user: str
    token_id: str
    verb: str
    resource: str
    namespace: str
    name: str
    outcome: str  # allowed | denied | failed | succeeded
    status: int
    message: str
    remote: str


class _Lost(Exception):
    """Rolls a compare-and-swap transaction back (the row did not match)."""


class _FoldRaced(Exception):
    """Rolls an event's fold back: the repeat it read was folded meanwhile."""


#: tries of an event's fold against other writers folding the same repeat
_FOLD_ATTEMPTS = 5


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _record(row: Any) -> Record:
    return Record(
        kind=row.kind,
        namespace=row.namespace,
        name=row.name,
        version=row.version,
        generation=row.generation,
        spec=json.loads(row.spec),
        status=json.loads(row.status),
        deleting=bool(row.deleting),
        created_at=row.created_at,
        updated_at=row.updated_at,
        revision=int(row.revision),
    )


def _event(row: Any) -> Event:
    return Event(
        id=int(row.id),
        ts=row.ts,
        kind=row.kind,
        namespace=row.namespace,
        name=row.name,
        type=row.type,
        reason=row.reason,
        message=row.message,
        replica=None if row.replica < 0 else int(row.replica),
        target=row.target,
        count=int(row.count),
        first_ts=row.first_ts or row.ts,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the CLI read while the controller writes; busy_timeout makes a
    # second writer wait for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _open_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        # Controller workers, housekeeping and API threads share one pool;
        # pre-ping replaces connections a restarted server dropped.
        return create_engine(
            url, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=30
        )
    return create_engine(url, pool_pre_ping=True)


class Store:
    """Thread-safe; one instance per process is enough.

    ``url`` is an SQLAlchemy URL: ``sqlite:///PATH`` or
    ``postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB``."""

    def __init__(self, url: str) -> None:
        self.url = url
        database = make_url(url).database if url.startswith("sqlite") else None
        self._path = database if database and database != ":memory:" else None
        self._token_files = (f"{self._path}", f"{self._path}-wal") if self._path else ()
        self._postgres = url.startswith("postgresql")
        self._fence: Callable[[], Fence | None] | None = None
        self.changes_keep = CHANGES_KEEP
        self.events_aggregate_seconds = EVENT_AGGREGATE_SECONDS
        try:
            self._engine: Engine = _open_engine(url)
            self._upgrade()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the state store at {url}: {exc}") from exc

    def _upgrade(self) -> None:
        # Two processes opening one new database race on CREATE/ALTER; the
        # loser finds the work done on its second look.
        for attempt in range(3):
            try:
                upgrade(self._engine)
                return
            except SQLAlchemyError:
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        self._engine.dispose()

    def fenced(self, fence: Callable[[], Fence | None]) -> Store:
        """A view of this store (same connections) whose object writes and
        events commit only under the fence that ``fence()`` returns at write
        time, raising ``FencedError`` otherwise. ``fence()`` returning None
        lets a write through unfenced (a one-off pass by a process that never
        led); it may raise ``FencedError`` itself to refuse every write."""
        view = copy.copy(self)
        view._fence = fence
        return view

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except (IntegrityError, OperationalError) as exc:
            raise StoreError(f"state store error: {exc.orig}") from exc

    def _fence_now(self) -> Fence | None:
        """The fence to write under (None: unfenced)."""
        return None if self._fence is None else self._fence()

    def _verify_fence(self, conn: Connection, fence: Fence | None) -> None:
        """Roll the transaction back unless ``fence`` still holds.

        Called after the transaction's first write, so that on SQLite it holds
        the write lock (no lease change can interleave); on PostgreSQL FOR
        SHARE makes a takeover wait until this write has committed."""
        if fence is None:
            return
        row = conn.execute(
            select(leases.c.holder, leases.c.token, leases.c.expires_at)
            .where(leases.c.name == fence.lease)
            .with_for_update(read=True)
        ).first()
        if row is None or row.holder != fence.holder or int(row.token) != fence.token:
            now_held = "nobody" if row is None else f"{row.holder} (token {row.token})"
            raise FencedError(
                f"lease {fence.lease!r} is held by {now_held}, not by {fence.holder} "
                f"(token {fence.token}); this controller must stop writing"
            )
        if row.expires_at < time.time():
            raise FencedError(
                f"lease {fence.lease!r} of {fence.holder} expired; renew it before writing"
            )

    def _log_change(
        self, conn: Connection, kind: str, namespace: str, name: str, type_: str
    ) -> int:
        """Append to the change log in the caller's transaction (its first
        statement); returns the revision."""
        fence = self._fence_now()
        if self._postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _REVISION_LOCK})
        result = conn.execute(
            insert(changes).values(
                kind=kind,
                namespace=namespace,
                name=name,
                type=type_,
                ts=time.time(),
                writer=fence.holder if fence else "",
            )
        )
        self._verify_fence(conn, fence)
        assert result.inserted_primary_key is not None
        revision = int(result.inserted_primary_key[0])
        if revision % PRUNE_EVERY == 0:
            conn.execute(delete(changes).where(changes.c.id <= revision - self.changes_keep))
        return revision

    # --- objects ----------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> Record | None:
        with self._tx() as conn:
            row = conn.execute(
                select(objects).where(
                    objects.c.kind == kind,
                    objects.c.namespace == namespace,
                    objects.c.name == name,
                )
            ).first()
        return None if row is None else _record(row)

    def require(self, kind: str, namespace: str, name: str) -> Record:
        found = self.get(kind, namespace, name)
        if found is None:
            raise NotFoundError(f"{kind.lower()} {namespace}/{name} not found")
        return found

    def list(self, kind: str, namespace: str | None = None) -> list[Record]:
        query = select(objects).where(objects.c.kind == kind)
        if namespace is not None:
            query = query.where(objects.c.namespace == namespace)
        with self._tx() as conn:
            rows = conn.execute(query.order_by(objects.c.namespace, objects.c.name)).all()
        return [_record(r) for r in rows]

    def create(
        self,
        kind: str,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        status: Mapping[str, Any] | None = None,
    ) -> Record:
        now = time.time()
        try:
            with self._engine.begin() as conn:
                revision = self._log_change(conn, kind, namespace, name, ADDED)
                conn.execute(
                    insert(objects).values(
                        kind=kind,
                        namespace=namespace,
                        name=name,
                        version=1,
                        generation=1,
                        spec=_dumps(spec),
                        status=_dumps(status or {}),
                        deleting=False,
                        created_at=now,
                        updated_at=now,
                        revision=revision,
                    )
                )
        except IntegrityError as exc:
            raise AlreadyExistsError(f"{kind.lower()} {namespace}/{name} already exists") from exc
        except OperationalError as exc:
            raise StoreError(f"state store error: {exc.orig}") from exc
        return self.require(kind, namespace, name)

    def _where_version(self, record: Record) -> Any:
        return and_(
            objects.c.kind == record.kind,
            objects.c.namespace == record.namespace,
            objects.c.name == record.name,
            objects.c.version == record.version,
        )

    def _cas(
        self, record: Record, values: dict[str, Any], *, bump_generation: bool = False
    ) -> Record:
        values = dict(values, version=record.version + 1, updated_at=time.time())
        if bump_generation:
            values["generation"] = record.generation + 1
        try:
            with self._tx() as conn:
                revision = self._log_change(
                    conn, record.kind, record.namespace, record.name, MODIFIED
                )
                result = conn.execute(
                    update(objects)
                    .where(self._where_version(record))
                    .values(**values, revision=revision)
                )
                if result.rowcount != 1:
                    raise _Lost
        except _Lost:
            current = self.get(record.kind, record.namespace, record.name)
            if current is None:
                raise NotFoundError(f"{record.kind.lower()} {record.key} not found") from None
            raise ConflictError(
                f"{record.kind.lower()} {record.key} changed since it was read "
                f"(version {record.version}, now {current.version}); read it again and retry"
            ) from None
        return self.require(record.kind, record.namespace, record.name)

    def update_spec(self, record: Record, spec: Mapping[str, Any]) -> Record:
        """Replace the desired state; bumps ``generation`` only if it changed.

        Clearing ``deleting`` (a re-apply cancels a delete) is a change too."""
        changed = _dumps(spec) != _dumps(record.spec) or record.deleting
        return self._cas(record, {"spec": _dumps(spec), "deleting": False}, bump_generation=changed)

    def update_status(self, record: Record, status: Mapping[str, Any]) -> Record:
        return self._cas(record, {"status": _dumps(status)})

    def mark_deleting(self, record: Record) -> Record:
        if record.deleting:
            return record
        return self._cas(record, {"deleting": True}, bump_generation=True)

    def delete(self, record: Record) -> None:
        try:
            with self._tx() as conn:
                self._log_change(conn, record.kind, record.namespace, record.name, DELETED)
                result = conn.execute(delete(objects).where(self._where_version(record)))
                if result.rowcount != 1:
                    raise _Lost
        except _Lost:
            if self.get(record.kind, record.namespace, record.name) is None:
                return  # already gone: deleting twice is not an error
            raise ConflictError(
                f"{record.kind.lower()} {record.key} changed since it was read; not deleted"
            ) from None

    # --- change log -------------------------------------------------------

    def revision(self) -> int:
        """The newest revision (0 before the first write)."""
        with self._tx() as conn:
            return int(conn.execute(select(func.coalesce(func.max(changes.c.id), 0))).scalar_one())

    def oldest_revision(self) -> int:
        """The oldest revision still in the log (0 when the log is empty).

        ``changes(since)`` is complete exactly when ``since >= oldest_revision() - 1``;
        an older ``since`` must list afresh (HTTP 410 Gone)."""
        with self._tx() as conn:
            return int(conn.execute(select(func.coalesce(func.min(changes.c.id), 0))).scalar_one())

    def changes(
        self,
        since: int = 0,
        kinds: set[str] | None = None,
        namespace: str | None = None,
        limit: int = 1000,
    ) -> builtins.list[Change]:
        """Writes after revision ``since``, oldest first, at most ``limit``."""
        query = select(changes).where(changes.c.id > since)
        if kinds is not None:
            query = query.where(changes.c.kind.in_(sorted(kinds)))
        if namespace is not None:
            query = query.where(changes.c.namespace == namespace)
        with self._tx() as conn:
            rows = conn.execute(query.order_by(changes.c.id).limit(limit)).all()
        return [
            Change(int(r.id), r.kind, r.namespace, r.name, r.type, r.ts, r.writer) for r in rows
        ]

    def prune_changes(self, keep: int) -> int:
        """Keep the newest ``keep`` changes (at least one, so that the newest
        revision is never forgotten); returns how many were removed."""
        keep = max(keep, 1)
        with self._tx() as conn:
            newest = conn.execute(select(func.max(changes.c.id))).scalar()
            if newest is None:
                return 0
            return int(
                conn.execute(delete(changes).where(changes.c.id <= int(newest) - keep)).rowcount
            )

    # --- events -----------------------------------------------------------

    def record_event(
        self,
        kind: str,
        namespace: str,
        name: str,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        replica: int | None = None,
        target: str = "",
    ) -> int:
        """Record an event; a repeat of a recent one is folded into it (its
        count grows, its time moves on and it gets a new id, so that
        followers see it again). Returns the event's id."""
        fence = self._fence_now()
        values = {
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "type": "Warning" if warning else "Normal",
            "reason": reason,
            "message": message,
            "replica": -1 if replica is None else replica,
            "target": target,
        }
        for _attempt in range(_FOLD_ATTEMPTS):
            try:
                return self._fold_event(values, fence)
            except _FoldRaced:
                continue  # another writer folded the same repeat first: fold into its row
        raise StoreError(
            f"event {reason} of {kind} {namespace}/{name} kept racing other writers; try again"
        )

    def _fold_event(self, values: dict[str, Any], fence: Fence | None) -> int:
        now = time.time()
        with self._tx() as conn:
            same = conn.execute(
                select(events.c.id, events.c.count, events.c.first_ts, events.c.ts)
                .where(*(events.c[column] == value for column, value in values.items()))
                .where(events.c.ts >= now - self.events_aggregate_seconds)
                .order_by(events.c.id.desc())
                .limit(1)
            ).first()
            count, first = 1, now
            if same is not None:  # (a Row's ``count`` is tuple.count: index it)
                count = int(same._mapping["count"]) + 1
                first = float(same.first_ts or same.ts)  # 0: written before aggregation
            # insert before deleting the repeat, so that the new id is always
            # the highest ever given (a table without AUTOINCREMENT would
            # otherwise hand the deleted newest id out again)
            result = conn.execute(
                insert(events).values(**values, ts=now, count=count, first_ts=first)
            )
            if same is not None:
                gone = conn.execute(delete(events).where(events.c.id == same.id))
                if gone.rowcount == 0:
                    # read before another writer's fold committed (SQLite reads
                    # outside the write transaction): keeping this insert would
                    # leave two rows for one event; roll it back and read again
                    raise _FoldRaced
            self._verify_fence(conn, fence)
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def events(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        limit: int = 100,
        after_id: int | None = None,
        *,
        event_type: str | None = None,
        reason: str | None = None,
        target: str | None = None,
        since: float | None = None,
    ) -> builtins.list[Event]:
        """Events oldest first: the newest ``limit`` ones, or with ``after_id``
        the first ``limit`` after it, so that paging or following misses none.
        ``since``: only those last seen at or after that time (epoch seconds)."""
        query = select(events).where(events.c.id > (after_id or 0))
        filters = {
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "type": event_type,
            "reason": reason,
            "target": target,
        }
        for column, value in filters.items():
            if value is not None:
                query = query.where(events.c[column] == value)
        if since is not None:
            query = query.where(events.c.ts >= since)
        newest_first = after_id is None
        query = query.order_by(events.c.id.desc() if newest_first else events.c.id).limit(limit)
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return [_event(r) for r in (reversed(rows) if newest_first else rows)]

    def prune_events(self, keep: int, *, older_than: float | None = None) -> int:
        """Keep the newest ``keep`` events, and with ``older_than`` (epoch
        seconds) none last seen before it; returns how many were removed."""
        removed = 0
        with self._tx() as conn:
            if older_than is not None:
                removed += int(
                    conn.execute(delete(events).where(events.c.ts < older_than)).rowcount
                )
            newest = conn.execute(
                select(events.c.id).order_by(events.c.id.desc()).offset(keep).limit(1)
            ).scalar()
            if newest is not None:
                removed += int(conn.execute(delete(events).where(events.c.id <= newest)).rowcount)
        return removed

    # --- audit ------------------------------------------------------------

    def record_audit(
        self,
        *,
        ts: float,
        user: str,
        token_id: str,
        verb: str,
        resource: str,
        namespace: str,
        name: str,
        outcome: str,
        status: int,
        message: str,
        remote: str,
    ) -> int:
        """Append one audit entry; returns its id."""
        with self._tx() as conn:
            result = conn.execute(
                insert(audit).values(
                    ts=ts,
                    user=user,
                    token_id=token_id,
                    verb=verb,
                    resource=resource,
                    namespace=namespace,
                    name=name,
                    outcome=outcome,
                    status=status,
                    message=message,
                    remote=remote,
                )
            )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def audit_entries(
        self,
        since_id: int = 0,
        user: str | None = None,
        namespace: str | None = None,
        limit: int = 100,
    ) -> builtins.list[AuditEntry]:
        """Entries oldest first: with ``since_id`` 0 the newest ``limit`` ones,
        otherwise the first ``limit`` after ``since_id`` (to follow the log)."""
        query = select(audit).where(audit.c.id > since_id)
        if user is not None:
            query = query.where(audit.c.user == user)
        if namespace is not None:
            query = query.where(audit.c.namespace == namespace)
        newest = since_id == 0
        query = query.order_by(audit.c.id.desc() if newest else audit.c.id).limit(limit)
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return [
            AuditEntry(
                int(r.id),
                r.ts,
                r.user,
                r.token_id,
                r.verb,
                r.resource,
                r.namespace,
                r.name,
                r.outcome,
                int(r.status),
                r.message,
                r.remote,
            )
            for r in (reversed(rows) if newest else rows)
        ]

    def prune_audit(self, *, keep: int | None = None, older_than: float | None = None) -> int:
        """Remove entries beyond the newest ``keep`` and/or with ``ts`` before
        ``older_than`` (a timestamp); returns how many were removed."""
        removed = 0
        with self._tx() as conn:
            if older_than is not None:
                removed += int(conn.execute(delete(audit).where(audit.c.ts < older_than)).rowcount)
            if keep is not None:
                cut = conn.execute(
                    select(audit.c.id).order_by(audit.c.id.desc()).offset(keep).limit(1)
                ).scalar()
                if cut is not None:
                    removed += int(conn.execute(delete(audit).where(audit.c.id <= cut)).rowcount)
        return removed

    # --- leases -----------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> int | None:
        """Take or renew ``name`` for ``holder`` unless someone else holds it
        unexpired. Returns the fencing token if ``holder`` now holds it (a
        number that grows each time the lease changes hands), else None.

        One conditional UPDATE decides between racers: on PostgreSQL the
        second waits for the first's row lock and re-checks the condition."""
        now = time.time()
        with self._tx() as conn:
            taken = conn.execute(
                update(leases)
                .where(
                    leases.c.name == name,
                    (leases.c.holder == holder) | (leases.c.expires_at < now),
                )
                .values(
                    token=case(
                        (leases.c.holder == holder, leases.c.token), else_=leases.c.token + 1
                    ),
                    holder=holder,
                    expires_at=now + ttl,
                )
                .returning(leases.c.token)
            ).first()
            if taken is not None:
                return int(taken.token)
            exists = conn.execute(select(leases.c.name).where(leases.c.name == name)).first()
            if exists is not None:
                return None
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(leases).values(name=name, holder=holder, expires_at=now + ttl, token=1)
                )
        except IntegrityError:
            return None  # lost the race to another process
        except OperationalError as exc:
            raise StoreError(f"state store error: {exc.orig}") from exc
        return 1

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up (it stays in the table, expired, so that the next
        holder's token is still larger than every earlier one)."""
        with self._tx() as conn:
            conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.holder == holder)
                .values(expires_at=0.0)
            )

    def lease(self, name: str) -> Lease | None:
        """The lease row as stored, expired or not."""
        with self._tx() as conn:
            row = conn.execute(select(leases).where(leases.c.name == name)).first()
        if row is None:
            return None
        return Lease(row.name, row.holder, row.expires_at, int(row.token))

    def lease_holder(self, name: str) -> str | None:
        """The current holder if the lease is unexpired."""
        found = self.lease(name)
        if found is None or found.expires_at < time.time():
            return None
        return found.holder

    def steal_lease(self, name: str, old_holder: str, new_holder: str, ttl: float) -> int | None:
        """Take a lease from a holder known to be dead, if it still holds it;
        returns the new fencing token, or None if the lease moved meanwhile."""
        with self._tx() as conn:
            taken = conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.holder == old_holder)
                .values(holder=new_holder, expires_at=time.time() + ttl, token=leases.c.token + 1)
                .returning(leases.c.token)
            ).first()
        return None if taken is None else int(taken.token)

    def change_token(self) -> tuple[int, ...] | None:
        """Something that differs after any commit by any process, cheaply
        (no query): for SQLite, the database and WAL files' size and mtime.
        None where no such shortcut exists (PostgreSQL: callers query)."""
        if self._path is None:
            return None
        token: list[int] = []
        # plain os.stat on prebuilt strings: this runs on every GET of a
        # workload (the API's read cache), where pathlib cost as much as the
        # two system calls
        for path in self._token_files:
            try:
                st = os.stat(path)  # noqa: PTH116 (see above)
            except OSError:
                token += [0, 0]
            else:
                token += [st.st_mtime_ns, st.st_size]
        return tuple(token)

    def generations(self, kind: str) -> dict[str, int]:
        """``namespace/name`` -> generation for every object of ``kind``.

        A light query (no JSON decoding) that a controller polls to notice
        spec changes written by other processes within a fraction of a second.
        """
        query = select(objects.c.namespace, objects.c.name, objects.c.generation).where(
            objects.c.kind == kind
        )
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return {f"{r.namespace}/{r.name}": int(r.generation) for r in rows}
