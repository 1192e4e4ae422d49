"""Bearer tokens: format, parsing, storage of the hash only, authentication
with expiry and revocation (seen by another process's cache within 1 s),
role bindings, and the bootstrap admin token."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from tests.unit.app_support import offline_settings

from portway.access import tokens
from portway.access.rbac import ALL_NAMESPACES, Binding, Role
from portway.errors import InputError, NotFoundError, UnauthenticatedError
from portway.service import access
from portway.service.app import App


def bearer(token: str) -> str:
    return f"Bearer {token}"


# --- pure token format -------------------------------------------------------------


def test_generated_tokens_parse_back_and_differ() -> None:
    token, parts = tokens.generate()
    assert token.startswith("pw_")
    assert len(parts.token_id) == 8 and int(parts.token_id, 16) >= 0
    assert len(parts.secret) == 43  # 32 bytes, URL-safe base64 without padding
    assert tokens.parse(token) == parts
    assert tokens.generate()[0] != token
    assert parts.secret not in repr(parts)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer   ",
        "Basic dXNlcjpwYXNz",
        "Bearer pw_nothex00_" + "a" * 43,
        "Bearer pw_0123abcd_short",
        "Bearer pw_0123abcd_" + "a" * 44,
        "Bearer pw_0123abcd_" + "a" * 42 + "!",
        "Bearer xx_0123abcd_" + "a" * 43,
        "Bearer pw_0123ABCD_" + "a" * 43,
        "Bearer pw_0123abcd_" + "a" * 43 + " extra",
    ],
)
def test_malformed_authorization_is_unauthenticated_without_echo(header: str | None) -> None:
    with pytest.raises(UnauthenticatedError) as refused:
        tokens.parse_authorization(header)
    assert refused.value.exit_code == 4
    if header:
        for part in header.split():
            if part.lower() != "bearer":
                assert part not in str(refused.value)


def test_hash_is_sha256_hex_and_compare_is_exact() -> None:
    digest = tokens.hash_secret("s3cret")
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert tokens.secret_matches("s3cret", digest)
    assert not tokens.secret_matches("s3cres", digest)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("30m", 1800.0), ("24h", 86400.0), ("7d", 604800.0), ("never", None)],
)
def test_parse_ttl(text: str, seconds: float | None) -> None:
    assert tokens.parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "1w", "-5m", "0s", "1.5h", "h"])
def test_parse_ttl_rejects_with_the_flag(text: str) -> None:
    with pytest.raises(InputError, match=r"--ttl .*expected a positive duration"):
        tokens.parse_ttl(text)


def test_expiry_boundary() -> None:
    assert not tokens.is_expired(None, 1e12)
    assert not tokens.is_expired(100.0, 99.9)
    assert tokens.is_expired(100.0, 100.0)


# --- service: tokens and authentication --------------------------------------------


def test_create_and_authenticate(app: App) -> None:
    token, info = access.create_token(
        app, "alice", "ci-bot", None, [("deployer", "team-a"), ("viewer", "team-b")]
    )
    who = access.authenticate(app, bearer(token))
    assert (who.user, who.token_id, who.token_name) == ("alice", info.id, "ci-bot")
    assert set(who.bindings) == {
        Binding("alice", Role.DEPLOYER, "team-a"),
        Binding("alice", Role.VIEWER, "team-b"),
    }
    assert info.expires_at is None and not info.revoked
    listed = access.list_tokens(app)
    assert [t.id for t in listed] == [info.id]
    assert "hash" not in listed[0].to_json()
    assert listed[0].to_json()["bindings"] == [
        {"role": "deployer", "namespace": "team-a"},
        {"role": "viewer", "namespace": "team-b"},
    ]


def test_wrong_secret_with_right_id_looks_like_an_unknown_token(app: App) -> None:
    token, info = access.create_token(app, "alice")
    other_secret = tokens.generate()[1].secret
    with pytest.raises(UnauthenticatedError) as wrong:
        access.authenticate(app, bearer(f"pw_{info.id}_{other_secret}"))
    unknown_id = "00000000" if info.id != "00000000" else "00000001"
    with pytest.raises(UnauthenticatedError) as unknown:
        access.authenticate(app, bearer(f"pw_{unknown_id}_{other_secret}"))
    assert str(wrong.value) == str(unknown.value) == tokens.INVALID
    assert access.authenticate(app, bearer(token)).user == "alice"  # still valid


class FakeClock:
    """Stands in for the ``time`` module inside ``portway.service.access``."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.mono = 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


