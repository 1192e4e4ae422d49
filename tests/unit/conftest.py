"""Fixtures shared by the unit tests: ``api`` (an HTTP API app over a
temporary store and fake engines, with a token per role) and ``app`` (the
service layer's App over a temporary store, reaching no engine)."""

from tests.unit.api_support import api
from tests.unit.app_support import app

__all__ = ["api", "app"]
