"""Workloads and namespace policies from already-parsed documents (what an
API client sends for apply and plan), checked by the same loader as files.

Each document is written back as YAML and read by ``spec.loader``, so a
document sent over HTTP meets exactly the rules a file does (unknown fields,
suggestions, every issue at once). Line numbers would point into that
re-serialised text, not the client's file, so they are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import yaml

from portway.errors import Issue, SpecError
from portway.service.namespaces import SourcedNamespace
from portway.service.workloads import Sourced
from portway.spec.loader import load_objects_text
from portway.spec.model import Workload


def _text(documents: Sequence[Mapping[str, Any]]) -> str:
    return "---\n".join(
        yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False) for doc in documents
    )


def _without_line(issue: Issue) -> Issue:
    return replace(issue, line=None)


def from_documents(
    documents: Sequence[Mapping[str, Any]], file: str
) -> tuple[list[Sourced], list[SourcedNamespace]]:
    """The workloads and namespaces of ``documents``; ``file`` names them in
    messages. Raises SpecError with every issue of every document."""
    try:
        loaded = load_objects_text(_text(documents), file)
    except SpecError as exc:
        raise SpecError([_without_line(i) for i in exc.issues]) from None
    workloads: list[Sourced] = []
    namespaces: list[SourcedNamespace] = []
    for item in loaded:
        if isinstance(item.object, Workload):
            workloads.append(Sourced(item.object, file, item.document))
        else:
            namespaces.append(SourcedNamespace(item.object, file, item.document))
    return workloads, namespaces


def translated_workloads(
    file: str, documents: Sequence[tuple[Mapping[str, Any], str, int]]
) -> list[Sourced]:
    """The workloads a foreign file (Compose, Kubernetes) translated to, each
    document checked on its own so an issue names where it came from:
    (document, its label in messages, its number in ``file``). Raises
    SpecError with every issue of every document."""
    sourced: list[Sourced] = []
    issues: list[Issue] = []
    for document, label, number in documents:
        try:
            workloads, _ = from_documents([document], label)
        except SpecError as exc:
            issues.extend(exc.issues)
            continue
        sourced.extend(Sourced(w.workload, file, number) for w in workloads)
    if issues:
        raise SpecError(issues)
    return sourced
