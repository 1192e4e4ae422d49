"""``portway token``, ``portway rolebinding`` and ``portway audit-log`` in
process (typer's runner) on a private store."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from portway.access.rbac import Principal
from portway.cli.main import app
from portway.errors import UnauthenticatedError
from portway.service import access
from portway.service.app import App, Settings


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PORTWAY_HOME", str(tmp_path))
    monkeypatch.setenv("PORTWAY_DOCKER_SOCKET", str(tmp_path / "no-docker.sock"))
    monkeypatch.setenv("PORTWAY_LOCAL_WASM", "0")
    monkeypatch.delenv("PORTWAY_STORE", raising=False)
    monkeypatch.delenv("PORTWAY_CONTEXT", raising=False)
    monkeypatch.setenv("PORTWAY_CONFIG", str(tmp_path / "no-config.yaml"))
    return CliRunner()


def _authenticate(tmp_path: Path, token: str) -> Principal:
    service = App(Settings(home=tmp_path, docker_socket=str(tmp_path / "no.sock")))
    try:
        return access.authenticate(service, f"Bearer {token}")
    finally:
        service.close()


def test_token_create_prints_the_token_once_and_it_works(runner: CliRunner, tmp_path: Path) -> None:
    made = runner.invoke(
        app,
        ["token", "create", "--user", "alice", "--role", "deployer", "--namespace", "team-a",
         "-r", "viewer", "-n", "team-b", "--ttl", "24h", "--name", "ci"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    [token] = made.stdout.split()  # stdout holds the token alone
    assert token.startswith("pw_")
    assert "only time the token is shown" in made.stderr
    who = _authenticate(tmp_path, token)
    assert who.user == "alice" and who.token_name == "ci"
    assert {(b.role.value, b.namespace) for b in who.bindings} == {
        ("deployer", "team-a"),
        ("viewer", "team-b"),
    }

    listed = runner.invoke(app, ["token", "ls", "-o", "json"])
    assert listed.exit_code == 0, listed.output
    [item] = json.loads(listed.stdout)["items"]
    assert token not in listed.stdout and "hash" not in item
    assert (item["name"], item["user"], item["revoked"]) == ("ci", "alice", False)
    assert item["expiresAt"] == pytest.approx(item["createdAt"] + 86400)

    table = runner.invoke(app, ["token", "ls"])
    [row] = [line.split() for line in table.stdout.splitlines() if line.startswith(item["id"])]
    assert row[1:4] == ["ci", "alice", "active"]
    assert row[-1] == "deployer@team-a,viewer@team-b"


def test_token_out_file_is_0600_and_revoke(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "ci.token"
    made = runner.invoke(
        app,
        ["token", "create", "-u", "ci-team-a", "-r", "deployer", "-n", "team-a", "--out", str(out)],
    )
    assert made.exit_code == 0, made.output
    assert made.stdout == ""  # nothing on stdout when written to a file
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    token = out.read_text().strip()
    token_id = token.split("_")[1]
    assert _authenticate(tmp_path, token).user == "ci-team-a"

    revoked = runner.invoke(app, ["token", "revoke", token_id])
    assert revoked.exit_code == 0, revoked.output
    assert f"token/{token_id} (ci-team-a, user ci-team-a) revoked" in revoked.stdout
    with pytest.raises(UnauthenticatedError):
        _authenticate(tmp_path, token)
    assert "revoked" in runner.invoke(app, ["token", "ls"]).stdout

    missing = runner.invoke(app, ["token", "revoke", "deadbeef"])
    assert missing.exit_code == 3
    assert "token deadbeef not found" in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-r", "viewer"], "--role given 1 time(s) and --namespace 0 time(s)"),
        (
            ["-r", "owner", "-n", "team-a"],
            "--role 'owner': expected one of viewer, deployer, admin",
        ),
        (["-r", "viewer", "-n", "Team A"], "--namespace 'Team A'"),
        (["--ttl", "soon"], "--ttl soon: expected a positive duration"),
    ],
)
def test_token_create_bad_flags(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["token", "create", "-u", "alice", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert json.loads(runner.invoke(app, ["token", "ls", "-o", "json"]).stdout)["items"] == []


def test_rolebinding_create_ls_delete(runner: CliRunner) -> None:
    made = runner.invoke(app, ["rolebinding", "create", "-u", "bob", "-r", "admin", "-n", "*"])
    assert made.exit_code == 0, made.output
    assert "rolebinding/bob.admin.* created" in made.stdout
    again = runner.invoke(app, ["rolebinding", "create", "-u", "bob", "-r", "admin", "-n", "*"])
    assert "unchanged" in again.stdout
    runner.invoke(app, ["rolebinding", "create", "-u", "bob", "-r", "viewer", "-n", "team-a"])

    listed = json.loads(runner.invoke(app, ["rolebinding", "ls", "-o", "json"]).stdout)["items"]
    assert {(b["user"], b["role"], b["namespace"]) for b in listed} == {
        ("bob", "admin", "*"),
        ("bob", "viewer", "team-a"),
    }
    only = runner.invoke(app, ["rolebinding", "ls", "-n", "team-a"]).stdout
    assert "viewer" in only and "admin" not in only

    gone = runner.invoke(app, ["rolebinding", "delete", "-u", "bob", "-r", "admin", "-n", "*"])
    assert gone.exit_code == 0 and "deleted" in gone.stdout
    again_gone = runner.invoke(
        app, ["rolebinding", "delete", "-u", "bob", "-r", "admin", "-n", "*"]
    )
    assert again_gone.exit_code == 3
    assert "user bob has no role admin in every namespace" in again_gone.stderr


def test_audit_log_shows_local_changes(runner: CliRunner) -> None:
    runner.invoke(app, ["token", "create", "-u", "alice", "-r", "viewer", "-n", "team-a"])
    runner.invoke(app, ["rolebinding", "create", "-u", "bob", "-r", "deployer", "-n", "team-b"])
    result = runner.invoke(app, ["audit-log", "-o", "json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert [(e["verb"], e["resource"], e["outcome"]) for e in items] == [
        ("create", "tokens", "succeeded"),
        ("create", "rolebindings", "succeeded"),
    ]
    assert all(e["user"].startswith("local:") and e["remote"] == "local" for e in items)
    assert "viewer in team-a" in items[0]["message"]

    by_ns = json.loads(runner.invoke(app, ["audit-log", "-n", "team-b", "-o", "json"]).stdout)
    assert [e["resource"] for e in by_ns["items"]] == ["rolebindings"]
    assert runner.invoke(app, ["audit-log", "--limit", "1"]).stdout.count("local:") == 1
    bad = runner.invoke(app, ["audit-log", "--limit", "0"])
    assert bad.exit_code == 2 and "--limit 0" in bad.stderr
