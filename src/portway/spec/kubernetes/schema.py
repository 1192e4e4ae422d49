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
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
from kubernetes_validate import utils as kv_utils

from portway.errors import InputError, Issue
from portway.spec.schema_errors import explain, format_path

__all__ = [
    "DEFAULT_VERSION",
    "check_version",
    "format_path",
    "object_issue",
    "subject_of",
    "supported_versions",
]

# kubernetes-validate reads and parses its schema files (the definitions file
# alone is 1.2 MB of JSON) on every call: 0.1 s per object. They never change
# and are only read, so remembering them makes a check about three times faster.
if not hasattr(kv_utils.schema_contents, "cache_info"):
    kv_utils.schema_contents = lru_cache(maxsize=64)(kv_utils.schema_contents)

#: the Kubernetes version manifests are checked against unless told otherwise
#: (``--kubernetes-version``): a release every maintained cluster accepts
DEFAULT_VERSION = "1.30"


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


def subject_of(document: Any) -> str:
    """``Deployment web`` (or what the document has of it) for messages."""
    if not isinstance(document, Mapping):
        return "not a mapping"
    kind = document.get("kind")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return " ".join(str(p) for p in (kind or "(no kind)", name) if p is not None)


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
        path, message, hint = explain(exc)
        if message.startswith("unknown field"):
            message += f" (not in the Kubernetes {version} schema)"
        return Issue(message, path=format_path(path), hint=hint, **where)
    return None
