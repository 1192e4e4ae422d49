"""The audit log service over the store's audit table."""

from __future__ import annotations

import pytest

from portway.access.rbac import Binding, Principal, Role
from portway.errors import InputError
from portway.service import auditlog
from portway.service.app import App
from portway.service.auditlog import AuditFilter, AuditRecord, Outcome

ALICE = Principal("alice", "0123abcd", "ci", (Binding("alice", Role.DEPLOYER, "team-a"),))


def test_entries_round_trip_with_principal_and_outcomes(app: App) -> None:
    first = auditlog.record(
        app,
        AuditRecord.by(
            ALICE, "create", "workloads", Outcome.SUCCEEDED, 200,
            namespace="team-a", name="web", remote="127.0.0.1:5000",
        ),
    )  # fmt: skip
    denied = auditlog.record(
        app,
        AuditRecord.by(
            ALICE, "delete", "workloads", Outcome.DENIED, 403,
            namespace="team-b", name="db", message="may not delete workloads",
        ),
    )  # fmt: skip
    anonymous = auditlog.record(
        app, AuditRecord.by(None, "create", "workloads", Outcome.DENIED, 401, message="no token")
    )
    assert first < denied < anonymous
    got = auditlog.entries(app)
    assert [e.id for e in got] == [first, denied, anonymous]  # oldest first
    assert auditlog.entry_json(got[0]) == {
        "id": first,
        "ts": got[0].ts,
        "user": "alice",
        "tokenId": "0123abcd",
        "verb": "create",
        "resource": "workloads",
        "namespace": "team-a",
        "name": "web",
        "outcome": "succeeded",
        "status": 200,
        "message": "",
        "remote": "127.0.0.1:5000",
    }
    assert (got[1].outcome, got[1].status, got[1].namespace) == ("denied", 403, "team-b")
    assert (got[2].user, got[2].token_id, got[2].status) == ("", "", 401)


def test_filters_limit_and_follow(app: App) -> None:
    for i in range(6):
        who = ALICE if i % 2 == 0 else None
        auditlog.record(
            app,
            AuditRecord.by(
                who, "update", "workloads", Outcome.FAILED, 422,
                namespace="team-a" if i < 3 else "team-b", name=f"w{i}",
            ),
        )  # fmt: skip
    assert [e.name for e in auditlog.entries(app, AuditFilter(user="alice"))] == ["w0", "w2", "w4"]
    assert [e.name for e in auditlog.entries(app, AuditFilter(namespace="team-b"))] == [
        "w3",
        "w4",
        "w5",
    ]
    newest = auditlog.entries(app, AuditFilter(limit=2))
    assert [e.name for e in newest] == ["w4", "w5"]  # the newest two, oldest first
    after = auditlog.entries(app, AuditFilter(since_id=newest[0].id - 2, limit=2))
    assert [e.name for e in after] == ["w3", "w4"]  # following from an id


@pytest.mark.parametrize("limit", [0, -1, 10_001])
def test_limit_out_of_range_names_the_flag(app: App, limit: int) -> None:
    with pytest.raises(InputError, match=rf"--limit {limit}: expected a number from 1 to 10000"):
        auditlog.entries(app, AuditFilter(limit=limit))


def test_long_messages_are_cut(app: App) -> None:
    auditlog.record(
        app, AuditRecord("create", "workloads", Outcome.FAILED, 422, message="x" * 5000)
    )
    [entry] = auditlog.entries(app)
    assert len(entry.message) == auditlog.MESSAGE_MAX
    assert entry.message.endswith("…")


def test_local_user_is_marked_local() -> None:
    assert auditlog.local_user().startswith("local:")
