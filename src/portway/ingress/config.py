"""State + slot layout -> HAProxy configuration text. Pure: no I/O.

The text is a function of the state, the slot layout, the settings and the
file paths under ``home/ingress``. ``structure_digest`` renders it with every
slot free: two states with the same digest differ only in which endpoint
holds which slot, which the runtime API can change without a reload.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portway.ingress.model import AdminState, Backend, IngressSettings, IngressState, Mode, Route
from portway.ingress.slots import (
    NO_REPLICA,
    PLACEHOLDER_ADDRESS,
    PLACEHOLDER_PORT,
    Layout,
    SlotView,
    desired_views,
    slot_name,
)
from portway.ingress.validate import format_listen, normal_path, parse_listen

#: bumped when the renderer changes in a way that needs a reload of an
#: adopted HAProxy configured by an older portway
RENDER_VERSION = 1

_ID_SAFE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_FILE_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
NO_ROUTE_BACKEND = "pw_no_route"


#: the longest socket path used as is (HAProxy's limit is 97 bytes)
_SOCKET_PATH_MAX = 90


@dataclass(frozen=True)
class Paths:
    """Every file the ingress keeps, all under ``home/ingress``."""

    dir: Path

    @classmethod
    def under(cls, home: Path) -> Paths:
        return cls(home.absolute() / "ingress")

    @property
    def config(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def candidate(self) -> Path:
        """A new configuration while ``haproxy -c`` judges it."""
        return self.dir / "haproxy.cfg.new"

    @property
    def pid(self) -> Path:
        return self.dir / "haproxy.pid"

    @property
    def socket_dir(self) -> Path:
        """Where the two sockets live: ``dir``, unless its path is too long for
        a unix socket (HAProxy refuses paths over 97 bytes), then a short
        directory of this home's own under the system's temp directory."""
        if len(str(self.dir / "master.sock")) <= _SOCKET_PATH_MAX:
            return self.dir
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"portway-ingress-{digest}"

    @property
    def master_socket(self) -> Path:
        return self.socket_dir / "master.sock"

    @property
    def stats_socket(self) -> Path:
        return self.socket_dir / "haproxy.sock"

    @property
    def server_state(self) -> Path:
        """Servers' health and admin state, carried across a reload."""
        return self.dir / "server-state"

    @property
    def maps(self) -> Path:
        return self.dir / "maps"

    @property
    def log(self) -> Path:
        return self.dir / "haproxy.log"

    @property
    def record(self) -> Path:
        """portway's own record: slot layout, structure digest (JSON)."""
        return self.dir / "state.json"

    @property
    def lock(self) -> Path:
        return self.dir / "lock"

    def map_file(self, backend_id: str) -> Path:
        digest = hashlib.sha256(backend_id.encode()).hexdigest()[:8]
        return self.maps / f"{_FILE_UNSAFE.sub('_', backend_id)}-{digest}.map"


# --- names ----------------------------------------------------------------


def backend_id(name: str) -> str:
    """HAProxy id of a backend: ``be_`` + the name where HAProxy allows it as
    is (``web.default:http``), else a sanitised name + a hash of the original,
    so two names never end up as one id."""
    if _ID_SAFE.match(name):
        return f"be_{name}"
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"be_{_ID_UNSAFE.sub('_', name)}-{digest}"


def frontend_id(listen: str) -> str:
    host, port = parse_listen(listen)
    return f"fe_{host}_{port}"


def ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


# --- routes ---------------------------------------------------------------


def route_order(route: Route) -> tuple[int, int, int]:
    """Sort key of http routes on one listen address: longest path prefix
    first; at equal length a route with a host before one without; routes
    without a path after every path route, host-only before the default."""
    path = normal_path(route.path_prefix)
    return (path is None, -len(path or ""), route.host is None)


def listeners(state: IngressState) -> dict[str, list[Route]]:
    """Routes grouped by canonical listen address, in the state's order."""
    grouped: dict[str, list[Route]] = {}
    for route in state.routes:
        grouped.setdefault(format_listen(*parse_listen(route.listen)), []).append(route)
    return grouped


# --- rendering ------------------------------------------------------------


