"""Per-replica volumes pin their index to the target holding the volume."""

from __future__ import annotations

from collections.abc import Mapping

from portway.controller import volume_placement
from portway.drivers.base import ReplicaStatus
from portway.drivers.volumes import VolumeInfo
from portway.errors import TargetUnavailableError
from portway.scheduler.model import TargetState
from portway.scheduler.state import ClusterState
from portway.spec.model import Workload

TARGETS = ["a", "b", "c"]


def workload(per_replica: bool = True) -> Workload:
    return Workload.model_validate(
        {
            "apiVersion": "portway.dev/v1",
            "kind": "Workload",
            "metadata": {"name": "db", "namespace": "ns"},
            "spec": {
                "image": "x",
                "replicas": 3,
                "volumes": [
                    {"name": "data", "type": "named", "mountPath": "/d", "perReplica": per_replica}
                ],
            },
        }
    )


def state(unhealthy: tuple[str, ...] = ()) -> ClusterState:
    return ClusterState([TargetState(t, healthy=t not in unhealthy) for t in TARGETS], [])


def test_an_index_with_a_volume_is_placed_only_on_its_target() -> None:
    decision = volume_placement.schedule(
        state(), workload(), [0, 1, 2], {}, {1: "c", 2: "c"}, TARGETS
    )
    where = {a.index: a.target for a in decision.placed}
    assert (where[1], where[2]) == ("c", "c")
    assert all(
        a.reason.endswith("; volume db-data-1 lives here") for a in decision.placed if a.index == 1
    )
    assert decision.failure is None


def test_an_index_whose_volume_target_is_down_waits_and_says_why() -> None:
    decision = volume_placement.schedule(state(("b",)), workload(), [0, 1], {}, {1: "b"}, TARGETS)
    assert [a.index for a in decision.placed] == [0]
    assert decision.unplaced == (1,)
    assert decision.failure is not None
    assert decision.failure.message() == (
        "0/3 targets available: 2 hold no volume db-data-1 (it lives on b), 1 unhealthy"
    )


def test_a_shared_volume_pins_nothing() -> None:
    decision = volume_placement.schedule(state(), workload(False), [0, 1], {}, {1: "c"}, TARGETS)
    assert len(decision.placed) == 2 and decision.failure is None
    assert not any("lives here" in a.reason for a in decision.placed)


class Listing:
    def __init__(self, objects: list[str] | None) -> None:
        self.objects = objects  # None: unreachable

    def list_volumes(self, selector: Mapping[str, str]) -> list[VolumeInfo]:
        if self.objects is None:
            raise TargetUnavailableError("t", "down")
        return [VolumeInfo(f"ns-{o}", {"portway.dev/volume-object": o}) for o in self.objects]

    # the rest of VolumeManager (runtime_checkable looks only at names)
    def get_volume(self, name: str, *, size: bool = False) -> None: ...
    def create_volume(self, name: str, labels: Mapping[str, str]) -> None: ...
    def remove_volume(self, name: str) -> None: ...
    def volume_users(self, name: str) -> list[ReplicaStatus]:
        return []

    def export_volume(self, name: str, dest: object) -> None: ...
    def import_volume(self, name: str, source: object) -> None: ...


def test_homes_come_from_the_engines_and_memory_covers_a_target_that_is_down() -> None:
    drivers = {"a": Listing(["db-data-0"]), "b": Listing(None), "c": Listing([])}
    remembered = {1: "b", 2: "c", 5: "a"}
    homes = volume_placement.refresh_homes(
        workload(),
        "cluster",
        [0, 1, 2],
        remembered,
        drivers,  # type: ignore[arg-type]
    )
    # 0 found on a; 1 remembered on b (down); 2's volume was removed from c
    assert homes == {0: "a", 1: "b", 5: "a"}
    assert volume_placement.to_status(homes) == {"0": "a", "1": "b", "5": "a"}
    assert volume_placement.homes_of({"volumeHomes": {"0": "a", "x": "b"}}) == {0: "a"}
