"""The P7 load generator (bench/loadgen.py) and its statistics (bench/loadstats.py).

The statistics are checked on made-up samples; response framing on byte
strings; error counting end to end: loadgen runs as its own process (as in the
benchmark) against a small scripted server on 127.0.0.1 whose every answer is
counted, so each kind of error the generator reports must match what the
server actually did. Nothing here asserts on timing.
"""

from __future__ import annotations

import importlib
import itertools
import json
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_module(name: str) -> ModuleType:
    # the bench scripts import each other as top-level modules (like `common`)
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


ls = _bench_module("loadstats")
loadgen = _bench_module("loadgen")


# --- percentiles -------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert ls.percentile(values, 50) == 50.0
    assert ls.percentile(values, 90) == 90.0
    assert ls.percentile(values, 99) == 99.0
    assert ls.percentile(values, 99.9) == 100.0
    assert ls.percentile(values, 100) == 100.0
    thousand = [float(v) for v in range(1, 1001)]
    assert ls.percentile(thousand, 99) == 990.0  # the 990th smallest, not interpolated
    assert ls.percentile(thousand, 99.9) == 999.0
    assert ls.percentile([7.0], 99) == 7.0
    assert ls.percentile([1.0, 2.0], 1) == 1.0


@pytest.mark.parametrize("q", [0.0, -1.0, 100.5])
def test_percentile_out_of_range_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="percentile must be in"):
        ls.percentile([1.0], q)


def test_percentile_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no samples"):
        ls.percentile([], 50)


# --- recorder ----------------------------------------------------------------------


def test_only_2xx_responses_sent_in_the_window_count_as_latency() -> None:
    rec = ls.Recorder(connections=3, window_start=10.0, window_end=20.0)
    rec.response(9.0, 9.5, 200)  # warm-up: not measured
    for i in range(100):  # 1..100 ms, sent inside the window
        rec.response(10.0 + i * 0.05, 10.0 + i * 0.05 + (i + 1) / 1000, 200)
    rec.response(19.99, 21.0, 204)  # sent inside, finished after: measured (1010 ms)
    rec.response(20.0, 20.001, 200)  # sent at the end of the window: not measured
    rec.response(12.0, 12.001, 503)  # fast but failed: an error, not a latency
    rec.response(8.0, 8.001, 401)  # failed during warm-up: still an error
    summary = rec.summary(client_cpu_seconds=1.5)
    assert summary.responses == 101
    assert summary.throughput == pytest.approx(10.1)
    assert summary.p(50) == pytest.approx(51.0)
    assert summary.p(99) == pytest.approx(100.0)
    assert summary.latency_ms["max"] == pytest.approx(1010.0)
    assert summary.errors == {"connect": 0, "timeout": 0, "read": 0, "status": 2}
    assert summary.statuses == {"200": 102, "204": 1, "401": 1, "503": 1}
    assert summary.error_count == 2
    assert summary.client_cpu_seconds == 1.5


def test_errors_are_counted_by_kind_over_the_whole_run() -> None:
    rec = ls.Recorder(connections=1000, window_start=5.0, window_end=6.0)
    for kind, times in [
        (ls.ErrorKind.CONNECT, 3),
        (ls.ErrorKind.TIMEOUT, 2),
        (ls.ErrorKind.READ, 1),
    ]:
        for _ in range(times):
            rec.error(kind)
    rec.error(ls.ErrorKind.TIMEOUT, first_request=True)  # e.g. a connection never accepted
    summary = rec.summary()
    assert summary.errors == {"connect": 3, "timeout": 3, "read": 1, "status": 0}
    assert summary.first_request_timeouts == 1
    assert summary.error_count == 7
    assert summary.responses == 0
    assert summary.latency_ms == {}  # no samples: no made-up percentiles
    with pytest.raises(ValueError, match="recorded by response"):
        rec.error(ls.ErrorKind.STATUS)


def test_summary_survives_json() -> None:
    rec = ls.Recorder(connections=2, window_start=0.0, window_end=1.0)
    rec.response(0.1, 0.2, 200)
    rec.error(ls.ErrorKind.TIMEOUT)
    summary = rec.summary(0.25)
    again = ls.Summary.from_json(json.loads(json.dumps(summary.to_json())))
    assert again == summary


# --- response framing --------------------------------------------------------------


def test_parse_response_frames_by_content_length() -> None:
    buf = bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
    assert loadgen.parse_response(buf) is None
    buf += b"loHTTP/1.1"  # the start of a pipelined next response stays unread
    assert loadgen.parse_response(buf) == (len(buf) - len(b"HTTP/1.1"), 200, True)


