"""Checks ``apply`` makes before it writes anything.

All problems of all workloads in a file are reported at once, and nothing
is written if there is any: the previous desired state stays, and so do the
running replicas.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from portway.controller.records import KIND_WORKLOAD, TargetView, cluster_id, workload_of
from portway.controller.targets import TargetPool
from portway.drivers.base import LABEL_CLUSTER, LABEL_NAMESPACE, LABEL_WORKLOAD
from portway.errors import Issue, PortwayError
from portway.spec.model import Protocol, VolumeType, Workload
from portway.store import Store


@dataclass(frozen=True)
class PortRange:
    owner: str  # namespace/name
    host_ip: str
    protocol: str
    first: int
    last: int

    def overlaps(self, other: PortRange) -> bool:
        wildcard = "0.0.0.0" in (self.host_ip, other.host_ip)  # noqa: S104
        return (
            (self.host_ip == other.host_ip or wildcard)
            and self.protocol == other.protocol
            and self.first <= other.last
            and other.first <= self.last
        )


def port_ranges(workload: Workload) -> list[PortRange]:
    count = max(workload.spec.replicas, 1)
    return [
        PortRange(workload.key, p.host_ip, str(p.protocol), p.host_port, p.host_port + count - 1)
        for p in workload.spec.ports
        if p.host_port is not None
    ]


def check_bind_mounts(
    workload: Workload, allowed: Sequence[str], file: str, document: int
) -> list[Issue]:
    issues = []
    for i, volume in enumerate(workload.spec.volumes):
        if volume.type is not VolumeType.BIND:
            continue
        source = volume.source or ""
        if not any(source == p or source.startswith(p.rstrip("/") + "/") for p in allowed):
            hint = (
                f"allowed prefixes: {', '.join(allowed)}"
                if allowed
                else "set PORTWAY_ALLOW_BIND=/some/dir to allow bind mounts under it"
            )
            issues.append(
                Issue(
                    f"bind mount of {source} is not allowed by policy",
                    file=file,
                    document=document,
                    path=f"spec.volumes[{i}].source",
                    hint=hint,
                )
            )
    return issues


def check_port_conflicts(
    workloads: Sequence[tuple[Workload, str, int]], store: Store
) -> list[Issue]:
    """Host port ranges must not overlap other workloads' (stored or in this file)."""
    issues: list[Issue] = []
    applying = {w.key for w, _, _ in workloads}
    taken: list[PortRange] = []
    for record in store.list(KIND_WORKLOAD):
        if record.key in applying or record.deleting:
            continue
        taken.extend(port_ranges(workload_of(record)))
    for workload, file, document in workloads:
        for i, mine in enumerate(port_ranges(workload)):
            for other in taken:
                if mine.overlaps(other):
                    issues.append(
                        Issue(
                            f"host ports {mine.first}-{mine.last}/{mine.protocol} overlap "
                            f"{other.first}-{other.last}/{other.protocol} "
                            f"of workload {other.owner}",
                            file=file,
                            document=document,
                            path=f"spec.ports[{i}].hostPort",
                        )
                    )
            taken.append(mine)
    return issues


def _port_free(host_ip: str, port: int, protocol: str) -> bool:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == Protocol.UDP else socket.SOCK_STREAM
    with socket.socket(family, kind) as probe:
        # As the engine's port proxy does: lingering TIME_WAIT connections from
        # earlier clients must not count as "in use", only a live listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host_ip, port))
        except OSError as exc:
            return exc.errno not in (errno.EADDRINUSE, errno.EACCES)
    return True


def check_ports_free(
    workload: Workload, file: str, document: int, own_ports: set[tuple[str, int, str]]
) -> list[Issue]:
    """A fixed host port must be free, unless this workload's replicas hold it."""
    issues = []
    for i, port in enumerate(workload.spec.ports):
        if port.host_port is None:
            continue
        for offset in range(max(workload.spec.replicas, 1)):
            number = port.host_port + offset
            if (port.host_ip, number, str(port.protocol)) in own_ports:
                continue
            if not _port_free(port.host_ip, number, str(port.protocol)):
                issues.append(
                    Issue(
                        f"host port {port.host_ip}:{number}/{port.protocol} is already in use "
                        f"(replica {offset} would publish there)",
                        file=file,
                        document=document,
                        path=f"spec.ports[{i}].hostPort",
                        hint="pick a free port or stop what listens there",
                    )
                )
                break
    return issues


