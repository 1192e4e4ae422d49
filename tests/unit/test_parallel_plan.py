"""How tests/parallel.py groups tests for xdist and keeps serial ones off workers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from tests.parallel import group_for_xdist, refuse_serial_on_worker


class FakeItem:
    """Just what the grouping reads and writes of a pytest item."""

    def __init__(self, nodeid: str, *marks: pytest.MarkDecorator, worker: bool = False) -> None:
        self.nodeid = nodeid
        self.marks = [m.mark for m in marks]
        self.config: Any = SimpleNamespace(workerinput={}) if worker else SimpleNamespace()

    def get_closest_marker(self, name: str) -> pytest.Mark | None:
        return next((m for m in self.marks if m.name == name), None)

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.marks.append(marker.mark)


def group_of(item: FakeItem) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    return None if mark is None else str(mark.args[0])


def test_modules_are_groups_and_conformance_cases_are_not() -> None:
    items = [
        FakeItem("tests/integration/test_x.py::test_a"),
        FakeItem("tests/integration/test_x.py::test_b[docker]"),
        FakeItem("tests/unit/test_y.py::TestY::test_c"),
        FakeItem("tests/conformance/test_conformance.py::test_case[docker-env.set]"),
        FakeItem("tests/unit/test_z.py::test_d", pytest.mark.xdist_group("mine")),
    ]
    group_for_xdist(items)  # type: ignore[arg-type]
    assert [group_of(i) for i in items] == [
        "tests/integration/test_x.py",
        "tests/integration/test_x.py",
        "tests/unit/test_y.py",
        None,
        "mine",
    ]


def test_a_serial_test_fails_on_a_worker_and_says_how_to_run_it() -> None:
    refuse_serial_on_worker(FakeItem("t.py::test_kill", pytest.mark.serial))  # type: ignore[arg-type]
    refuse_serial_on_worker(FakeItem("t.py::test_ok", worker=True))  # type: ignore[arg-type]
    with pytest.raises(pytest.fail.Exception, match=r"t.py::test_kill .*`pytest -m serial`"):
        refuse_serial_on_worker(FakeItem("t.py::test_kill", pytest.mark.serial, worker=True))  # type: ignore[arg-type]
