"""An ``App`` over a temporary SQLite store that reaches no engine (no Docker
socket, no local wasm target), for tests of the service layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from portway.service.app import App, Settings


def offline_settings(home: Path) -> Settings:
    return Settings(home=home, docker_socket=str(home / "no.sock"), local_wasm=False)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    """A module that needs engines or drivers registered defines its own."""
    application = App(offline_settings(tmp_path))
    yield application
    application.close()
