"""``--image-map FILE``: Compose image references mapped to local images,
since no registry is reachable. Each entry is ``from: to`` or
``from: {image: to, command: [...]}``; the command is used only for services
that set neither ``command`` nor ``entrypoint`` (a stand-in image such as
busybox does not run the original image's default process)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from portway.errors import Issue, SpecError

__all__ = ["ImageTarget", "load_image_map"]


@dataclass(frozen=True)
class ImageTarget:
    image: str
    command: tuple[str, ...] | None = None


def load_image_map(path: Path) -> dict[str, ImageTarget]:
    """The mapping in ``path``; SpecError names the file and the entry."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(
            [Issue(f"cannot read image map: {exc.strerror or exc}", file=str(path))]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([Issue(f"image map is not valid YAML: {exc}", file=str(path))]) from None
    if not isinstance(data, dict):
        raise SpecError([Issue("an image map is a mapping of from: to", file=str(path))])
    found: dict[str, ImageTarget] = {}
    issues: list[Issue] = []
    for source, target in data.items():
        if isinstance(target, str):
            found[str(source)] = ImageTarget(target)
        elif isinstance(target, dict) and isinstance(target.get("image"), str):
            command = target.get("command")
            if command is not None and not (
                isinstance(command, list) and all(isinstance(c, str | int) for c in command)
            ):
                issues.append(
                    Issue(
                        "command must be a list of strings",
                        file=str(path),
                        path=f"{source}.command",
                    )
                )
                continue
            found[str(source)] = ImageTarget(
                target["image"], None if command is None else tuple(str(c) for c in command)
            )
        else:
            issues.append(
                Issue(
                    "expected an image reference or {image, command}",
                    file=str(path),
                    path=str(source),
                )
            )
    if issues:
        raise SpecError(issues)
    return found
