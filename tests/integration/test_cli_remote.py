"""The CLI in remote mode end to end: typer's runner in this process, a real
``portway server`` subprocess on 127.0.0.1 with its controller, Docker
behind it. Context add, apply (waits for Ready through the API), get, logs,
exec, a viewer's forbidden delete (exit 5 and the server's message), delete."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from click.testing import Result
from typer.testing import CliRunner

from portway.cli.main import app
from portway.client.http import PortwayClient
from tests.integration.e2e import eventually, free_port_range, remove_namespace, workload_yaml

pytestmark = pytest.mark.docker


class Server:
    def __init__(self, home: Path, port: int, proc: subprocess.Popen[bytes], url: str) -> None:
        self.home, self.port, self.proc, self.url = home, port, proc, url

    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")


@pytest.fixture
def namespace(docker_driver: Any) -> Iterator[str]:
    name = f"rcli-{uuid.uuid4().hex[:8]}"
    yield name
    client = docker.from_env(timeout=60)
    try:
        remove_namespace(client, name)
    finally:
        client.close()


@contextlib.contextmanager
def _serving(home: Path, *extra: str) -> Iterator[Server]:
    """``portway server`` on a private home; its admin token is bootstrapped there."""
    home.mkdir(exist_ok=True)
    port = free_port_range(1, start=28000)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PORTWAY_")},
        "PORTWAY_HOME": str(home),
        "PORTWAY_CONFIG": str(home / "no-contexts.yaml"),
        "PYTHONUNBUFFERED": "1",
    }
    argv = ["server", "--host", "127.0.0.1", "--port", str(port), *extra]
    with (home / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "portway", *argv],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    scheme = "https" if "--tls-cert" in extra else "http"
    served = Server(home, port, proc, f"{scheme}://127.0.0.1:{port}")

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{served.log()[-3000:]}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
        return (home / "admin.token").exists()

    try:
        eventually(up, timeout=60, what="portway server listening with its admin.token")
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def server(tmp_path: Path, namespace: str) -> Iterator[Server]:
    with _serving(tmp_path / "server-home") as served:
        yield served


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PORTWAY_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("PORTWAY_HOME", str(tmp_path / "client-home"))
    monkeypatch.delenv("PORTWAY_CONTEXT", raising=False)
    monkeypatch.delenv("PORTWAY_STORE", raising=False)
    return CliRunner()


def _ok(result: Result, what: str) -> Result:
    assert result.exit_code == 0, f"{what} exited {result.exit_code}:\n{result.output}"
    return result


def _use_admin_context(cli: CliRunner, server: Server) -> Path:
    """Context ``it`` on the server with its bootstrap admin token, in use; the token's path."""
    admin_token = server.home / "admin.token"
    _ok(
        cli.invoke(
            app,
            [
                "context",
                "add",
                "it",
                "--use",
                "--server",
                server.url,
                "--token-file",
                str(admin_token),
            ],
        ),
        "context add",
    )
    return admin_token


