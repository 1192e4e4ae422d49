"""Store fixtures parametrized over both backends: a test module that
imports ``db_url`` and ``store`` from here runs each of its tests on SQLite
and on PostgreSQL (marked ``postgres``: fails in CI when it is unreachable).

Each PostgreSQL test gets a schema of its own (the ``pg_url`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from portway.store import Store

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A fresh, empty store on the backend of ``db_url``."""
    db = Store(db_url)
    try:
        yield db
    finally:
        db.close()
