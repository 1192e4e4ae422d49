"""``validate(state)``: what in an ``IngressState`` cannot be applied.

Two kinds of problem are found here, before HAProxy sees anything:

- conflicts between routes (two tcp routes on one listen address, http and
  tcp on one address, the same host and path twice), which HAProxy would
  accept and resolve silently by order;
- values HAProxy would misread rather than refuse: a port above 65535 wraps
  around in ``set server … port``, and a space, quote or ``#`` in a host, path
  or name would change the meaning of the configuration line it lands in.

HAProxy's own grammar and ranges (``fall`` must be positive, …) are left to
``haproxy -c``, which every new configuration passes before it is used.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict

from portway.ingress.model import Backend, IngressState, Mode, Route

_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
#: what may appear in a path or a name written into the config: printable
#: ASCII without space, quotes, backslash, ``#`` (comment) and ``;`` (the
#: runtime API's command separator)
_SAFE = re.compile(r"^[!$%&()*+,\-./0-9:<=>?@A-Z\[\]^_`a-z{|}~]*$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")
CHECK_KINDS = ("tcp", "http")


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:18080"`` -> ``("127.0.0.1", 18080)``; ``"[::1]:80"`` -> ``("::1", 80)``.

    Raises ValueError saying what is wrong.
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host:
        raise ValueError(f"listen address {listen!r} is not ip:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"listen address {listen!r}: {host!r} is not an IP address") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"listen address {listen!r}: port must be 1..65535")
    return str(ip), int(port_text)


def format_listen(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normal_path(path_prefix: str | None) -> str | None:
    """A prefix as routing compares it: no trailing slash; ``/`` means none."""
    if path_prefix is None:
        return None
    stripped = path_prefix.rstrip("/")
    return stripped or None


def describe(route: Route) -> str:
    """How a route is named in messages: ``127.0.0.1:18080 host=a path=/x -> web``."""
    parts = [route.listen]
    if route.host is not None:
        parts.append(f"host={route.host}")
    if route.path_prefix is not None:
        parts.append(f"path={route.path_prefix}")
    return f"route {' '.join(parts)} -> {route.backend}"


def validate(state: IngressState) -> list[str]:
    """Every problem that keeps ``state`` from being applied; empty if none."""
    problems: list[str] = []
    for key, backend in state.backends.items():
        problems += _backend_problems(key, backend)
    by_listen: dict[tuple[str, int], list[Route]] = defaultdict(list)
    for route in state.routes:
        problems += _route_problems(route, state)
        try:
            by_listen[parse_listen(route.listen)].append(route)
        except ValueError:
            continue  # reported by _route_problems
    for (host, port), routes in by_listen.items():
        problems += _listen_problems(format_listen(host, port), routes)
    return problems


def _route_problems(route: Route, state: IngressState) -> list[str]:
    where = describe(route)
    problems: list[str] = []
    try:
        parse_listen(route.listen)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
    backend = state.backends.get(route.backend)
    if backend is None:
        problems.append(f"{where}: backend {route.backend!r} is not in the state")
    elif backend.mode is not route.mode:
        problems.append(
            f"{where}: route is {route.mode.value} but backend {route.backend!r} "
            f"is {backend.mode.value}"
        )
    if route.mode is Mode.TCP and (route.host is not None or route.path_prefix is not None):
        problems.append(f"{where}: a tcp route cannot match a host or a path")
    if route.host is not None and not _HOST.match(route.host):
        problems.append(f"{where}: host {route.host!r} is not a DNS name")
    if route.path_prefix is not None and (
        not route.path_prefix.startswith("/") or not _SAFE.match(route.path_prefix)
    ):
        problems.append(
            f"{where}: path prefix {route.path_prefix!r} must start with '/' and hold "
            "no space, quote, backslash, '#' or ';'"
        )
    return problems


def _listen_problems(listen: str, routes: list[Route]) -> list[str]:
    modes = {route.mode for route in routes}
    if len(modes) > 1:
        return [f"listen {listen}: http and tcp routes cannot share one address"]
    if Mode.TCP in modes and len(routes) > 1:
        backends = ", ".join(sorted({route.backend for route in routes}))
        return [f"listen {listen}: {len(routes)} tcp routes on one address ({backends})"]
    problems: list[str] = []
    seen: dict[tuple[str | None, str | None], Route] = {}
    for route in routes:
        host = route.host.lower() if route.host is not None else None
        key = (host, normal_path(route.path_prefix))
        first = seen.get(key)
        if first is None:
            seen[key] = route
            continue
        match = f"host {key[0] or '*'} path {key[1] or '/'}"
        problems.append(
            f"listen {listen}: {match} is routed twice (to {first.backend} and {route.backend})"
        )
    return problems


def _backend_problems(key: str, backend: Backend) -> list[str]:
    where = f"backend {backend.name!r}"
    problems: list[str] = []
    if key != backend.name:
        problems.append(f"{where}: listed under the key {key!r}; key and name must match")
    if backend.check.kind not in CHECK_KINDS:
        problems.append(f"{where}: health check kind {backend.check.kind!r} is not tcp or http")
    if backend.check.kind == "http" and (
        not backend.check.path.startswith("/") or not _SAFE.match(backend.check.path)
    ):
        problems.append(
            f"{where}: health check path {backend.check.path!r} must start with '/' and "
            "hold no space, quote, backslash, '#' or ';'"
        )
    seen: set[str] = set()
    for endpoint in backend.endpoints:
        label = f"{where} endpoint {endpoint.id!r}"
        if endpoint.id in seen:
            problems.append(f"{label}: listed twice")
        seen.add(endpoint.id)
        try:
            ipaddress.ip_address(endpoint.address)
        except ValueError:
            problems.append(f"{label}: address {endpoint.address!r} is not an IP address")
        if not 1 <= endpoint.port <= 65535:
            problems.append(f"{label}: port {endpoint.port} is not in 1..65535")
        if endpoint.replica and not _LABEL.match(endpoint.replica):
            problems.append(f"{label}: replica name {endpoint.replica!r} has unusable characters")
    return problems
