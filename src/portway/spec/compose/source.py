"""Reading one Compose YAML file: plain data plus the line of every key path
(``services.web.ports[1].target`` -> 23), so errors and verdicts point at lines."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from portway.errors import Issue

__all__ = ["ComposeFile", "join", "read_compose_file"]


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


@dataclass
class ComposeFile:
    path: Path
    data: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)

    def issue(self, message: str, path: str = "", hint: str | None = None) -> Issue:
        return Issue(message, file=str(self.path), path=path, line=self.line(path), hint=hint)

    def line(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                break
            path = path[:cut]
        return self.lines.get(path)


def _walk_lines(node: Node, path: str, lines: dict[str, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, MappingNode):
        for key, value in node.value:
            child = join(path, str(key.value))
            lines[child] = key.start_mark.line + 1
            _walk_lines(value, child, lines)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _walk_lines(item, join(path, i), lines)


class _Loader(yaml.SafeLoader):
    """YAML 1.2's scalars, as Compose reads them: ``8080:80`` stays a string
    (YAML 1.1 would make ``80:22`` the sexagesimal integer 4822) and
    ``yes``/``no``/``on``/``off`` stay strings."""


_INT_RE = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0o?[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_DROPPED_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_RE, list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_RE, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+.0123456789"))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(node.value).replace("_", "")
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text, 16)
    if len(text) > 1 and text.startswith("0"):
        return int(text, 8)  # mode: 0400, as Compose files mean it
    return int(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def read_compose_file(path: Path) -> ComposeFile:
    """The file at ``path``; raises ValueError with a located message."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a Compose file is a mapping with 'services'")
    lines: dict[str, int] = {}
    if node is not None:
        _walk_lines(node, "", lines)
    return ComposeFile(path, data, lines)
