"""``--image-map FILE``: Compose image references mapped to local images,
since no registry is reachable. Each entry is ``from: to`` or
``from: {image: to, command: [...], replace: bool, healthcheck: [...]}``.

A stand-in image such as busybox does not hold the original's programs, so
an entry may say what to run instead: ``command`` is used for services that
set neither ``command`` nor ``entrypoint``, or for every service of that
image with ``replace: true``; ``healthcheck`` (``[CMD, ...]`` or
``[CMD-SHELL, cmd]``) replaces the test of a service's healthcheck. The
Compose file itself is never edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from portway.errors import Issue, SpecError

__all__ = ["ImageTarget", "load_image_map"]


@dataclass(frozen=True)
class ImageTarget:
    image: str
    command: tuple[str, ...] | None = None
    replace: bool = False
    healthcheck: tuple[str, ...] | None = None


def _strings(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(c, str | int) for c in value):
        return tuple(str(c) for c in value)
    raise ValueError("must be a list of strings")


def _entry(target: Any) -> ImageTarget:
    if isinstance(target, str):
        return ImageTarget(target)
    if not isinstance(target, dict) or not isinstance(target.get("image"), str):
        raise ValueError("expected an image reference or {image, command, replace, healthcheck}")
    unknown = set(target) - {"image", "command", "replace", "healthcheck"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    return ImageTarget(
        target["image"],
        _strings(target.get("command")),
        bool(target.get("replace", False)),
        _strings(target.get("healthcheck")),
    )


def load_image_map(path: Path) -> dict[str, ImageTarget]:
    """The mapping in ``path``; SpecError names the file and the entry."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        message = f"cannot read image map: {exc.strerror or exc}"
        raise SpecError([Issue(message, file=str(path))]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Issue(f"image map is not valid YAML: {exc}", file=str(path))]) from None
    if not isinstance(data, dict):
        raise SpecError([Issue("an image map is a mapping of from: to", file=str(path))])
    found: dict[str, ImageTarget] = {}
    issues: list[Issue] = []
    for source, target in data.items():
        try:
            found[str(source)] = _entry(target)
        except ValueError as exc:
            issues.append(Issue(str(exc), file=str(path), path=str(source)))
    if issues:
        raise SpecError(issues)
    return found
