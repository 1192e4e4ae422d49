"""How the Podman driver reads the engine's refusals, without an engine."""

from __future__ import annotations

import podman.errors
import requests

from portway.drivers.podman import PodmanDriver
from portway.errors import PermanentDriverError, TemporaryDriverError


def _api_error(status: int, explanation: str) -> podman.errors.APIError:
    response = requests.models.Response()
    response.status_code = status
    return podman.errors.APIError(f"{status} error", response=response, explanation=explanation)


def test_an_inspect_that_races_a_process_exit_is_worth_retrying() -> None:
    driver = PodmanDriver("t", "podman:///nonexistent/podman.sock")  # connects lazily
    raced = driver._translate(
        _api_error(500, "read /proc/14172/cgroup: no such process"), "inspect x"
    )
    assert isinstance(raced, TemporaryDriverError) and "raced a process exit" in str(raced)
    other = driver._translate(_api_error(500, "something else broke"), "inspect x")
    assert isinstance(other, PermanentDriverError)
