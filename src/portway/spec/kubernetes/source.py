"""Reading a Kubernetes manifest file: its documents as plain data, each
with the line of every key path (``spec.template.spec.containers[0].image``
-> 21), and telling Kubernetes manifests from portway files and Compose files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from portway.errors import Issue, SpecError
from portway.spec.loader import MAX_FILE_BYTES, line_of
from portway.spec.model import API_VERSION

__all__ = ["Manifest", "is_kubernetes", "is_kubernetes_file", "read_manifests"]

_PORTWAY_GROUP = API_VERSION.split("/")[0]  # portway.dev


@dataclass
class Manifest:
    """One non-empty document of a manifest file."""

    file: str
    index: int  # 1-based, counting empty documents too
    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "")) if isinstance(self.data, Mapping) else ""

    @property
    def name(self) -> str:
        metadata = self.data.get("metadata") if isinstance(self.data, Mapping) else None
        return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""

    @property
    def namespace(self) -> str:
        metadata = self.data.get("metadata") if isinstance(self.data, Mapping) else None
        found = metadata.get("namespace") if isinstance(metadata, Mapping) else None
        return str(found or "default")

    @property
    def subject(self) -> str:
        return f"{self.kind} {self.name}".strip()

    def line(self, path: str) -> int | None:
        return line_of(self.lines, path)

    def issue(self, message: str, path: str = "", hint: str | None = None) -> Issue:
        return Issue(
            message,
            file=self.file,
            document=self.index,
            path=path,
            line=self.line(path),
            hint=hint,
            subject=self.subject,
        )


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _walk_lines(node: Node, path: str, lines: dict[str, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, MappingNode):
        for key, value in node.value:
            child = _join(path, str(key.value))
            lines[child] = key.start_mark.line + 1
            _walk_lines(value, child, lines)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _walk_lines(item, _join(path, i), lines)


def is_kubernetes(data: Any) -> bool:
    """A Kubernetes object: apiVersion and kind, and not portway's own group."""
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("apiVersion"), str)
        and isinstance(data.get("kind"), str)
        and not str(data["apiVersion"]).startswith(_PORTWAY_GROUP + "/")
    )


def is_kubernetes_file(path: Path) -> bool:
    """Whether the file holds Kubernetes objects (any document with an
    apiVersion outside portway.dev). A file mixing them with portway
    documents is read as Kubernetes, which then names the portway ones."""
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # the workload loader reports what is wrong with it
    return any(is_kubernetes(d) for d in documents)


def read_manifests(path: Path) -> list[Manifest]:
    """The file's non-empty documents; SpecError if it cannot be read or parsed."""
    file = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SpecError(Issue(f"larger than {MAX_FILE_BYTES} bytes", file=file))
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(Issue(f"cannot read the file: {exc}", file=file)) from None
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        datas = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise SpecError(Issue(f"not valid YAML: {exc}", file=file)) from None
    manifests = []
    for index, (node, data) in enumerate(zip(nodes, datas, strict=True), start=1):
        if node is None or data is None or (isinstance(node, ScalarNode) and not node.value):
            continue
        lines: dict[str, int] = {}
        _walk_lines(node, "", lines)
        manifests.append(Manifest(file, index, data, lines))
    if not manifests:
        raise SpecError(Issue("the file holds no Kubernetes object", file=file))
    return manifests
