"""The export file (``portway volume export -o FILE.tar``): an outer tar
holding ``manifest.json`` and ``volume.tar``, so the file alone carries what
an import needs to verify it. The outer tar is readable with any tar tool.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from portway.errors import InputError
from portway.snapshots.manifest import Manifest

BUNDLE_MANIFEST = "manifest.json"
BUNDLE_ARCHIVE = "volume.tar"


def write_bundle(manifest: Manifest, archive: Path, out: Path) -> None:
    """Write the export file; a partial file never takes ``out``'s name."""
    partial = out.with_name(f".{out.name}.partial")
    data = manifest.dumps().encode()
    try:
        with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as bundle:
            info = tarfile.TarInfo(BUNDLE_MANIFEST)
            info.size = len(data)
            info.mode = 0o644
            bundle.addfile(info, io.BytesIO(data))
            bundle.add(archive, arcname=BUNDLE_ARCHIVE, recursive=False)
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"{out}: cannot write ({exc.strerror or exc})") from None


def read_bundle(file: Path, workdir: Path) -> tuple[Manifest, Path]:
    """The manifest of an export file, and its volume archive extracted into
    ``workdir``. Refuses anything but the two expected members."""
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    manifest: Manifest | None = None
    archive = workdir / BUNDLE_ARCHIVE
    try:
        with tarfile.open(file, "r") as bundle:
            names = sorted(bundle.getnames())
            if names != sorted([BUNDLE_MANIFEST, BUNDLE_ARCHIVE]):
                found = ", ".join(names) or "nothing"
                raise InputError(
                    f"{file}: not a portway volume export (expected exactly "
                    f"{BUNDLE_MANIFEST} and {BUNDLE_ARCHIVE}, found {found})"
                )
            for member in bundle:
                stream = bundle.extractfile(member)
                if stream is None:
                    raise InputError(f"{file}: {member.name} is not a regular file")
                if member.name == BUNDLE_MANIFEST:
                    try:
                        data = json.loads(stream.read())
                    except ValueError as exc:
                        raise InputError(f"{file}: {BUNDLE_MANIFEST} is not JSON ({exc})") from None
                    manifest = Manifest.from_json(data, f"{file}: {BUNDLE_MANIFEST}")
                else:
                    with archive.open("wb") as out:
                        while chunk := stream.read(1 << 20):
                            out.write(chunk)
    except (tarfile.TarError, EOFError) as exc:
        raise InputError(f"{file}: not a readable tar archive ({exc})") from None
    assert manifest is not None  # both names were present
    return manifest, archive
