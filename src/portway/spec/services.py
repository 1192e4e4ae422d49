"""Services: how workloads of one namespace find each other by name.

A workload with at least one named port is a service called
``NAME.NAMESPACE``. Pure helpers, no I/O: what a service is, the names its
replicas answer to on the namespace network, and the Kubernetes-style
environment variables that tell other replicas of the namespace about it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from portway.spec.model import WorkloadSpec

#: (port name or None, container port), in the order the workload lists them
ServicePort = tuple[str | None, int]


#: the extension block the Compose loader writes into every service it maps
COMPOSE_EXTENSION = "compose"


def is_service(spec: WorkloadSpec) -> bool:
    """A workload is a service when at least one of its ports has a name, or
    when it comes from a Compose file: there every service answers to its
    name on the project network, ports or not."""
    return COMPOSE_EXTENSION in spec.extensions or any(port.name is not None for port in spec.ports)


def service_ports(spec: WorkloadSpec) -> tuple[ServicePort, ...]:
    """Every port of a service (named or not), in order; empty for a non-service."""
    if not is_service(spec):
        return ()
    return tuple((port.name, port.container_port) for port in spec.ports)


def service_host(name: str, namespace: str) -> str:
    """The name other replicas of the namespace use: ``web.default``."""
    return f"{name}.{namespace}"


def service_aliases(name: str, namespace: str, spec: WorkloadSpec) -> tuple[str, ...]:
    """The names a replica of workload ``name`` answers to on its namespace
    network (``ReplicaRequest.aliases``): the short name and ``NAME.NAMESPACE``
    for a service, none otherwise."""
    if not is_service(spec):
        return ()
    return (name, service_host(name, namespace))


def env_prefix(name: str) -> str:
    """A service or port name as Kubernetes spells it in variable names:
    upper case, ``-`` as ``_`` (``my-web`` -> ``MY_WEB``)."""
    return name.upper().replace("-", "_")


def service_env(services: Mapping[str, Sequence[ServicePort]], namespace: str) -> dict[str, str]:
    """The variables that tell a replica about the services of its namespace,
    as the kubelet writes them (the ``*_SERVICE_*`` subset):

    - ``WEB_SERVICE_HOST=web.default`` (the name, not an address: it resolves
      where the engine offers ``services.dns``);
    - ``WEB_SERVICE_PORT=8080``, the service's first port;
    - ``WEB_SERVICE_PORT_HTTP=8080`` for each named port.

    ``services`` maps each service name to its ports (``service_ports``); a
    service without ports gets only its ``_SERVICE_HOST``. Keys come out in
    service order, sorted by name, so the result is deterministic.
    """
    env: dict[str, str] = {}
    for name in sorted(services):
        prefix = f"{env_prefix(name)}_SERVICE"
        env[f"{prefix}_HOST"] = service_host(name, namespace)
        ports = list(services[name])
        if not ports:
            continue
        env[f"{prefix}_PORT"] = str(ports[0][1])
        for port_name, number in ports:
            if port_name is not None:
                env[f"{prefix}_PORT_{env_prefix(port_name)}"] = str(number)
    return env


__all__ = [
    "COMPOSE_EXTENSION",
    "ServicePort",
    "env_prefix",
    "is_service",
    "service_aliases",
    "service_env",
    "service_host",
    "service_ports",
]
