"""portway.ingress against a real HAProxy (Debian's 2.6) on 127.0.0.1.

Backends are small HTTP servers in threads of this process, each answering
its own name; a TCP echo server stands in for a tcp service. Every request
loop stops by itself (a request count and a time limit), and every HAProxy
started here is stopped in teardown, by the pid whose command line names this
test's own config file.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from portway.errors import PortwayError
from portway.ingress import (
    Action,
    Backend,
    Endpoint,
    HealthCheck,
    IngressConfigError,
    IngressConflictError,
    IngressManager,
    IngressPortInUseError,
    IngressSettings,
    IngressState,
    Mode,
    OpState,
    Route,
)
from portway.ingress import manager as ingress_manager
from tests.integration.e2e import free_port

pytestmark = pytest.mark.haproxy

LOCALHOST = "127.0.0.1"
#: fast checks, so "leaves rotation within interval * fall" is 0.4 s here
CHECK = HealthCheck(kind="http", path="/healthz", interval=0.2, timeout=0.5, fall=2, rise=1)
SETTINGS = IngressSettings(stop_timeout=3.0, hard_stop_after=5.0)


# --- backends -------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Replica

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.closed(self.connection)

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        body = self.server.name.encode()
        head = (
            "HTTP/1.1 200 OK\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Content-Type: text/plain\r\n"
            f"X-Path: {self.path}\r\n\r\n"
        )
        # One write: a replica killed mid-request then sends nothing at all
        # (which HAProxy retries) rather than half a response.
        self.wfile.write(head.encode() + body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Replica(ThreadingHTTPServer):
    """An HTTP server answering its own name, that can die like a container."""

    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__((LOCALHOST, 0), _Handler)
        self.name = name
        self.connections: set[socket.socket] = set()
        self.guard = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def endpoint(self, **changes: object) -> Endpoint:
        base = Endpoint(
            id=f"ctr-{self.name}", address=LOCALHOST, port=self.port, ready=True, replica=self.name
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def opened(self, connection: socket.socket) -> None:
        with self.guard:
            self.connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self.guard:
            self.connections.discard(connection)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # health checks end with a reset; that is not news

    def kill(self) -> None:
        """Stop listening and cut every open connection, as a dead replica."""
        self.shutdown()
        self.server_close()
        with self.guard:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__((LOCALHOST, 0), _Echo)
        threading.Thread(target=self.serve_forever, daemon=True).start()


# --- clients --------------------------------------------------------------


def get(port: int, path: str = "/", host: str | None = None) -> tuple[int, str, str | None]:
    """One request on a new connection: (status, body, X-Portway-Backend)."""
    connection = http.client.HTTPConnection(LOCALHOST, port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host} if host else {})
        response = connection.getresponse()
        return response.status, response.read().decode(), response.getheader("X-Portway-Backend")
    finally:
        connection.close()


class Load:
    """A request loop in a thread: keep-alive by default, bounded in count and time."""

    def __init__(
        self, port: int, *, keepalive: bool = True, max_requests: int = 20000, seconds: float = 8.0
    ) -> None:
        self.port = port
        self.keepalive = keepalive
        self.max_requests = max_requests
        self.seconds = seconds
        self.ok = 0
        self.failures: list[str] = []
        self.seen: Counter[str] = Counter()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def wait_for(self, requests: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        target = self.ok + requests
        while self.ok < target and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        connection: http.client.HTTPConnection | None = None
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > deadline:
                break
            if connection is None:
                connection = http.client.HTTPConnection(LOCALHOST, self.port, timeout=5)
                self.connections += 1
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read().decode()
                if response.status != 200:
                    self.failures.append(f"status {response.status}: {body[:80]}")
                else:
                    self.ok += 1
                    self.seen[body] += 1
                if not self.keepalive or response.getheader("Connection", "") == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                connection = None
        if connection is not None:
            connection.close()


# --- fixtures -------------------------------------------------------------


def _haproxy_pids(config: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if str(config).encode() in args and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def haproxy_binary() -> str:
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.skip("haproxy is not installed (Debian: apt-get install haproxy)")
    return binary


@pytest.fixture
def home(tmp_path: Path, haproxy_binary: str) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    # Whatever a test left running: stop it by pid (only HAProxys on this config).
    for pid in _haproxy_pids(home / "ingress" / "haproxy.cfg"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def manager(home: Path) -> Iterator[IngressManager]:
    ingress = IngressManager(home, settings=SETTINGS)
    yield ingress
    ingress.stop(timeout=2.0)


@pytest.fixture
def replicas() -> Iterator[Callable[[str], Replica]]:
    started: list[Replica] = []

    def start(name: str) -> Replica:
        replica = Replica(name)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        with contextlib.suppress(OSError):
            replica.kill()


def web_state(
    port: int, *endpoints: Endpoint, check: HealthCheck = CHECK, name: str = "web.default:http"
) -> IngressState:
    backend = Backend(name, Mode.HTTP, tuple(endpoints), check)
    return IngressState((Route(f"{LOCALHOST}:{port}", Mode.HTTP, name),), {name: backend})


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def server_state(manager: IngressManager, backend: str, replica: str) -> OpState | None:
    for server in manager.status().get(backend, []):
        if server.replica == replica:
            return server.state
    return None


# --- tests ----------------------------------------------------------------


def test_balances_across_two_backends(
    manager: IngressManager, replicas: Callable[[str], Replica]
) -> None:
    a, b = replicas("web-0"), replicas("web-1")
    port = free_port()
    result = manager.apply(web_state(port, a.endpoint(), b.endpoint()))
    assert result.action is Action.STARTED

    answers = [get(port) for _ in range(20)]

    assert {status for status, _, _ in answers} == {200}
    assert Counter(body for _, body, _ in answers) == {"web-0": 10, "web-1": 10}
    assert all(body == header for _, body, header in answers)  # X-Portway-Backend
    status = manager.status()["web.default:http"]
    assert [(s.slot, s.endpoint, s.state) for s in status] == [
        ("s1", "ctr-web-0", OpState.UP),
        ("s2", "ctr-web-1", OpState.UP),
    ]


def test_dead_endpoint_fails_no_request_and_goes_down_within_interval_times_fall(
    manager: IngressManager, replicas: Callable[[str], Replica]
) -> None:
    a, b = replicas("web-0"), replicas("web-1")
    port = free_port()
    manager.apply(web_state(port, a.endpoint(), b.endpoint()))

    with Load(port) as load:
        load.wait_for(200)
        b.kill()
        killed = time.monotonic()
        down_after = None
        while time.monotonic() - killed < 3.0:
            if server_state(manager, "web.default:http", "web-1") is OpState.DOWN:
                down_after = time.monotonic() - killed
                break
            time.sleep(0.02)
        load.wait_for(200)

    assert load.failures == []
    assert load.seen["web-0"] > 0 and load.seen["web-1"] > 0
    assert down_after is not None, "web-1 never went DOWN"
    # interval * fall = 0.4 s; the first failing check may come a whole
    # interval after the kill, so that is the bound, plus scheduling slack.
    assert down_after <= CHECK.interval * CHECK.fall + 0.25
    print(f"\nweb-1 DOWN {down_after:.3f}s after its death; {load.ok} requests, 0 failed")


def test_endpoint_flips_use_the_runtime_api_not_reloads(
    manager: IngressManager, replicas: Callable[[str], Replica]
) -> None:
    a, b, c = replicas("web-0"), replicas("web-1"), replicas("web-2")
    port = free_port()
    manager.apply(web_state(port, a.endpoint(), b.endpoint()))
    before = manager.process_info()
    assert before is not None
    flips = [
        (a.endpoint(), b.endpoint(), c.endpoint()),  # c added
        (a.endpoint(), b.endpoint(ready=False), c.endpoint()),  # b not ready
        (a.endpoint(), b.endpoint(draining=True), c.endpoint()),  # b draining
        (a.endpoint(), c.endpoint()),  # b removed
        (a.endpoint(ready=False), c.endpoint(), b.endpoint()),  # b back, a not ready
        (a.endpoint(), b.endpoint()),  # c removed, a ready
    ]
    results = []
    with Load(port) as load:
        load.wait_for(50)
        for flip in range(50):
            results.append(manager.apply(web_state(port, *flips[flip % len(flips)])))
            load.wait_for(5)

    after = manager.process_info()
    assert after is not None
    assert {r.action for r in results} == {Action.RUNTIME}
    assert manager.reloads == 0
    assert (after.master_pid, after.worker_pid, after.reloads) == (
        before.master_pid,
        before.worker_pid,
        before.reloads,
    )
    assert load.failures == []
    assert set(load.seen) == {"web-0", "web-1", "web-2"}
    commands = sum(len(r.commands) for r in results)
    print(f"\n50 flips, {commands} runtime commands, {load.ok} requests, 0 failed, no reload")


def test_endpoint_keeps_its_slot(
    manager: IngressManager, replicas: Callable[[str], Replica]
) -> None:
    a, b, c = replicas("web-0"), replicas("web-1"), replicas("web-2")
    port = free_port()
    manager.apply(web_state(port, a.endpoint(), b.endpoint(), c.endpoint()))
    manager.apply(web_state(port, c.endpoint(), a.endpoint()))  # b gone, order changed
    slots = {s.replica: s.slot for s in manager.status()["web.default:http"]}
    assert slots == {"web-0": "s1", "web-2": "s3"}
    d = replicas("web-3")
    manager.apply(web_state(port, c.endpoint(), a.endpoint(), d.endpoint()))
    slots = {s.replica: s.slot for s in manager.status()["web.default:http"]}
    assert slots == {"web-0": "s1", "web-3": "s2", "web-2": "s3"}
    assert get(port)[0] == 200


def test_draining_endpoint_finishes_open_requests_and_takes_no_new_ones(
    manager: IngressManager, replicas: Callable[[str], Replica]
) -> None:
    a, b = replicas("web-0"), replicas("web-1")
    port = free_port()
    manager.apply(web_state(port, a.endpoint(ready=False), b.endpoint()))
    slow: list[tuple[int, str, str | None]] = []
    request = threading.Thread(target=lambda: slow.append(get(port, "/slow")))
    request.start()
    time.sleep(0.3)  # the slow request is now on web-1

    result = manager.apply(web_state(port, a.endpoint(), b.endpoint(draining=True)))
    answers = [get(port) for _ in range(10)]
    request.join(timeout=5)

    assert result.action is Action.RUNTIME
    assert slow == [(200, "web-1", "web-1")]
    assert {body for _, body, _ in answers} == {"web-0"}
    states = {s.replica: s.state for s in manager.status()["web.default:http"]}
    assert states == {"web-0": OpState.UP, "web-1": OpState.DRAIN}


def test_structural_change_reloads_without_failing_a_keepalive_request(
    manager: IngressManager, replicas: Callable[[str], Replica]
) -> None:
    a, b = replicas("web-0"), replicas("web-1")
    port = free_port()
    state = web_state(port, a.endpoint(), b.endpoint())
    manager.apply(state)
    workers = set()
    extra_ports: list[int] = []
    for _ in range(5):
        extra_ports.append(free_port(avoid=[port, *extra_ports]))
    with Load(port) as load:
        load.wait_for(100)
        for number, extra in enumerate(extra_ports, start=1):
            routes = state.routes + tuple(
                Route(f"{LOCALHOST}:{p}", Mode.HTTP, "web.default:http")
                for p in extra_ports[:number]
            )
            result = manager.apply(IngressState(routes, state.backends))
            assert result.action is Action.RELOADED
            assert result.reasons == (f"listener {LOCALHOST}:{extra} added",)
            workers.add(result.worker_pid)
            load.wait_for(100)
            assert get(extra)[0] == 200

    assert load.failures == []
    assert manager.reloads == 5 and len(workers) == 5
    print(
        f"\n5 reloads under a keep-alive loop: {load.ok} requests on {load.connections} "
        "connections, 0 failed"
    )


def test_routes_by_host_and_by_path_prefix(
    manager: IngressManager, replicas: Callable[[str], Replica]
) -> None:
    web, api, v2, admin = replicas("web"), replicas("api"), replicas("api-v2"), replicas("admin")
    port = free_port()
    listen = f"{LOCALHOST}:{port}"
    backends = {
        name: Backend(name, Mode.HTTP, (replica.endpoint(),), CHECK)
        for name, replica in (("web", web), ("api", api), ("v2", v2), ("admin", admin))
    }
    routes = (
        Route(listen, Mode.HTTP, "web", host="shop.example"),
        Route(listen, Mode.HTTP, "api", host="shop.example", path_prefix="/api"),
        Route(listen, Mode.HTTP, "v2", path_prefix="/api/v2"),
        Route(listen, Mode.HTTP, "admin", path_prefix="/admin/"),
    )
    manager.apply(IngressState(routes, backends))

    def body(path: str, host: str | None = None) -> str | int:
        status, text, _ = get(port, path, host)
        return text if status == 200 else status

    assert body("/", "shop.example") == "web"
    assert body("/", "SHOP.example:8080") == "web"  # case and port ignored
    assert body("/api", "shop.example") == "api"
    assert body("/api/x", "shop.example") == "api"
    assert body("/apix", "shop.example") == "web"  # whole segments only
    assert body("/api/v2/items", "shop.example") == "api-v2"  # longest prefix first
    assert body("/admin", "other.example") == "admin"
    assert body("/api", "other.example") == 404  # no default route
    assert body("/") == 404

    default = Route(listen, Mode.HTTP, "web")
    manager.apply(IngressState((*routes, default), backends))
    assert body("/anything", "other.example") == "web"


def test_tcp_mode(manager: IngressManager) -> None:
    echo_a, echo_b = EchoServer(), EchoServer()
    try:
        port = free_port()
        endpoints = tuple(
            Endpoint(f"echo-{i}", LOCALHOST, int(s.server_address[1]), True, replica=f"echo-{i}")
            for i, s in enumerate((echo_a, echo_b))
        )
        backend = Backend("echo.default:tcp", Mode.TCP, endpoints, HealthCheck(interval=0.2))
        route = Route(f"{LOCALHOST}:{port}", Mode.TCP, backend.name)
        manager.apply(IngressState((route,), {backend.name: backend}))

        for message in (b"hello", b"portway" * 1000):
            with socket.create_connection((LOCALHOST, port), timeout=5) as client:
                client.sendall(message)
                client.shutdown(socket.SHUT_WR)
                received = b""
                while data := client.recv(65536):
                    received += data
            assert received == message

        def checked() -> dict[str, tuple[OpState, str]]:
            return {s.replica: (s.state, s.check) for s in manager.status()[backend.name]}

        wait_until(lambda: "INI" not in {check for _, check in checked().values()})
        assert checked() == {"echo-0": (OpState.UP, "L4OK"), "echo-1": (OpState.UP, "L4OK")}
    finally:
        for server in (echo_a, echo_b):
            server.shutdown()
            server.server_close()


def test_bad_config_never_replaces_the_good_one(
    manager: IngressManager, replicas: Callable[[str], Replica]
) -> None:
    a = replicas("web-0")
    port = free_port()
    manager.apply(web_state(port, a.endpoint()))
    config = manager.paths.config.read_text()
    worker = manager.process_info()

    # HAProxy's grammar is HAProxy's to judge: fall must be positive.
    bad = web_state(port, a.endpoint(), check=replace(CHECK, fall=0))
    with pytest.raises(IngressConfigError) as caught:
        manager.apply(bad)

    assert "'fall' has to be > 0" in str(caught.value)
    assert "[ALERT]" in caught.value.output
    assert manager.paths.config.read_text() == config
    assert manager.process_info() == worker
    assert get(port)[:2] == (200, "web-0")
    # What would change the meaning of a config line never reaches HAProxy.
    with pytest.raises(IngressConflictError, match="health check path '/a b'"):
        manager.apply(web_state(port, a.endpoint(), check=replace(CHECK, path="/a b")))
    assert manager.paths.config.read_text() == config


def test_port_in_use_is_named(manager: IngressManager, replicas: Callable[[str], Replica]) -> None:
    a = replicas("web-0")
    with socket.socket() as squatter:
        squatter.bind((LOCALHOST, 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])

        with pytest.raises(IngressPortInUseError, match=f"port {taken} is already in use") as err:
            manager.apply(web_state(taken, a.endpoint()))
        assert isinstance(err.value, PortwayError) and err.value.port == taken

        port = free_port()
        state = web_state(port, a.endpoint())
        manager.apply(state)
        worker = manager.process_info()
        more = IngressState(
            (*state.routes, Route(f"{LOCALHOST}:{taken}", Mode.HTTP, "web.default:http")),
            state.backends,
        )
        with pytest.raises(IngressPortInUseError, match=f"port {taken}"):
            manager.apply(more)
        assert manager.process_info() == worker
        assert get(port)[0] == 200


def test_pool_grows_by_a_reload_when_slots_run_out(
    manager: IngressManager, replicas: Callable[[str], Replica]
) -> None:
    started = [replicas(f"web-{i}") for i in range(5)]
    port = free_port()
    manager.apply(web_state(port, *(r.endpoint() for r in started[:4])))

    result = manager.apply(web_state(port, *(r.endpoint() for r in started)))

    assert result.action is Action.RELOADED
    assert result.reasons == ("backend web.default:http slots 4 -> 8",)
    assert {get(port)[1] for _ in range(10)} == {f"web-{i}" for i in range(5)}


def test_adopts_a_running_haproxy(
    home: Path, manager: IngressManager, replicas: Callable[[str], Replica]
) -> None:
    a, b = replicas("web-0"), replicas("web-1")
    port = free_port()
    state = web_state(port, a.endpoint(), b.endpoint())
    first = manager.apply(state)

    successor = IngressManager(home, settings=SETTINGS)  # a restarted controller
    again = successor.apply(state)
    assert successor.adopted
    assert again.action is Action.UNCHANGED
    assert (again.master_pid, again.worker_pid) == (first.master_pid, first.worker_pid)
    assert _haproxy_pids(manager.paths.config) == [first.master_pid, first.worker_pid]
    assert {s.endpoint for s in successor.status()["web.default:http"]} == {
        "ctr-web-0",
        "ctr-web-1",
    }

    changed = successor.apply(web_state(port, a.endpoint(), b.endpoint(ready=False)))
    assert changed.action is Action.RUNTIME
    assert {get(port)[1] for _ in range(6)} == {"web-0"}

    successor.stop()
    assert _haproxy_pids(manager.paths.config) == []
    assert manager.status() == {}


def test_a_reload_haproxy_refuses_leaves_the_old_worker_serving(
    manager: IngressManager, replicas: Callable[[str], Replica], monkeypatch: pytest.MonkeyPatch
) -> None:
    # portway checks a new port before it reloads; here that check is
    # skipped, so HAProxy itself meets the taken port during the reload.
    monkeypatch.setattr(ingress_manager, "ensure_port_free", lambda host, port: None)
    a = replicas("web-0")
    port = free_port()
    state = web_state(port, a.endpoint())
    manager.apply(state)
    config = manager.paths.config.read_text()
    with socket.socket() as squatter:
        squatter.bind((LOCALHOST, 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])
        more = IngressState(
            (*state.routes, Route(f"{LOCALHOST}:{taken}", Mode.HTTP, "web.default:http")),
            state.backends,
        )
        with Load(port) as load:
            load.wait_for(50)
            with pytest.raises(IngressPortInUseError, match=f"port {taken}"):
                manager.apply(more)
            load.wait_for(50)

    assert load.failures == []
    assert manager.paths.config.read_text() == config
    info = manager.process_info()
    assert info is not None and not info.reload_failed
    # Back on the old config: no reload needed, the map values are sent again.
    again = manager.apply(state)
    assert again.action is Action.RUNTIME
    assert {command.split()[1] for command in again.commands} == {"map"}
    assert get(port)[:2] == (200, "web-0")


def test_haproxys_own_bind_failure_at_start_names_the_port(
    manager: IngressManager, replicas: Callable[[str], Replica], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingress_manager, "ensure_port_free", lambda host, port: None)
    a = replicas("web-0")
    with socket.socket() as squatter:
        squatter.bind((LOCALHOST, 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])
        with pytest.raises(IngressPortInUseError, match=f"port {taken} is already in use"):
            manager.apply(web_state(taken, a.endpoint()))
    assert manager.process_info() is None
