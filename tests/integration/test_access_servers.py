"""Access control across real processes: ``portway server`` subprocesses on
127.0.0.1 (no controller, no engine needed) and the local CLI as another
process on the same store. Proves the bootstrap token file, 401/403 over
real HTTP, and that a token revoked elsewhere stops working within 1 s —
revoked by another process on SQLite, and between two servers on PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from portway.service import access
from portway.service.app import App, Settings
from tests.integration.e2e import eventually, free_port_range

REVOCATION_BOUND_SECONDS = 1.0


def _env(home: Path, store_url: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTWAY_")}
    env.update(
        PORTWAY_HOME=str(home),
        PORTWAY_CONFIG=str(home / "no-contexts.yaml"),
        PORTWAY_DOCKER_SOCKET=str(home / "no-docker.sock"),
        PORTWAY_LOCAL_WASM="0",
        PYTHONUNBUFFERED="1",
    )
    if store_url:
        env["PORTWAY_STORE"] = store_url
    return env


@contextlib.contextmanager
def _server(home: Path, env: dict[str, str], port: int) -> Iterator[str]:
    """A ``portway server --no-controller`` on ``port``; yields its URL."""
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"server-{port}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "portway", "server", "--no-controller",
             "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def listening() -> bool:
        if proc.poll() is not None:
            text = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"server exited {proc.returncode}:\n{text}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    try:
        eventually(listening, timeout=60, what=f"portway server on port {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The local CLI as a separate process on the same store."""
    return subprocess.run(
        [sys.executable, "-m", "portway", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _seconds_until_refused(client: httpx.Client, url: str, token: str) -> float:
    """Poll with ``token`` from now until the server answers 401."""
    start = time.monotonic()
    while True:
        response = client.get(f"{url}/v1/whoami", headers=_bearer(token))
        elapsed = time.monotonic() - start
        if response.status_code == 401:
            assert "revoked" in response.json()["error"]["message"]
            return elapsed
        assert response.status_code == 200, response.text
        assert elapsed < REVOCATION_BOUND_SECONDS, f"revoked token accepted after {elapsed:.2f} s"
        time.sleep(0.02)


def test_bootstrap_local_cli_and_revocation_seen_by_the_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _env(home)
    with _server(home, env, free_port_range(1, start=29000)) as url, httpx.Client() as client:
        token_file = home / "admin.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        admin = token_file.read_text().strip()
        log = next(home.glob("server-*.log")).read_text()
        assert str(token_file) in log and admin not in log  # only the path is logged

        assert client.get(f"{url}/healthz").status_code == 200
        anonymous = client.get(f"{url}/v1/whoami")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert client.get(f"{url}/openapi.json").status_code == 401
        forged = admin[:12] + ("A" if admin[12] != "A" else "B") + admin[13:]
        assert client.get(f"{url}/v1/whoami", headers=_bearer(forged)).status_code == 401
        me = client.get(f"{url}/v1/whoami", headers=_bearer(admin)).json()
        assert me["user"] == "admin" and me["bindings"] == [{"role": "admin", "namespace": "*"}]

        made = _cli(env, "token", "create", "-u", "ci-team-a", "-r", "deployer", "-n", "team-a")
        assert made.returncode == 0, made.stderr
        ci = made.stdout.strip()
        denied = client.delete(f"{url}/v1/namespaces/team-b/workloads/web", headers=_bearer(ci))
        assert denied.status_code == 403
        assert 'may not delete workloads in namespace "team-b"' in denied.json()["error"]["message"]
        assert client.get(f"{url}/v1/whoami", headers=_bearer(ci)).status_code == 200  # cached

        # revoke from this process (not the server's), right after the server cached the token
        local = App(Settings(home=home, docker_socket=str(home / "no.sock"), local_wasm=False))
        try:
            assert client.get(f"{url}/v1/whoami", headers=_bearer(ci)).status_code == 200
            access.revoke_token(local, ci.split("_")[1])
        finally:
            local.close()
        elapsed = _seconds_until_refused(client, url, ci)
        assert _cli(env, "token", "revoke", admin.split("_")[1]).returncode == 0  # the CLI way
        assert _seconds_until_refused(client, url, admin) < REVOCATION_BOUND_SECONDS

        audit = _cli(env, "audit-log", "-o", "json")
        assert audit.returncode == 0, audit.stderr
        entries = json.loads(audit.stdout)["items"]
        assert any(
            e["user"] == "ci-team-a" and e["outcome"] == "denied" and e["status"] == 403
            for e in entries
        )
        assert [e["verb"] for e in entries if e["remote"] == "local"] == ["create", "delete"]
        assert ci not in audit.stdout and admin not in audit.stdout
    print(f"revocation by another process seen by the server after {elapsed:.3f} s")


@pytest.mark.postgres
def test_revocation_between_two_servers_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    first_port = free_port_range(2, start=29100)
    homes = (tmp_path / "a", tmp_path / "b")
    with (
        _server(homes[0], _env(homes[0], pg_url), first_port) as url_a,
        _server(homes[1], _env(homes[1], pg_url), first_port + 1) as url_b,
        httpx.Client() as client,
    ):
        # one store, one bootstrap: exactly one of the two homes got the admin token
        written = [h / "admin.token" for h in homes if (h / "admin.token").exists()]
        assert len(written) == 1
        admin = written[0].read_text().strip()
        made = client.post(
            f"{url_a}/v1/tokens",
            headers=_bearer(admin),
            json={"user": "alice", "bindings": [{"role": "viewer", "namespace": "team-a"}]},
        )
        assert made.status_code == 201, made.text
        token, token_id = made.json()["token"], made.json()["id"]
        assert client.get(f"{url_b}/v1/whoami", headers=_bearer(token)).json()["user"] == "alice"
        assert (
            client.delete(f"{url_a}/v1/tokens/{token_id}", headers=_bearer(admin)).status_code
            == 200
        )
        elapsed = _seconds_until_refused(client, url_b, token)
        # both servers write one audit log
        entries = client.get(f"{url_b}/v1/audit", headers=_bearer(admin)).json()["items"]
        assert [(e["verb"], e["resource"]) for e in entries if e["user"] == "admin"] == [
            ("create", "tokens"),
            ("delete", "tokens"),
        ]
    print(f"revocation on server A seen by server B after {elapsed:.3f} s")