def test_expired_token_is_refused_even_while_cached(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(access, "time", clock)
    token, info = access.create_token(app, "alice", ttl_seconds=0.3)
    assert info.expires_at == clock.now + 0.3
    assert access.authenticate(app, bearer(token)).user == "alice"  # cached now
    clock.advance(0.29)
    assert access.authenticate(app, bearer(token)).user == "alice"
    clock.advance(0.01)  # expiry comes before the cache's 0.5 s are up
    with pytest.raises(UnauthenticatedError, match="has expired"):
        access.authenticate(app, bearer(token))
    [listed] = access.list_tokens(app)
    assert listed.expired(clock.now) and not listed.expired(clock.now - 0.01)


def test_cache_is_reused_for_half_a_second_only(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(access, "time", clock)
    token, info = access.create_token(app, "alice")
    access.authenticate(app, bearer(token))
    # a change made behind the cache's back (as another process would)
    record = app.store.require(access.KIND_TOKEN, "_cluster", info.id)
    app.store.update_spec(record, {**record.spec, "revoked": True})
    clock.advance(access.AUTH_CACHE_SECONDS - 0.01)
    assert access.authenticate(app, bearer(token)).user == "alice"  # still cached
    clock.advance(0.01)
    with pytest.raises(UnauthenticatedError, match="was revoked"):
        access.authenticate(app, bearer(token))


def test_revocation_reaches_another_process_cache_within_one_second(tmp_path: Path) -> None:
    server = App(offline_settings(tmp_path))
    admin_cli = App(offline_settings(tmp_path))  # another process: its own cache
    try:
        token, info = access.create_token(admin_cli, "alice", "ci", None, [("viewer", "team-a")])
        assert access.authenticate(server, bearer(token)).user == "alice"  # cached there
        access.revoke_token(admin_cli, info.id)
        revoked_at = time.monotonic()
        while True:
            try:
                access.authenticate(server, bearer(token))
            except UnauthenticatedError as exc:
                assert "was revoked" in str(exc)
                break
            assert time.monotonic() - revoked_at < 1.0, "revoked token still accepted after 1 s"
            time.sleep(0.02)
    finally:
        server.close()
        admin_cli.close()


def test_revocation_in_the_same_process_is_immediate(app: App) -> None:
    token, info = access.create_token(app, "alice")
    access.authenticate(app, bearer(token))
    access.revoke_token(app, info.id)
    with pytest.raises(UnauthenticatedError, match="was revoked"):
        access.authenticate(app, bearer(token))
    assert access.revoke_token(app, info.id).revoked  # twice is fine
    with pytest.raises(NotFoundError, match="token ffffffff not found"):
        access.revoke_token(app, "ffffffff")


def test_binding_changes_reach_authenticated_principals(app: App) -> None:
    token, _ = access.create_token(app, "alice")
    assert access.authenticate(app, bearer(token)).bindings == ()
    access.bind(app, "alice", "admin", ALL_NAMESPACES)
    assert access.authenticate(app, bearer(token)).is_cluster_admin
    access.unbind(app, "alice", Role.ADMIN, ALL_NAMESPACES)
    assert access.authenticate(app, bearer(token)).bindings == ()


def test_only_the_hash_is_stored(tmp_path: Path) -> None:
    app = App(offline_settings(tmp_path))
    token, _ = access.create_token(app, "alice", "ci", 3600, [("deployer", "team-a")])
    secret = tokens.parse(token).secret
    app.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert raw.count(token.encode()) == 0
    assert raw.count(secret.encode()) == 0
    assert raw.count(tokens.hash_secret(secret).encode()) >= 1  # the file searched holds it


def test_bindings_are_validated_before_anything_is_written(app: App) -> None:
    with pytest.raises(InputError, match=r"--namespace 'Team_A'"):
        access.create_token(app, "alice", None, None, [("viewer", "ok"), ("viewer", "Team_A")])
    with pytest.raises(InputError, match=r"--role 'root'"):
        access.create_token(app, "alice", None, None, [("root", "team-a")])
    with pytest.raises(InputError, match=r"--user 'Alice'"):
        access.create_token(app, "Alice")
    with pytest.raises(InputError, match=r"--name 'a b'"):
        access.create_token(app, "alice", "a b")
    assert access.list_tokens(app) == []
    assert access.list_bindings(app) == []


def test_bind_is_idempotent_and_listable(app: App) -> None:
    assert access.bind(app, "bob", "viewer", "team-a")[1] is True
    assert access.bind(app, "bob", "viewer", "team-a")[1] is False
    access.bind(app, "bob", "admin", "*")
    access.bind(app, "carol", "deployer", "team-a")
    assert {b.subject for b in access.list_bindings(app, namespace="team-a")} == {"bob", "carol"}
    assert [b.role for b in access.list_bindings(app, user="bob", namespace="*")] == [Role.ADMIN]
    assert app.store.get(access.KIND_ROLE_BINDING, "_cluster", "bob.admin.all") is not None
    with pytest.raises(NotFoundError, match="user bob has no role deployer in namespace team-a"):
        access.unbind(app, "bob", "deployer", "team-a")


# --- bootstrap ---------------------------------------------------------------------


def test_bootstrap_admin_token_once_mode_0600(app: App, tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = access.bootstrap_admin(app, home)
    assert path == home / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    who = access.authenticate(app, bearer(path.read_text().strip()))
    assert who.user == "admin" and who.is_cluster_admin
    assert access.bootstrap_admin(app, home) is None  # a second start: nothing new
    assert len(access.list_tokens(app)) == 1


def test_bootstrap_skipped_when_tokens_exist(app: App, tmp_path: Path) -> None:
    access.create_token(app, "alice")
    assert access.bootstrap_admin(app, tmp_path / "home") is None
    assert not (tmp_path / "home" / "admin.token").exists()


def test_secret_file_narrows_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "tok"
    path.write_text("old")
    path.chmod(0o644)
    access.write_secret_file(path, "pw_x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "pw_x\n"
