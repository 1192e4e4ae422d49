"""How the suite runs in parallel under pytest-xdist (see docs/testing.md).

``scripts/test.sh`` runs two phases: every test not marked ``serial`` with
``-n`` workers and ``--dist loadgroup``, then the ``serial`` tests alone.

- Outside tests/conformance, each test module is one xdist group, so a
  module's tests run one after another on one worker, in file order, as they
  do serially: module fixtures are set up once and tests that build on each
  other's engine state never overlap. Modules run in parallel with each other.
- Conformance cases are independent (each in its own namespace), so each one
  is scheduled on its own: the 500-odd cases spread over every worker.
- ``serial`` tests kill or restart an engine every other test is using, or act
  on engine-wide state; they must run while nothing else runs, and xdist has
  no exclusive mode, so a worker refuses them.
"""

from __future__ import annotations

import pytest

#: tests scheduled one by one rather than as a module (independent cases)
UNGROUPED_DIRS = ("tests/conformance/test_conformance.py",)

SERIAL_HINT = (
    "marked serial (it kills or restarts a shared engine, or acts on engine-wide state): "
    "it must run alone, outside xdist: `pytest -m serial` "
    '(scripts/test.sh runs that after `pytest -m "not serial" -n N`)'
)


def group_for_xdist(items: list[pytest.Item]) -> None:
    """Give every test outside the independent-case files its module's xdist group."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        module = item.nodeid.split("::", 1)[0]
        if module in UNGROUPED_DIRS:
            continue
        item.add_marker(pytest.mark.xdist_group(module))


def refuse_serial_on_worker(item: pytest.Item) -> None:
    """A ``serial`` test on an xdist worker would run beside others: fail it, saying why."""
    if item.get_closest_marker("serial") is None:
        return
    if hasattr(item.config, "workerinput"):
        pytest.fail(f"{item.nodeid} is {SERIAL_HINT}", pytrace=False)