def render_config(
    state: IngressState, layout: Layout, settings: IngressSettings, paths: Paths
) -> str:
    """The whole ``haproxy.cfg``. ``state`` must be valid (``validate``)."""
    lines = [
        "# Written by portway (portway.ingress) on every structural change; edits are lost.",
        "# Endpoints move between server slots at runtime: this file shows them as of",
        "# the last write; HAProxy's own view is `show servers state` on haproxy.sock.",
        "",
        *_global(settings, paths),
        "",
        *_defaults(settings),
    ]
    for listen, routes in sorted(listeners(state).items()):
        lines += ["", *_frontend(listen, routes, state, settings)]
    for name, backend in sorted(state.backends.items()):
        views = desired_views(backend, layout.get(name, ()))
        lines += ["", *_backend(backend, views, settings, paths)]
    lines += ["", *_no_route_backend()]
    return "\n".join(lines) + "\n"


def render_maps(
    state: IngressState, layout: Layout, settings: IngressSettings, paths: Paths
) -> dict[Path, str]:
    """Map file per http backend: slot name -> replica (the response header)."""
    if settings.replica_header is None:
        return {}
    maps: dict[Path, str] = {}
    for name, backend in sorted(state.backends.items()):
        if backend.mode is not Mode.HTTP:
            continue
        views = desired_views(backend, layout.get(name, ()))
        maps[paths.map_file(backend_id(name))] = "".join(
            f"{slot_name(index)} {view.replica}\n" for index, view in enumerate(views)
        )
    return maps


def free_layout(layout: Layout) -> dict[str, tuple[str | None, ...]]:
    """The same pools with every slot free."""
    return {name: (None,) * len(slots) for name, slots in layout.items()}


def structure_digest(
    state: IngressState, layout: Layout, settings: IngressSettings, paths: Paths
) -> str:
    """What a reload is needed for: everything in the config except which
    endpoint sits in which slot."""
    text = f"render {RENDER_VERSION}\n" + render_config(state, free_layout(layout), settings, paths)
    return hashlib.sha256(text.encode()).hexdigest()


def structure_summary(
    state: IngressState, layout: Layout, settings: IngressSettings
) -> dict[str, Any]:
    """The structure in words (JSON-able), to say why a reload happens."""
    return {
        "listeners": {
            listen: [[r.mode.value, r.host, normal_path(r.path_prefix), r.backend] for r in routes]
            for listen, routes in sorted(listeners(state).items())
        },
        "backends": {
            name: {
                "mode": backend.mode.value,
                "check": [
                    backend.check.kind,
                    backend.check.path if backend.check.kind == "http" else None,
                    backend.check.interval,
                    backend.check.timeout,
                    backend.check.fall,
                    backend.check.rise,
                ],
                "slots": len(layout.get(name, ())),
            }
            for name, backend in sorted(state.backends.items())
        },
        "settings": repr(settings),
    }


def _global(settings: IngressSettings, paths: Paths) -> list[str]:
    return [
        "global",
        f"    maxconn {settings.maxconn}",
        # One thread: on a small machine the replicas and the engines' port
        # proxies need the other cores more than HAProxy needs a second thread.
        f"    nbthread {settings.threads}",
        # Old workers keep serving their open connections after a reload or a
        # soft stop, for this long at most.
        f"    hard-stop-after {ms(settings.hard_stop_after)}",
        # expose-fd listeners: a new worker takes the listening sockets over
        # from the old one, so no connection is refused during a reload.
        f"    stats socket {paths.stats_socket} mode 600 level admin expose-fd listeners",
        f"    server-state-file {paths.server_state}",
        # stderr is haproxy.log (portway opens it for the master); no syslog here.
        "    log stderr format iso local0 info",
    ]


def _defaults(settings: IngressSettings) -> list[str]:
    lines = [
        "defaults",
        "    log global",
        "    option dontlognull",
    ]
    if not settings.log_normal:
        lines.append("    option dontlog-normal")
    lines += [
        f"    maxconn {settings.maxconn}",
        f"    timeout connect {ms(settings.connect_timeout)}",
        f"    timeout client {ms(settings.client_timeout)}",
        f"    timeout server {ms(settings.server_timeout)}",
        f"    timeout http-request {ms(settings.http_request_timeout)}",
        f"    timeout http-keep-alive {ms(settings.keepalive_timeout)}",
        f"    timeout queue {ms(settings.queue_timeout)}",
        # A failed connection is tried again, each time on another server.
        f"    retries {settings.retries}",
        "    option redispatch 1",
        # Health and admin state of servers survive a reload (see manager).
        "    load-server-state-from-file global",
    ]
    return lines


