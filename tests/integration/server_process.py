"""A real ``portway server`` process on 127.0.0.1 with a private home, for
the API's end-to-end tests; and a self-signed certificate made by openssl,
exactly as docs/server.md tells users to make one."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.integration.e2e import free_port_range


@dataclass
class ServerProcess:
    home: Path
    url: str
    proc: subprocess.Popen[bytes]

    @property
    def token(self) -> str:
        return (self.home / "admin.token").read_text().strip()

    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            message = f"server ignored SIGTERM for {timeout}s:\n{self.log()[-3000:]}"
            raise AssertionError(message) from None


@contextlib.contextmanager
def serving(
    home: Path, *extra: str, verify: ssl.SSLContext | bool = True
) -> Iterator[ServerProcess]:
    home.mkdir(exist_ok=True)
    port = free_port_range(1, start=29000)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PORTWAY_")},
        "PORTWAY_HOME": str(home),
        "PORTWAY_LOCAL_WASM": "0",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [sys.executable, "-m", "portway", "server", "--port", str(port), *extra]
    with (home / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    scheme = "https" if "--tls-cert" in extra else "http"
    server = ServerProcess(home, f"{scheme}://127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}:\n{server.log()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.url}/healthz", verify=verify, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not come up:\n{server.log()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            server.stop()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem for 127.0.0.1 and localhost, valid one day
    (the commands of docs/server.md)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
            "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key
