"""Helpers for end-to-end tests: the real CLI and controller processes
against the real Docker Engine. Traffic goes only to 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import docker

REPO = Path(__file__).resolve().parents[2]
IMAGE_V1 = "portway/busybox:latest"
IMAGE_V2 = "portway/busybox:v2"


def ephemeral_floor() -> int:
    """The lowest port the kernel hands out for ``bind(0)`` and outgoing
    connections (``net.ipv4.ip_local_port_range``)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def bindable(port: int) -> bool:
    """Whether a program could bind 127.0.0.1:``port`` now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_range(count: int, start: int = 20000, end: int | None = None) -> int:
    """First port P such that P..P+count-1 are all free on 127.0.0.1, below
    ``end`` and below the kernel's ephemeral range. Engines publish ports they
    choose themselves in that range, and containerd's (CNI portmap: iptables
    DNAT, no socket) holds no socket on them: a port free for bind() there may
    still be redirected to a container. The start depends on the pid so that
    parallel test workers begin apart."""
    ceiling = min(end or 65536, ephemeral_floor())
    if start + count >= ceiling:
        raise ValueError(f"ports {start}+{count} reach the ephemeral range at {ceiling}")
    port = start + (os.getpid() * 7) % max(1, min(5000, ceiling - start - count))
    while port + count <= ceiling:
        taken = next((p for p in range(port, port + count) if not bindable(p)), None)
        if taken is None:
            return port
        port = taken + 1
    raise RuntimeError(f"no {count} free ports on 127.0.0.1 between {start} and {ceiling}")


def free_port(avoid: Collection[int] = ()) -> int:
    """One port free on 127.0.0.1 now, below the kernel's ephemeral range
    (see ``free_port_range``), at random: successive calls rarely agree, and
    never on a port in ``avoid``."""
    ceiling = ephemeral_floor()
    for _ in range(1000):
        port = random.randrange(20000, ceiling)
        if port not in avoid and bindable(port):
            return port
    raise RuntimeError(f"no free port on 127.0.0.1 between 20000 and {ceiling}")


def workload_yaml(
    name: str,
    namespace: str,
    *,
    replicas: int = 2,
    image: str = IMAGE_V1,
    host_port: int | None = None,
    env: dict[str, str] | None = None,
    restart: str = "always",
    command: list[str] | None = None,
    readiness: bool = True,
) -> str:
    ports = ""
    if host_port is not None:
        ports = f"""
          ports:
            - containerPort: 8080
              hostPort: {host_port}"""
    else:
        ports = """
          ports:
            - containerPort: 8080"""
    probe = ""
    if readiness:
        probe = """
          probes:
            readiness:
              http: {port: 8080}
              periodSeconds: 1"""
    cmd = json.dumps(command or ["httpd", "-f", "-p", "8080", "-h", "/www"])
    env_lines = ""
    if env:
        env_lines = "\n          env:\n" + "\n".join(
            f"            {k}: {json.dumps(v)}" for k, v in env.items()
        )
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata:
          name: {name}
          namespace: {namespace}
        spec:
          image: {image}
          command: {cmd}
          replicas: {replicas}
          restart:
            policy: {restart}
            initialBackoffSeconds: 0.2
            maxBackoffSeconds: 2{ports}{probe}{env_lines}
        """
    )


class Portway:
    """Runs the real CLI in subprocesses against one private state store."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = dict(os.environ, PORTWAY_HOME=str(home), PYTHONUNBUFFERED="1")
        self.controllers: list[subprocess.Popen[bytes]] = []

    def command(self) -> list[str]:
        return [sys.executable, "-m", "portway"]

    def run(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "portway", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"portway {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def apply(self, text: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        path = self.home / f"apply-{time.monotonic_ns()}.yaml"
        path.write_text(text)
        return self.run("apply", "-f", str(path), *extra, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def start_controller(self) -> subprocess.Popen[bytes]:
        log = (self.home / "controller.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "portway", "controller"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.controllers.append(proc)
        return proc

    def wait_for_lease(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """Wait until controller ``proc`` holds the lease (it logs so)."""
        deadline = time.monotonic() + timeout
        marker = f":{proc.pid}:"
        while time.monotonic() < deadline:
            log = self.controller_log()
            if any("holds the lease" in line and marker in line for line in log.splitlines()):
                return
            if proc.poll() is not None:
                raise AssertionError(f"controller exited {proc.returncode}:\n{log[-2000:]}")
            time.sleep(0.05)
        raise AssertionError(f"controller {proc.pid} did not take the lease:\n{log[-2000:]}")

    def kill_controllers(self, sig: int = signal.SIGKILL) -> None:
        for proc in self.controllers:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.controllers.clear()

    def controller_log(self) -> str:
        path = self.home / "controller.log"
        return path.read_text(errors="replace") if path.exists() else ""


def containers(client: docker.DockerClient, namespace: str) -> list[dict[str, Any]]:
    """Every container portway made for ``namespace`` (any state), as list payloads."""
    found: list[dict[str, Any]] = client.api.containers(
        all=True, filters={"label": [f"portway.dev/namespace={namespace}"]}
    )
    return found


def remove_namespace(client: docker.DockerClient, namespace: str) -> None:
    for item in containers(client, namespace):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(item["Id"], force=True, v=True)
    for volume in (
        client.api.volumes(filters={"label": f"portway.dev/namespace={namespace}"}).get("Volumes")
        or []
    ):
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_volume(volume["Name"], force=True)
    # the namespace's network (services.dns): the driver removes it with the
    # last replica, but the containers above went behind its back
    label = f"portway.dev/namespace={namespace}"
    for network in client.api.networks(filters={"label": label}) or []:
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_network(network["Id"])


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            body: bytes = resp.read()
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response (e.g. a load balancer's 503): free its socket
        raise
    return body.decode()


def eventually(
    check: Callable[[], Any], *, timeout: float = 60, interval: float = 0.2, what: str = ""
) -> Any:
    """Retry ``check`` until it returns a truthy value without raising."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (AssertionError, OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: {last}")


@contextlib.contextmanager
def listening(port: int) -> Iterator[socket.socket]:
    """Occupy 127.0.0.1:port for the duration."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    try:
        yield sock
    finally:
        sock.close()


def by_label(items: list[dict[str, Any]], label: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        out.setdefault(item["Labels"].get(label, ""), []).append(item)
    return out
