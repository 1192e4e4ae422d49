"""migrate's stopped state without a snapshot: the real migration steps
(``service.migration.Steps``) over two directory-volume targets (the
containerd driver's volume half, no engine), from the pre-copy to the
restore. A volume nothing wrote to after the pre-copy is not snapshotted;
any write, a remote engine, or a lost destination copy takes the snapshot."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest

from portway.controller.records import CLUSTER_NAMESPACE, KIND_TARGET
from portway.drivers import registry
from portway.drivers.base import ReplicaStatus
from portway.drivers.containerd import _volumes
from portway.service.app import App, Settings
from portway.service.migration import Steps
from portway.service.migration_steps import Migration, VolumeMove
from portway.service.snapshots import snapshot_store
from portway.snapshots.tree import RACY_NS, filesystem_of, listable

VOLUME = "ns-web-data"


class DirectoryTarget(_volumes.ContainerdVolumes):
    """A target whose volumes are directories of this host; nothing runs."""

    name = "dirvol"

    def __init__(self, target: str, address: str) -> None:
        self.target = target

    def _engine(self, action: str) -> AbstractContextManager[None]:
        return nullcontext()

    def list_owned(self, selector: object) -> list[ReplicaStatus]:
        return []


@dataclass
class Move:
    steps: Steps
    app: App
    source: Path  # the source volume's files

    def migration(self) -> Migration:
        return Migration(
            id="m1",
            namespace="ns",
            workload="web",
            source="src",
            destination="dst",
            replicas=1,
            placement_targets=(),
            volumes=(VolumeMove("web-data", VOLUME),),
        )

    def destination(self) -> Path:
        info = self.steps._driver("dst").get_volume(VOLUME)
        assert info is not None
        return Path(info.location)

    def snapshots(self) -> list[str]:
        return [s.name for s in snapshot_store(self.app).list("ns")]


def _target(app: App, name: str, address: str) -> None:
    app.store.create(
        KIND_TARGET,
        CLUSTER_NAMESPACE,
        name,
        {"driver": "dirvol", "address": address, "labels": {}},
        {"health": "healthy", "checkedAt": 1e12},
    )


def _settle_down(root: Path) -> None:
    """Until the newest change under ``root`` is older than the racy margin."""
    newest = max(p.lstat().st_ctime_ns for p in [root, *root.rglob("*")])
    while time.time_ns() - newest <= RACY_NS + 10_000_000:
        time.sleep(0.01)


def _make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source_address: str) -> Iterator[Move]:
    if not listable(tmp_path):
        pytest.skip(f"{tmp_path} is on {filesystem_of(tmp_path)!r}, not a disk file system")
    monkeypatch.setattr(_volumes, "VOLUME_ROOT", tmp_path / "volumes")
    registry.register("dirvol", f"{__name__}:DirectoryTarget")
    app = App(Settings(home=tmp_path / "home", docker_socket="/nonexistent", local_wasm=False))
    _target(app, "src", source_address)
    _target(app, "dst", "dirvol:///dst")
    steps = Steps(app, timeout=5, say=lambda text: None)
    made = steps._driver("src").create_volume(VOLUME, {"portway.dev/namespace": "ns"})
    source = Path(made.location)
    (source / "sub").mkdir()
    (source / "sub" / "list").write_text("one\n")
    (source / "blob").write_bytes(b"x" * 4096)
    _settle_down(source)
    yield Move(steps, app, source)
    app.close()


@pytest.fixture
def move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Move]:
    yield from _make(tmp_path, monkeypatch, "dirvol:///src")


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Move]:
    yield from _make(tmp_path, monkeypatch, "dirvol+tcp://elsewhere:2375")


def _until_restored(move: Move, write_after_precopy: bool = False) -> Migration:
    """pre-copy, (a write,) snapshot, transfer: what the restore starts from."""
    steps = move.steps
    m = steps.precopy(move.migration())
    if write_after_precopy:
        (move.source / "sub" / "list").write_text("two\n")  # same size as before
    return steps.transfer(steps.snapshot(m))


def test_a_volume_nothing_wrote_to_is_not_snapshotted(move: Move) -> None:
    m = _until_restored(move)
    [volume] = m.volumes
    assert volume.precopy_tree and volume.unchanged
    assert (volume.files, volume.bytes) == (2, 4096 + 4)
    assert move.snapshots() == []  # nothing was read or stored
    [restored] = move.steps.restore(m).volumes
    assert restored.restored and restored.from_precopy
    assert (move.destination() / "sub" / "list").read_text() == "one\n"


def test_a_write_after_the_precopy_is_snapshotted_and_restored(move: Move) -> None:
    m = _until_restored(move, write_after_precopy=True)
    [volume] = m.volumes
    assert not volume.unchanged and volume.snapshot == "web-data-mig-m1"
    assert move.snapshots() == ["web-data-mig-m1"]
    [restored] = move.steps.restore(m).volumes
    assert restored.restored and not restored.from_precopy
    assert (move.destination() / "sub" / "list").read_text() == "two\n"


def test_a_lost_destination_copy_is_restored_from_a_snapshot_taken_then(move: Move) -> None:
    m = _until_restored(move)
    assert m.volumes[0].unchanged
    move.steps._driver("dst").remove_volume(VOLUME)  # e.g. removed by hand meanwhile
    [restored] = move.steps.restore(m).volumes
    assert restored.restored and not restored.unchanged and not restored.from_precopy
    assert move.snapshots() == ["web-data-mig-m1"]
    assert (move.destination() / "blob").read_bytes() == b"x" * 4096


def test_a_remote_engine_is_never_listed(remote: Move) -> None:
    m = _until_restored(remote)
    [volume] = m.volumes
    assert volume.precopy_tree == "" and not volume.unchanged
    assert remote.snapshots() == ["web-data-mig-m1"]
