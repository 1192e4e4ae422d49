"""Named volumes in the spec (claim, retention, perReplica), their engine
names, containerd's volume directories, and retention on workload delete,
without engines."""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from portway.capabilities.vocabulary import Feature, uses
from portway.controller.volumes import delete_volumes
from portway.drivers.base import ReplicaRequest, ReplicaStatus
from portway.drivers.containerd import _volumes
from portway.drivers.volumes import VolumeInfo, VolumeUser, replica_volume_labels
from portway.errors import InputError, PermanentDriverError
from portway.service.volumes import check_volume_name, parse_labels
from portway.spec.model import Volume, WorkloadSpec
from portway.spec.volumes import native_volume_name, volume_object


def volume(**fields: Any) -> Volume:
    return Volume.model_validate({"name": "data", "type": "named", "mountPath": "/data", **fields})


def test_engine_names_follow_one_rule() -> None:
    assert native_volume_name("ns", "web", volume(), 3) == "ns-web-data"
    assert native_volume_name("ns", "web", volume(perReplica=True), 3) == "ns-web-data-3"
    assert native_volume_name("ns", "web", volume(claim="shared"), 3) == "ns-shared"
    assert native_volume_name("ns", "web", volume(claim="db", perReplica=True), 1) == "ns-db-1"
    assert native_volume_name("ns", "web", volume(source="legacy"), 1) == "legacy"
    assert volume_object("web", volume(source="legacy"), 0) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "tmpfs", "retention": "delete"}, "retention applies only to named volumes"),
        ({"type": "tmpfs", "perReplica": True}, "perReplica applies only to named volumes"),
        (
            {"type": "bind", "source": "/srv", "claim": "x"},
            "claim applies only to named volumes",
        ),
        ({"claim": "x", "source": "y"}, "not both"),
        ({"source": "y", "retention": "delete"}, "not to an engine volume named by 'source'"),
        ({"claim": "x", "retention": "delete"}, "portway volume rm"),
        ({"claim": "Bad_Name"}, "volume claim 'Bad_Name' is invalid"),
        ({"retention": "forever"}, "retention"),
    ],
)
def test_volume_fields_are_checked(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        volume(**fields)
    assert message in str(raised.value)


def test_per_replica_is_a_feature_a_target_must_honour() -> None:
    spec = WorkloadSpec.model_validate(
        {"image": "x", "volumes": [volume(perReplica=True).model_dump(by_alias=True)]}
    )
    found = {(u.path, u.feature) for u in uses(spec)}
    assert ("spec.volumes[0].perReplica", Feature.VOLUMES_PER_REPLICA) in found


def request(vol: Volume, index: int) -> ReplicaRequest:
    spec = WorkloadSpec.model_validate({"image": "x", "volumes": [vol.model_dump(by_alias=True)]})
    return ReplicaRequest("ns", "web", index, 4, "hash", spec, cluster="c1", epoch=2)


def test_a_per_replica_volume_keeps_its_index_label_and_no_revision() -> None:
    labels = replica_volume_labels(
        request(volume(perReplica=True), 1), "t", volume(perReplica=True)
    )
    assert labels["portway.dev/replica"] == "1"
    assert labels["portway.dev/volume-object"] == "web-data-1"
    assert "portway.dev/generation" not in labels and "portway.dev/epoch" not in labels
    shared = replica_volume_labels(request(volume(), 1), "t", volume())
    assert "portway.dev/replica" not in shared


def test_cli_inputs_are_checked() -> None:
    assert parse_labels(["a=1", "b="]) == {"a": "1", "b": ""}
    with pytest.raises(InputError, match=re.escape("--label 'oops': expected KEY=VALUE")):
        parse_labels(["oops"])
    with pytest.raises(InputError, match=r"portway\.dev/ prefix"):
        parse_labels(["portway.dev/x=1"])
    with pytest.raises(InputError, match="NAME 'Data' is invalid"):
        check_volume_name("Data")


class DirectoryVolumes(_volumes.ContainerdVolumes):
    """containerd's directory volumes without containerd: no containers."""

    target = "unit"

    def __init__(self, users: list[ReplicaStatus] | None = None) -> None:
        self.users = users or []

    def _engine(self, action: str) -> AbstractContextManager[None]:
        return nullcontext()

    def list_owned(self, selector: Mapping[str, str]) -> list[ReplicaStatus]:
        return self.users


@pytest.fixture
def volume_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(_volumes, "VOLUME_ROOT", tmp_path)
    yield tmp_path


def test_containerd_directories_export_and_import_like_the_engines(volume_root: Path) -> None:
    driver = DirectoryVolumes()
    made = driver.create_volume("ns-web-data", {"portway.dev/namespace": "ns"})
    assert made.location == str(volume_root / "unit/ns-web-data/_data")
    data = Path(made.location)
    (data / "sub").mkdir()
    (data / "sub/file").write_text("hello")
    (data / "link").symlink_to("sub/file")
    assert driver.list_volumes({"portway.dev/namespace": "ns"})[0].name == "ns-web-data"
    assert driver.list_volumes({"portway.dev/namespace": "other"}) == []
    assert driver.get_volume("ns-web-data", size=True) == VolumeInfo(
        "ns-web-data", made.labels, made.created_at, made.location, 5
    )
    archive = volume_root / "out.tar"
    driver.export_volume("ns-web-data", archive)
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == [".", "./link", "./sub", "./sub/file"]
    driver.create_volume("ns-copy", {})
    copy = Path(driver.get_volume("ns-copy").location)  # type: ignore[union-attr]
    (copy / "stale").write_text("replaced by the import")
    driver.import_volume("ns-copy", archive)
    assert sorted(p.name for p in copy.iterdir()) == ["link", "sub"]
    assert (copy / "link").read_text() == "hello"
    driver.remove_volume("ns-copy")
    assert driver.get_volume("ns-copy") is None


def test_containerd_refuses_to_remove_a_mounted_directory(volume_root: Path) -> None:
    from portway.drivers.base import Handle, ReplicaState

    handle = Handle("containerd", "unit", "pw-ns-web-0-g1", "pw-ns-web-0-g1")
    user = ReplicaStatus(handle, {_volumes.LABEL_MOUNTS: "ns-a,ns-web-data"}, ReplicaState.EXITED)
    driver = DirectoryVolumes([user])
    driver.create_volume("ns-web-data", {})
    assert driver.volume_users("ns-web-data") == [VolumeUser(handle, False, user.labels)]
    with pytest.raises(PermanentDriverError, match="in use by pw-ns-web-0-g1"):
        driver.remove_volume("ns-web-data")
    with pytest.raises(PermanentDriverError, match="is not a volume name"):
        driver.get_volume("../etc")


class RecordingVolumes(DirectoryVolumes):
    def __init__(self, infos: list[VolumeInfo]) -> None:
        super().__init__()
        self.infos = infos
        self.removed: list[str] = []
        self.selectors: list[Mapping[str, str]] = []

    def list_volumes(self, selector: Mapping[str, str]) -> list[VolumeInfo]:
        self.selectors.append(selector)
        return self.infos

    def remove_volume(self, name: str) -> None:
        self.removed.append(name)


def test_deleting_a_workload_removes_only_its_delete_volumes() -> None:
    spec = WorkloadSpec.model_validate(
        {
            "image": "x",
            "volumes": [
                {"name": "cache", "type": "named", "mountPath": "/c", "retention": "delete"},
                {"name": "data", "type": "named", "mountPath": "/d", "perReplica": True},
            ],
        }
    )
    infos = [
        VolumeInfo("ns-web-cache", {"portway.dev/volume": "cache"}),
        VolumeInfo("ns-web-data-0", {"portway.dev/volume": "data"}),
        VolumeInfo("ns-web-data-1", {"portway.dev/volume": "data"}),
    ]
    driver = RecordingVolumes(infos)
    removed, problems = delete_volumes("c1", "ns", "web", spec, {"t": driver})  # type: ignore[dict-item]
    assert (removed, problems) == (["ns-web-cache on t"], [])
    assert driver.removed == ["ns-web-cache"]
    assert driver.selectors == [
        {"portway.dev/cluster": "c1", "portway.dev/namespace": "ns", "portway.dev/workload": "web"}
    ]


def test_new_volume_fields_at_their_defaults_leave_the_template_hash_alone() -> None:
    """A workload stored before claim/retention/perReplica existed keeps its
    hash (else an upgrade would replace every replica with a named volume)."""
    doc = {"image": "x", "volumes": [{"name": "d", "type": "named", "mountPath": "/d"}]}
    before = WorkloadSpec.model_validate(doc).model_dump(mode="json")["volumes"][0]
    assert set(before) == {"name", "type", "mount_path", "source", "read_only", "size_limit"}
    per_replica = {**doc["volumes"][0], "perReplica": True}  # type: ignore[dict-item]
    changed = WorkloadSpec.model_validate({**doc, "volumes": [per_replica]})
    assert changed.template_hash() != WorkloadSpec.model_validate(doc).template_hash()
    assert changed.model_dump(mode="json", by_alias=True)["volumes"][0]["perReplica"] is True
