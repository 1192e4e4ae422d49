"""Issue 6, "Must show", over the API: a real ``portway server`` (controller
in process, Docker behind it). The secret is created THROUGH THE API, the
workload applied through the API; once Ready, every answer a user can read
about them (workload, lists, replicas, events, secrets, watch snapshots,
audit log, logs, exec env, the OpenAPI document, the remote CLI's describe
and secret ls), the engine's inspect output and logs, the server's log and
the raw store bytes are searched for the value and its base64: 0 hits.
Inside the replica the file holds the value, mode 0400, on tmpfs."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.integration.e2e import containers, remove_namespace
from tests.integration.server_process import serving

MOUNT = "/run/secrets/db"


@pytest.fixture
def namespace(docker_driver: Any) -> Iterator[str]:
    name = f"sapi-{uuid.uuid4().hex[:8]}"
    yield name
    client = docker.from_env(timeout=60)
    try:
        remove_namespace(client, name)
    finally:
        client.close()


def _workload(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "portway.dev/v1",
        "kind": "Workload",
        "metadata": {"name": "files", "namespace": namespace},
        "spec": {
            "image": "portway/busybox:latest",
            # prints only that it started; stops at once on SIGTERM
            "command": ["sh", "-c", "trap 'exit 0' TERM; echo started; sleep 3600 & wait"],
            "placement": {"targets": ["local-docker"]},
            "secrets": [{"secret": "db", "key": "password", "mountPath": MOUNT}],
        },
    }


def _sse_until(http: httpx.Client, path: str, params: dict[str, Any], last_id: int) -> str:
    """The raw text of a watch stream up to (and with) event ``last_id``."""
    text = ""
    with http.stream("GET", path, params=params, timeout=30) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            text += line + "\n"
            if line.startswith("id: ") and int(line[4:]) >= last_id:
                break
    return text


def _cli(*args: str) -> list[str]:
    """The real CLI in remote mode, on the context made in the test."""
    return [sys.executable, "-m", "portway", "--context", "e2e", *args]


@pytest.mark.docker
def test_a_secret_put_through_the_api_is_only_in_its_tmpfs_file(
    tmp_path: Path, namespace: str
) -> None:
    value = f"planted-api-{uuid.uuid4().hex}"
    encoded = base64.b64encode(value.encode()).decode()
    needles = [value.encode(), encoded.encode()]
    seen: list[tuple[str, bytes]] = []

    def keep(where: str, data: str | bytes) -> None:
        seen.append((where, data if isinstance(data, bytes) else data.encode()))

    with serving(tmp_path / "home") as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        ns = f"/v1/namespaces/{namespace}"
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:

            def read(path: str, **params: Any) -> Any:
                answer = http.get(path, params=params)
                assert answer.status_code == 200, (path, answer.text)
                keep(f"GET {path} {params}", answer.content)
                return answer.json()

            put = http.put(f"{ns}/secrets/db", json={"data": {"password": encoded}})
            assert put.status_code == 201, put.text
            keep("PUT secret", put.content)
            applied = http.post(
                "/v1/apply",
                params={"wait": "true", "timeout": 60},
                json={"documents": [_workload(namespace)], "file": "files.yaml"},
            )
            assert applied.json().get("wait") == {f"{namespace}/files": "ready"}, applied.text
            keep("apply", applied.content)

            # inside the replica: the one place the value may be
            script = f"stat -c '%a %u' {MOUNT}; grep ' {MOUNT} ' /proc/mounts | cut -d' ' -f3"
            inside = http.post(
                f"{ns}/workloads/files/exec",
                json={"command": ["sh", "-c", f"{script}; cat {MOUNT}"]},
            ).json()
            assert inside["stdout"].splitlines() == ["400 0", "tmpfs", value], inside
            # ... and the same look without the cat, kept (the exec answer itself is clean)
            clean = http.post(f"{ns}/workloads/files/exec", json={"command": ["sh", "-c", script]})
            keep("exec stat", clean.content)
            env = http.post(f"{ns}/workloads/files/exec", json={"command": ["env"]})
            assert env.status_code == 200 and "PATH=" in env.json()["stdout"]
            keep("exec env", env.content)

            workload = read(f"{ns}/workloads/files")
            assert workload["spec"]["secrets"][0]["secret"] == "db"
            read(f"{ns}/workloads")
            read("/v1/workloads", namespace=namespace)
            [replica] = read(f"{ns}/workloads/files/replicas")["items"]
            read("/v1/replicas", namespace=namespace)
            events = read(f"{ns}/events")["items"]
            read("/v1/events", namespace=namespace, workload="files")
            assert events, "the controller recorded events"
            secret = read(f"{ns}/secrets/db")
            assert (secret["keys"], secret["sizes"]) == (["password"], {"password": len(value)})
            read(f"{ns}/secrets")
            read("/v1/secrets")
            read("/v1/audit", namespace=namespace)
            read("/openapi.json")
            logs = http.get(f"{ns}/workloads/files/logs")
            assert b"started" in logs.content
            keep("logs", logs.content)
            keep(
                "watch workloads",
                _sse_until(http, "/v1/watch/workloads", {"namespace": namespace}, 0),
            )
            newest = max(int(e["id"]) for e in events)
            keep(
                "watch events",
                _sse_until(http, "/v1/watch/events", {"namespace": namespace, "since": 0}, newest),
            )

            # what the engine and the remote CLI show, all at once
            config = tmp_path / "config.yaml"
            env_vars = {
                **{k: v for k, v in os.environ.items() if not k.startswith("PORTWAY_")},
                "PORTWAY_CONFIG": str(config),
                "PORTWAY_HOME": str(tmp_path / "cli-home"),
            }
            token_file = tmp_path / "token"
            token_file.write_text(server.token)
            subprocess.run(
                [sys.executable, "-m", "portway", "context", "add", "e2e", "--server",
                 server.url, "--token-file", str(token_file)],
                env=env_vars, check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            name = replica["containerName"]
            commands = {
                "docker inspect": ["docker", "inspect", name],
                "docker logs": ["docker", "logs", name],
                "describe": _cli("describe", "workload", "files", "-n", namespace),
                "secret ls": _cli("secret", "ls", "-n", namespace, "-o", "json"),
                "get -o yaml": _cli("get", "workloads", "-A", "-o", "yaml"),
            }
            with ThreadPoolExecutor(max_workers=len(commands)) as pool:
                futures = {
                    what: pool.submit(
                        subprocess.run, argv, env=env_vars, capture_output=True, timeout=60
                    )
                    for what, argv in commands.items()
                }
                results = {what: future.result() for what, future in futures.items()}
            for what, result in results.items():
                assert result.returncode == 0, (what, result.stderr)
                keep(what, result.stdout + result.stderr)
            assert name.encode() in results["docker inspect"].stdout
            assert b"db" in results["secret ls"].stdout

            gone = http.delete(f"{ns}/workloads/files", params={"wait": "true", "timeout": 60})
            assert gone.json()["wait"] == "deleted", gone.text
            removed = http.delete(f"{ns}/secrets/db")
            assert removed.status_code == 200, removed.text
            keep("DELETE secret", removed.content)
            read("/v1/audit", namespace=namespace)
        stores = sorted(server.home.glob("state.db*"))
        assert stores
        for store_file in stores:
            keep(f"store {store_file.name}", store_file.read_bytes())
    keep("server log", server.log())
    client = docker.from_env(timeout=60)
    try:
        assert containers(client, namespace) == []
    finally:
        client.close()
    hits = sorted({where for where, data in seen for needle in needles if needle in data})
    assert hits == [], f"the secret value was found in: {hits}"
    assert len(seen) > 25
