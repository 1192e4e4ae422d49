"""Fixtures shared by the unit tests: ``api`` (an HTTP API app over a
temporary store and fake engines, with a token per role)."""

from tests.unit.api_support import api

__all__ = ["api"]
