"""``.env`` and ``env_file`` files: ``KEY=VALUE`` lines, ``#`` comments,
optional ``export``, single quotes literal, double quotes with escapes."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["EnvFileError", "parse_env_file", "parse_env_text"]

_LINE_RE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:(=)\s*(.*))?$")


class EnvFileError(ValueError):
    """An unreadable env file or a malformed line (with its number)."""


def parse_env_text(text: str, name: str) -> dict[str, str | None]:
    """Variables of ``text``; a bare ``KEY`` line is None (take it from the
    environment, or leave it unset)."""
    found: dict[str, str | None] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if match is None:
            raise EnvFileError(f"{name}, line {number}: expected KEY=VALUE, got {raw!r}")
        key, eq, value = match.groups()
        found[key] = _value(value or "") if eq else None
    return found


def _value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
    # an unquoted value ends at " #" (an inline comment)
    return re.split(r"\s+#", value, maxsplit=1)[0].strip()


def parse_env_file(path: Path) -> dict[str, str | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvFileError(f"cannot read env file {path}: {exc.strerror or exc}") from None
    return parse_env_text(text, str(path))
