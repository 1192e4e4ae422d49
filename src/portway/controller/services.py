"""Services and the ingress, as the controller sees them in the store.

A workload with named ports is a service, ``NAME.NAMESPACE``. Its
endpoints are what the reconciler last observed (``status.endpoints``:
every published port of every copy on every reachable target, with
readiness and draining). ``spec.ingress`` publishes a named port through
portway's load balancer; this module turns all of that into the ingress's
plain ``IngressState`` (``portway.ingress``), which knows nothing of the
store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from portway.controller.records import workload_of
from portway.errors import PortwayError
from portway.ingress.model import Backend, Endpoint, HealthCheck, IngressState, Mode, Route
from portway.spec.model import Ingress, Workload
from portway.spec.services import is_service, service_host
from portway.store import Record

#: HAProxy checks every server this often; with FALL failures a dead replica
#: leaves rotation within about a second, before portway's own probes notice
CHECK_INTERVAL = 0.5
CHECK_FALL = 2
CHECK_RISE = 1


def service_name(workload: Workload) -> str:
    return service_host(workload.metadata.name, workload.metadata.namespace)


def backend_name(workload: Workload, port: str) -> str:
    return f"{service_name(workload)}:{port}"


def health_check(workload: Workload, rule: Ingress) -> HealthCheck:
    """The readiness probe's HTTP path when it probes the same port over
    HTTP; otherwise a TCP connect check."""
    port = next(p for p in workload.spec.ports if p.name == rule.port)
    probe = workload.spec.probes.readiness
    timeout = 1.0
    if probe is not None and probe.http is not None and probe.http.port == port.container_port:
        path = probe.http.path or "/"
        return HealthCheck("http", path, CHECK_INTERVAL, timeout, CHECK_FALL, CHECK_RISE)
    return HealthCheck("tcp", "/", CHECK_INTERVAL, timeout, CHECK_FALL, CHECK_RISE)


def endpoints_of(record: Record, port: str) -> tuple[Endpoint, ...]:
    raw = record.status.get("endpoints")
    if not isinstance(raw, list):
        return ()
    found = []
    for item in raw:
        if not isinstance(item, dict) or item.get("port") != port:
            continue
        found.append(
            Endpoint(
                id=str(item.get("id", "")),
                address=str(item.get("address", "127.0.0.1")),
                port=int(item.get("hostPort", 0)),
                ready=bool(item.get("ready", False)),
                draining=bool(item.get("draining", False)),
                replica=str(item.get("replica", "")),
                target=str(item.get("target", "")),
            )
        )
    return tuple(sorted(found, key=lambda e: (e.replica, e.id)))


@dataclass(frozen=True)
class Exposed:
    """One ingress rule of one workload."""

    workload: Workload
    rule: Ingress
    record: Record | None = None  # None: being applied, not stored yet


def exposed(records: Iterable[Record]) -> list[Exposed]:
    found = []
    for record in records:
        if record.deleting:
            continue
        try:
            workload = workload_of(record)
        except (PortwayError, ValueError):
            continue
        found += [Exposed(workload, rule, record) for rule in workload.spec.ingress]
    return found


def ingress_state(items: Iterable[Exposed]) -> IngressState:
    routes: list[Route] = []
    backends: dict[str, Backend] = {}
    for item in sorted(items, key=lambda i: (i.workload.key, i.rule.port, i.rule.listen)):
        name = backend_name(item.workload, item.rule.port)
        mode = Mode(item.rule.mode.value)
        backends[name] = Backend(
            name=name,
            mode=mode,
            endpoints=endpoints_of(item.record, item.rule.port) if item.record else (),
            check=health_check(item.workload, item.rule),
            drain_seconds=item.rule.drain_seconds,
        )
        routes.append(
            Route(
                listen=item.rule.listen_address,
                mode=mode,
                backend=name,
                host=item.rule.host,
                path_prefix=item.rule.path_prefix,
            )
        )
    return IngressState(routes=tuple(routes), backends=backends)


def service_rows(records: Iterable[Record]) -> list[dict[str, Any]]:
    """``get services``: every service with its ports, ingress and endpoints."""
    rows = []
    for record in records:
        try:
            workload = workload_of(record)
        except (PortwayError, ValueError):
            continue
        if not is_service(workload.spec):
            continue
        ports = [p for p in workload.spec.ports if p.name]
        rows.append(
            {
                "name": service_name(workload),
                "namespace": workload.metadata.namespace,
                "workload": workload.metadata.name,
                "ports": {str(p.name): p.container_port for p in ports},
                "ingress": [
                    {
                        "port": r.port,
                        "listen": r.listen_address,
                        "mode": r.mode.value,
                        "host": r.host,
                        "pathPrefix": r.path_prefix,
                    }
                    for r in workload.spec.ingress
                ],
                "endpoints": [
                    {**e.__dict__, "port_name": str(p.name)}
                    for p in ports
                    for e in endpoints_of(record, str(p.name))
                ],
            }
        )
    return sorted(rows, key=lambda r: (r["namespace"], r["name"]))


def listeners(items: Iterable[Exposed]) -> Mapping[str, list[Exposed]]:
    by_listen: dict[str, list[Exposed]] = {}
    for item in items:
        by_listen.setdefault(item.rule.listen_address, []).append(item)
    return by_listen
