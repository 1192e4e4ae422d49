"""The store's tables, and the small upgrade step for databases made by
earlier versions (tables and columns added since are created on open).

Columns added after the first release carry a ``server_default`` so that
``ALTER TABLE … ADD COLUMN`` can fill existing rows; ``upgrade`` adds exactly
those, nothing is ever dropped or renamed.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.schema import CreateColumn

metadata = MetaData()

#: 64-bit ids on PostgreSQL; SQLite needs plain INTEGER for its rowid alias
_Id = BigInteger().with_variant(Integer(), "sqlite")

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
    # the global revision of the object's last write (0: written before revisions existed)
    Column("revision", _Id, nullable=False, server_default=text("0")),
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
    # the replica index the event is about (-1: the whole object)
    Column("replica", Integer, nullable=False, server_default=text("-1")),
    # the target the event happened on ("" when none)
    Column("target", String(253), nullable=False, server_default=text("''")),
    # repeats of one event are one row: how many, and when the first was
    # (``ts`` is the last; 0 in rows written before aggregation existed)
    Column("count", Integer, nullable=False, server_default=text("1")),
    Column("first_ts", Float, nullable=False, server_default=text("0")),
    Index("ix_events_object", "kind", "namespace", "name"),
    # AUTOINCREMENT: an id is never reused, so a follower resuming after an
    # id never misses an event (databases made before keep their table)
    sqlite_autoincrement=True,
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(256), nullable=False),
    Column("expires_at", Float, nullable=False),
    # fencing token: bumped each time the lease changes hands
    Column("token", _Id, nullable=False, server_default=text("0")),
)

#: one row per object write; id is the global revision (AUTOINCREMENT so that
#: SQLite never reuses an id after pruning)
changes = Table(
    "changes",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("namespace", String(64), nullable=False),
    Column("name", String(253), nullable=False),
    Column("type", String(16), nullable=False),  # ADDED | MODIFIED | DELETED
    Column("ts", Float, nullable=False),
    # the lease holder whose fenced write this was ("" for unfenced writers)
    Column("writer", String(256), nullable=False, server_default=text("''")),
    sqlite_autoincrement=True,
)

audit = Table(
    "audit",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("user", String(256), nullable=False),
    Column("token_id", String(64), nullable=False),
    Column("verb", String(32), nullable=False),
    Column("resource", String(64), nullable=False),
    Column("namespace", String(64), nullable=False),
    Column("name", String(253), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("remote", String(256), nullable=False),
    Index("ix_audit_user", "user"),
    Index("ix_audit_namespace", "namespace"),
    sqlite_autoincrement=True,
)


def upgrade(engine: Engine) -> list[str]:
    """Create missing tables and add missing columns; returns what was added
    (``table.column``) so that callers may log it."""
    metadata.create_all(engine)
    added: list[str] = []
    existing = inspect(engine)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in existing.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in present]
        if not missing:
            continue
        with engine.begin() as conn:
            for column in missing:
                if column.server_default is None:
                    raise RuntimeError(f"column {table.name}.{column.name} has no default")
                ddl = CreateColumn(column).compile(dialect=engine.dialect)
                preparer = engine.dialect.identifier_preparer
                conn.execute(text(f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN {ddl}"))
                added.append(f"{table.name}.{column.name}")
    return added
