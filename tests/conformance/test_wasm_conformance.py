"""The wasm tier's conformance cases (``cases_wasm``) against the real wasm
driver: real wasmtime, real worker processes, nothing external, so no engine
marker and no skip. Every feature the driver declares is proved here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from portway.conformance import Outcome, run_case
from portway.conformance.case import Case, all_cases
from portway.drivers.wasm import WasmDriver
from tests.integration.wasm_helpers import worker_pids

WASM_CASES = all_cases("wasm")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WasmDriver]:
    state = tmp_path_factory.mktemp("wasm-conformance") / "state"
    yield WasmDriver("conformance-wasm", f"wasm://{state}")
    assert worker_pids(state) == []


def test_the_tiers_keep_their_own_cases() -> None:
    container = all_cases()
    assert WASM_CASES and all(c.tiers == frozenset({"wasm"}) for c in WASM_CASES)
    assert not {c.id for c in WASM_CASES} & {c.id for c in container}
    assert all("standard" in c.tiers for c in container)


def test_every_declared_feature_has_a_wasm_case(tmp_path: Path) -> None:
    declared = WasmDriver("t", f"wasm://{tmp_path}").capabilities().features
    covered = {f for c in WASM_CASES for f in c.features}
    assert declared <= covered, f"declared but never proved: {sorted(declared - covered)}"


@pytest.mark.parametrize("case", WASM_CASES, ids=[c.id for c in WASM_CASES])
def test_wasm_case(driver: WasmDriver, case: Case) -> None:
    result = run_case(driver, case, tier="wasm")
    assert result.outcome is Outcome.PASS, f"{case.id}: {result.message}"
