"""A snapshot's manifest: what a volume held when it was copied (each file's
size and SHA-256), where it came from, and how consistent the copy is.

The archive beside it is one plain tar of the volume's root. ``scan_archive``
reads such a tar into file entries; ``verify`` compares a tar with a manifest
and says exactly what it checked, so a restore can report it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from portway.errors import InputError

FORMAT = "portway.dev/volume-snapshot/v1"
_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SNAPSHOT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,98}[a-z0-9])?$")


class Consistency(StrEnum):
    """How the copy was kept from changing while it was made."""

    PAUSED = "paused"  # running writers were frozen (cgroup freezer) for the copy
    STOPPED = "stopped"  # containers mount the volume but none was running
    NONE = "none"  # no container mounted the volume: nothing could write


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the volume's root, "/"-separated, no leading "./"
    size: int
    sha256: str  # hex; "" for a symlink
    link: str = ""  # a symlink's target ("" for a regular file)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.link:
            out["link"] = self.link
        return out


@dataclass(frozen=True)
class Manifest:
    name: str  # the snapshot's name, unique per namespace
    namespace: str
    volume: str  # the Volume object it was taken of
    engine_volume: str  # the engine's name of that volume
    target: str
    driver: str
    created_at: str  # ISO 8601, UTC
    consistency: Consistency
    files: tuple[FileEntry, ...]
    archive_sha256: str
    archive_size: int
    #: the containers frozen (paused) or found stopped during the copy
    quiesced: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "namespace": self.namespace,
            "volume": self.volume,
            "engineVolume": self.engine_volume,
            "source": {"target": self.target, "driver": self.driver},
            "createdAt": self.created_at,
            "consistency": {"method": self.consistency.value, "containers": list(self.quiesced)},
            "fileCount": len(self.files),
            "totalBytes": self.total_bytes,
            "files": [f.to_json() for f in self.files],
            "archive": {"sha256": self.archive_sha256, "size": self.archive_size},
            "labels": dict(self.labels),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: Any, where: str) -> Manifest:
        """Parse a manifest; ``where`` names its file in error messages."""
        reader = _Reader(data, where)
        if reader.text("format") != FORMAT:
            raise InputError(f"{where}: format must be {FORMAT!r}, got {data.get('format')!r}")
        source = reader.obj("source")
        consistency = reader.obj("consistency")
        method = _Reader(consistency, f"{where}: consistency").text("method")
        try:
            parsed_method = Consistency(method)
        except ValueError:
            allowed = ", ".join(c.value for c in Consistency)
            raise InputError(
                f"{where}: consistency.method must be one of {allowed}, got {method!r}"
            ) from None
        archive = reader.obj("archive")
        files = tuple(
            _file_entry(item, f"{where}: files[{i}]") for i, item in enumerate(reader.list("files"))
        )
        manifest = cls(
            name=reader.text("name"),
            namespace=reader.text("namespace"),
            volume=reader.text("volume"),
            engine_volume=reader.text("engineVolume"),
            target=_Reader(source, f"{where}: source").text("target"),
            driver=_Reader(source, f"{where}: source").text("driver"),
            created_at=reader.text("createdAt"),
            consistency=parsed_method,
            files=files,
            archive_sha256=_Reader(archive, f"{where}: archive").sha256("sha256"),
            archive_size=_Reader(archive, f"{where}: archive").count("size"),
            quiesced=tuple(str(c) for c in consistency.get("containers") or ()),
            labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
        )
        declared = data.get("totalBytes")
        if declared is not None and declared != manifest.total_bytes:
            raise InputError(
                f"{where}: totalBytes is {declared} but the files add up to {manifest.total_bytes}"
            )
        return manifest

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        except ValueError as exc:
            raise InputError(f"{path}: not JSON ({exc})") from None
        return cls.from_json(data, str(path))


class _Reader:
    """Typed access to one JSON object, with errors naming the field."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected an object, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.where = where

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise InputError(f"{self.where}: missing field {key!r}")
        return self.data[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise InputError(f"{self.where}: {key} must be a non-empty string, got {value!r}")
        return value

    def count(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"{self.where}: {key} must be a whole number >= 0, got {value!r}")
        return value

    def sha256(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not _SHA256_RE.match(value):
            raise InputError(f"{self.where}: {key} must be 64 lowercase hex digits, got {value!r}")
        return value

    def obj(self, key: str) -> dict[str, Any]:
        value = self._get(key)
        if not isinstance(value, dict):
            raise InputError(f"{self.where}: {key} must be an object, got {value!r}")
        return value

    def list(self, key: str) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list):
            raise InputError(f"{self.where}: {key} must be a list, got {value!r}")
        return value


def _file_entry(item: Any, where: str) -> FileEntry:
    reader = _Reader(item, where)
    path = reader.text("path")
    if path.startswith("/") or ".." in path.split("/"):
        raise InputError(f"{where}: path {path!r} must stay inside the volume")
    link = item.get("link") or ""
    if not isinstance(link, str):
        raise InputError(f"{where}: link must be a string, got {link!r}")
    digest = "" if link else reader.sha256("sha256")
    return FileEntry(path=path, size=reader.count("size"), sha256=digest, link=link)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _member_path(name: str) -> str:
    """ "./a/b" or "a/b/" -> "a/b" ("" for the root itself)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def scan_archive(archive: Path) -> tuple[FileEntry, ...]:
    """The regular files and symlinks of a volume tar, sorted by path, each
    regular file with its size and SHA-256 (directories carry no data)."""
    entries: list[FileEntry] = []
    try:
        with tarfile.open(archive, "r") as tar:
            for member in tar:
                path = _member_path(member.name)
                if not path:
                    continue
                if member.issym():
                    entries.append(FileEntry(path, 0, "", link=member.linkname or "."))
                elif member.isreg() or member.islnk():
                    stream = tar.extractfile(member)
                    assert stream is not None  # regular files and hard links have data
                    digest = hashlib.sha256()
                    size = 0
                    while chunk := stream.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                    entries.append(FileEntry(path, size, digest.hexdigest()))
    except (tarfile.TarError, EOFError) as exc:
        raise InputError(f"{archive}: not a readable tar archive ({exc})") from None
    return tuple(sorted(entries, key=lambda e: e.path))


@dataclass(frozen=True)
class Verification:
    """What comparing an archive (or a volume's contents) with a manifest found."""

    files_checked: int
    bytes_checked: int
    archive_sha256_checked: bool
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()  # size or SHA-256 differ

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        what = f"{self.files_checked} files, {self.bytes_checked} bytes (SHA-256 of each file)"
        if self.archive_sha256_checked:
            what += " and the archive's SHA-256"
        if self.ok:
            return f"verified {what}"
        problems = []
        for label, paths in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("different", self.mismatched),
        ):
            if paths:
                shown = ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else "")
                problems.append(f"{len(paths)} {label} ({shown})")
        return f"checked {what}: " + "; ".join(problems)


