"""CLI contexts: the config file (0600, atomic), which context is active
(--context > PORTWAY_CONTEXT > current), the context commands, and the
errors a user meets (unknown context, unreadable token, unreachable server,
a local-only command while a context is in use)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from portway.cli.main import app
from portway.client.config import (
    Context,
    ContextConfig,
    check_server,
    load_config,
    save_config,
)
from portway.errors import InputError


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PORTWAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PORTWAY_DOCKER_SOCKET", str(tmp_path / "no-docker.sock"))
    monkeypatch.setenv("PORTWAY_CONFIG", str(tmp_path / "cfg" / "config.yaml"))
    monkeypatch.delenv("PORTWAY_CONTEXT", raising=False)
    monkeypatch.delenv("PORTWAY_STORE", raising=False)
    token = tmp_path / "t.token"
    token.write_text("pw_0123abcd_secret\n")
    token.chmod(0o600)
    return tmp_path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


def test_save_is_0600_and_round_trips(env: Path) -> None:
    config = ContextConfig().with_context(
        Context("prod", "https://127.0.0.1:8443", env / "t.token", env / "ca.pem")
    )
    path = save_config(config.using("prod"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config() == config.using("prod")
    raw = yaml.safe_load(path.read_text())
    assert raw == {
        "current": "prod",
        "contexts": {
            "prod": {
                "server": "https://127.0.0.1:8443",
                "tokenFile": str(env / "t.token"),
                "caFile": str(env / "ca.pem"),
            }
        },
    }
    assert "pw_0123abcd" not in path.read_text()  # the file names the token, never holds it


def test_active_context_precedence(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = (
        ContextConfig()
        .with_context(Context("a", "http://127.0.0.1:1", env / "t.token"))
        .with_context(Context("b", "http://127.0.0.1:2", env / "t.token"))
        .using("a")
    )
    assert config.active() is not None and config.active().name == "a"  # type: ignore[union-attr]
    monkeypatch.setenv("PORTWAY_CONTEXT", "b")
    assert config.active().name == "b"  # type: ignore[union-attr]
    assert config.active("a").name == "a"  # type: ignore[union-attr]
    assert config.active("local") is None
    monkeypatch.setenv("PORTWAY_CONTEXT", "local")
    assert config.active() is None
    monkeypatch.setenv("PORTWAY_CONTEXT", "nope")
    with pytest.raises(InputError, match=r"no context named 'nope' \(known: a, b\)"):
        config.active()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[1, 2]", "expected a mapping"),
        ("contexts: {x: {server: 5, tokenFile: f}}", "contexts.x.server: expected a URL string"),
        ("contexts: {x: {server: 'http://h'}}", "contexts.x.tokenFile: expected a file path"),
        ("contexts: {x: {server: 'http://h', tokenFile: f, insecure: 2}}", "contexts.x.insecure"),
        ("current: [a]", "current: expected a context name or null"),
        ("a: [", "not valid YAML"),
    ],
)
def test_bad_config_file_names_the_field(env: Path, text: str, where: str) -> None:
    path = Path(os.environ["PORTWAY_CONFIG"])
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config()
    assert where in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    "url", ["ftp://h", "127.0.0.1:8443", "http://", "https://h/v1", "https://h?x=1"]
)
def test_server_url_is_checked(url: str) -> None:
    with pytest.raises(InputError, match="--server"):
        check_server(url)


def test_context_commands(env: Path) -> None:
    runner = CliRunner()
    token = str(env / "t.token")
    added = runner.invoke(
        app,
        ["context", "add", "prod", "--server", "https://cp.example:8443/", "--token-file", token],
    )
    assert added.exit_code == 0, added.output
    assert "context/prod added (https://cp.example:8443)" in added.output
    runner.invoke(
        app, ["context", "add", "dev", "--server", "http://127.0.0.1:9", "--token-file", token]
    )
    assert runner.invoke(app, ["context", "current"]).output.strip() == "local"

    used = runner.invoke(app, ["context", "use", "prod"])
    assert used.exit_code == 0 and "now using context prod" in used.output
    listing = runner.invoke(app, ["context", "ls"])
    marked = [line.split() for line in listing.output.splitlines() if line.startswith("*")]
    assert marked == [["*", "prod", "https://cp.example:8443", token, "system", "CAs"]]
    assert "prod (https://cp.example:8443" in runner.invoke(app, ["context", "current"]).output
    # --context picks another for one command
    assert runner.invoke(app, ["--context", "dev", "context", "current"]).output.startswith("dev ")

    assert runner.invoke(app, ["context", "rm", "prod"]).exit_code == 0
    assert runner.invoke(app, ["context", "current"]).output.strip() == "local"
    assert load_config().current is None and set(load_config().contexts) == {"dev"}
    assert stat.S_IMODE(Path(os.environ["PORTWAY_CONFIG"]).stat().st_mode) == 0o600

    runner.invoke(app, ["context", "use", "dev"])
    back = runner.invoke(app, ["context", "use", "--local"])
    assert back.exit_code == 0 and load_config().current is None


def test_context_errors(env: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(
        app,
        ["context", "add", "x", "--server", "http://127.0.0.1:1", "--token-file", str(env / "no")],
    )
    assert missing.exit_code == 2
    assert "cannot read token file" in missing.output and "No such file" in missing.output
    bad_name = runner.invoke(
        app,
        ["context", "add", "Prod!", "--server", "http://h", "--token-file", str(env / "t.token")],
    )
    assert bad_name.exit_code == 2 and "context name 'Prod!'" in bad_name.output
    unknown = runner.invoke(app, ["context", "use", "ghost"])
    assert unknown.exit_code == 2
    assert "no context named 'ghost'" in unknown.output and "context add ghost" in unknown.output
    assert runner.invoke(app, ["context", "rm", "ghost"]).exit_code == 2
    assert runner.invoke(app, ["context", "use"]).exit_code == 2
    unknown_flag = runner.invoke(app, ["--context", "ghost", "get", "workloads"])
    assert unknown_flag.exit_code == 2 and "no context named 'ghost'" in unknown_flag.output


def test_unreadable_token_at_use_time(env: Path) -> None:
    runner = CliRunner()
    token = env / "t.token"
    runner.invoke(
        app,
        [
            "context",
            "add",
            "x",
            "--use",
            "--server",
            "http://127.0.0.1:1",
            "--token-file",
            str(token),
        ],
    )
    token.unlink()
    result = runner.invoke(app, ["get", "workloads"])
    assert result.exit_code == 2
    assert f"context 'x': cannot read token file {token}" in result.output


def test_unreachable_server_says_how_to_go_local(env: Path) -> None:
    runner = CliRunner()
    port = _closed_port()
    runner.invoke(
        app,
        [
            "context",
            "add",
            "x",
            "--use",
            "--server",
            f"http://127.0.0.1:{port}",
            "--token-file",
            str(env / "t.token"),
        ],
    )
    result = runner.invoke(app, ["get", "workloads"])
    assert result.exit_code == 1
    assert (
        f"cannot reach http://127.0.0.1:{port}: connection refused; "
        "`portway context use --local` for the embedded store"
    ) in result.output
    # the embedded store is still one flag away
    local = runner.invoke(app, ["--context", "local", "get", "workloads"])
    assert local.exit_code == 0, local.output


@pytest.mark.parametrize(
    "argv",
    [
        ["controller"],
        ["artifact", "ls"],
        ["server", "--port", "1"],
        ["conformance"],
        ["audit"],
        ["get", "services"],
        ["get", "namespaces"],
    ],
)
def test_local_only_commands_refuse_with_a_context(env: Path, argv: list[str]) -> None:
    runner = CliRunner()
    runner.invoke(
        app,
        [
            "context",
            "add",
            "prod",
            "--use",
            "--server",
            "http://127.0.0.1:1",
            "--token-file",
            str(env / "t.token"),
        ],
    )
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert "runs against the local engines only; current context is prod" in result.output
