"""Desired and observed state in one SQL database (SQLite file by default).

Every object has a ``version``; every write names the version it read and
fails with ``ConflictError`` if another writer got there first (compare and
swap), like etcd's resourceVersion. ``generation`` counts changes of the
desired part (``spec``) only, so a status write never looks like a new spec.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    delete,
    event,
    insert,
    make_url,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from portway.errors import AlreadyExistsError, ConflictError, NotFoundError, StoreError

metadata = MetaData()

objects = Table(
    "objects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("namespace", String(64), nullable=False),
    Column("name", String(253), nullable=False),
    Column("version", Integer, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("spec", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("deleting", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("kind", "namespace", "name", name="uq_object"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("namespace", String(64), nullable=False),
    Column("name", String(253), nullable=False),
    Column("type", String(16), nullable=False),  # Normal | Warning
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_events_object", "kind", "namespace", "name"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(256), nullable=False),
    Column("expires_at", Float, nullable=False),
)


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
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the CLI read while the controller writes; busy_timeout makes a
    # second writer wait for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Store:
    """Thread-safe; one instance per process is enough."""

    def __init__(self, url: str) -> None:
        self.url = url
        database = make_url(url).database if url.startswith("sqlite") else None
        self._path = database if database and database != ":memory:" else None
        try:
            if url.startswith("sqlite"):
                self._engine: Engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30}
                )
                event.listen(self._engine, "connect", _sqlite_pragmas)
            else:
                self._engine = create_engine(url, pool_pre_ping=True)
            metadata.create_all(self._engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the state store at {url}: {exc}") from exc

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except (IntegrityError, OperationalError) as exc:
            raise StoreError(f"state store error: {exc.orig}") from exc

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
                    )
                )
        except IntegrityError as exc:
            raise AlreadyExistsError(f"{kind.lower()} {namespace}/{name} already exists") from exc
        except OperationalError as exc:
            raise StoreError(f"state store error: {exc.orig}") from exc
        return self.require(kind, namespace, name)

    def _cas(
        self, record: Record, values: dict[str, Any], *, bump_generation: bool = False
    ) -> Record:
        values = dict(values, version=record.version + 1, updated_at=time.time())
        if bump_generation:
            values["generation"] = record.generation + 1
        where = and_(
            objects.c.kind == record.kind,
            objects.c.namespace == record.namespace,
            objects.c.name == record.name,
            objects.c.version == record.version,
        )
        with self._tx() as conn:
            result = conn.execute(update(objects).where(where).values(**values))
        if result.rowcount != 1:
            current = self.get(record.kind, record.namespace, record.name)
            if current is None:
                raise NotFoundError(f"{record.kind.lower()} {record.key} not found")
            raise ConflictError(
                f"{record.kind.lower()} {record.key} changed since it was read "
                f"(version {record.version}, now {current.version}); read it again and retry"
            )
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
        with self._tx() as conn:
            result = conn.execute(
                delete(objects).where(
                    objects.c.kind == record.kind,
                    objects.c.namespace == record.namespace,
                    objects.c.name == record.name,
                    objects.c.version == record.version,
                )
            )
        if result.rowcount != 1:
            if self.get(record.kind, record.namespace, record.name) is None:
                return  # already gone: deleting twice is not an error
            raise ConflictError(
                f"{record.kind.lower()} {record.key} changed since it was read; not deleted"
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
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                insert(events).values(
                    ts=time.time(),
                    kind=kind,
                    namespace=namespace,
                    name=name,
                    type="Warning" if warning else "Normal",
                    reason=reason,
                    message=message,
                )
            )

    def events(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> builtins.list[Event]:
        """Events oldest first: the newest ``limit`` ones, or with ``after_id``
        the first ``limit`` after it, so that paging or following misses none."""
        query = select(events).where(events.c.id > (after_id or 0))
        if kind is not None:
            query = query.where(events.c.kind == kind)
        if namespace is not None:
            query = query.where(events.c.namespace == namespace)
        if name is not None:
            query = query.where(events.c.name == name)
        newest_first = after_id is None
        query = query.order_by(events.c.id.desc() if newest_first else events.c.id).limit(limit)
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return [
            Event(r.id, r.ts, r.kind, r.namespace, r.name, r.type, r.reason, r.message)
            for r in (reversed(rows) if newest_first else rows)
        ]

    def prune_events(self, keep: int) -> int:
        """Keep the newest ``keep`` events; returns how many were removed."""
        with self._tx() as conn:
            newest = conn.execute(
                select(events.c.id).order_by(events.c.id.desc()).offset(keep).limit(1)
            ).scalar()
            if newest is None:
                return 0
            return conn.execute(delete(events).where(events.c.id <= newest)).rowcount

    # --- leases -----------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew ``name`` for ``holder`` unless someone else holds it
        unexpired. Returns whether ``holder`` now holds it."""
        now = time.time()
        with self._tx() as conn:
            taken = conn.execute(
                update(leases)
                .where(
                    leases.c.name == name,
                    (leases.c.holder == holder) | (leases.c.expires_at < now),
                )
                .values(holder=holder, expires_at=now + ttl)
            ).rowcount
            if taken == 1:
                return True
            exists = conn.execute(select(leases.c.name).where(leases.c.name == name)).first()
            if exists is not None:
                return False
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(leases).values(name=name, holder=holder, expires_at=now + ttl))
        except IntegrityError:
            return False  # lost the race to another process
        return True

    def release_lease(self, name: str, holder: str) -> None:
        with self._tx() as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))

    def lease_holder(self, name: str) -> str | None:
        """The current holder if the lease is unexpired."""
        with self._tx() as conn:
            row = conn.execute(select(leases).where(leases.c.name == name)).first()
        if row is None or row.expires_at < time.time():
            return None
        return str(row.holder)

    def steal_lease(self, name: str, old_holder: str, new_holder: str, ttl: float) -> bool:
        """Take a lease from a holder known to be dead, if it still holds it."""
        with self._tx() as conn:
            taken = conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.holder == old_holder)
                .values(holder=new_holder, expires_at=time.time() + ttl)
            ).rowcount
        return bool(taken == 1)

    def change_token(self) -> tuple[int, ...] | None:
        """Something that differs after any commit by any process, cheaply
        (no query): for SQLite, the database and WAL files' size and mtime.
        None where no such shortcut exists (then callers query)."""
        if self._path is None:
            return None
        token: list[int] = []
        for suffix in ("", "-wal"):
            try:
                st = Path(f"{self._path}{suffix}").stat()
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
