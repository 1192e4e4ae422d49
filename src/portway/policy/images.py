"""Image policy: which registries and repositories a namespace may run, and
whether images must be pinned by digest."""

from __future__ import annotations

import re

from portway.spec.namespace import ImagePolicy

from .violations import Violation

_DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
DEFAULT_REGISTRY = "docker.io"


def canonical_image(image: str) -> str:
    """The fully qualified form Docker uses: ``busybox`` ->
    ``docker.io/library/busybox``, ``portway/x:1`` -> ``docker.io/portway/x:1``.
    A first component with a dot, a colon or ``localhost`` is a registry host."""
    first, slash, _rest = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return image
    if not slash:
        return f"{DEFAULT_REGISTRY}/library/{image}"
    return f"{DEFAULT_REGISTRY}/{image}"


def _matches(image: str, prefix: str) -> bool:
    # A prefix matches the reference as written or its canonical form, so
    # "portway/" and "docker.io/portway/" both allow "portway/busybox".
    return image.startswith(prefix) or canonical_image(image).startswith(prefix)


def check_image(image: str, policy: ImagePolicy) -> list[Violation]:
    found: list[Violation] = []
    prefixes = policy.allowed_prefixes
    if prefixes and not any(_matches(image, p) for p in prefixes):
        found.append(
            Violation(
                "spec.image",
                "image/registry",
                f"image {image} is not from an allowed registry or repository; expected a "
                "reference starting with " + " or ".join(repr(p) for p in prefixes),
            )
        )
    if policy.require_digest and not _DIGEST_RE.search(image):
        found.append(
            Violation(
                "spec.image",
                "image/digest",
                f"image {image} is not pinned by digest; expected a reference ending in "
                "@sha256:<64 hex digits>",
            )
        )
    return found
