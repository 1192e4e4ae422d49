"""Kubernetes manifests in the apply/plan flow: their workloads through the
same model checks as workload files, their Secrets and ConfigMaps stored as
portway secrets, and a verdict per Kubernetes key per target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portway.errors import Issue, SpecError
from portway.service import secrets as secrets_svc
from portway.service.app import App
from portway.service.compose import key_verdicts
from portway.service.documents import from_documents, translated_workloads
from portway.service.namespaces import SourcedNamespace
from portway.service.workloads import Sourced
from portway.spec.kubernetes.schema import DEFAULT_VERSION
from portway.spec.kubernetes.source import read_manifests
from portway.spec.kubernetes.translate import KubeWorkload, Translated, translate

__all__ = ["KubeLoad", "load", "plan_entry", "store_secrets"]


@dataclass(frozen=True)
class KubeLoad:
    file: str
    translated: Translated
    workloads: tuple[Sourced, ...]  # in the order of translated.workloads
    namespaces: tuple[SourcedNamespace, ...]


def load(file: Path, *, strict: bool = False, version: str = DEFAULT_VERSION) -> KubeLoad:
    """The manifest file's workloads and namespace policies, checked against
    the Kubernetes schemas and then the workload model; raises SpecError
    naming the document and object of each issue."""
    manifests = read_manifests(file)
    portway = [m for m in manifests if str(m.data.get("apiVersion", "")).startswith("portway.")]
    if portway:
        raise SpecError(
            [
                m.issue(
                    "a portway document in a file of Kubernetes objects",
                    "apiVersion",
                    "keep portway and Kubernetes documents in separate files",
                )
                for m in portway
            ]
        )
    translated = translate(manifests, strict=strict, version=version)
    issues: list[Issue] = []
    try:
        sourced = translated_workloads(
            str(file),
            [
                (item.document, f"{file} (document {item.index}, {item.subject})", item.index)
                for item in translated.workloads
            ],
        )
    except SpecError as exc:
        sourced = []
        issues.extend(exc.issues)
    namespaces: list[SourcedNamespace] = []
    if translated.namespaces:
        try:
            _, found = from_documents(translated.namespaces, f"{file} (Namespace labels)")
            namespaces = [SourcedNamespace(n.namespace, str(file), n.document) for n in found]
        except SpecError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SpecError(issues)
    return KubeLoad(str(file), translated, tuple(sourced), tuple(namespaces))


def store_secrets(app: App, loaded: KubeLoad) -> list[str]:
    """Create or update the portway secret of each Secret and ConfigMap of
    the file; returns ``namespace/name`` of each."""
    names = []
    for secret in loaded.translated.secrets:
        secrets_svc.create_or_update(app, secret.namespace, secret.name, dict(secret.data))
        names.append(f"{secret.namespace}/{secret.name}")
    return names


def plan_entry(item: KubeWorkload, plan_item: dict[str, Any]) -> dict[str, Any]:
    """What ``plan -o json`` adds to one workload of a manifest file: the
    object it came from and each of its keys with a verdict per target."""
    return {
        "object": item.subject,
        "document": item.index,
        "keys": key_verdicts(item, plan_item),
    }


def plan_json(loaded: KubeLoad, plans: Sequence[Any]) -> dict[str, Any]:
    return {
        "secrets": [f"{s.namespace}/{s.name}" for s in loaded.translated.secrets],
        "workloads": len(plans),
    }
