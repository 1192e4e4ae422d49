"""The wasm tier's image store: modules by name, content-addressed.

A module is stored once, as ``artifacts/blobs/sha256-HEX.wasm`` (always wasm
binary: ``.wat`` text is compiled on import), whatever names point at it.
Names are image references (``portway/hello:1``; without a tag ``:latest``)
kept in ``artifacts/refs.json``: name -> digest, size and import time.
Updates hold ``artifacts/.lock`` so concurrent imports do not lose a name.

A replica does not read the store after its create: it keeps a hard link to
its blob, so removing or re-importing a name never changes (or breaks) a
replica already made from it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from portway.drivers.wasm._state import locked, read_json, write_json
from portway.spec.model import FILE_IMAGE_PREFIX, IMAGE_RE

FILE_PREFIX = FILE_IMAGE_PREFIX


@dataclass(frozen=True)
class StoredModule:
    name: str  # normalized reference, or the file:// URL it came from
    digest: str  # "sha256:HEX" of the wasm binary
    size: int
    imported_at: str  # ISO 8601, UTC; "" for file:// modules

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")


def normalize(name: str) -> str:
    """``portway/hello`` -> ``portway/hello:latest``; raises ValueError if
    ``name`` is not an image reference."""
    if len(name) > 255 or not IMAGE_RE.match(name):
        raise ValueError(
            f"{name!r} is not a valid artifact name; use an image reference such as "
            "'portway/hello:1'"
        )
    last = name.rsplit("/", 1)[-1]
    return name if (":" in last or "@" in name) else f"{name}:latest"


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.refs = root / "refs.json"
        self._lock = root / ".lock"

    def blob_path(self, digest: str) -> Path:
        return self.blobs / f"sha256-{digest.removeprefix('sha256:')}.wasm"

    def _refs(self) -> dict[str, dict[str, object]]:
        data = read_json(self.refs)
        return data if isinstance(data, dict) else {}

    def put_blob(self, binary: bytes) -> tuple[str, Path]:
        """Store a wasm binary; its digest and path (idempotent)."""
        digest = "sha256:" + hashlib.sha256(binary).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            self.blobs.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
            try:
                temporary.write_bytes(binary)
                temporary.replace(path)
            finally:
                temporary.unlink(missing_ok=True)
        return digest, path

    def tag(self, name: str, digest: str, size: int) -> StoredModule:
        name = normalize(name)
        self.root.mkdir(parents=True, exist_ok=True)
        when = datetime.now(UTC).isoformat()
        with locked(self._lock):
            refs = self._refs()
            refs[name] = {"digest": digest, "size": size, "importedAt": when}
            write_json(self.refs, refs)
        return StoredModule(name, digest, size, when)

    def get(self, name: str) -> StoredModule | None:
        try:
            key = normalize(name)
        except ValueError:
            return None
        entry = self._refs().get(key)
        if not isinstance(entry, dict):
            return None
        module = StoredModule(
            key, str(entry["digest"]), int(str(entry["size"])), str(entry["importedAt"])
        )
        return module if self.blob_path(module.digest).exists() else None

    def list(self) -> list[StoredModule]:
        return [m for name in sorted(self._refs()) if (m := self.get(name)) is not None]

    def remove(self, name: str) -> StoredModule | None:
        """Forget a name; its blob goes too when no other name points at it
        (replicas made from it keep their own link). None if unknown."""
        key = normalize(name)
        with locked(self._lock):
            refs = self._refs()
            entry = refs.pop(key, None)
            if entry is None:
                return None
            write_json(self.refs, refs)
            digest = str(entry["digest"])
            if not any(str(e.get("digest")) == digest for e in refs.values()):
                self.blob_path(digest).unlink(missing_ok=True)
        return StoredModule(key, digest, int(str(entry["size"])), str(entry["importedAt"]))


def file_url_path(image: str) -> Path | None:
    """``file:///abs/x.wasm`` -> the path; None for a store reference."""
    if not image.startswith(FILE_PREFIX):
        return None
    return Path(image.removeprefix(FILE_PREFIX))
