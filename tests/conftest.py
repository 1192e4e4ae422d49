"""Fixtures and policy shared by every test.

Policy, so that nothing is skipped without saying why:

- ``slow`` tests (stress variants) run only with ``--run-stress`` or
  ``PORTWAY_STRESS=1``; otherwise they are skipped with that reason.
- ``docker`` tests need a Docker Engine. Where one is required
  (``PORTWAY_REQUIRE_ENGINES=1`` or ``CI=true``), a docker test whose engine
  cannot be reached fails, and so does any other skip of a docker test; where
  it is not required, such a test is skipped with the reason.
"""

from __future__ import annotations

import functools
import gc
import os
import warnings
from collections import Counter
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from portway.store import Store
from tests.conformance import matrix_report as conformance_report
from tests.parallel import make_scheduler, order_for_xdist, refuse_serial_on_worker

_STRESS_SKIP = pytest.StashKey[bool]()
_TRUE = {"1", "true", "yes", "on"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def engines_required() -> bool:
    """Whether a missing engine is a failure rather than a reason to skip."""
    return _env_flag("PORTWAY_REQUIRE_ENGINES") or _env_flag("CI")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-stress",
        action="store_true",
        default=False,
        help="run tests marked slow (same as PORTWAY_STRESS=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    order_for_xdist(config, items)
    if config.getoption("--run-stress") or _env_flag("PORTWAY_STRESS"):
        return
    skip = pytest.mark.skip(reason="slow stress variant: run with --run-stress or PORTWAY_STRESS=1")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
            item.stash[_STRESS_SKIP] = True


@functools.cache
def _docker_unreachable() -> str | None:
    """Why the Docker Engine cannot be reached (None if it answers); probed once."""
    problem = None
    with warnings.catch_warnings():
        # A failed connection leaves a socket to the garbage collector; collect
        # it here, where its ResourceWarning is ignored, not in some later test.
        warnings.simplefilter("ignore")
        try:
            import docker

            client = docker.from_env(timeout=10)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:  # any failure means "not reachable"; say which
            where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            problem = f"Docker Engine at {where} is not reachable ({type(exc).__name__}: {exc})"
        gc.collect()
    return problem


@functools.cache
def _podman_unreachable() -> str | None:
    """Why the Podman API service cannot be reached (None if it answers)."""
    socket_path = os.environ.get("PORTWAY_PODMAN_SOCKET", "/run/podman/podman.sock")
    return _unix_http_ping(socket_path, "/_ping", "Podman API service")


@functools.cache
def _containerd_unreachable() -> str | None:
    """Why containerd cannot be reached (None if it answers)."""
    import shutil
    import subprocess

    socket_path = os.environ.get("PORTWAY_CONTAINERD_SOCKET", "/run/containerd/containerd.sock")
    ctr = shutil.which("ctr")
    if ctr is None:
        return "containerd's ctr is not installed"
    try:
        subprocess.run(
            [ctr, "--address", socket_path, "version"],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"containerd at {socket_path} is not reachable ({exc})"
    return None


def _unix_http_ping(socket_path: str, path: str, what: str) -> str | None:
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(socket_path)
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: d\r\n\r\n".encode())
            answer = sock.recv(64)
    except OSError as exc:
        return f"{what} at {socket_path} is not reachable ({exc})"
    if b" 200 " not in answer:
        return f"{what} at {socket_path} answered {answer[:40]!r}"
    return None


@functools.cache
def _haproxy_missing() -> str | None:
    """Why HAProxy cannot run here (None if its binary answers)."""
    import shutil
    import subprocess

    binary = shutil.which("haproxy") or shutil.which("/usr/sbin/haproxy")
    if binary is None:
        return "haproxy is not installed (scripts/install.sh installs it)"
    try:
        subprocess.run([binary, "-v"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"haproxy does not run ({exc})"
    return None


#: the shared-store tests' PostgreSQL (scripts/engines-postgres.sh starts it)
PG_URL = os.environ.get(
    "PORTWAY_TEST_PG_URL", "postgresql+psycopg://portway:portway@127.0.0.1:55432/portway"
)


@functools.cache
def _postgres_unreachable() -> str | None:
    """Why the test PostgreSQL cannot be reached (None if it answers)."""
    import psycopg
    from sqlalchemy import make_url

    url = make_url(PG_URL)
    try:
        psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=5,
        ).close()
    except psycopg.Error as exc:
        return (
            f"PostgreSQL at {url.host}:{url.port} is not reachable ({exc}); "
            "scripts/engines-postgres.sh starts it"
        )
    return None


#: engine marker -> function telling why that engine is unreachable (None: fine)
ENGINE_MARKERS = {
    "docker": _docker_unreachable,
    "podman": _podman_unreachable,
    "containerd": _containerd_unreachable,
    "haproxy": _haproxy_missing,
    "postgres": _postgres_unreachable,
}


def _engine_problem(item: pytest.Item) -> str | None:
    for marker, check in ENGINE_MARKERS.items():
        if item.get_closest_marker(marker) is not None:
            problem = check()
            if problem is not None:
                return problem
    return None


def _needs_engine(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(m) is not None for m in ENGINE_MARKERS)


def pytest_runtest_setup(item: pytest.Item) -> None:
    refuse_serial_on_worker(item)
    if not _needs_engine(item) or item.stash.get(_STRESS_SKIP, False):
        return
    reason = _engine_problem(item)
    if reason is None:
        return
    if engines_required():
        pytest.fail(f"{reason}; engines are required here: start one with scripts/engines.sh")
    pytest.skip(f"{reason}; start one with scripts/engines.sh")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        not report.skipped
        or not _needs_engine(item)
        or item.stash.get(_STRESS_SKIP, False)
        or not engines_required()
    ):
        return report
    # A docker test skipped by a fixture (e.g. one that probes another target)
    # would hide a missing backend in CI: turn that skip into a failure. So is
    # an xfail test whose setup failed for want of an engine.
    if hasattr(report, "wasxfail"):
        missing = _engine_problem(item) if report.when == "setup" else None
        if missing is None:
            return report
        reason = missing
    elif isinstance(report.longrepr, tuple):
        reason = report.longrepr[2].removeprefix("Skipped: ")
    else:
        reason = str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"engine test skipped where engines are required "
        f"(PORTWAY_REQUIRE_ENGINES=1 or CI=true): {reason}"
    )
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Units of work by module, conformance cases one by one (tests/parallel.py)."""
    return make_scheduler(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: a worker finished; keep its part of the conformance matrix."""
    conformance_report.receive_from_worker(node.config, getattr(node, "workeroutput", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    conformance_report.report(terminalreporter.config, terminalreporter.write_line)
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: Counter[str] = Counter()
    for report in skipped:
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    terminalreporter.write_sep("-", f"{len(skipped)} skipped")
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count:4d} skipped: {reason}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL store URL whose tables live in a fresh schema of their own
    (dropped afterwards), so that tests never see each other's rows. Tests
    using it carry the ``postgres`` marker."""
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        separator = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{separator}options=-csearch_path%3D{schema}"
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh state store on its own SQLite file."""
    db = Store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield db
    finally:
        db.close()
