"""Retention of a deleted workload's named volumes: those declared
``retention: delete`` are removed once its replicas are gone; the others
(``keep``, the default, as in Compose and Docker) stay for a later workload
or ``portway volume rm``."""

from __future__ import annotations

from collections.abc import Mapping

from portway.drivers.base import LABEL_CLUSTER, LABEL_NAMESPACE, LABEL_WORKLOAD, Driver
from portway.drivers.engine_common import LABEL_VOLUME
from portway.drivers.volumes import VolumeManager
from portway.errors import PortwayError
from portway.spec.model import VolumeRetention, VolumeType, WorkloadSpec


def delete_volumes(
    cluster: str, namespace: str, workload: str, spec: WorkloadSpec, drivers: Mapping[str, Driver]
) -> tuple[list[str], list[str]]:
    """Remove the workload's ``retention: delete`` volumes (every per-replica
    copy too) on ``drivers``' targets; returns (removed, problems)."""
    doomed = {
        v.name
        for v in spec.volumes
        if v.type is VolumeType.NAMED and v.retention is VolumeRetention.DELETE
    }
    removed: list[str] = []
    problems: list[str] = []
    if not doomed:
        return removed, problems
    selector = {LABEL_CLUSTER: cluster, LABEL_NAMESPACE: namespace, LABEL_WORKLOAD: workload}
    for target, driver in sorted(drivers.items()):
        if not isinstance(driver, VolumeManager):
            continue
        try:
            for info in driver.list_volumes(selector):
                if info.labels.get(LABEL_VOLUME) in doomed:
                    driver.remove_volume(info.name)
                    removed.append(f"{info.name} on {target}")
        except PortwayError as exc:
            problems.append(f"{target}: {exc}")
    return removed, problems
