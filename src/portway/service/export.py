"""``portway export --to kubernetes``: the workloads of a file (a workload
file, a Compose file or a Kubernetes manifest) rendered as Kubernetes
objects, every object checked against the official Kubernetes schema before
it is handed out, with a note for each field that does not map one to one.

Nothing is written to the store: the tier of each workload is resolved from
the namespace policies in the same file (else the defaults), as apply would
for a fresh installation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from portway.errors import InputError, Issue, PortwayError
from portway.policy.evaluate import resolved
from portway.policy.isolation import isolation_given, resolve_tier
from portway.service import compose as compose_svc
from portway.service import kubernetes as kube_svc
from portway.spec.compose import ComposeOptions, ImageTarget, is_compose_file
from portway.spec.compose.keys import Verdict
from portway.spec.kubernetes.losses import ExportNote
from portway.spec.kubernetes.render import SecretValues, render
from portway.spec.kubernetes.schema import DEFAULT_VERSION, object_issue
from portway.spec.kubernetes.source import is_kubernetes_file
from portway.spec.loader import load_objects
from portway.spec.model import Isolation, Workload
from portway.spec.namespace import Namespace, NamespacePolicySpec

__all__ = ["EXPORT_FORMATS", "Exported", "export_file", "parse_runtime_classes"]

#: what ``--to`` accepts
EXPORT_FORMATS = ("kubernetes",)


@dataclass
class Exported:
    documents: list[dict[str, Any]]
    notes: list[ExportNote]
    version: str  # the Kubernetes version the documents were checked against
    sources: list[str] = field(default_factory=list)  # what the input was read as

    def text(self) -> str:
        return "".join(
            "---\n" + yaml.safe_dump(d, sort_keys=False, default_flow_style=False)
            for d in self.documents
        )


def parse_runtime_classes(values: list[str]) -> dict[Isolation, str]:
    """``["sandboxed=gvisor-fast"]`` -> {SANDBOXED: "gvisor-fast"}; an
    InputError naming --runtime-class for anything else."""
    out: dict[Isolation, str] = {}
    tiers = ", ".join(t.value for t in Isolation if t is not Isolation.STANDARD)
    for value in values:
        tier, sep, name = value.partition("=")
        try:
            parsed = Isolation(tier.strip())
        except ValueError:
            parsed = None
        if not sep or parsed is None or parsed is Isolation.STANDARD or not name.strip():
            raise InputError(
                Issue(
                    f"{value!r}: expected TIER=NAME with TIER one of {tiers} and NAME a "
                    "RuntimeClass, e.g. sandboxed=gvisor",
                    path="--runtime-class",
                )
            )
        out[parsed] = name.strip()
    return out


@dataclass
class _Input:
    workloads: list[Workload]
    namespaces: list[Namespace]
    secrets: dict[tuple[str, str], Mapping[str, bytes]]
    source: str


def _read(
    file: Path, compose_options: ComposeOptions, images: Mapping[str, ImageTarget], version: str
) -> _Input:
    if is_kubernetes_file(file):
        loaded = kube_svc.load(file, version=version)
        secrets = {(s.namespace, s.name): s.data for s in loaded.translated.secrets}
        return _Input(
            [s.workload for s in loaded.workloads],
            [n.namespace for n in loaded.namespaces],
            secrets,
            "kubernetes",
        )
    if is_compose_file(file):
        project = compose_svc.load(file, compose_options, images)
        compose_secrets: dict[tuple[str, str], Mapping[str, bytes]] = {
            (project.mapped.project, s.name): {s.key: s.data}
            for s in project.mapped.secrets
            if s.source != "external"
        }
        return _Input([s.workload for s in project.workloads], [], compose_secrets, "compose")
    objects = [item.object for item in load_objects(file)]
    return _Input(
        [o for o in objects if isinstance(o, Workload)],
        [o for o in objects if isinstance(o, Namespace)],
        {},
        "portway",
    )


def _with_tiers(workloads: list[Workload], namespaces: list[Namespace]) -> list[Workload]:
    """Each workload with the tier apply would run it in (its own, else its
    namespace's default raised for untrusted work)."""
    policies = {n.name: n.spec for n in namespaces}
    out = []
    for workload in workloads:
        policy = policies.get(workload.metadata.namespace, NamespacePolicySpec())
        tier = resolve_tier(workload.spec, policy.isolation, given=isolation_given(workload.spec))
        out.append(resolved(workload, tier))
    return out


def export_file(
    file: Path,
    *,
    to: str = "kubernetes",
    runtime_classes: Mapping[Isolation, str] | None = None,
    version: str = DEFAULT_VERSION,
    compose_options: ComposeOptions | None = None,
    images: Mapping[str, ImageTarget] | None = None,
) -> Exported:
    """The Kubernetes objects of FILE; InputError if a field cannot be
    exported at all (``rejected`` notes), PortwayError if a rendered object
    fails its schema (a bug in the renderer, never handed out)."""
    if to not in EXPORT_FORMATS:
        raise InputError(Issue(f"{to!r}: expected one of {', '.join(EXPORT_FORMATS)}", path="--to"))
    found = _read(file, compose_options or ComposeOptions(), images or {}, version)
    secrets: SecretValues = found.secrets
    rendered = render(
        _with_tiers(found.workloads, found.namespaces),
        found.namespaces,
        runtime_classes=runtime_classes,
        secrets=secrets,
    )
    rejected = [n for n in rendered.notes if n.verdict is Verdict.REJECTED]
    if rejected:
        raise InputError(
            [Issue(f"{n.workload}: {n.reason}", file=str(file), path=n.path) for n in rejected]
        )
    invalid = [
        issue
        for index, document in enumerate(rendered.documents, start=1)
        if (issue := object_issue(document, file="<export>", index=index, version=version))
    ]
    if invalid:
        raise PortwayError(
            "internal error: the rendered objects do not pass the Kubernetes "
            f"{version} schema:\n" + "\n".join(f"  - {i}" for i in invalid)
        )
    return Exported(rendered.documents, rendered.notes, version, [found.source])
