"""The ingress's data: what the controller asks for (``IngressState``), how
the managed HAProxy is tuned (``IngressSettings``) and what it reports back
(``ServerState``). Plain frozen dataclasses, no I/O.

The controller builds an ``IngressState`` from the store whenever endpoints
change and hands it to ``IngressManager.apply``; everything from there to
HAProxy's behaviour is this package's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Mode(StrEnum):
    HTTP = "http"  # layer 7: host/path routing, retries on empty responses, header
    TCP = "tcp"  # layer 4: one backend per listen address, connection retries only


@dataclass(frozen=True)
class HealthCheck:
    """HAProxy's own active check of every server in a backend.

    It runs even when portway's probes have not noticed anything yet, so a dead
    replica leaves rotation within about ``interval * fall`` seconds.
    """

    kind: str = "tcp"
    """``tcp`` (a connect succeeds) or ``http`` (``GET path`` answers 2xx/3xx)."""
    path: str = "/"
    """Request path of an ``http`` check; ignored for ``tcp``."""
    interval: float = 1.0
    """Seconds between two checks of one server."""
    timeout: float = 1.0
    """Seconds a check may take before it counts as failed."""
    fall: int = 2
    """Consecutive failures before a server leaves rotation."""
    rise: int = 1
    """Consecutive successes before it returns."""


@dataclass(frozen=True)
class Endpoint:
    """One copy of a service, as the controller sees it."""

    id: str
    """Container id: stable for the life of this copy; the key of its slot."""
    address: str
    """IP literal the copy is reached at, e.g. ``127.0.0.1``."""
    port: int
    """Published host port."""
    ready: bool
    """portway's readiness (probes). False: the slot is in maintenance, no traffic."""
    draining: bool = False
    """Being removed: no new connections, existing ones finish. Wins over ``ready``."""
    replica: str = ""
    """Replica name (``web-0``): shown in status and in ``X-Portway-Backend``."""
    target: str = ""
    """Target the copy runs on (``docker-a``); informational."""


@dataclass(frozen=True)
class Backend:
    name: str
    """``service.namespace:portname``; sanitised into a HAProxy id by the renderer."""
    mode: Mode
    endpoints: tuple[Endpoint, ...]
    check: HealthCheck
    drain_seconds: float = 5.0
    """How long the controller keeps a draining copy before removing it.
    HAProxy does not use it: draining ends when the endpoint leaves the state."""


@dataclass(frozen=True)
class Route:
    listen: str
    """``ip:port`` to listen on, e.g. ``127.0.0.1:18080`` or ``[::1]:18080``."""
    mode: Mode
    backend: str
    """A ``Backend.name`` in the same state."""
    host: str | None = None
    """http only: exact Host header match (case-insensitive, port ignored)."""
    path_prefix: str | None = None
    """http only: path prefix by whole segments (``/api`` matches ``/api`` and
    ``/api/x``, not ``/apix``). ``/`` is the same as no prefix."""


@dataclass(frozen=True)
class IngressState:
    routes: tuple[Route, ...]
    backends: Mapping[str, Backend]


class AdminState(StrEnum):
    """What portway asks of one server slot (HAProxy's admin state)."""

    READY = "ready"  # takes new connections (if its checks pass)
    DRAIN = "drain"  # no new connections; existing ones finish; checks go on
    MAINT = "maint"  # no traffic at all, checks paused (not ready, or an empty slot)


class OpState(StrEnum):
    """What HAProxy says of one server, reduced to four words."""

    UP = "UP"
    DOWN = "DOWN"
    DRAIN = "DRAIN"
    MAINT = "MAINT"


@dataclass(frozen=True)
class ServerState:
    """One endpoint's slot as HAProxy reports it (``status()``)."""

    backend: str
    """The ``Backend.name``."""
    slot: str
    """HAProxy server name of the slot (``s1``); stable while the endpoint lives."""
    endpoint: str | None
    """Endpoint id in this slot, None if the slot's owner is unknown (adopted
    HAProxy without portway's record)."""
    replica: str
    address: str
    port: int
    state: OpState
    detail: str
    """HAProxy's own words, e.g. ``UP 1/2`` (one check failed), ``no check``."""
    check: str
    """Last check status (``L4OK``, ``L7OK``, ``L4CON``, ``L7STS``…), empty if none."""
    check_detail: str
    """Last check in words, e.g. ``Layer4 connection problem``."""
    sessions: int
    """Connections open to this server now."""
    since_change: int | None
    """Seconds since the operational state last changed."""


@dataclass(frozen=True)
class IngressSettings:
    """How portway runs HAProxy. Defaults suit one host's ingress."""

    maxconn: int = 4096
    threads: int = 1
    """HAProxy worker threads (``nbthread``)."""
    """Process-wide connection limit (``global maxconn``); each frontend gets
    the same. Beyond it, clients wait in the kernel's accept queue."""
    connect_timeout: float = 1.0
    """Seconds to connect to a server. Short, because a replica on this host
    that does not answer SYN in a second is dead; the retry goes elsewhere."""
    client_timeout: float = 30.0
    """Seconds a client may stay silent mid-request or mid-stream."""
    server_timeout: float = 30.0
    """Seconds a server may stay silent; also ``response-timeout`` for retries."""
    http_request_timeout: float = 10.0
    """Seconds to receive a whole request header (slowloris bound)."""
    keepalive_timeout: float = 10.0
    """Seconds an idle keep-alive client connection is kept open."""
    queue_timeout: float = 5.0
    """Seconds a request waits for a free server slot before a 503."""
    hard_stop_after: float = 30.0
    """Seconds an old worker may keep serving its connections after a reload
    or a stop before it is killed; bounds how many old workers can pile up."""
    retries: int = 3
    """Further connection attempts after the first fails (``option redispatch``
    sends each to another server)."""
    min_slots: int = 4
    """Server slots every backend starts with; more endpoints than slots means
    a reload that doubles the pool."""
    replica_header: str | None = "X-Portway-Backend"
    """Response header naming the replica that answered (http); None: no header."""
    log_normal: bool = False
    """Log every request. Off: only errors and abnormal sessions are logged
    (``option dontlog-normal``), so the log file grows with trouble, not traffic."""
    start_timeout: float = 10.0
    """Seconds to wait for a started HAProxy to answer on its sockets."""
    reload_timeout: float = 10.0
    """Seconds to wait for the new worker after a reload."""
    stop_timeout: float = 10.0
    """Seconds a graceful stop may take before SIGTERM."""
