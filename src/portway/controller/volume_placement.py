"""Per-replica volumes pin their replica index to the target that holds them.

A volume does not follow its index to another target (moving data is a
snapshot, an export and an import: docs/volumes.md). So, as Kubernetes does
for a StatefulSet pod whose local PersistentVolume lives on one node, an
index whose per-replica volume exists is placed only on that volume's target
(a hard filter, through ``Ask.excluded``), and says so in its Placed or
FailedScheduling reason.

Where each index's volume lives is remembered in the workload's status
(``volumeHomes``), so an index whose target is unreachable stays pinned to it
(pending) rather than starting afresh elsewhere with an empty volume. A home
is forgotten when its target answers and no longer has the volume (it was
removed with ``portway volume rm``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from portway.controller.scheduling import ask_for
from portway.drivers.base import LABEL_CLUSTER, LABEL_NAMESPACE, Driver
from portway.drivers.volumes import LABEL_VOLUME_OBJECT, VolumeManager
from portway.errors import PortwayError
from portway.scheduler.model import Assignment, Decision, Unplaceable
from portway.scheduler.state import ClusterState
from portway.spec.model import VolumeType, Workload
from portway.spec.volumes import volume_object

STATUS_KEY = "volumeHomes"


def pinned_objects(workload: Workload, index: int) -> list[str]:
    """The per-replica Volume objects replica ``index`` mounts."""
    return [
        obj
        for volume in workload.spec.volumes
        if volume.type is VolumeType.NAMED and volume.per_replica
        for obj in [volume_object(workload.metadata.name, volume, index)]
        if obj is not None
    ]


def homes_of(status: Mapping[str, object]) -> dict[int, str]:
    raw = status.get(STATUS_KEY)
    if not isinstance(raw, Mapping):
        return {}
    return {int(k): str(v) for k, v in raw.items() if str(k).isdigit()}


def remember(homes: dict[int, str], workload: Workload, placed: Sequence[Assignment]) -> None:
    """An index placed with per-replica volumes makes them where it lands."""
    for assignment in placed:
        if pinned_objects(workload, assignment.index):
            homes.setdefault(assignment.index, assignment.target)


def to_status(homes: Mapping[int, str]) -> dict[str, str]:
    return {str(i): t for i, t in sorted(homes.items())}


def refresh_homes(
    workload: Workload,
    cluster: str,
    indices: Sequence[int],
    remembered: Mapping[int, str],
    drivers: Mapping[str, Driver],
) -> dict[int, str]:
    """Where the volumes of ``indices`` live: what the engines that answer
    say, else what was remembered (their target may be down).

    A volume may exist on two targets for a while: a migration restores it
    on the destination before it switches ``placement.targets`` there (and
    ``--keep-source`` keeps the old copy after). Then the home is the copy
    the placement allows, the remembered one first, so the switch alone
    moves the index and an aborted migration leaves it where it was."""
    wanted = {obj: i for i in indices for obj in pinned_objects(workload, i)}
    homes = dict(remembered)
    if not wanted:
        return homes
    selector = {LABEL_CLUSTER: cluster, LABEL_NAMESPACE: workload.metadata.namespace}
    holders: dict[int, list[str]] = {}
    answered: set[str] = set()
    for target, driver in sorted(drivers.items()):
        if not isinstance(driver, VolumeManager):
            continue
        try:
            found = {info.labels.get(LABEL_VOLUME_OBJECT) for info in driver.list_volumes(selector)}
        except PortwayError:
            continue  # unreachable: what we remembered about it stands
        answered.add(target)
        for obj, index in wanted.items():
            if obj in found:
                holders.setdefault(index, []).append(target)
    allowed = set(workload.spec.placement.targets)
    for index in set(wanted.values()):
        home = homes.get(index)
        if home is not None and home not in answered:
            continue  # its target did not answer: stay pinned to it
        held = holders.get(index, [])
        preferred = [t for t in held if not allowed or t in allowed] or held
        if home in preferred:
            continue
        if preferred:
            homes[index] = preferred[0]
        else:
            homes.pop(index, None)  # it answered and the volume is gone
    return homes


def schedule(
    state: ClusterState,
    workload: Workload,
    wanted: Sequence[int],
    excluded: Mapping[str, str],
    homes: Mapping[int, str],
    targets: Sequence[str],
) -> Decision:
    """Place ``wanted``: each index with a home only there (every other
    target excluded with the reason), then the rest as usual."""
    placed: list[Assignment] = []
    unplaced: list[int] = []
    failure: Unplaceable | None = None
    by_home: dict[str, list[int]] = {}
    free = []
    for index in wanted:
        home = homes.get(index)
        if home is not None and pinned_objects(workload, index):
            by_home.setdefault(home, []).append(index)
        else:
            free.append(index)
    for home, indices in sorted(by_home.items()):
        for index in indices:
            objs = ", ".join(pinned_objects(workload, index))
            why = f"hold no volume {objs} (it lives on {home})"
            pinned = {**excluded, **{t: why for t in targets if t != home}}
            decision = state.schedule(ask_for(workload, [index], pinned))
            placed += [
                Assignment(a.index, a.target, f"{a.reason}; volume {objs} lives here", a.victims)
                for a in decision.placed
            ]
            unplaced += decision.unplaced
            failure = failure or decision.failure
    if free:
        decision = state.schedule(ask_for(workload, free, excluded))
        placed += decision.placed
        unplaced += decision.unplaced
        failure = failure or decision.failure
    return Decision(placed=tuple(placed), unplaced=tuple(sorted(unplaced)), failure=failure)