def _frontend(
    listen: str, routes: Sequence[Route], state: IngressState, settings: IngressSettings
) -> list[str]:
    mode = routes[0].mode
    lines = [f"frontend {frontend_id(listen)}", f"    mode {mode.value}", f"    bind {listen}"]
    if mode is Mode.TCP:
        return [*lines, "    option tcplog", f"    default_backend {backend_id(routes[0].backend)}"]
    lines += [
        "    option httplog",
        "    option http-keep-alive",
        # During a reload the old worker answers the next request on an idle
        # keep-alive connection (with Connection: close) instead of closing
        # it under a client that may be sending at that very moment.
        "    option idle-close-on-response",
    ]
    default: Route | None = None
    for number, route in enumerate(sorted(routes, key=route_order), start=1):
        path = normal_path(route.path_prefix)
        if route.host is None and path is None:
            default = route
            continue
        conditions: list[str] = []
        if route.host is not None:
            lines.append(
                f"    acl r{number}_host req.hdr(host),field(1,:),lower -m str {route.host.lower()}"
            )
            conditions.append(f"r{number}_host")
        if path is not None:
            lines.append(f"    acl r{number}_path path -m str {path}")
            lines.append(f"    acl r{number}_path path_beg {path}/")
            conditions.append(f"r{number}_path")
        lines.append(f"    use_backend {backend_id(route.backend)} if {' '.join(conditions)}")
    fallback = backend_id(default.backend) if default is not None else NO_ROUTE_BACKEND
    lines.append(f"    default_backend {fallback}")
    return lines


def _backend(
    backend: Backend, views: Sequence[SlotView], settings: IngressSettings, paths: Paths
) -> list[str]:
    ident = backend_id(backend.name)
    check = backend.check
    lines = [
        f"backend {ident}",
        f"    mode {backend.mode.value}",
        "    balance roundrobin",
    ]
    if backend.mode is Mode.HTTP:
        lines += [
            "    option forwardfor",
            # A connection refused, a replica that closed without answering or
            # did not answer in time costs the client nothing but the retry.
            "    retry-on conn-failure empty-response response-timeout",
            # ...but a request that reached a replica is replayed only when it
            # is safe to run twice (GET, HEAD, OPTIONS). Any other method is
            # retried only when it was never sent (conn-failure).
            "    http-request disable-l7-retry unless METH_GET || METH_OPTIONS",
        ]
    if check.kind == "http":
        lines += [
            "    option httpchk",
            f"    http-check send meth GET uri {check.path} ver HTTP/1.1 hdr Host localhost",
        ]
    lines += [
        f"    timeout check {ms(check.timeout)}",
        f"    default-server check inter {ms(check.interval)} fall {check.fall} rise {check.rise}",
    ]
    if backend.mode is Mode.HTTP and settings.replica_header is not None:
        map_file = paths.map_file(ident)
        lines.append(
            f"    http-response set-header {settings.replica_header} "
            f"%[srv_name,map({map_file},{NO_REPLICA})]"
        )
    lines += [_server_line(index, view) for index, view in enumerate(views)]
    return lines


def _server_line(index: int, view: SlotView) -> str:
    address = view.address or PLACEHOLDER_ADDRESS
    port = view.port or PLACEHOLDER_PORT
    line = f"    server {slot_name(index)} {format_listen(address, port)}"
    # Only a ready slot starts taking traffic; a draining one starts in
    # maintenance and is switched to drain right after (a new worker has no
    # connection to let finish, so both mean "no new traffic" until then).
    if view.admin is not AdminState.READY:
        line += " disabled"
    return line


def _no_route_backend() -> list[str]:
    return [
        f"backend {NO_ROUTE_BACKEND}",
        "    mode http",
        '    http-request return status 404 content-type text/plain string "no route"',
    ]


def map_paths(state: IngressState, settings: IngressSettings, paths: Paths) -> dict[str, Path]:
    """Backend name -> its map file, for http backends when the header is on."""
    if settings.replica_header is None:
        return {}
    return {
        name: paths.map_file(backend_id(name))
        for name, backend in state.backends.items()
        if backend.mode is Mode.HTTP
    }


def layout_views(state: IngressState, layout: Layout) -> dict[str, tuple[SlotView, ...]]:
    return {
        name: desired_views(backend, layout.get(name, ()))
        for name, backend in sorted(state.backends.items())
    }
