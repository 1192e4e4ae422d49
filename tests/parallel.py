"""How the suite runs in parallel under pytest-xdist (see docs/testing.md).

``scripts/test.sh`` runs two phases: every test not marked ``serial`` with
``-n`` workers and ``--dist loadgroup``, then the ``serial`` tests alone.

Under ``--dist loadgroup`` this module's scheduler decides what runs together:

- Outside tests/conformance/test_conformance.py each test module is one unit
  of work: its tests run one after another on one worker, in file order, as
  they do serially. Module fixtures are set up once, and tests that share
  something (a fixed host port in the compose examples, a module's
  controller) never overlap. Modules run side by side.
- Conformance cases are independent (each in its own namespace), so each one
  is a unit of its own and the 500-odd cases spread over every worker.
- Integration modules (the longest units) are handed out first, then the
  conformance cases and unit tests fill the workers up to the end.

xdist's own loadgroup cannot be used for this: it regroups by rewriting
``item._nodeid``, which pytest 9 no longer reads (``nodeid`` comes from
``_id``), so its groups silently fall apart.

``serial`` tests kill or restart an engine every other test is using, or act
on engine-wide state; they must run while nothing else runs, and xdist has
no exclusive mode, so a worker refuses them.
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

#: files whose tests are scheduled one by one (independent cases)
ONE_BY_ONE = frozenset({"tests/conformance/test_conformance.py"})

#: directories in the order their units are handed out: longest first
HAND_OUT_ORDER = ("tests/integration/", "tests/conformance/")

SERIAL_HINT = (
    "marked serial (it kills or restarts a shared engine, or acts on engine-wide state): "
    "it must run alone, outside xdist: `pytest -m serial` "
    '(scripts/test.sh runs that after `pytest -m "not serial" -n N`)'
)


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its module, or itself for independent cases."""
    module = nodeid.split("::", 1)[0]
    return nodeid if module in ONE_BY_ONE else module


def hand_out_rank(nodeid: str) -> int:
    return next(
        (rank for rank, prefix in enumerate(HAND_OUT_ORDER) if nodeid.startswith(prefix)),
        len(HAND_OUT_ORDER),
    )


class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """xdist's load-by-scope scheduling with ``scope_of`` as the scope."""

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)


def make_scheduler(config: pytest.Config, log: Any) -> ModuleScheduling | None:
    """The xdist controller's scheduler for ``--dist loadgroup`` (None: xdist's own)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    # units in collection order (see order_for_xdist), not largest first
    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)


def order_for_xdist(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a loadgroup worker: integration modules first (stable, so every worker
    agrees and a module keeps its file order)."""
    if hasattr(config, "workerinput") and getattr(config.option, "loadgroup", False):
        items.sort(key=lambda item: hand_out_rank(item.nodeid))


def refuse_serial_on_worker(item: pytest.Item) -> None:
    """A ``serial`` test on an xdist worker would run beside others: fail it, saying why."""
    if item.get_closest_marker("serial") is None:
        return
    if hasattr(item.config, "workerinput"):
        pytest.fail(f"{item.nodeid} is {SERIAL_HINT}", pytrace=False)
