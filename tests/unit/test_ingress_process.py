"""portway.ingress: process helpers, errors and the manager's record, no HAProxy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portway.errors import PortwayError
from portway.ingress import (
    IngressConfigError,
    IngressManager,
    IngressPortInUseError,
    IngressProcessError,
    IngressRuntimeError,
)
from portway.ingress.manager import _Record
from portway.ingress.process import (
    bind_failure,
    ensure_port_free,
    find_binary,
    pid_alive,
    read_pid,
    runs_config,
)

HAPROXY_BIND_ALERT = (
    "[ALERT]    (29546) : Binding [haproxy.cfg:20] for frontend fe_127.0.0.1_18095: cannot bind "
    "socket (Address already in use) for [127.0.0.1:18095]\n"
    "[ALERT]    (29546) : [haproxy.main()] Some protocols failed to start their listeners! Exiting."
)


def test_bind_failure_names_the_port() -> None:
    error = bind_failure(HAPROXY_BIND_ALERT)
    assert isinstance(error, IngressPortInUseError) and isinstance(error, PortwayError)
    assert (error.listen, error.port) == ("127.0.0.1:18095", 18095)
    assert "port 18095 is already in use" in str(error)
    assert bind_failure("[NOTICE] Loading success.") is None


def test_ensure_port_free() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(IngressPortInUseError, match=f"127.0.0.1:{port}: port {port}"):
            ensure_port_free("127.0.0.1", port)
    ensure_port_free("127.0.0.1", port)  # closed: free again


def test_pid_alive_and_zombies() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.02)
    assert not pid_alive(child.pid)  # exited, not reaped yet: a zombie is not alive
    child.wait()
    assert not pid_alive(child.pid)


def test_runs_config_recognises_only_haproxy_with_that_file(tmp_path: Path) -> None:
    assert not runs_config(os.getpid(), tmp_path / "haproxy.cfg")


def test_read_pid(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.pid"
    assert read_pid(path) is None
    path.write_text("1234\n")
    assert read_pid(path) == 1234
    path.write_text("garbage")
    assert read_pid(path) is None


def test_find_binary_says_what_to_install() -> None:
    with pytest.raises(IngressProcessError, match="apt-get install haproxy"):
        find_binary("haproxy-that-does-not-exist")


def test_config_error_shows_haproxys_alerts() -> None:
    output = (
        "[NOTICE]   (1) : haproxy version is 2.6.12\n"
        "[ALERT]    (1) : config : [haproxy.cfg.new:47] : 'fall' has to be > 0..\n"
        "[ALERT]    (1) : config : Fatal errors found in configuration."
    )
    error = IngressConfigError("/home/ingress/haproxy.cfg.rejected", output)
    assert str(error).splitlines() == [
        "haproxy -c refused the new ingress configuration (/home/ingress/haproxy.cfg.rejected); "
        "the running one was kept:",
        "[ALERT]    (1) : config : [haproxy.cfg.new:47] : 'fall' has to be > 0..",
        "[ALERT]    (1) : config : Fatal errors found in configuration.",
    ]
    assert error.output == output


def test_runtime_error_names_the_command() -> None:
    error = IngressRuntimeError("set server be/s9 state ready", "No such server.\n")
    assert str(error) == (
        "HAProxy runtime API refused 'set server be/s9 state ready': 'No such server.'"
    )


def test_process_error_carries_the_log_tail() -> None:
    error = IngressProcessError("HAProxy exited right after it started", "[ALERT] boom")
    assert str(error).endswith("last lines of HAProxy's log:\n[ALERT] boom")


def test_record_round_trip() -> None:
    record = _Record(
        digest="abc",
        summary={"listeners": {}, "backends": {}, "settings": "s"},
        layout={"web": ("c1", None)},
        labels={"web": ("web-0", "-")},
        backend_ids={"web": "be_web"},
    )
    assert _Record.from_json(record.to_json()) == record


@pytest.mark.parametrize("text", ["", "{}", "[]", '{"format": 99}', '{"format": 1}', "not json"])
def test_a_record_that_cannot_be_read_is_no_record(text: str) -> None:
    assert _Record.from_json(text) is None


def test_a_home_too_long_for_a_unix_socket_keeps_its_sockets_elsewhere(tmp_path: Path) -> None:
    manager = IngressManager(tmp_path / ("x" * 120))
    for path in (manager.paths.master_socket, manager.paths.stats_socket):
        assert len(str(path)) <= 97  # HAProxy's own limit
        assert not str(path).startswith(str(tmp_path))


def test_nothing_running_means_no_status_and_stop_is_a_no_op(tmp_path: Path) -> None:
    manager = IngressManager(tmp_path)
    assert manager.status() == {}
    assert manager.process_info() is None
    manager.stop()
    assert not manager.adopted


class _RefusingSocket:
    def run(self, command: str) -> None:
        raise IngressRuntimeError(command, "No such server.\n")


def test_a_refused_command_makes_the_manager_forget_the_map_values(tmp_path: Path) -> None:
    manager = IngressManager(tmp_path)
    manager.paths.dir.mkdir(parents=True)
    manager._record = _Record(digest="d", labels={"web": ("web-0",)})
    manager._stats = _RefusingSocket()  # type: ignore[assignment]
    with pytest.raises(IngressRuntimeError):
        manager._send(["set map /m s1 web-1"])
    saved = _Record.from_json(manager.paths.record.read_text())
    assert saved is not None and saved.labels == {} and saved.digest == "d"