def test_remote_cli_end_to_end(
    cli: CliRunner, server: Server, namespace: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    admin_token = _use_admin_context(cli, server)
    me = json.loads(_ok(cli.invoke(app, ["whoami", "-o", "json"]), "whoami").output)
    assert me["user"] == "admin"

    targets = json.loads(_ok(cli.invoke(app, ["get", "targets", "-o", "json"]), "targets").output)
    if not any(t["driver"] == "docker" for t in targets["items"]):
        _ok(cli.invoke(app, ["target", "add", "docker", "--driver", "docker"]), "target add")

    spec = tmp_path / "web.yaml"
    spec.write_text(
        workload_yaml(
            "web",
            namespace,
            replicas=1,
            command=["sh", "-c", "echo hello-remote; exec httpd -f -p 8080 -h /www"],
        )
    )
    applied = _ok(cli.invoke(app, ["apply", "-f", str(spec), "--timeout", "120"]), "apply")
    assert "workload/web created" in applied.output
    assert "workload/web ready at 127.0.0.1:" in applied.output, server.log()[-3000:]

    listed = _ok(cli.invoke(app, ["get", "workloads", "-n", namespace]), "get workloads")
    [row] = [line.split() for line in listed.output.splitlines() if line.startswith(namespace)]
    assert row[:5] == [namespace, "web", "1/1", "1", "Ready"]
    replicas = json.loads(
        _ok(cli.invoke(app, ["get", "replicas", "-n", namespace, "-o", "json"]), "replicas").output
    )
    assert [r["state"] for r in replicas["items"]] == ["running"]

    with PortwayClient(server.url, admin_token.read_text().strip()) as client:
        events = client.watch_workloads(namespace=namespace, since=0)
        with contextlib.closing(events):
            first = next(iter(events))
        assert first.event in ("ADDED", "MODIFIED") and first.id
        assert first.json()["name"] == "web"
        followed = client.logs(namespace, "web", follow=True)
        with contextlib.closing(followed):
            line = next(iter(followed))  # a followed stream stays open; we leave it
        assert line["line"] == "hello-remote" and line["replica"] == 0

    def logged() -> bool:
        result = cli.invoke(app, ["logs", "web", "-n", namespace])
        return result.exit_code == 0 and "hello-remote" in result.output

    eventually(logged, timeout=20, what="the replica's first log line through the API")

    ran = cli.invoke(
        app, ["exec", "web", "-n", namespace, "--", "sh", "-c", "echo via-api; exit 7"]
    )
    assert (ran.exit_code, ran.stdout.strip()) == (7, "via-api")

    viewer_token = tmp_path / "viewer.token"
    _ok(
        cli.invoke(
            app,
            [
                "token",
                "create",
                "--user",
                "vic",
                "-r",
                "viewer",
                "-n",
                namespace,
                "--out",
                str(viewer_token),
            ],
        ),
        "token create",
    )
    _ok(
        cli.invoke(
            app,
            ["context", "add", "viewer", "--server", server.url, "--token-file", str(viewer_token)],
        ),
        "context add viewer",
    )
    seen = cli.invoke(app, ["--context", "viewer", "get", "workloads", "-n", namespace])
    assert seen.exit_code == 0 and "web" in seen.output
    denied = cli.invoke(app, ["--context", "viewer", "delete", "web", "-n", namespace])
    assert denied.exit_code == 5, denied.output
    assert "vic" in denied.output and "delete" in denied.output and namespace in denied.output
    assert "deployer" in denied.output  # names the role that would allow it

    deleted = _ok(cli.invoke(app, ["delete", "web", "-n", namespace, "--timeout", "60"]), "delete")
    assert "workload/web deleted" in deleted.output
    gone = cli.invoke(app, ["get", "workloads", "web", "-n", namespace])
    assert gone.exit_code == 3, gone.output
    audit = json.loads(_ok(cli.invoke(app, ["audit-log", "-o", "json"]), "audit-log").output)
    assert any(e["user"] == "vic" and e["outcome"] == "denied" for e in audit["items"])
    print(f"remote CLI end to end: {time.monotonic() - started:.1f}s")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made as docs/server.md says (openssl)."""
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_tls_contexts(cli: CliRunner, tmp_path: Path, docker_driver: Any) -> None:
    """A context trusts the server through --ca-file; without it the error
    says so; --insecure skips the check."""
    cert, key = _self_signed(tmp_path)
    home = tmp_path / "tls-home"
    with _serving(
        home, "--tls-cert", str(cert), "--tls-key", str(key), "--no-controller"
    ) as served:
        token = str(home / "admin.token")
        add = ["context", "add", "tls", "--server", served.url, "--token-file", token]
        _ok(cli.invoke(app, [*add, "--ca-file", str(cert), "--use"]), "context add --ca-file")
        me = json.loads(_ok(cli.invoke(app, ["whoami", "-o", "json"]), "whoami over TLS").output)
        assert me["user"] == "admin"

        _ok(cli.invoke(app, add), "context add without CA")
        untrusted = cli.invoke(app, ["whoami"])
        assert untrusted.exit_code == 1
        assert f"cannot reach {served.url}: TLS:" in untrusted.output
        assert "--ca-file" in untrusted.output

        _ok(cli.invoke(app, [*add, "--insecure"]), "context add --insecure")
        _ok(cli.invoke(app, ["whoami"]), "whoami --insecure")


def test_a_compose_file_runs_through_the_server_in_depends_on_order(
    cli: CliRunner, server: Server, namespace: str, tmp_path: Path
) -> None:
    """The Compose file, its secret file and its .env are read by the CLI;
    the server stores the secret and runs the services on Docker, a level at
    a time: ``setup`` must exit 0 before ``web`` starts, and ``web`` sees the
    secret at its target."""
    _use_admin_context(cli, server)
    project = tmp_path / namespace  # the project (and namespace) is the directory's name
    project.mkdir()
    (project / "token.txt").write_text("remote-secret\n")
    (project / ".env").write_text("GREETING=hello-compose\n")
    (project / "compose.yaml").write_text(
        "services:\n"
        "  setup:\n"
        "    image: portway/busybox:latest\n"
        '    command: ["sh", "-c", "sleep 1; exit 0"]\n'
        "  web:\n"
        "    image: portway/busybox:latest\n"
        '    command: ["sh", "-c", "echo $$GREETING; cat /run/secrets/token; '
        'exec httpd -f -p 8080 -h /www"]\n'
        '    environment: {GREETING: "${GREETING}"}\n'
        "    depends_on: {setup: {condition: service_completed_successfully}}\n"
        "    secrets: [token]\n"
        "secrets:\n"
        "  token: {file: ./token.txt}\n"
    )
    compose = project / "compose.yaml"
    applied = _ok(
        cli.invoke(app, ["apply", "-f", str(compose), "--timeout", "120"]), "apply compose"
    )
    lines = applied.output.splitlines()
    assert lines[0] == "secret/secret-token stored"
    order = [line.split()[0] for line in lines[1:]]
    assert order[:4] == ["workload/setup", "workload/setup", "workload/web", "workload/web"], lines
    assert "workload/setup completed" in lines and any(
        line.startswith("workload/web ready") for line in lines
    ), server.log()[-3000:]

    def logged() -> bool:
        result = cli.invoke(app, ["logs", "web", "-n", namespace])
        return "hello-compose" in result.output and "remote-secret" in result.output

    eventually(logged, timeout=20, what="web's greeting and secret in its logs")
    deleted = _ok(
        cli.invoke(app, ["delete", "-f", str(compose), "--timeout", "60"]), "delete -f compose"
    )
    assert "workload/web deleted" in deleted.output
