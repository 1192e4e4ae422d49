"""Snapshot manifests, checksums, the local snapshot store and the export
bundle, on real files (no engine)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from portway.errors import AlreadyExistsError, InputError, NotFoundError
from portway.snapshots.bundle import read_bundle, write_bundle
from portway.snapshots.manifest import (
    Consistency,
    FileEntry,
    Manifest,
    compare,
    file_digest,
    scan_archive,
    verify_archive,
)
from portway.snapshots.store import LocalSnapshotStore


def make_volume_tar(
    path: Path, files: dict[str, bytes], links: dict[str, str] | None = None
) -> Path:
    """A tar shaped like the engines' exports: ``./`` first, then the tree."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        root = tarfile.TarInfo(".")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        for name, data in files.items():
            if "/" in name:
                directory = tarfile.TarInfo("./" + name.rsplit("/", 1)[0])
                directory.type = tarfile.DIRTYPE
                tar.addfile(directory)
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo("./" + name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def manifest_for(archive: Path, name: str = "snap-1") -> Manifest:
    return Manifest(
        name=name,
        namespace="default",
        volume="data",
        engine_volume="default-data",
        target="local-docker",
        driver="docker",
        created_at="2026-12-06T02:00:00+00:00",
        consistency=Consistency.PAUSED,
        files=scan_archive(archive),
        archive_sha256=file_digest(archive),
        archive_size=archive.stat().st_size,
        quiesced=("pw-default-web-0-g1",),
    )


FILES = {"count": b"41\n", "sub/deep/blob.bin": bytes(range(256)) * 10, "empty": b""}


def test_scan_lists_files_and_links_with_size_and_sha256(tmp_path: Path) -> None:
    archive = make_volume_tar(tmp_path / "v.tar", FILES, {"latest": "sub/deep/blob.bin"})
    entries = {e.path: e for e in scan_archive(archive)}
    assert sorted(entries) == ["count", "empty", "latest", "sub/deep/blob.bin"]
    blob = FILES["sub/deep/blob.bin"]
    assert entries["sub/deep/blob.bin"] == FileEntry(
        "sub/deep/blob.bin", len(blob), hashlib.sha256(blob).hexdigest()
    )
    assert entries["empty"].sha256 == hashlib.sha256(b"").hexdigest()
    assert entries["latest"] == FileEntry("latest", 0, "", link="sub/deep/blob.bin")


def test_manifest_round_trips_through_json(tmp_path: Path) -> None:
    manifest = manifest_for(make_volume_tar(tmp_path / "v.tar", FILES))
    data = json.loads(manifest.dumps())
    assert data["consistency"] == {"method": "paused", "containers": ["pw-default-web-0-g1"]}
    assert data["totalBytes"] == sum(len(v) for v in FILES.values())
    assert data["fileCount"] == 3
    assert Manifest.from_json(data, "m.json") == manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("files"), "m.json: missing field 'files'"),
        (lambda d: d.update(format="v0"), "format must be 'portway.dev/volume-snapshot/v1'"),
        (
            lambda d: d["consistency"].update(method="frozen"),
            "consistency.method must be one of paused, stopped, none, got 'frozen'",
        ),
        (
            lambda d: d["files"][0].update(sha256="XYZ"),
            "m.json: files[0]: sha256 must be 64 lowercase hex digits",
        ),
        (
            lambda d: d["files"][0].update(path="../etc/passwd"),
            "files[0]: path '../etc/passwd' must stay inside the volume",
        ),
        (lambda d: d["files"][1].update(size=-1), "files[1]: size must be a whole number >= 0"),
        (lambda d: d.update(totalBytes=1), "totalBytes is 1 but the files add up to"),
        (lambda d: d["archive"].pop("sha256"), "m.json: archive: missing field 'sha256'"),
    ],
)
def test_bad_manifests_name_the_field(tmp_path: Path, change: object, message: str) -> None:
    data = json.loads(manifest_for(make_volume_tar(tmp_path / "v.tar", FILES)).dumps())
    assert callable(change)
    change(data)
    with pytest.raises(InputError) as raised:
        Manifest.from_json(data, "m.json")
    assert message in str(raised.value)


def test_verify_passes_an_intact_archive_and_says_what_it_checked(tmp_path: Path) -> None:
    archive = make_volume_tar(tmp_path / "v.tar", FILES)
    check = verify_archive(archive, manifest_for(archive))
    assert check.ok
    assert (check.files_checked, check.bytes_checked) == (3, sum(len(v) for v in FILES.values()))
    assert check.describe() == (
        f"verified 3 files, {check.bytes_checked} bytes (SHA-256 of each file) "
        "and the archive's SHA-256"
    )


def test_verify_catches_a_changed_archive(tmp_path: Path) -> None:
    archive = make_volume_tar(tmp_path / "v.tar", FILES)
    manifest = manifest_for(archive)
    make_volume_tar(archive, {**FILES, "count": b"42\n"})
    check = verify_archive(archive, manifest)
    assert not check.ok
    assert "the archive itself" in check.mismatched[0]


def test_compare_reports_missing_unexpected_and_different_files() -> None:
    want = (FileEntry("a", 1, "0" * 64), FileEntry("b", 1, "1" * 64), FileEntry("c", 2, "2" * 64))
    have = (FileEntry("a", 1, "0" * 64), FileEntry("c", 2, "3" * 64), FileEntry("d", 0, "4" * 64))
    check = compare(want, have)
    assert (check.missing, check.unexpected, check.mismatched) == (("b",), ("d",), ("c",))
    assert "1 missing (b); 1 unexpected (d); 1 different (c)" in check.describe()


def test_scan_refuses_what_is_not_a_tar(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(InputError, match=r"junk\.tar: not a readable tar archive"):
        scan_archive(junk)


def test_local_store_keeps_lists_opens_and_deletes(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path / "snapshots")
    archive = make_volume_tar(tmp_path / "v.tar", FILES)
    manifest = manifest_for(archive)
    stored = store.put(manifest, archive)
    assert stored.archive == tmp_path / "snapshots/default/snap-1/volume.tar"
    assert verify_archive(stored.archive, manifest).ok
    assert store.list() == [manifest] == store.list("default")
    assert store.list("other") == []
    assert store.open("default", "snap-1").manifest == manifest
    second = make_volume_tar(tmp_path / "w.tar", FILES)
    with pytest.raises(AlreadyExistsError, match="choose another --name"):
        store.put(manifest_for(second), second)
    assert store.delete("default", "snap-1") is True
    assert store.delete("default", "snap-1") is False
    with pytest.raises(NotFoundError, match="snapshot default/snap-1 not found"):
        store.open("default", "snap-1")


def test_store_refuses_bad_snapshot_names(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path)
    with pytest.raises(InputError, match=re.escape("snapshot name '../x' is invalid")):
        store.open("default", "../x")


def test_bundle_round_trips_and_refuses_foreign_tars(tmp_path: Path) -> None:
    archive = make_volume_tar(tmp_path / "v.tar", FILES)
    manifest = manifest_for(archive)
    out = tmp_path / "export.tar"
    write_bundle(manifest, archive, out)
    work = tmp_path / "work"
    work.mkdir()
    read, extracted = read_bundle(out, work)
    assert read == manifest
    assert verify_archive(extracted, read).ok
    with pytest.raises(InputError, match="not a portway volume export"):
        read_bundle(archive, work)
    with pytest.raises(InputError, match="no such file"):
        read_bundle(tmp_path / "missing.tar", work)
