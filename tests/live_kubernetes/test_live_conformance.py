"""The conformance suite's Kubernetes column, against a live cluster: one
test per case, as tests/conformance does for the engines on this machine.

Two cases are expected to fail on any cluster, and say why (strict xfail:
if one passes, the driver changed and the claim must be looked at again).
Cases that reach a replica through a published port depend on where the
test runs: hostPorts bind on the *node*, so they pass where the node's
127.0.0.1 is this machine's (a single-node cluster on this host), not on a
kind node container or a remote cluster. The matrix printed at the end
(and written under pytest's base temporary directory) is the column.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from portway.capabilities.matrix import Matrix
from portway.conformance import (
    DEFAULT_IMAGE,
    CaseResult,
    Outcome,
    SuiteResult,
    all_cases,
    preflight,
    render_markdown,
    run_case,
)
from portway.conformance.case import Case, declared_in_tier, new_cluster
from portway.drivers.kubernetes.driver import KubernetesDriver

pytestmark = pytest.mark.kubernetes_live

#: case -> why Kubernetes cannot pass it
EXPECTED_FAILURES = {
    "lifecycle.restart_in_place": (
        "a Pod runs once: starting an exited replica again makes a new Pod of the same "
        "name, whose filesystem is fresh"
    ),
    "logs.stderr_separated": (
        "the Pod log API interleaves stdout and stderr (splitting them needs the alpha "
        "PodLogsQuerySplitStreams gate, and then not with tailLines)"
    ),
}


def _params() -> list[object]:
    out: list[object] = []
    for case in all_cases():
        if "standard" not in case.tiers:
            continue
        marks = []
        if case.id in EXPECTED_FAILURES:
            marks.append(pytest.mark.xfail(reason=EXPECTED_FAILURES[case.id], strict=True))
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


@pytest.fixture(scope="module")
def suite(live_address: str) -> Iterator[tuple[KubernetesDriver, str, list[CaseResult]]]:
    driver = KubernetesDriver("live-kubernetes", live_address)
    engine = preflight(driver, DEFAULT_IMAGE, "standard")
    results: list[CaseResult] = []
    yield driver, engine, results
    driver.close()
    if results:
        column = SuiteResult(
            driver=driver.name,
            target=driver.target,
            engine=engine,
            declared=declared_in_tier(driver.capabilities(), "standard"),
            results=tuple(results),
            generated_at="",
            complete=False,
        )
        print("\n" + render_markdown(Matrix().merged(column.to_driver_results())))


@pytest.mark.parametrize("case", _params())
def test_case(case: Case, suite: tuple[KubernetesDriver, str, list[CaseResult]]) -> None:
    driver, _, results = suite
    result = run_case(driver, case, cluster=new_cluster(), tier="standard")
    results.append(result)
    if result.outcome is Outcome.UNSUPPORTED:
        assert result.missing, result  # not claimed, so not run: fine
        return
    assert result.outcome is Outcome.PASS, f"{case.id}: {result.message}"
