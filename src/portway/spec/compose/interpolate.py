"""Compose variable interpolation: ``${VAR}``, ``${VAR:-default}``,
``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``,
``${VAR+alt}``, ``$VAR`` and ``$$`` (a literal ``$``).

The colon forms treat an empty value like an unset one, as the Compose
Specification says. Defaults may themselves hold ``${...}`` (nested), so the
braces are matched by hand instead of with one regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["InterpolationError", "interpolate", "interpolate_tree"]

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    """A ``${VAR:?msg}`` whose variable is missing, or malformed syntax."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with every variable replaced from ``env``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2 : end], env))
            i = end + 1
        else:
            match = _NAME_RE.match(text, i + 1)
            if match is None:
                out.append("$")  # a lone $ stays, as Compose leaves it
                i += 1
            else:
                out.append(env.get(match.group(0), ""))
                i = match.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"unclosed '${{' in {text!r}")


def _expand(body: str, env: Mapping[str, str]) -> str:
    match = _NAME_RE.match(body)
    if match is None:
        raise InterpolationError(f"invalid variable name in '${{{body}}}'")
    name, rest = match.group(0), body[match.end() :]
    value = env.get(name)
    if not rest:
        return value if value is not None else ""
    for op, handler in _OPERATORS:
        if rest.startswith(op):
            return handler(name, value, rest[len(op) :], env)
    raise InterpolationError(f"invalid interpolation format for '${{{body}}}'")


def _default(strict_empty: bool) -> Callable[[str, str | None, str, Mapping[str, str]], str]:
    def handle(name: str, value: str | None, arg: str, env: Mapping[str, str]) -> str:
        missing = value is None or (strict_empty and value == "")
        return interpolate(arg, env) if missing else (value or "")

    return handle


def _required(strict_empty: bool) -> Callable[[str, str | None, str, Mapping[str, str]], str]:
    def handle(name: str, value: str | None, arg: str, env: Mapping[str, str]) -> str:
        if value is None or (strict_empty and value == ""):
            message = interpolate(arg, env) or "is not set"
            state = "unset or empty" if strict_empty else "unset"
            raise InterpolationError(f"required variable {name} is {state}: {message}")
        return value

    return handle


def _alternative(strict_empty: bool) -> Callable[[str, str | None, str, Mapping[str, str]], str]:
    def handle(name: str, value: str | None, arg: str, env: Mapping[str, str]) -> str:
        present = value is not None and not (strict_empty and value == "")
        return interpolate(arg, env) if present else ""

    return handle


# longest operators first: ":-" must win over "-"
_OPERATORS: tuple[tuple[str, Callable[[str, str | None, str, Mapping[str, str]], str]], ...] = (
    (":-", _default(True)),
    (":?", _required(True)),
    (":+", _alternative(True)),
    ("-", _default(False)),
    ("?", _required(False)),
    ("+", _alternative(False)),
)


def interpolate_tree(
    value: Any, env: Mapping[str, str], path: str, errors: list[tuple[str, str]]
) -> Any:
    """Every string of a parsed YAML tree interpolated; mapping keys are left
    alone (Compose does not interpolate them). Problems are appended to
    ``errors`` as (key path, message) so all of them are reported at once."""
    if isinstance(value, str):
        try:
            return interpolate(value, env)
        except InterpolationError as exc:
            errors.append((path, str(exc)))
            return value
    if isinstance(value, dict):
        return {
            k: interpolate_tree(v, env, f"{path}.{k}" if path else str(k), errors)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate_tree(v, env, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    return value
