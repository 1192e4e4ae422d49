"""Compose files as portway workloads: a pure loader (it reads files and
nothing else). ``load_compose`` is the entry point; docs/compose.md says what
each key becomes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from portway.spec.compose.images import ImageTarget, load_image_map
from portway.spec.compose.mapping import (
    ComposeWorkload,
    KeyVerdict,
    Mapped,
    SecretFile,
    map_project,
)
from portway.spec.compose.project import ComposeOptions, is_compose, load_project, normalise_name

__all__ = [
    "ComposeOptions",
    "ComposeWorkload",
    "ImageTarget",
    "KeyVerdict",
    "Mapped",
    "SecretFile",
    "is_compose_file",
    "load_compose",
    "load_image_map",
    "normalise_name",
]


def is_compose_file(path: Path) -> bool:
    """Whether the file at ``path`` is a Compose file (one YAML document
    with ``services`` and no ``apiVersion``/``kind``)."""
    try:
        text = path.read_text(encoding="utf-8")
        documents = list(yaml.safe_load_all(text))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # the workload loader reports what is wrong with it
    return len(documents) == 1 and is_compose(documents[0])


def load_compose(
    path: Path,
    options: ComposeOptions | None = None,
    images: Mapping[str, ImageTarget] | None = None,
    *,
    strict: bool = False,
) -> Mapped:
    """The workloads, secrets and start order of the Compose file at ``path``.
    Raises SpecError with every issue (file, key path, line)."""
    project = load_project(path, options or ComposeOptions())
    return map_project(project, images or {}, strict=strict)
