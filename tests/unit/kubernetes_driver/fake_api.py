"""A small fake Kubernetes API server on 127.0.0.1 (stdlib ``http.server``).

It answers the handful of REST calls the driver makes, from the recorded
fixtures and an in-memory set of Pods, and records every request (method,
path, query, headers, body) so tests can check what the client sent: the
apply content type, ``fieldManager``, ``force``, labels, watch parameters.
A Pod applied without portway's gate "runs" at once; a deadline patch
"stops" it (phase Failed, DeadlineExceeded, exit 143). Watches stream the
events that happen while they are open; ``expire_next_watch`` answers the
next watch with a 410 ERROR event, as an API server does after compaction.
Exec speaks just enough of RFC 6455 and ``v4.channel.k8s.io``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import queue
import struct
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.unit.kubernetes_driver.fixtures import load

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TOKEN = "fake-token-0123"
NAMESPACE = "portway"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # keys in lower case
    body: Any


@dataclass
class FakeCluster:
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    version: int = 1000
    watchers: list[queue.Queue[dict[str, Any] | None]] = field(default_factory=list)
    expire_next_watch: bool = False
    logs: list[str] = field(default_factory=list)
    follow_lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests_to(self, method: str, part: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and part in r.path]

    def bump(self, pod: dict[str, Any]) -> None:
        self.version += 1
        pod["metadata"]["resourceVersion"] = str(self.version)

    def emit(self, kind: str, pod: dict[str, Any]) -> None:
        for watcher in list(self.watchers):
            watcher.put({"type": kind, "object": copy.deepcopy(pod)})


def _pod_status_running(pod: dict[str, Any]) -> None:
    pod["spec"]["nodeName"] = "kind-worker"  # the scheduler's binding
    pod["status"] = {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": "10.244.0.9",
        "startTime": "2026-12-06T05:00:02Z",
        "containerStatuses": [
            {
                "name": "main",
                "ready": True,
                "restartCount": 0,
                "image": pod["spec"]["containers"][0]["image"],
                "state": {"running": {"startedAt": "2026-12-06T05:00:03Z"}},
            }
        ],
    }


def _pod_status_stopped(pod: dict[str, Any]) -> None:
    pod["status"] = {
        "phase": "Failed",
        "reason": "DeadlineExceeded",
        "message": "Pod was active on the node longer than the specified deadline",
        "containerStatuses": [
            {
                "name": "main",
                "state": {
                    "terminated": {
                        "exitCode": 143,
                        "reason": "Error",
                        "startedAt": "2026-12-06T05:00:03Z",
                        "finishedAt": "2026-12-06T05:00:09Z",
                    }
                },
            }
        ],
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: FakeCluster

    def log_message(self, format: str, *args: Any) -> None:
        return

    # --- plumbing ---------------------------------------------------------------

    def _record(self, body: Any) -> tuple[str, dict[str, list[str]]]:
        parsed = urlparse(self.path)
        query = parse_qs(parsed.query)
        with self.cluster.lock:
            self.cluster.requests.append(
                Recorded(
                    self.command,
                    parsed.path.rstrip("/") or "/",
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
        return parsed.path.rstrip("/") or "/", query

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _send(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
        )

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self._status(401, "Unauthorized", "Unauthorized")
        return False

    def _stream_start(self) -> None:
        """A chunked response, as the API server streams watches and logs."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream_end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # --- verbs ---------------------------------------------------------------------

    def do_GET(self) -> None:
        path, query = self._record(None)
        if "exec" in path and self.headers.get("Upgrade", "").lower() == "websocket":
            self._exec(path, query)
            return
        if not self._authorized():
            return
        pods_prefix = f"/api/v1/namespaces/{NAMESPACE}/pods"
        if path == "/version":
            self._send(200, load("version"))
        elif path == "/api/v1/nodes":
            self._send(200, load("nodes"))
        elif path == "/apis/node.k8s.io/v1/runtimeclasses":
            self._send(200, load("runtimeclasses"))
        elif path == f"/api/v1/namespaces/{NAMESPACE}":
            self._send(200, load("namespace-privileged"))
        elif path == pods_prefix and query.get("watch") == ["true"]:
            self._watch()
        elif path == pods_prefix:
            self._list(query)
        elif path.startswith(pods_prefix + "/") and path.endswith("/log"):
            self._log(query)
        elif path.startswith(pods_prefix + "/"):
            name = path.rsplit("/", 1)[1]
            with self.cluster.lock:
                pod = copy.deepcopy(self.cluster.pods.get(name))
            if pod is None:
                self._status(404, "NotFound", f'pods "{name}" not found')
            else:
                self._send(200, pod)
        else:
            self._status(404, "NotFound", f"the server could not find {path}")

    def do_PATCH(self) -> None:
        body = self._body()
        path, query = self._record(body)
        if not self._authorized():
            return
        name = path.rsplit("/", 1)[1]
        content_type = self.headers.get("Content-Type", "")
        cluster = self.cluster
        with cluster.lock:
            existing = cluster.pods.get(name)
            if content_type == "application/apply-patch+yaml":
                if query.get("dryRun") == ["All"]:
                    self._send(200, body)
                    return
                pod = copy.deepcopy(body)
                meta = pod["metadata"]
                meta["uid"] = existing["metadata"]["uid"] if existing else str(uuid.uuid4())
                meta["creationTimestamp"] = "2026-12-06T05:00:01Z"
                if pod["spec"].get("schedulingGates"):
                    pod["status"] = {"phase": "Pending"}
                else:
                    _pod_status_running(pod)
                cluster.pods[name] = pod
                cluster.bump(pod)
                cluster.emit("MODIFIED" if existing else "ADDED", pod)
            elif existing is None:
                self._status(404, "NotFound", f'pods "{name}" not found')
                return
            else:
                pod = existing
                pod["spec"].update(body.get("spec", {}))
                _pod_status_stopped(pod)
                cluster.bump(pod)
                cluster.emit("MODIFIED", pod)
            answer = copy.deepcopy(pod)
        self._send(200, answer)

    def do_DELETE(self) -> None:
        body = self._body()
        path, _ = self._record(body)
        if not self._authorized():
            return
        name = path.rsplit("/", 1)[1]
        cluster = self.cluster
        with cluster.lock:
            pod = cluster.pods.pop(name, None)
            if pod is not None:
                cluster.bump(pod)
                cluster.emit("DELETED", pod)
        if pod is None:
            self._status(404, "NotFound", f'pods "{name}" not found')
        else:
            self._send(200, pod)

    # --- lists, watches, logs -------------------------------------------------------

    def _list(self, query: dict[str, list[str]]) -> None:
        wanted = dict(
            pair.split("=", 1) for pair in (query.get("labelSelector", [""])[0].split(",")) if pair
        )
        with self.cluster.lock:
            items = [
                copy.deepcopy(p)
                for p in self.cluster.pods.values()
                if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())
            ]
            version = str(self.cluster.version)
        self._send(
            200,
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": version},
                "items": items,
            },
        )

    def _watch(self) -> None:
        cluster = self.cluster
        self._stream_start()
        with cluster.lock:
            expire, cluster.expire_next_watch = cluster.expire_next_watch, False
        if expire:
            self._chunk(json.dumps(load("watch-expired")).encode() + b"\n")
            self._stream_end()
            return
        inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        with cluster.lock:
            cluster.watchers.append(inbox)
        try:
            while True:
                event = inbox.get()
                if event is None:
                    self._stream_end()
                    return
                self._chunk(json.dumps(event).encode() + b"\n")
        except OSError:
            return
        finally:
            with cluster.lock:
                cluster.watchers.remove(inbox)

    def _log(self, query: dict[str, list[str]]) -> None:
        lines = list(self.cluster.logs)
        if "tailLines" in query:
            lines = (
                lines[len(lines) - int(query["tailLines"][0]) :]
                if query["tailLines"][0] != "0"
                else []
            )
        self._stream_start()
        try:
            if lines:
                self._chunk("".join(f"{line}\n" for line in lines).encode())
            if query.get("follow") == ["true"]:
                for line in self.cluster.follow_lines:
                    self._chunk(line.encode() + b"\n")
                # then keep the stream open, as a live container's log does
                threading.Event().wait(30)
            self._stream_end()
        except OSError:
            return

    # --- exec (websocket) -------------------------------------------------------------

    def _exec(self, path: str, query: dict[str, list[str]]) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._status(401, "Unauthorized", "Unauthorized")
            return
        name = path.split("/")[-2]
        with self.cluster.lock:
            pod = self.cluster.pods.get(name)
        if pod is None:
            self._status(404, "NotFound", f'pods "{name}" not found')
            return
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        self.close_connection = True
        command = query.get("command", [])
        if pod["status"].get("phase") != "Running":
            self._frame(3, json.dumps(load("exec-not-running")).encode())
        elif command[:2] == ["sh", "-c"] and command[2].startswith("exit "):
            self._frame(1, b"bye\n")
            self._frame(2, b"oops\n")
            status = load("exec-exit-3")
            status["details"]["causes"][0]["message"] = command[2].split()[1]
            self._frame(3, json.dumps(status).encode())
        elif command == ["sleep", "forever"]:
            self._frame(1, b"sleeping\n")
            threading.Event().wait(10)
        else:
            self._frame(1, " ".join(command).encode() + b"\n")
            self._frame(3, json.dumps({"metadata": {}, "status": "Success"}).encode())
        self.wfile.write(b"\x88\x00")  # close
        self.wfile.flush()

    def _frame(self, channel: int, payload: bytes) -> None:
        data = bytes([channel]) + payload
        header = b"\x82" + (
            bytes([len(data)]) if len(data) < 126 else b"\x7e" + struct.pack(">H", len(data))
        )
        self.wfile.write(header + data)
        self.wfile.flush()


def write_kubeconfig(path: Path, port: int, *, namespace: str = NAMESPACE) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "tester", "user": {"token": TOKEN}}],
        "contexts": [
            {
                "name": "fake-ctx",
                "context": {"cluster": "fake", "user": "tester", "namespace": namespace},
            },
            {"name": "other", "context": {"cluster": "fake", "user": "tester"}},
        ],
        "current-context": "other",
    }
    path.write_text(json.dumps(config))
    return path


@contextmanager
def fake_api_server() -> Iterator[tuple[FakeCluster, int]]:
    cluster = FakeCluster()
    handler = type("Handler", (_Handler,), {"cluster": cluster})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-kube-api", daemon=True)
    thread.start()
    try:
        yield cluster, server.server_address[1]
    finally:
        for watcher in list(cluster.watchers):
            watcher.put(None)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
