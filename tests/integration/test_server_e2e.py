"""``portway server`` end to end: a real server process on 127.0.0.1 with
its controller, Docker behind it, driven over HTTP only. Apply, wait Ready,
get, stream logs, exec, watch with resume, delete; SIGTERM stops it cleanly.
And HTTPS with a self-signed certificate made by openssl."""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.integration.e2e import containers, eventually, remove_namespace
from tests.integration.server_process import self_signed_certificate, serving


@pytest.fixture
def namespace(docker_driver: Any) -> Iterator[str]:
    name = f"api-{uuid.uuid4().hex[:8]}"
    yield name
    client = docker.from_env(timeout=60)
    try:
        remove_namespace(client, name)
    finally:
        client.close()


def _workload(namespace: str, replicas: int = 1, greeting: str = "hello-from-api") -> Any:
    return {
        "apiVersion": "portway.dev/v1",
        "kind": "Workload",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "image": "portway/busybox:latest",
            "replicas": replicas,
            "command": ["sh", "-c", f"echo {greeting}; exec sleep 3600"],
            "env": {"GREETING": greeting},
        },
    }


def _sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "" and "type" in event:
            yield event
            event = {}
        elif line.startswith("id: "):
            event["id"] = int(line[4:])
        elif line.startswith("event: "):
            event["type"] = line[7:]
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])


@pytest.mark.docker
def test_apply_get_logs_exec_watch_delete_over_http(tmp_path: Path, namespace: str) -> None:
    with serving(tmp_path / "home") as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        base = f"/v1/namespaces/{namespace}/workloads"
        with httpx.Client(base_url=server.url, headers=headers, timeout=180) as http:
            applied = http.post(
                "/v1/apply",
                params={"wait": "true", "timeout": 120},
                json={"documents": [_workload(namespace)], "file": "web.yaml"},
            )
            assert applied.status_code == 200, applied.text
            assert applied.json()["wait"] == {f"{namespace}/web": "ready"}
            got = http.get(f"{base}/web").json()
            assert got["status"]["phase"] == "Ready"
            assert got["spec"]["env"] == {"GREETING": "hello-from-api"}

            lines = eventually(
                lambda: [
                    json.loads(x) for x in http.get(f"{base}/web/logs").text.splitlines() if x
                ],
                timeout=20,
                what="the first log line",
            )
            assert lines[0]["line"] == "hello-from-api"
            assert (lines[0]["replica"], lines[0]["target"]) == (0, "local-docker")

            done = http.post(
                f"{base}/web/exec", json={"command": ["sh", "-c", "echo $GREETING; exit 3"]}
            ).json()
            assert (done["exitCode"], done["stdout"]) == (3, "hello-from-api\n")

            watch = {"namespace": namespace}
            with http.stream("GET", "/v1/watch/workloads", params=watch) as stream:
                events = _sse(stream)
                snapshot = next(events)
                assert (snapshot["type"], snapshot["data"]["name"]) == ("ADDED", "web")
                http.post("/v1/apply", json={"documents": [_workload(namespace, replicas=2)]})
                scaled = next(e for e in events if e["data"]["spec"]["replicas"] == 2)
                assert scaled["type"] == "MODIFIED" and scaled["id"] > snapshot["id"]
            # a change while nobody watches; resuming from the last id shows it
            http.post("/v1/apply", json={"documents": [_workload(namespace, 2, "changed")]})
            resume = {"Last-Event-ID": str(scaled["id"])}
            with http.stream("GET", "/v1/watch/workloads", params=watch, headers=resume) as again:
                missed = next(
                    e for e in _sse(again) if e["data"]["spec"]["env"]["GREETING"] == "changed"
                )
                assert missed["type"] == "MODIFIED" and missed["id"] > scaled["id"]

            gone = http.delete(f"{base}/web", params={"wait": "true", "timeout": 120})
            assert gone.json()["wait"] == "deleted", gone.text
            assert http.get(f"{base}/web").status_code == 404
            client = docker.from_env(timeout=60)
            try:
                assert containers(client, namespace) == []
            finally:
                client.close()
            audit = http.get("/v1/audit", params={"namespace": namespace}).json()["items"]
            assert [(e["verb"], e["outcome"]) for e in audit][-2:] == [
                ("apply", "succeeded"),
                ("delete", "succeeded"),
            ]
        assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    extra = ("--tls-cert", str(cert), "--tls-key", str(key), "--no-controller")
    trusted = ssl.create_default_context(cafile=str(cert))
    with serving(tmp_path / "home", *extra, verify=trusted) as server:
        assert server.url.startswith("https://127.0.0.1:")
        with httpx.Client(base_url=server.url, verify=trusted, timeout=10) as http:
            who = http.get("/v1/whoami", headers={"Authorization": f"Bearer {server.token}"})
            assert who.json()["user"] == "admin"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.url}/healthz", timeout=10)  # the system CAs do not know it
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(server.url.replace("https", "http") + "/healthz", timeout=10)
        assert server.stop() == 0


def _healthz_on(sock: socket.socket) -> bytes:
    """One keep-alive GET /healthz on an open connection: the whole answer,
    or b"" when the server had closed the connection."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def test_idle_connections_outlive_the_clients_keep_alive(tmp_path: Path) -> None:
    """A connection left idle longer than httpx keeps one (5 s, also uvicorn's
    own default) still answers; --keep-alive shortens the wait."""
    with serving(tmp_path / "default", "--no-controller") as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert _healthz_on(sock).startswith(b"HTTP/1.1 200")
            time.sleep(6)
            assert _healthz_on(sock).startswith(b"HTTP/1.1 200")
    with serving(tmp_path / "short", "--no-controller", "--keep-alive", "1") as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert _healthz_on(sock).startswith(b"HTTP/1.1 200")
            assert sock.recv(1) == b""  # closed by the server after a second
