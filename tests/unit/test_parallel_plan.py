"""How tests/parallel.py cuts the suite into xdist units and keeps serial tests off workers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from tests.parallel import hand_out_rank, refuse_serial_on_worker, scope_of


def test_a_module_is_one_unit_and_a_conformance_case_is_its_own() -> None:
    assert scope_of("tests/integration/test_x.py::test_a") == "tests/integration/test_x.py"
    assert scope_of("tests/integration/test_x.py::test_b[docker]") == "tests/integration/test_x.py"
    assert scope_of("tests/unit/test_y.py::TestY::test_c") == "tests/unit/test_y.py"
    case = "tests/conformance/test_conformance.py::test_case[docker-env.set]"
    assert scope_of(case) == case
    runner = "tests/conformance/test_runner.py::test_write_matrix_round_trips_and_renders"
    assert scope_of(runner) == "tests/conformance/test_runner.py"


def test_integration_modules_are_handed_out_first() -> None:
    ids = [
        "tests/unit/test_y.py::test_c",
        "tests/conformance/test_conformance.py::test_case[docker-env.set]",
        "tests/integration/test_x.py::test_a",
    ]
    assert sorted(ids, key=hand_out_rank) == list(reversed(ids))


class FakeItem:
    """Just what the refusal reads of a pytest item."""

    def __init__(self, nodeid: str, serial: bool, worker: bool) -> None:
        self.nodeid = nodeid
        self.serial = serial
        self.config: Any = SimpleNamespace(workerinput={}) if worker else SimpleNamespace()

    def get_closest_marker(self, name: str) -> pytest.Mark | None:
        return pytest.mark.serial.mark if name == "serial" and self.serial else None


def test_a_serial_test_fails_on_a_worker_and_says_how_to_run_it() -> None:
    refuse_serial_on_worker(FakeItem("t.py::test_kill", serial=True, worker=False))  # type: ignore[arg-type]
    refuse_serial_on_worker(FakeItem("t.py::test_ok", serial=False, worker=True))  # type: ignore[arg-type]
    with pytest.raises(pytest.fail.Exception, match=r"t.py::test_kill .*`pytest -m serial`"):
        refuse_serial_on_worker(FakeItem("t.py::test_kill", serial=True, worker=True))  # type: ignore[arg-type]