def test_parse_response_frames_chunked_bodies_and_connection_close() -> None:
    head = b"HTTP/1.1 503 No\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    body = b"3;ext=1\r\nabc\r\n0\r\n\r\n"
    for cut in range(len(body)):
        assert loadgen.parse_response(bytearray(head + body[:cut])) is None
    assert loadgen.parse_response(bytearray(head + body)) == (len(head + body), 503, False)
    assert loadgen.parse_response(bytearray(b"HTTP/1.0 204 No Content\r\n\r\n")) == (
        27,
        204,
        False,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\n\r\nbody", "without Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
def test_parse_response_refuses_what_it_cannot_frame(raw: bytes, message: str) -> None:
    with pytest.raises(loadgen.ProtocolError, match=message):
        loadgen.parse_response(bytearray(raw))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://10.1.2.3:80/", "only loopback"),
        ("http://example.com:80/", "only loopback"),
        ("https://127.0.0.1:443/", "must be http://"),
        ("http://127.0.0.1/", "must be http://"),
    ],
)
def test_build_target_accepts_only_plain_http_on_loopback(url: str, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        loadgen.build_target(url, [])


def test_build_target_renders_the_request_once() -> None:
    target = loadgen.build_target("http://localhost:8080/v1/x?a=1", ["Authorization: Bearer t"])
    assert (target.host, target.port) == ("127.0.0.1", 8080)
    assert target.payload == (
        b"GET /v1/x?a=1 HTTP/1.1\r\nHost: localhost:8080\r\nAuthorization: Bearer t\r\n\r\n"
    )
    with pytest.raises(SystemExit, match="'Name: value'"):
        loadgen.build_target("http://127.0.0.1:1/", ["Bad\r\nInjected: 1"])


# --- error counting, end to end --------------------------------------------------------

# what the scripted server does with its n-th request (cycling, over all connections)
SCRIPT = ("ok", "chunked", "unavailable", "close", "hang")


class ScriptedServer:
    """Answers each request by SCRIPT and counts what it did."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.done: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._script = itertools.cycle(SCRIPT)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buf += data
                buf = buf.split(b"\r\n\r\n", 1)[1]
                with self._lock:
                    action = next(self._script)
                    self.done[action] += 1
                if action == "ok":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                elif action == "chunked":
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                    )
                elif action == "unavailable":
                    conn.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
                elif action == "close":
                    return  # closes without an answer
                else:  # hang: wait until the client gives up and closes
                    while conn.recv(4096):
                        pass
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


def run_loadgen(port: int, *args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "loadgen.py"), "--url", f"http://127.0.0.1:{port}/x", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_loadgen_process_counts_every_kind_of_error_the_server_caused(
    scripted: ScriptedServer,
) -> None:
    out = run_loadgen(
        scripted.port,
        # a timeout well above a loaded machine's answer time, so an answer
        # the server gave is never counted as the client's timeout
        *("--connections", "3", "--duration", "1.0", "--warmup", "0", "--timeout", "0.5"),
    )
    summary = ls.Summary.from_json(out)
    done = scripted.done
    assert done["hang"] >= 1  # the script went round at least once
    # the client counts what it saw before its duration ended; the server may
    # have answered one more request per connection after that (a loaded
    # machine shows it), so each count is the server's, less at most one per
    # connection
    connections = 3

    def seen(client: int, server: int) -> bool:
        return server - connections <= client <= server

    assert set(summary.statuses) <= {"200", "503"}
    assert seen(summary.statuses.get("200", 0), done["ok"] + done["chunked"])
    assert seen(summary.statuses.get("503", 0), done["unavailable"])
    assert summary.errors["connect"] == 0
    assert seen(summary.errors["timeout"], done["hang"])
    assert seen(summary.errors["read"], done["close"])
    # every 503 counted is also a status error, one for one
    assert summary.errors["status"] == summary.statuses.get("503", 0)
    assert summary.responses == done["ok"] + done["chunked"]
    assert summary.connections == 3


def test_loadgen_process_counts_refused_connections() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = int(sock.getsockname()[1])  # closed again below: nobody listens there
    out = run_loadgen(port, "--connections", "2", "--duration", "0.2", "--warmup", "0")
    summary = ls.Summary.from_json(out)
    assert summary.errors["connect"] >= 2
    assert summary.responses == 0
    assert summary.statuses == {}


def test_loadgen_process_counts_connections_never_accepted_as_first_request_timeouts() -> None:
    # the kernel completes the handshake for a listening socket nobody accepts
    # from: the request waits in the listen queue, as under a saturated server
    with socket.create_server(("127.0.0.1", 0), backlog=16) as sock:
        port = int(sock.getsockname()[1])
        out = run_loadgen(
            port, *("--connections", "2", "--duration", "0.3", "--warmup", "0", "--timeout", "0.2")
        )
    summary = ls.Summary.from_json(out)
    assert summary.errors["timeout"] >= 2
    assert summary.first_request_timeouts == summary.errors["timeout"]
    assert summary.errors["connect"] == 0
    assert summary.responses == 0
