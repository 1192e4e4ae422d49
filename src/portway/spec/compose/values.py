"""Small Compose value parsers: durations, commands, key=value lists."""

from __future__ import annotations

import re
import shlex
from typing import Any

__all__ = ["as_command", "as_mapping", "parse_duration"]

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """``1m30s`` -> 90.0 (Go duration syntax, as Compose uses it)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if not text or _DURATION_RE.sub("", text):
        raise ValueError(f"{value!r} is not a duration such as 30s or 1m30s")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(text))


def as_command(value: Any) -> list[str]:
    """A string command is split like a shell would (no shell runs it)."""
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list):
        return [str(v) for v in value]
    raise ValueError("expected a string or a list of strings")


def as_mapping(value: Any) -> dict[str, str | None]:
    """``[K=V, K]`` or ``{K: V}`` as a mapping; a bare ``K`` maps to None."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): None if v is None else _scalar(v) for k, v in value.items()}
    if isinstance(value, list):
        out: dict[str, str | None] = {}
        for item in value:
            key, eq, val = str(item).partition("=")
            out[key.strip()] = val if eq else None
        return out
    raise ValueError("expected a mapping or a list of KEY=VALUE")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
