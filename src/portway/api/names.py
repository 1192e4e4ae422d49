"""Path and query parameters validated with the spec's own name rules.

A name or namespace that is not a DNS-1123 label (``..``, ``a/b``, uppercase,
longer than 63) is refused with 422 before any handler logic runs; a ``/``
(even sent as ``%2F``) never matches a route at all and gets 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from portway.spec.model import NAME_MAX, NAME_RE

_RULE = "a DNS-1123 label: lowercase letters, digits and '-', at most 63, alphanumeric at both ends"

NamespacePath = Annotated[
    str,
    Path(pattern=NAME_RE.pattern, max_length=NAME_MAX, description=f"Namespace, {_RULE}."),
]
NamePath = Annotated[
    str, Path(pattern=NAME_RE.pattern, max_length=NAME_MAX, description=f"Name, {_RULE}.")
]
TargetPath = Annotated[
    str,
    Path(pattern=NAME_RE.pattern, max_length=NAME_MAX, description=f"Target name, {_RULE}."),
]
NamespaceQuery = Annotated[
    str | None,
    Query(
        pattern=NAME_RE.pattern,
        max_length=NAME_MAX,
        description=f"Only this namespace ({_RULE}); all readable namespaces when left out.",
    ),
]
NameQuery = Annotated[
    str | None,
    Query(pattern=NAME_RE.pattern, max_length=NAME_MAX, description=f"Only this name ({_RULE})."),
]
