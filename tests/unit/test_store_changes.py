"""The change log (global revision), the audit table and the upgrade of
databases written by earlier versions, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text
from tests import store_backends

from portway.errors import ConflictError
from portway.store import Store
from portway.store import sql as store_sql

# every test of this module runs on SQLite and on PostgreSQL
db_url = store_backends.db_url
store = store_backends.store

KIND = "Workload"
NS = "default"


def types(store: Store, since: int = 0) -> list[tuple[str, str, str]]:
    return [(c.kind, c.name, c.type) for c in store.changes(since)]


def test_every_object_write_is_one_change_in_order(store: Store) -> None:
    assert store.revision() == 0
    web = store.create(KIND, NS, "web", {"image": "a"})
    web = store.update_spec(web, {"image": "b"})
    web = store.update_status(web, {"ready": 1})
    web = store.mark_deleting(web)
    store.delete(web)

    assert types(store) == [
        (KIND, "web", "ADDED"),
        (KIND, "web", "MODIFIED"),
        (KIND, "web", "MODIFIED"),
        (KIND, "web", "MODIFIED"),
        (KIND, "web", "DELETED"),
    ]
    revisions = [c.revision for c in store.changes()]
    assert revisions == sorted(revisions) and len(set(revisions)) == 5
    assert store.revision() == revisions[-1]


def test_record_carries_the_revision_of_its_last_write(store: Store) -> None:
    web = store.create(KIND, NS, "web", {})
    assert web.revision == store.revision()
    db = store.create(KIND, NS, "db", {})
    updated = store.update_status(web, {"ready": 1})
    assert web.revision < db.revision < updated.revision == store.revision()
    assert store.require(KIND, NS, "web").revision == updated.revision


def test_revision_is_one_counter_across_kinds_and_namespaces(store: Store) -> None:
    store.create(KIND, "a", "web", {})
    store.create("Replica", "b", "web-0", {})
    store.create("Target", "_cluster", "local", {})
    assert [c.revision for c in store.changes()] == [1, 2, 3]
    assert [c.kind for c in store.changes(kinds={"Replica", "Target"})] == ["Replica", "Target"]
    assert [c.namespace for c in store.changes(namespace="b")] == ["b"]
    assert [c.name for c in store.changes(since=1, limit=1)] == ["web-0"]
    assert store.changes(since=3) == []


def test_failed_writes_leave_no_change(store: Store) -> None:
    stale = store.create(KIND, NS, "web", {})
    store.update_status(stale, {"ready": 1})
    before = store.revision()
    with pytest.raises(ConflictError):
        store.update_status(stale, {"ready": 2})
    with pytest.raises(ConflictError):
        store.delete(stale)
    with pytest.raises(Exception, match="already exists"):
        store.create(KIND, NS, "web", {})
    assert store.revision() == before
    assert len(store.changes()) == 2


def test_changes_are_pruned_to_the_newest_and_oldest_revision_follows(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sql, "PRUNE_EVERY", 10)
    store.changes_keep = 5
    record = store.create(KIND, NS, "web", {})
    for i in range(24):
        record = store.update_status(record, {"n": i})
    # pruned at revision 10 and 20: the log keeps revisions 16..25
    assert store.revision() == 25
    assert store.oldest_revision() == 16
    assert [c.revision for c in store.changes(since=15)][:1] == [16]

    assert store.prune_changes(keep=3) == 7
    assert store.oldest_revision() == 23
    assert store.prune_changes(keep=0) == 2  # the newest revision is always kept
    assert (store.oldest_revision(), store.revision()) == (25, 25)
    store.update_status(record, {"n": "after"})
    assert store.revision() == 26  # revisions never go back after pruning


def test_oldest_revision_of_an_empty_log_is_zero(store: Store) -> None:
    assert (store.revision(), store.oldest_revision()) == (0, 0)
    assert store.prune_changes(keep=10) == 0


# --- audit -------------------------------------------------------------------


def audit(store: Store, **overrides: object) -> int:
    fields: dict[str, object] = {
        "ts": 100.0,
        "user": "alice",
        "token_id": "0123abcd",
        "verb": "create",
        "resource": "workloads",
        "namespace": "team-a",
        "name": "web",
        "outcome": "succeeded",
        "status": 200,
        "message": "",
        "remote": "127.0.0.1:5000",
    }
    fields.update(overrides)
    return store.record_audit(**fields)  # type: ignore[arg-type]


def test_audit_entries_round_trip_oldest_first(store: Store) -> None:
    first = audit(store)
    second = audit(store, user="", token_id="", outcome="denied", status=401, message="no token")
    assert first < second
    entries = store.audit_entries()
    assert [e.id for e in entries] == [first, second]
    assert entries[0].user == "alice" and entries[0].remote == "127.0.0.1:5000"
    assert (entries[1].outcome, entries[1].status, entries[1].message) == (
        "denied",
        401,
        "no token",
    )


def test_audit_filters_limit_and_follow(store: Store) -> None:
    ids = [audit(store, user=u, namespace=n) for u, n in [("a", "x"), ("b", "x"), ("a", "y")]]
    assert [e.id for e in store.audit_entries(user="a")] == [ids[0], ids[2]]
    assert [e.id for e in store.audit_entries(namespace="x")] == ids[:2]
    assert [e.id for e in store.audit_entries(limit=2)] == ids[1:]  # the newest two
    assert [e.id for e in store.audit_entries(since_id=ids[0], limit=1)] == [ids[1]]
    assert store.audit_entries(since_id=ids[2]) == []


def test_audit_pruning_by_count_and_age(store: Store) -> None:
    for ts in (1.0, 2.0, 3.0, 4.0, 5.0):
        audit(store, ts=ts)
    assert store.prune_audit(older_than=2.5) == 2
    assert store.prune_audit(keep=2) == 1
    assert [e.ts for e in store.audit_entries()] == [4.0, 5.0]
    assert store.prune_audit(keep=5, older_than=0.0) == 0


# --- upgrade of old files ----------------------------------------------------

#: the schema portway wrote before revisions, fencing tokens and audit existed
#: (as SQLAlchemy emitted it for SQLite; on PostgreSQL its ids are not SERIAL,
#: which this test does not need: it creates no object)
OLD_SCHEMA = """
CREATE TABLE objects (
    id INTEGER NOT NULL, kind VARCHAR(64) NOT NULL, namespace VARCHAR(64) NOT NULL,
    name VARCHAR(253) NOT NULL, version INTEGER NOT NULL, generation INTEGER NOT NULL,
    spec TEXT NOT NULL, status TEXT NOT NULL, deleting BOOLEAN NOT NULL,
    created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL,
    PRIMARY KEY (id), CONSTRAINT uq_object UNIQUE (kind, namespace, name));