def owned_ports(
    workload: Workload, target: TargetView, pool: TargetPool, store: Store
) -> set[tuple[str, int, str]]:
    """Ports this workload's own replicas publish now (they may keep them)."""
    driver = pool.driver(target)
    selector = {
        LABEL_CLUSTER: cluster_id(store),
        LABEL_NAMESPACE: workload.metadata.namespace,
        LABEL_WORKLOAD: workload.metadata.name,
    }
    ports: set[tuple[str, int, str]] = set()
    for status in driver.list_owned(selector):
        for published in status.ports:
            ports.add((published.host_ip, published.host_port, published.protocol))
    return ports


def check_image(
    workload: Workload, target: TargetView, pool: TargetPool, file: str, document: int
) -> list[Issue]:
    try:
        present = pool.driver(target).image_present(workload.spec.image)
    except PortwayError as exc:
        return [
            Issue(
                f"cannot check the image on target {target.name}: {exc}",
                file=file,
                document=document,
                path="spec.image",
            )
        ]
    if present:
        return []
    return [
        Issue(
            f"image {workload.spec.image} is not present on target {target.name} "
            "and no registry is reachable",
            file=file,
            document=document,
            path="spec.image",
            hint="build local images with scripts/build-images.sh, or docker import one",
        )
    ]


def check_ingress(workloads: Sequence[tuple[Workload, str, int]], store: Store) -> list[Issue]:
    """Ingress listeners must not conflict: one TCP route per listener, one
    mode per listener, no two HTTP routes with the same host and path; and a
    new listener's port must be free (one portway already listens on is)."""
    from portway.controller.services import exposed

    applying = {w.key for w, _, _ in workloads}
    everything = exposed(store.list(KIND_WORKLOAD))
    stored = [e for e in everything if e.workload.key not in applying]
    ours = {e.rule.listen_address for e in everything}  # HAProxy may listen there already
    #: listener -> [(mode, host, path prefix, owner)] taken so far
    taken: dict[str, list[tuple[str, str | None, str | None, str]]] = {}
    for e in stored:
        entry = (e.rule.mode.value, e.rule.host, e.rule.path_prefix, e.workload.key)
        taken.setdefault(e.rule.listen_address, []).append(entry)
    issues: list[Issue] = []
    for workload, file, document in workloads:
        for index, rule in enumerate(workload.spec.ingress):
            listen, mode = rule.listen_address, rule.mode.value
            others = taken.setdefault(listen, [])
            problem = None
            if any(m != mode for m, _, _, _ in others):
                problem = f"listener {listen} is already used in another mode by " + ", ".join(
                    sorted({o for m, _, _, o in others if m != mode})
                )
            elif mode == "tcp" and others:
                problem = f"TCP listener {listen} is already used by " + ", ".join(
                    sorted({o for _, _, _, o in others})
                )
            else:
                for _, host, prefix, owner in others:
                    if (host, prefix) == (rule.host, rule.path_prefix):
                        problem = (
                            f"listener {listen} already routes host {host or '*'} "
                            f"path {prefix or '/'} to {owner}"
                        )
            path = f"spec.ingress[{index}]"
            if problem:
                hint = "use another listen port, host or pathPrefix"
                issues.append(Issue(problem, file=file, document=document, path=path, hint=hint))
            if listen not in ours and not _port_free(rule.host_ip, rule.listen, "tcp"):
                issues.append(
                    Issue(
                        f"ingress listen port {listen} is already in use",
                        file=file,
                        document=document,
                        path=f"{path}.listen",
                        hint="pick a free port or stop what listens there",
                    )
                )
            ours.add(listen)
            others.append((mode, rule.host, rule.path_prefix, workload.key))
    return issues
