"""JSON Schema errors (the ``jsonschema`` package's) in words a user can act
on: ``expected integer, got string '80'``, ``unknown field``, ``required
field is missing``, each at the key path it is about. Shared by the Compose
and the Kubernetes schema checks."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import exceptions as schema_exceptions  # type: ignore[import-untyped]

__all__ = ["explain", "format_path"]

_TYPE_NAMES = {"object": "mapping", "array": "list"}


def format_path(parts: Sequence[str | int]) -> str:
    """``['spec', 'containers', 0, 'ports']`` -> ``spec.containers[0].ports``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string",
             dict: "mapping", list: "list", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def _expected_types(expected: Any) -> str:
    flat: list[str] = []
    for item in expected if isinstance(expected, list) else [expected]:
        for name in item if isinstance(item, list) else [item]:
            # "or null" is how the schemas say "may be omitted": not worth a word
            shown = _TYPE_NAMES.get(str(name), str(name))
            if name != "null" and shown not in flat:
                flat.append(shown)
    return " or ".join(flat) or "null"


def explain(error: Any) -> tuple[list[str | int], str, str | None]:
    """(key path, message, hint) for one ``jsonschema.ValidationError``."""
    path: list[str | int] = list(error.absolute_path)
    validator, expected, instance = error.validator, error.validator_value, error.instance
    if validator in ("oneOf", "anyOf") and isinstance(instance, Mapping | list) and error.context:
        # a mapping that matched none of the shapes: say what is wrong inside
        # the shape it came closest to
        depth = len(error.absolute_path)
        deeper = [e for e in error.context if e.validator != "type" or len(e.absolute_path) > depth]
        if deeper:
            best = schema_exceptions.best_match(deeper)
            if best is not None:
                return explain(best)
    if validator == "type":
        got = _type_name(instance)
        return path, f"expected {_expected_types(expected)}, got {got} {_shown(instance)}", None
    if validator == "additionalProperties" and isinstance(instance, Mapping):
        schema = error.schema or {}
        known = set(schema.get("properties") or {})
        patterns = list((schema.get("patternProperties") or {}).keys())
        extra = sorted(
            str(k)
            for k in instance
            if k not in known and not any(re.search(p, str(k)) for p in patterns)
        )
        if len(extra) == 1:
            close = difflib.get_close_matches(extra[0], sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            return [*path, extra[0]], "unknown field", hint
        return path, f"unknown fields {', '.join(extra)}", None
    if validator == "required":
        missing = re.match(r"^'([^']+)' is a required property", str(error.message))
        if missing:
            return [*path, missing.group(1)], "required field is missing", None
    if validator == "enum":
        options = ", ".join(str(o) for o in expected)
        return path, f"expected one of {options}, got {_shown(instance)}", None
    if validator in ("oneOf", "anyOf"):
        types = [s.get("type") for s in expected if isinstance(s, Mapping) and "type" in s]
        if types:
            got = _type_name(instance)
            return path, f"expected {_expected_types(types)}, got {got} {_shown(instance)}", None
    return path, str(error.message), None