CREATE TABLE events (
    id INTEGER NOT NULL, ts FLOAT NOT NULL, kind VARCHAR(64) NOT NULL,
    namespace VARCHAR(64) NOT NULL, name VARCHAR(253) NOT NULL, type VARCHAR(16) NOT NULL,
    reason VARCHAR(64) NOT NULL, message TEXT NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_events_object ON events (kind, namespace, name);
CREATE TABLE leases (
    name VARCHAR(128) NOT NULL, holder VARCHAR(256) NOT NULL, expires_at FLOAT NOT NULL,
    PRIMARY KEY (name));
INSERT INTO objects VALUES
    (1, 'Workload', 'default', 'web', 3, 2, '{"image":"a"}', '{}', FALSE, 1.0, 2.0);
INSERT INTO events VALUES (1, 1.0, 'Workload', 'default', 'web', 'Normal', 'Applied', 'old');
INSERT INTO leases VALUES ('controller', 'host:1:abc', 5.0);
"""


def test_a_database_of_the_old_schema_is_upgraded_on_open(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            for statement in OLD_SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(text(statement))
    finally:
        engine.dispose()
    store = Store(db_url)
    try:
        old = store.require(KIND, NS, "web")
        assert (old.version, old.generation, old.revision) == (3, 2, 0)
        assert [e.message for e in store.events()] == ["old"]
        lease = store.lease("controller")
        assert lease is not None and lease.token == 0
        assert store.acquire_lease("controller", "new", ttl=10) == 1  # expired: changes hands

        updated = store.update_status(old, {"ready": 1})
        assert updated.revision == store.revision() == 1
        assert audit(store) == 1
        columns = {c["name"] for c in inspect(store._engine).get_columns("objects")}
        assert "revision" in columns
    finally:
        store.close()
    Store(db_url).close()  # a second open finds nothing to do
