"""Backends: one module per engine behind the protocols in ``base``."""