def compare(
    expected: Sequence[FileEntry], found: Sequence[FileEntry], *, archive_checked: bool = False
) -> Verification:
    want = {e.path: e for e in expected}
    have = {e.path: e for e in found}
    mismatched = tuple(
        sorted(
            p
            for p in want.keys() & have.keys()
            if (want[p].size, want[p].sha256, want[p].link)
            != (have[p].size, have[p].sha256, have[p].link)
        )
    )
    return Verification(
        files_checked=len(want),
        bytes_checked=sum(e.size for e in expected),
        archive_sha256_checked=archive_checked,
        missing=tuple(sorted(want.keys() - have.keys())),
        unexpected=tuple(sorted(have.keys() - want.keys())),
        mismatched=mismatched,
    )


def verify_archive(archive: Path, manifest: Manifest) -> Verification:
    """Check the archive's own digest and every file in it against ``manifest``."""
    digest = file_digest(archive)
    if digest != manifest.archive_sha256:
        return Verification(
            files_checked=0,
            bytes_checked=0,
            archive_sha256_checked=True,
            mismatched=(
                f"the archive itself (sha256 {digest[:12]}, manifest says "
                f"{manifest.archive_sha256[:12]})",
            ),
        )
    return compare(manifest.files, scan_archive(archive), archive_checked=True)


def check_snapshot_name(name: str, what: str = "snapshot name") -> str:
    if not SNAPSHOT_NAME_RE.match(name):
        raise InputError(
            f"{what} {name!r} is invalid: use lowercase letters, digits, '-' and '.', "
            "at most 100, starting and ending with a letter or digit"
        )
    return name
