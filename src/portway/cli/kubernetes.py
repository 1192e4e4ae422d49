"""The Kubernetes side of ``apply -f`` and ``plan -f``: a manifest file's
workloads, its Secrets and ConfigMaps stored first, and the verdict table of
its Kubernetes keys in ``plan``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from portway.cli import output

__all__ = ["is_kubernetes", "load_sourced", "plan_items", "prepare_apply", "print_keys"]


def is_kubernetes(file: Path) -> bool:
    from portway.spec.kubernetes.source import is_kubernetes_file

    return is_kubernetes_file(file)


def load_sourced(file: Path, strict: bool = False) -> tuple[list[Any], list[Any]]:
    """The file's workloads and namespace policies (Sourced, SourcedNamespace)."""
    from portway.service import kubernetes as kube

    loaded = kube.load(file, strict=strict)
    return list(loaded.workloads), list(loaded.namespaces)


def prepare_apply(app: Callable[[], Any], file: Path, strict: bool) -> tuple[list[Any], list[Any]]:
    """Load a manifest file for apply and store its Secrets and ConfigMaps as
    portway secrets (the workloads refer to them); returns what to apply
    (against a server: cli/remote_files.py)."""
    from portway.service import kubernetes as kube

    loaded = kube.load(file, strict=strict)
    for name in kube.store_secrets(app(), loaded):
        output.out.print(f"secret/{name} stored", markup=False)
    return list(loaded.workloads), list(loaded.namespaces)


def plan_items(
    file: Path, strict: bool, plan: Callable[[list[Any], list[Any]], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """``plan -o json`` items of a manifest file, each with the object it came
    from and its keys with a verdict per target."""
    from portway.service import kubernetes as kube

    loaded = kube.load(file, strict=strict)
    items = plan(list(loaded.workloads), list(loaded.namespaces))
    for item, source in zip(items, loaded.translated.workloads, strict=True):
        item["kubernetes"] = kube.plan_entry(source, item)
    return items


def print_keys(item: dict[str, Any]) -> None:
    """The Kubernetes-key table of one workload: every key path, a verdict per target."""
    found = item.get("kubernetes")
    if not found:
        return
    targets = [str(t["target"]) for t in item.get("targets") or []]
    title = f"kubernetes keys of {found['object']}"
    output.file_key_table(title, "KUBERNETES KEY", found["keys"], targets)
