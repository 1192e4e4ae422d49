"""How the Podman driver reads the engine's refusals, without an engine."""

from __future__ import annotations

from collections.abc import Callable

import podman.errors
import pytest
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


def test_a_network_create_that_races_an_interface_removal_is_worth_retrying() -> None:
    driver = PodmanDriver("t", "podman:///nonexistent/podman.sock")
    message = "route ip+net: no such network interface"
    raced = driver._translate(_api_error(500, message), "create network n")
    assert isinstance(raced, TemporaryDriverError) and "raced an interface removal" in str(raced)


def test_a_race_is_retried_a_moment_later_and_other_refusals_are_not() -> None:
    from portway.drivers import podman as podman_module

    race = "route ip+net: no such network interface"
    calls: list[str] = []

    def engine(*answers: str) -> Callable[[], str]:
        """A call that raises an HTTP 500 per message given, then answers "made"."""
        pending = list(answers)

        def call() -> str:
            calls.append("call")
            if pending:
                raise _api_error(500, pending.pop(0))
            return "made"

        return call

    assert podman_module._retry_race("no such network interface", engine(race, race)) == "made"
    assert len(calls) == 3

    calls.clear()
    endless = engine(*[race] * 10)
    with pytest.raises(podman.errors.APIError, match="no such network interface"):
        podman_module._retry_race("no such network interface", endless)
    assert len(calls) == podman_module._RACE_RETRIES

    calls.clear()
    with pytest.raises(podman.errors.APIError, match="something else"):
        podman_module._retry_race("no such network interface", engine("something else broke"))
    assert calls == ["call"]
