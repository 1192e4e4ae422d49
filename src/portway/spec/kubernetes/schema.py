"""Kubernetes objects checked against the official Kubernetes JSON schemas,
as shipped per Kubernetes version by the ``kubernetes-validate`` package.

The strict schemas are used (unknown fields are errors), so a typo such as
``containerport`` is reported instead of being dropped by the API server.
The package reports the first problem of an object; this module turns it
into an :class:`~portway.errors.Issue` with the file, the document index,
the object (``Deployment web``) and the key path, in words a user can act on
(``expected integer, got string '80'``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
from kubernetes_validate import utils as kv_utils

from portway.errors import InputError, Issue

__all__ = [
    "DEFAULT_VERSION",
    "check_version",
    "format_path",
    "object_issue",
    "subject_of",
    "supported_versions",
]

#: the Kubernetes version manifests are checked against unless told otherwise
#: (``--kubernetes-version``): a release every maintained cluster accepts
DEFAULT_VERSION = "1.30"

_TYPE_NAMES = {"object": "mapping", "array": "list"}


@cache
def supported_versions() -> tuple[str, ...]:
    """Kubernetes versions (``1.30``) the installed schemas cover."""
    versions: list[str] = kv_utils.all_versions()
    return tuple(dict.fromkeys(kv_utils.major_minor(v) for v in versions))


def check_version(version: str) -> str:
    """``v1.30`` or ``1.30.2`` -> ``1.30``; an InputError naming
    --kubernetes-version if the schemas do not cover it."""
    text = version.strip().removeprefix("v")
    match = re.match(r"^(\d+)\.(\d+)(?:\.\d+)?$", text)
    short = f"{match.group(1)}.{match.group(2)}" if match else None
    if short is None or short not in supported_versions():
        raise InputError(
            Issue(
                f"Kubernetes version {version!r} has no schemas here; expected one of "
                f"{', '.join(supported_versions())}",
                path="--kubernetes-version",
            )
        )
    return short


def format_path(parts: Sequence[str | int]) -> str:
    """``['spec', 'containers', 0, 'ports']`` -> ``spec.containers[0].ports``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text


def subject_of(document: Any) -> str:
    """``Deployment web`` (or what the document has of it) for messages."""
    if not isinstance(document, Mapping):
        return "not a mapping"
    kind = document.get("kind")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return " ".join(str(p) for p in (kind or "(no kind)", name) if p is not None)


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
            if name != "null" and _TYPE_NAMES.get(str(name), str(name)) not in flat:
                flat.append(_TYPE_NAMES.get(str(name), str(name)))
    return " or ".join(flat) or "null"


def _explain(error: Any) -> tuple[list[str | int], str]:
    """(key path, message) for one jsonschema error."""
    path: list[str | int] = list(error.absolute_path)
    validator, expected, instance = error.validator, error.validator_value, error.instance
    if validator == "type":
        got = _type_name(instance)
        return path, f"expected {_expected_types(expected)}, got {got} {_shown(instance)}"
    if validator == "additionalProperties" and isinstance(instance, Mapping):
        known = set((error.schema or {}).get("properties") or {})
        extra = sorted(str(k) for k in instance if k not in known)
        if len(extra) == 1:
            return [*path, extra[0]], "unknown field (not in the Kubernetes schema)"
        return path, f"unknown fields {', '.join(extra)} (not in the Kubernetes schema)"
    if validator == "required":
        missing = re.match(r"^'([^']+)' is a required property", str(error.message))
        if missing:
            return [*path, missing.group(1)], "required field is missing"
    if validator == "enum":
        options = ", ".join(str(o) for o in expected)
        return path, f"expected one of {options}, got {_shown(instance)}"
    if validator in ("oneOf", "anyOf"):
        types = [s.get("type") for s in expected if isinstance(s, Mapping) and "type" in s]
        if types:
            got = _type_name(instance)
            return path, f"expected {_expected_types(types)}, got {got} {_shown(instance)}"
    return path, str(error.message)


def object_issue(
    document: Any, *, file: str, index: int, version: str = DEFAULT_VERSION
) -> Issue | None:
    """The first schema violation of one Kubernetes object (None: valid).

    ``index`` is the 1-based document number in ``file``. An unknown kind or
    apiVersion is an issue too (no schema means nothing is checked)."""
    subject = subject_of(document)
    where: dict[str, Any] = {"file": file, "document": index, "subject": subject}
    if not isinstance(document, Mapping):
        return Issue("a Kubernetes object must be a mapping", **where)
    for key in ("apiVersion", "kind"):
        if not isinstance(document.get(key), str) or not document.get(key):
            return Issue("required field is missing", path=key, **where)
    try:
        kubernetes_validate.validate(dict(document), version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return Issue(
            f"Kubernetes {version} has no kind {document['kind']!r} in apiVersion "
            f"{document['apiVersion']!r}",
            path="kind",
            hint="check the spelling of kind and apiVersion, e.g. kind Deployment in apps/v1",
            **where,
        )
    except kubernetes_validate.ValidationError as exc:
        path, message = _explain(exc)
        return Issue(message, path=format_path(path), **where)
    return None
