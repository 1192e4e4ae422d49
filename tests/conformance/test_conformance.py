"""The conformance suite under pytest: one test per (backend, case).

Each test runs one case against the real engine through
``portway.conformance.run_case``. A case whose features the driver does not
declare is not run; the test then passes after checking that the capability
matrix marks those features unsupported: an undeclared feature is not a
claim, and a skip would fail CI (see tests/conftest.py).

At the end of the session the capability matrix of each backend that ran is
printed in the terminal summary (so it is in the CI log) and written under
pytest's base temporary directory (``conformance/capability-matrix.{md,json}``);
under xdist the workers' parts are merged first (see matrix_report.py).

Addresses: ``PORTWAY_<BACKEND>_ADDRESS``, else the engine's default socket
(``PORTWAY_PODMAN_SOCKET`` / ``PORTWAY_CONTAINERD_SOCKET`` as in tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from portway.capabilities.matrix import Status, column_key, load_packaged
from portway.capabilities.vocabulary import Feature
from portway.conformance import (
    DEFAULT_IMAGE,
    CaseResult,
    ConformanceError,
    Outcome,
    SuiteResult,
    all_cases,
    kept_matrix_paths,
    preflight,
    run_case,
)
from portway.conformance.case import Case, declared_in_tier, new_cluster
from portway.drivers.base import Driver, Health
from portway.drivers.docker import docker_base_url
from portway.drivers.registry import open_driver
from tests.conformance.matrix_report import hand_in

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Backend:
    name: str  # driver name, and the pytest marker that says which engine is needed
    module: str  # the driver's module
    address_env: str
    default_address: str
    #: how to put the test images on this engine
    images_hint: str

    def address(self) -> str:
        return os.environ.get(self.address_env, self.default_address)


BACKENDS: tuple[Backend, ...] = (
    Backend(
        "docker",
        "portway.drivers.docker",
        "PORTWAY_DOCKER_ADDRESS",
        "docker:///var/run/docker.sock",
        "bash scripts/build-images.sh",
    ),
    Backend(
        "podman",
        "portway.drivers.podman",
        "PORTWAY_PODMAN_ADDRESS",
        "podman://" + os.environ.get("PORTWAY_PODMAN_SOCKET", "/run/podman/podman.sock"),
        "bash scripts/engines-podman.sh",
    ),
    Backend(
        "containerd",
        "portway.drivers.containerd",
        "PORTWAY_CONTAINERD_ADDRESS",
        "containerd://"
        + os.environ.get("PORTWAY_CONTAINERD_SOCKET", "/run/containerd/containerd.sock"),
        "bash scripts/engines-containerd.sh",
    ),
)

#: Backends whose driver is still being written: they get test parameters only
#: once their driver module exists. When a driver lands, remove its name here,
#: so that from then on a missing module is a failure, not silence.
AWAITING_DRIVER: frozenset[str] = frozenset()  # every backend has landed: a missing one fails


def active_backends() -> list[Backend]:
    return [
        b
        for b in BACKENDS
        if b.name not in AWAITING_DRIVER or importlib.util.find_spec(b.module) is not None
    ]


CASES: tuple[Case, ...] = all_cases()

#: isolation tiers every container backend must offer here: the project's
#: scripts install gVisor (runsc) and configure it for each engine, so a
#: backend without its sandboxed handler fails the suite rather than skipping.
TIERS: tuple[str, ...] = ("standard", "sandboxed")


def _column(backend: Backend, tier: str) -> str:
    return column_key(backend.name, tier)


def _params() -> list[object]:
    return [
        pytest.param(
            backend,
            tier,
            case,
            # no "@" in ids: pytest -k cannot parse it (docker-sandboxed-lifecycle.…)
            id=f"{_column(backend, tier).replace('@', '-')}-{case.id}",
            marks=getattr(pytest.mark, backend.name),
        )
        for backend in active_backends()
        for tier in TIERS
        for case in CASES
        if tier in case.tiers
    ]


def _cases_in(tier: str) -> int:
    return sum(tier in c.tiers for c in CASES)


# --- the session: drivers opened once, results collected, matrix at the end ----


@dataclass
class ConformanceSession:
    """Drivers opened on first use (nothing heavy at session start) and the
    results of every case run, per backend."""

    cluster: str = field(default_factory=new_cluster)
    started_at: str = field(
        default_factory=lambda: (
            datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        )
    )
    drivers: dict[str, Driver] = field(default_factory=dict)
    #: column (docker, docker@sandboxed) -> engine description
    engines: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # column -> why it cannot run
    results: dict[str, list[CaseResult]] = field(default_factory=dict)  # column -> results
    tiers: dict[str, tuple[str, str]] = field(default_factory=dict)  # column -> (backend, tier)

    def driver(self, backend: Backend, tier: str = "standard") -> Driver:
        column = _column(backend, tier)
        if column in self.broken:
            pytest.fail(self.broken[column], pytrace=False)
        if column not in self.engines:
            try:
                if backend.name not in self.drivers:
                    self.drivers[backend.name] = open_driver(
                        f"conformance-{backend.name}", backend.name, backend.address()
                    )
                driver = self.drivers[backend.name]
                self.engines[column] = self._prepare(backend, driver, tier)
            except Exception as exc:  # every later test of this column fails the same way
                self.broken[column] = f"{column} cannot run the suite: {exc}"
                pytest.fail(self.broken[column], pytrace=False)
            self.tiers[column] = (backend.name, tier)
        return self.drivers[backend.name]

    @staticmethod
    def _prepare(backend: Backend, driver: Driver, tier: str) -> str:
        """The engine's description, once it is healthy, has the test image
        and offers the tier."""
        try:
            return preflight(driver, DEFAULT_IMAGE, tier)
        except ConformanceError as exc:
            healthy = driver.fingerprint().health is Health.HEALTHY
            if backend.name != "docker" or not healthy:
                raise ConformanceError(f"{exc}; prepare it with {backend.images_hint}") from None
        # a missing image on Docker: build it, as tests/integration do
        env = {**os.environ, "DOCKER_HOST": docker_base_url(backend.address())}
        built = subprocess.run(
            ["bash", str(REPO / "scripts" / "build-images.sh")],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        if built.returncode != 0:
            raise ConformanceError(f"build-images.sh failed:\n{built.stdout}{built.stderr}")
        return preflight(driver, DEFAULT_IMAGE, tier)

    def record(self, backend: Backend, tier: str, result: CaseResult) -> None:
        self.results.setdefault(_column(backend, tier), []).append(result)

    def suite(self, column: str) -> SuiteResult:
        backend, tier = self.tiers[column]
        driver = self.drivers[backend]
        results = self.results.get(column, [])
        return SuiteResult(
            driver=driver.name,
            target=driver.target,
            engine=self.engines.get(column, ""),
            declared=declared_in_tier(driver.capabilities(), tier),
            results=tuple(results),
            generated_at=self.started_at,
            complete=len(results) == _cases_in(tier),
            tier=tier,
            gaps=driver.capabilities().gaps_in(tier) if tier != "standard" else {},
        )

    def close(self) -> None:
        for driver in self.drivers.values():
            close = getattr(driver, "close", None)
            if callable(close):
                close()


@pytest.fixture(scope="session")
def conformance_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConformanceSession]:
    session = ConformanceSession()
    yield session
    session.close()
    ran = sorted(c for c in session.results if c in session.tiers)
    if ran:
        # under xdist this worker holds only part of the run: matrix_report merges the parts
        out = tmp_path_factory.getbasetemp() / "conformance"
        if hasattr(request.config, "workerinput"):
            out = tmp_path_factory.getbasetemp().parent / "conformance"
        hand_in(request.config, [session.suite(c) for c in ran], out)


# --- one test per (backend, case) ------------------------------------------------


@pytest.mark.parametrize(("backend", "tier", "case"), _params())
def test_case(
    backend: Backend, tier: str, case: Case, conformance_session: ConformanceSession
) -> None:
    driver = conformance_session.driver(backend, tier)
    result = run_case(driver, case, cluster=conformance_session.cluster, tier=tier)
    conformance_session.record(backend, tier, result)
    if result.outcome is Outcome.UNSUPPORTED:
        # not a claim, so not a failure; but the matrix must not call it proven
        single = SuiteResult(
            driver=driver.name,
            target=driver.target,
            engine="",
            declared=declared_in_tier(driver.capabilities(), tier),
            results=(result,),
            generated_at="",
            tier=tier,
        ).to_driver_results()
        assert result.missing, result
        for feature in result.missing:
            assert single.status(feature) is Status.UNSUPPORTED, (feature, single)
        for feature in case.features_in(tier):
            assert single.status(feature) is not Status.PASS, (feature, single)
        return
    if result.outcome is Outcome.FAIL:
        pytest.fail(f"{case.id} on {_column(backend, tier)}: {result.message}", pytrace=False)
    assert result.outcome is Outcome.PASS


# --- the kept matrix -------------------------------------------------------------


def test_kept_matrix_agrees_with_docker_declarations() -> None:
    """The matrix shipped in the repository (what the planner trusts) matches
    what the Docker driver declares: every declared feature is pass or
    untested, nothing undeclared is pass. Regenerate it with
    ``python -m portway.conformance --address docker:///var/run/docker.sock --write-matrix``."""
    kept = load_packaged().for_driver("docker")
    json_path, _ = kept_matrix_paths()
    assert kept is not None, f"{json_path} has no docker results; regenerate it"
    # opening a driver connects to nothing; capabilities are fixed per driver
    declared = open_driver("conformance", "docker", "docker:///var/run/docker.sock")
    # the kept column is the standard tier's: judge what the driver claims there
    # (its other isolation tiers have their own columns)
    features = declared_in_tier(declared.capabilities(), "standard")
    wrong = {
        feature.value: kept.status(feature).value
        for feature in Feature
        if (feature in features and kept.status(feature) not in (Status.PASS, Status.UNTESTED))
        or (feature not in features and kept.status(feature) is Status.PASS)
    }
    failures = {
        f.value: list(kept.features[f].failures)
        for f in Feature
        if f.value in wrong and f in kept.features
    }
    assert not wrong, (
        f"{json_path} disagrees with the Docker driver's declarations: {wrong}; "
        f"failures: {failures}"
    )
