"""How a conformance case says "wrong behaviour"."""

from __future__ import annotations

from portway.errors import PortwayError


class CaseFailed(Exception):
    """The engine (or portway on top of it) behaved wrongly. The message says
    what was expected and what happened instead."""


class ConformanceError(PortwayError):
    """The suite cannot run at all (engine unhealthy, test image missing)."""


def expect(condition: bool, message: str) -> None:
    """Raise ``CaseFailed(message)`` unless ``condition`` holds."""
    if not condition:
        raise CaseFailed(message)
