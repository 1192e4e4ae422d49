"""Podman driver, built on podman-py's low-level ``APIClient`` and the libpod
REST API of ``podman system service``.

podman-py's high-level ``containers.create`` cannot express everything a
replica needs (no tmpfs, no CPU limit, an extra inspect per create) and its
``logs`` merges stdout and stderr, so every call here is one libpod endpoint
through ``podman.api.APIClient``, pinned to the API version the service
reports. As in the Docker driver, ``list_owned`` is a single
``GET /libpod/containers/json`` with label filters, Podman's own restart
policy is never set (portway's controller owns restarts) and images are never
pulled: a short name such as ``portway/busybox:latest`` resolves to the local
``localhost/portway/busybox:latest``. Sandboxed (gVisor) replicas are created
through a second service of the same Podman whose default runtime is runsc,
because the libpod API cannot choose a container's runtime (``sandbox_socket``).

Every replica of a namespace joins that namespace's Podman network
(``pw<cluster6>-<namespace>``, ``dns_enabled``, made on first need and removed
with the namespace's last replica) with its ``ReplicaRequest.aliases``:
aardvark-dns then resolves a service's name to its replicas on this engine
(``services.dns``; netavark backend only). Published ports work as before.

All service and transport errors are translated in one place
(``PodmanDriver._engine``) into the ``DriverError`` family, chained with
``raise ... from``; no ``podman``/``requests``/``urllib3`` exception leaves
this module. Podman answers most refusals with HTTP 500 and a ``cause``, so
the translation reads the cause, not only the status code.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlparse

import podman.errors
import requests
import urllib3
from podman.api import APIClient

from portway.capabilities.vocabulary import Feature
from portway.drivers import secret_files
from portway.drivers.base import (
    LABEL_MANAGED,
    LABEL_PREFIX,
    LABEL_WORKLOAD,
    DriverCapabilities,
    DriverEvent,
    ExecResult,
    Fingerprint,
    Handle,
    Health,
    LogLine,
    PublishedPort,
    ReplicaRequest,
    ReplicaState,
    ReplicaStatus,
    RuntimeHandler,
    SecurityFacts,
    Stats,
)
from portway.drivers.engine_common import (
    CLIENT_TIMEOUT_SECONDS,
    EXEC_TIMEOUT_EXIT_CODE,
    MAX_POOL_SIZE,
    EngineNetwork,
    StreamedLogs,
    network_lock,
    networks_held,
    parse_engine_time,
    released_networks,
    replica_networks,
)
from portway.drivers.engine_common import (
    STREAMS as _STREAMS,
)
from portway.drivers.engine_common import (
    Json as _Json,
)
from portway.drivers.engine_common import (
    StreamWatch as _StreamWatch,
)
from portway.drivers.engine_common import (
    caused_by as _caused_by,
)
from portway.drivers.engine_common import (
    frames as _frames,
)
from portway.drivers.engine_common import (
    labels as _labels,
)
from portway.drivers.engine_common import (
    obj as _obj,
)
from portway.drivers.engine_common import (
    parse_version as _parse_version,
)
from portway.drivers.engine_common import (
    root_message as _root_message,
)
from portway.drivers.engine_common import (
    text as _text,
)
from portway.drivers.engine_extensions import EngineExtension, parse_engine_extension
from portway.drivers.engine_security import (
    facts_from_inspect,
    libpod_security_options,
    non_root_refusal,
)
from portway.drivers.podman_volumes import PodmanVolumes
from portway.drivers.runtime_handlers import (
    GVISOR_GAPS,
    Runtime,
    TierRefused,
    extension_conflict,
    handlers_for,
    pids_limit,
    podman_runtimes,
    read_podman_conf,
    runtime_for,
    tier_features,
    without_tiers,
)
from portway.drivers.volumes import replica_volume_labels
from portway.errors import (
    DriverError,
    ImageNotFoundError,
    PermanentDriverError,
    PortInUseError,
    PortwayError,
    ReplicaGoneError,
    TargetUnavailableError,
    TemporaryDriverError,
)
from portway.spec.model import Isolation, VolumeType
from portway.spec.volumes import native_volume_name

__all__ = ["PodmanDriver", "podman_base_url"]

DRIVER_NAME = "podman"
MIN_LIBPOD_VERSION = (4, 0)
# CFS period for CPU limits; runc refuses a quota below 1 ms.
_CPU_PERIOD_MICROS = 100_000
_CPU_MIN_QUOTA_MICROS = 1_000

# Podman's container states (libpod define.ContainerStatus). "stopping" is
# transient: the process still runs while its stop is under way.
_STATES: dict[str, ReplicaState] = {
    "configured": ReplicaState.CREATED,
    "created": ReplicaState.CREATED,
    "initialized": ReplicaState.CREATED,
    "running": ReplicaState.RUNNING,
    "paused": ReplicaState.PAUSED,
    "stopping": ReplicaState.UNKNOWN,
    "stopped": ReplicaState.EXITED,
    "exited": ReplicaState.EXITED,
    "removing": ReplicaState.REMOVING,
}
# Podman events that can change a replica's state; everything else (init,
# cleanup, exec, attach, mount, health_status, ...) is filtered out by the
# service. Podman's words differ from Docker's: "died", "remove".
_EVENT_ACTIONS = (
    "create",
    "start",
    "restart",
    "kill",
    "died",
    "stop",
    "pause",
    "unpause",
    "remove",
    "rename",
)

_PORT_IN_USE_RE = re.compile(
    r"(\[[0-9a-fA-F:.]*\]|[0-9a-fA-F.:]*?):(\d+): bind: address already in use"
)
# Races inside Podman 4.3 that it reports as HTTP 500, and that the same call a
# moment later does not meet; the calls that can meet them retry this often.
# An inspect meeting a container's process exiting: "read /proc/PID/cgroup: no
# such process".
_PROCESS_RACE = "no such process"
# A network create listing the host's addresses while any interface (a veth of
# a container of any engine) goes away: "route ip+net: no such network
# interface" (Go's net.InterfaceAddrs between its two netlink dumps). Met once
# in a full CI run, by the conformance suite.
_INTERFACE_RACE = "no such network interface"
_RACE_RETRIES = 3
# What Podman 4.3 answers (HTTP 404, or 500 when it finds the container) for
# an exec session of a container that was started again meanwhile (a restart
# by the controller, say): it drops the sessions then.
_EXEC_SESSION_GONE = "no such exec session"
_KILLED_EXIT_CODE = 128 + 9  # as a shell reports a process killed by SIGKILL
_T = TypeVar("_T")
_JSON_HEADERS = {"Content-Type": "application/json"}
# Measured with Podman 4.3.1 and netavark 1.4.0: bridges route to each other,
# and the `isolate` network option that should stop it is undone for every
# network as soon as any isolated network is torn down.
_NO_NETWORK_SEPARATION = (
    "netavark 1.4 does not keep networks apart: its bridges route to each other, and its "
    "isolate option is lost whenever another isolated network is removed (measured), so "
    "replicas sharing no network still reach each other by address; names resolve only on "
    "shared networks"
)

# The network backend whose DNS server (aardvark-dns) resolves aliases; CNI
# needs the separate dnsname plugin, which portway does not rely on.
_DNS_BACKEND = "netavark"
# Streams never share their connection: the watcher that cancels a stream
# shuts its socket down, which must not hit a pooled connection reused later.
_STREAM_HEADERS = {"Connection": "close"}


# --- small typing helpers: the service's JSON stays ``Any`` only in here ---


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _unix_time(value: Any) -> datetime | None:
    """Seconds since the epoch (Podman lists), or an RFC 3339 string; <= 0 -> None."""
    if isinstance(value, str):
        return parse_engine_time(value)
    seconds = _int(value)
    if seconds is None or seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def sandbox_socket(address: str) -> str:
    """Where the sandbox service of a target listens: ``?sandbox=PATH`` in the
    address, else ``NAME-sandboxed.sock`` next to the target's socket (the
    one scripts/engines-podman.sh starts). Whether it exists and runs gVisor
    is found out by asking it (``PodmanDriver._sandbox_handler``)."""
    parsed = urlparse(address)
    explicit = parse_qs(parsed.query).get("sandbox")
    if explicit:
        return explicit[-1]
    path = PurePosixPath(parsed.path)
    return str(path.with_name(f"{path.stem}-sandboxed{path.suffix or '.sock'}"))


def podman_base_url(address: str) -> str:
    """``podman:///run/podman/podman.sock`` -> ``unix:///run/podman/podman.sock``.
    Raises ValueError."""
    parsed = urlparse(address)
    if parsed.scheme in ("podman", "podman+unix"):
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise ValueError(
                f"{address!r}: a podman socket address looks like podman:///run/podman/podman.sock"
            )
        return f"unix://{parsed.path}"
    raise ValueError(
        f"{address!r} is not a podman address; expected podman:///run/podman/podman.sock "
        "(the socket of `podman system service`)"
    )


def _sorted_ports(ports: list[PublishedPort]) -> tuple[PublishedPort, ...]:
    return tuple(sorted(ports, key=lambda p: (p.container_port, p.protocol, p.host_ip)))


def _ports_from_inspect(network_ports: Any) -> tuple[PublishedPort, ...]:
    """``{"8080/tcp": [{"HostIp": ..., "HostPort": "41234"}]}``; an image's
    EXPOSEd port that is not published maps to null and is skipped."""
    out: list[PublishedPort] = []
    for key, bindings in _obj(network_ports).items():
        number, _, protocol = str(key).partition("/")
        if not isinstance(bindings, list) or not number.isdigit():
            continue
        for binding in bindings:
            host_port = _int(_obj(binding).get("HostPort"))
            if not host_port:
                continue
            port = PublishedPort(
                int(number), protocol or "tcp", _text(_obj(binding).get("HostIp")), host_port
            )
            if port not in out:
                out.append(port)
    return _sorted_ports(out)


def _ports_from_list(rows: Any) -> tuple[PublishedPort, ...]:
    """Podman lists port mappings as ``{host_ip, container_port, host_port, range, protocol}``."""
    out: list[PublishedPort] = []
    for row in rows if isinstance(rows, list) else []:
        entry = _obj(row)
        private, public = _int(entry.get("container_port")), _int(entry.get("host_port"))
        if private is None or not public:
            continue
        for offset in range(max(1, _int(entry.get("range")) or 1)):
            port = PublishedPort(
                private + offset,
                _text(entry.get("protocol")) or "tcp",
                _text(entry.get("host_ip")),
                public + offset,
            )
            if port not in out:
                out.append(port)
    return _sorted_ports(out)


def _split_stamp(text: str) -> tuple[datetime | None, str]:
    stamp, _, rest = text.partition(" ")
    timestamp = parse_engine_time(stamp)
    return (None, text) if timestamp is None else (timestamp, rest)


_Extension = EngineExtension


# Podman's CLI picks a runtime per process (``podman --runtime runsc run``),
# but the libpod REST API ignores the SpecGenerator's ``oci_runtime`` (and the
# compat API ignores HostConfig.Runtime): a service creates every container
# with its own default runtime (verified on Podman 4.3.1; fixed upstream in
# 2026, Podman issue 28429, PR 28454). So sandboxed replicas are created
# through a second service of the same Podman whose default runtime is runsc
# (``podman --runtime runsc system service``, see ``sandbox_socket``). The
# container records its runtime's name, and the target's own service, which
# has the same runtimes table, starts, stops, execs and removes it on runsc.


def _standard_only(handlers: tuple[RuntimeHandler, ...]) -> tuple[RuntimeHandler, ...]:
    """Of what the target's own service could run, what its API can choose: its default."""
    return tuple(h for h in handlers if h.tier == Isolation.STANDARD.value)


def _known_runtimes(default: Mapping[str, Any]) -> tuple[Runtime, ...]:
    """The service's default runtime (``info.host.ociRuntime``) plus every
    runtime configured on this host whose binary exists.

    The libpod API does not list the configured runtimes, only the default
    one, so we read the host's containers.conf files as Podman does. That is
    only right for a service on this host, which is the only kind of address
    this driver accepts (a local unix socket, see ``podman_base_url``)."""
    name, path = _text(default.get("name")), _text(default.get("path"))
    configured = [r for r in podman_runtimes(read_podman_conf()) if r.name != name]
    return ((Runtime(name, path),) if name else ()) + tuple(configured)


def _retry_race(race: str, call: Callable[[], _T]) -> _T:
    """``call``, again (a moment later) while Podman answers HTTP 500 with
    ``race`` in the message, at most ``_RACE_RETRIES`` times in all."""
    for _attempt in range(_RACE_RETRIES - 1):
        try:
            return call()
        except podman.errors.APIError as exc:
            if exc.status_code != 500 or race not in _explanation(exc):
                raise
        time.sleep(0.1)
    return call()


class _ConflictError(PermanentDriverError):
    """A name (container or volume) is taken; callers that expect it handle it."""


class _PodmanLogDecoder:
    """One Podman frame is one log line with its timestamp; a frame without a
    trailing newline is part of a long line that the next frames finish (the
    line keeps the first part's timestamp). Podman 4.3 stamps whole seconds."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[datetime | None, str]] = {}

    def decode(self, batch: list[tuple[int, bytes]]) -> list[LogLine]:
        pending = self._pending
        out: list[LogLine] = []
        for stream_id, payload in batch:
            stream = _STREAMS.get(stream_id, "stdout")
            stamp, text = _split_stamp(payload.decode("utf-8", errors="replace"))
            first_stamp, head = pending.pop(stream, (stamp, ""))
            *lines, rest = (head + text).split("\n")
            for line in lines:
                out.append(LogLine(first_stamp, stream, line.removesuffix("\r")))
                first_stamp = stamp
            if rest:
                pending[stream] = (first_stamp, rest)
        return out

    def flush(self) -> list[LogLine]:
        rest = [
            LogLine(stamp, stream, text.removesuffix("\r"))
            for stream, (stamp, text) in self._pending.items()
        ]
        self._pending.clear()
        return rest


def _shutdown(response: Any) -> Callable[[], None]:
    """A function that shuts the response's socket down, safe to call from any
    thread: a reader blocked on it sees end-of-stream.

    Streams ask for ``Connection: close``, so http.client hands the socket to
    the response alone (the pooled connection lets go of it) and shutting it
    down cannot hit another request. The socket sits under the response's
    file object (as the Docker SDK finds it for its cancellable streams)."""
    sock: socket.socket | None = None
    with suppress(AttributeError):
        candidate = response.raw._fp.fp.raw._sock
        if isinstance(candidate, socket.socket):
            sock = candidate

    def shutdown() -> None:
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    return shutdown


class PodmanDriver(PodmanVolumes, StreamedLogs):
    """Runs replicas as containers on one Podman API service."""

    name = DRIVER_NAME

    def __init__(self, target: str, address: str) -> None:
        self.target = target
        self.address = address
        try:
            self._base_url = podman_base_url(address)
        except ValueError as exc:
            raise PermanentDriverError(target, str(exc)) from None
        self._lock = threading.Lock()
        self._api: APIClient | None = None
        self._host_memory: int | None = None  # the service host's RAM, from info
        # the isolation tiers' runtimes, from the last info; None: not asked yet
        self._handlers: tuple[RuntimeHandler, ...] | None = None
        # the service's network backend, from the last info ("": not asked yet)
        self._network_backend = ""
        self._sandbox_socket = sandbox_socket(address)
        self._sandbox_api: APIClient | None = None

    def __repr__(self) -> str:
        return f"PodmanDriver(target={self.target!r}, address={self.address!r})"

    # --- plumbing -----------------------------------------------------------

    def _client(self) -> APIClient:
        """The shared client, made on first use and pinned to the service's
        libpod API version (as the Docker SDK's ``version="auto"``)."""
        with self._lock:
            if self._api is None:
                with self._engine("connect"):
                    self._probe()
                    api = self._new_client(None)
                    try:
                        answer = api.get("/_ping")
                        answer.raise_for_status()
                        version = _text(answer.headers.get("Libpod-API-Version"))
                        if version and version != api.version:
                            api.close()
                            api = self._new_client(version)
                    except BaseException:
                        api.close()
                        raise
                    self._api = api
            return self._api

    def _new_client(self, version: str | None) -> APIClient:
        return APIClient(
            base_url=self._base_url,
            version=version,
            timeout=CLIENT_TIMEOUT_SECONDS,
            max_pool_size=MAX_POOL_SIZE,
        )

    def _probe(self) -> None:
        """Connect to the socket once ourselves before podman-py does: its
        adapter leaks the socket of a failed connect (a ResourceWarning)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CLIENT_TIMEOUT_SECONDS)
            sock.connect(self._base_url.removeprefix("unix://"))

    def close(self) -> None:
        """Close pooled connections; the driver reconnects on next use."""
        with self._lock:
            api, self._api = self._api, None
            sandbox, self._sandbox_api = self._sandbox_api, None
        for client in (api, sandbox):
            if client is not None:
                client.close()

    def _sandbox_client(self) -> APIClient:
        """A client of the sandbox service, pinned to the target service's API
        version (both are the same Podman)."""
        version = self._client().version
        with self._lock:
            if self._sandbox_api is None:
                self._sandbox_api = APIClient(
                    base_url=f"unix://{self._sandbox_socket}",
                    version=version,
                    timeout=CLIENT_TIMEOUT_SECONDS,
                    max_pool_size=MAX_POOL_SIZE,
                )
            return self._sandbox_api

    def _sandbox_handler(self) -> RuntimeHandler | None:
        """The sandboxed tier's handler if a sandbox service answers and its
        default runtime is gVisor; None otherwise (never a guess)."""
        if not Path(self._sandbox_socket).is_socket():
            return None
        try:
            with self._engine(f"sandbox service info ({self._sandbox_socket})"):
                info = _obj(self._get_json(self._sandbox_client(), "/info"))
        except DriverError:
            return None
        runtime = _obj(_obj(info.get("host")).get("ociRuntime"))
        found = Runtime(_text(runtime.get("name")), _text(runtime.get("path")))
        return next(
            (h for h in handlers_for("", (found,)) if h.tier == Isolation.SANDBOXED.value), None
        )

    @contextmanager
    def _engine(self, action: str) -> Iterator[None]:
        """Translate every service/transport failure inside into a DriverError."""
        try:
            yield
        except PortwayError:
            raise
        except (podman.errors.PodmanError, requests.RequestException, OSError) as exc:
            raise self._translate(exc, action) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise self._translate(exc, action) from exc

    def _unreachable(self, action: str, exc: BaseException) -> TargetUnavailableError:
        refused = (urllib3.exceptions.NewConnectionError, ConnectionRefusedError, FileNotFoundError)
        # NewConnectionError subclasses urllib3's TimeoutError: test it first
        if not _caused_by(exc, refused) and _caused_by(
            exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
        ):
            why = f"did not answer within {CLIENT_TIMEOUT_SECONDS}s"
        else:
            why = "is not reachable"
            # A later call connects afresh (and probes first, so a failed
            # connect leaks no socket); the service may also have been upgraded.
            if self._lock.acquire(blocking=False):
                try:
                    api, self._api = self._api, None
                finally:
                    self._lock.release()
                if api is not None:
                    with suppress(Exception):
                        api.close()
        return TargetUnavailableError(
            self.target,
            f"{action}: the Podman API service at {self.address} {why} ({_root_message(exc)}); "
            "is `podman system service` running? (scripts/engines-podman.sh starts it)",
            delay=2.0,
        )

    def _translate(self, exc: BaseException, action: str) -> DriverError:
        if isinstance(exc, podman.errors.APIError) and exc.status_code is not None:
            status = int(exc.status_code)
            cause, message = _cause(exc), _explanation(exc)
            if "image not known" in message or "failed to find image" in message:
                return ImageNotFoundError(
                    self.target,
                    f"{action}: {message}. portway never pulls images; build or load it on "
                    "this engine first (test images: PORTWAY_ENGINE_CLI=podman "
                    "scripts/build-images.sh)",
                )
            if status == 404:
                return ReplicaGoneError(self.target, f"{action}: {message}")
            if status == 409 or cause in ("that name is already in use", "volume already exists"):
                return _ConflictError(self.target, f"{action}: {message}")
            if "address already in use" in message:
                match = _PORT_IN_USE_RE.search(message)
                where = f"{match.group(1) or '*'}:{match.group(2)}" if match else "a host port"
                return PortInUseError(
                    self.target,
                    f"{action}: host port {where} is already in use on the engine's host; "
                    f"free it or choose another hostPort (engine said: {message})",
                )
            if status == 500 and _PROCESS_RACE in message:
                return TemporaryDriverError(
                    self.target, f"{action}: the engine raced a process exit: {message}", 0.1
                )
            if status == 500 and _INTERFACE_RACE in message:
                return TemporaryDriverError(
                    self.target, f"{action}: the engine raced an interface removal: {message}", 0.1
                )
            return PermanentDriverError(
                self.target, f"{action}: the engine refused (HTTP {status}): {message}"
            )
        if isinstance(exc, podman.errors.PodmanError) and not _caused_by(
            exc, (requests.RequestException, OSError, urllib3.exceptions.HTTPError)
        ):
            # raised by podman-py itself, e.g. for an address it cannot use
            return PermanentDriverError(self.target, f"{action}: {exc}")
        return self._unreachable(action, exc)

    def _handle(self, container_id: str, name: str) -> Handle:
        return Handle(driver=DRIVER_NAME, target=self.target, id=container_id, name=name)

    def _check(self, handle: Handle) -> None:
        if handle.driver != DRIVER_NAME:
            raise PermanentDriverError(
                self.target, f"handle {handle.name!r} belongs to driver {handle.driver!r}"
            )

    def _post_json(self, client: APIClient, path: str, body: Mapping[str, Any]) -> Any:
        response = client.post(path, data=json.dumps(body), headers=_JSON_HEADERS)
        response.raise_for_status()
        return response.json()

    def _get_json(self, client: APIClient, path: str, **params: Any) -> Any:
        response = client.get(path, params=params or None)
        response.raise_for_status()
        return response.json()

    # --- Driver ---------------------------------------------------------------

    def ping(self) -> None:
        client = self._client()
        with self._engine("ping"):
            answer = client.get("/_ping")
            answer.raise_for_status()
            if answer.text.strip() != "OK":
                raise TargetUnavailableError(self.target, "the engine did not answer OK to a ping")

    def fingerprint(self) -> Fingerprint:
        try:
            client = self._client()
            with self._engine("fingerprint"):
                answer = client.get("/_ping")
                answer.raise_for_status()
                answered = answer.text.strip() == "OK"
                info = _obj(self._get_json(client, "/info"))
        except TargetUnavailableError as exc:
            return Fingerprint(Health.UNDETECTED, detail=str(exc))
        except DriverError as exc:
            return Fingerprint(Health.UNHEALTHY, detail=str(exc))
        host = _obj(info.get("host"))
        version = _obj(info.get("version"))
        runtime = _obj(host.get("ociRuntime"))
        engine_version = _text(version.get("Version"))
        api_version = _text(version.get("APIVersion")) or engine_version
        os_name = _text(host.get("os"))
        self._host_memory = _int(host.get("memTotal"))
        attributes = {
            "os": os_name,
            "arch": _text(host.get("arch")),
            "cpus": str(_int(host.get("cpus")) or 0),
            "memory": str(self._host_memory or 0),
            "cgroup_version": _text(host.get("cgroupVersion")).removeprefix("v"),
            "cgroup_driver": _text(host.get("cgroupManager")),
            "kernel": _text(host.get("kernel")),
            "storage_driver": _text(_obj(info.get("store")).get("graphDriverName")),
            "api_version": api_version,
            "network_backend": _text(host.get("networkBackend")),
            "events_logger": _text(host.get("eventLogger")),
        }
        known = _known_runtimes(runtime)
        self._handlers = self._tier_handlers(_text(runtime.get("name")), known)
        self._network_backend = attributes["network_backend"]
        runtimes = tuple(sorted({r.name for r in known}))
        problem = ""
        if not answered:
            problem = "the engine did not answer OK to a ping"
        elif _parse_version(api_version) < MIN_LIBPOD_VERSION:
            problem = (
                f"Podman API {api_version} is too old; portway needs "
                f"{'.'.join(map(str, MIN_LIBPOD_VERSION))} or newer"
            )
        elif os_name != "linux":
            problem = (
                f"the engine runs {os_name or 'an unknown OS'} containers; portway needs linux"
            )
        health = Health.UNHEALTHY if problem else Health.HEALTHY
        detail = problem or f"Podman {engine_version} (libpod API {api_version})"
        return Fingerprint(
            health=health,
            detail=detail,
            version=engine_version,
            runtime_handlers=runtimes,
            attributes=attributes,
        )

    def capabilities(self) -> DriverCapabilities:
        # Every feature but OOM reporting: Podman 4.3 with conmon on this
        # cgroup v1 host reports OOMKilled=false for a container the kernel
        # OOM-killed (exit 137 only). Of the isolation tiers, standard and,
        # where a sandbox service runs gVisor, sandboxed (see sandbox_socket).
        # Service names resolve only with the netavark backend (aardvark-dns).
        handlers = self._runtime_handlers()
        # a named volume's size needs xfs project quotas under the volume path
        features = without_tiers(Feature) - {Feature.OOM_REPORTED, Feature.VOLUMES_SIZE_LIMIT}
        gaps: dict[str, Mapping[Feature, str]] = {Isolation.SANDBOXED.value: GVISOR_GAPS}
        # undeclared in every tier, for these reasons
        why: dict[Feature, str] = {Feature.NETWORKS_NAMED: _NO_NETWORK_SEPARATION}
        backend = self._network_backend
        if backend and backend != _DNS_BACKEND:
            why[Feature.SERVICES_DNS] = (
                f"this Podman uses the {backend} network backend; names resolve on a "
                f"namespace network only with {_DNS_BACKEND} and aardvark-dns"
            )
        features -= set(why)
        gaps["standard"] = why
        return DriverCapabilities(
            features | tier_features(handlers),
            handlers=handlers,
            tier_gaps=gaps,
        )

    def _runtime_handlers(self) -> tuple[RuntimeHandler, ...]:
        """The handlers the last fingerprint found, or asked for now. A service
        that cannot be asked offers no named handler (so no sandboxed tier);
        that answer is not kept, the next call asks again."""
        if self._handlers is None:
            try:
                client = self._client()
                with self._engine("engine info"):
                    info = _obj(self._get_json(client, "/info"))
            except DriverError:
                return ()
            host = _obj(info.get("host"))
            runtime = _obj(host.get("ociRuntime"))
            name = _text(runtime.get("name"))
            self._handlers = self._tier_handlers(name, _known_runtimes(runtime))
            self._network_backend = _text(host.get("networkBackend"))
        return self._handlers

    def _tier_handlers(
        self, default: str, known: tuple[Runtime, ...]
    ) -> tuple[RuntimeHandler, ...]:
        sandbox = self._sandbox_handler()
        standard = _standard_only(handlers_for(default, known))
        return standard + ((sandbox,) if sandbox is not None else ())

    def create(self, request: ReplicaRequest) -> Handle:
        spec = request.spec
        extension = self._extension(spec.extensions.get(DRIVER_NAME, {}))
        body = self._spec_generator(request, extension)
        runtime = self._runtime(request, extension)
        if runtime is not None:
            body["oci_runtime"] = runtime
        client = self._client()
        if spec.security.run_as_non_root:
            self._refuse_root(client, request)
        body["mounts"], body["volumes"] = self._volumes(client, request)
        body["mounts"] += self._secret_mounts(request)
        networks = self._networks_of(request)
        if networks:
            body["netns"] = {"nsmode": "bridge"}
            body["Networks"] = {n.name: {"aliases": list(request.aliases)} for n in networks}
        try:
            handle = self._create_on(client, networks, request, body)
        except DriverError:
            secret_files.remove(secret_files.Scope(self.name, self.target), request.name)
            for network in networks:  # leave no network that no replica uses
                with suppress(DriverError):
                    self._remove_network(network)
            raise
        if runtime is not None:
            self._check_runtime(handle, runtime)
        return handle

    def _create_on(
        self,
        client: APIClient,
        networks: list[EngineNetwork],
        request: ReplicaRequest,
        body: _Json,
    ) -> Handle:
        """Create the container on its networks (made if needed), or adopt the
        one already made for this replica."""
        # the service whose default runtime is the tier's (see sandbox_socket)
        sandboxed = request.spec.isolation is Isolation.SANDBOXED
        creator = self._sandbox_client() if sandboxed else client
        for _attempt in range(2):
            with networks_held(self._base_url, networks):
                for network in networks:
                    self._ensure_network(client, network)
                try:
                    with self._engine(f"create {request.name}"):
                        created = self._post_json(creator, "/containers/create", body)
                    return self._handle(_text(_obj(created).get("Id")), request.name)
                except _ConflictError:
                    try:
                        return self._adopt(request)
                    except ReplicaGoneError:
                        continue  # removed between our create and inspect: try again
        raise PermanentDriverError(
            self.target, f"create {request.name}: the name keeps conflicting; try again"
        )

    # --- namespace networks (services.dns, networks.named) --------------------

    def _networks_of(self, request: ReplicaRequest) -> list[EngineNetwork]:
        """The networks the replica joins (none: on the host's network, or a
        backend without name resolution)."""
        if self._network_backend not in ("", _DNS_BACKEND):
            return []
        return replica_networks(request)

    def _ensure_network(self, client: APIClient, network: EngineNetwork) -> None:
        """Make the network unless it exists (idempotent: Podman refuses a
        second network of one name); refuse a network of that name that
        portway did not make for this namespace."""
        name = network.name
        path = f"/networks/{quote(name)}/json"
        try:
            with self._engine(f"inspect network {name}"):
                info = _obj(self._get_json(client, path))
        except ReplicaGoneError:  # 404: not made yet
            body = {
                "name": name,
                "driver": "bridge",
                "dns_enabled": True,
                "labels": network.labels(),
            }
            try:
                with self._engine(f"create network {name}"):
                    _retry_race(
                        _INTERFACE_RACE, lambda: self._post_json(client, "/networks/create", body)
                    )
                return
            except _ConflictError:  # made meanwhile by another process
                with self._engine(f"inspect network {name}"):
                    info = _obj(self._get_json(client, path))
        problem = network.foreign(_labels(info.get("labels")))
        if problem:
            raise PermanentDriverError(self.target, problem)

    def remove_namespace_network(self, namespace: str, cluster: str = "") -> bool:
        """Remove the namespace's network if it is portway's and no container
        uses it; True when it is gone (or never existed). ``destroy`` calls it
        for the namespace's last replica; cleanup tools may call it too."""
        return self._remove_network(EngineNetwork(cluster, namespace))

    def _remove_network(self, network: EngineNetwork) -> bool:
        name = network.name
        client = self._client()
        with network_lock(self._base_url, name):
            try:
                with self._engine(f"inspect network {name}"):
                    info = _obj(self._get_json(client, f"/networks/{quote(name)}/json"))
            except ReplicaGoneError:
                return True
            if network.foreign(_labels(info.get("labels"))):
                return False  # not ours to remove
            try:
                with self._engine(f"remove network {name}"):
                    # without force Podman refuses while any container, even a
                    # created or exited one, is on the network
                    client.delete(f"/networks/{quote(name)}").raise_for_status()
            except ReplicaGoneError:
                return True
            except PermanentDriverError:  # still used
                return False
        return True

    def _release_networks(self, info: _Json) -> None:
        """After a replica's removal: remove each of its networks it was the
        last container on. Best effort: a network left behind is empty and
        harmless, and the namespace's next replica uses it again."""
        for network in released_networks(info):
            with suppress(DriverError):
                self._remove_network(network)

    def _spec_generator(self, request: ReplicaRequest, extension: _Extension) -> _Json:
        """The libpod SpecGenerator for the replica (volumes are added by ``create``)."""
        spec = request.spec
        resources, security = spec.resources, spec.security
        body: _Json = {
            "name": request.name,
            "image": spec.image,
            "labels": {**(extension.labels or {}), **request.labels(self.target)},
            "init": extension.init,
            "restart_policy": "no",  # portway's controller owns restarts
        }
        if spec.command is not None:
            body["entrypoint"] = list(spec.command)
        if spec.args is not None:
            body["command"] = list(spec.args)
        if spec.env:
            body["env"] = dict(spec.env)
        if security.user is not None:
            body["user"] = security.user
        if security.capabilities.add:
            body["cap_add"] = list(security.capabilities.add)
        if security.capabilities.drop:
            body["cap_drop"] = list(security.capabilities.drop)
        if security.read_only_root_filesystem:
            body["read_only_filesystem"] = True
        body.update(libpod_security_options(security))
        if extension.shm_size is not None:
            body["shm_size"] = extension.shm_size
        mappings: list[_Json] = []
        for port in spec.ports:
            protocol = str(port.protocol)
            mapping: _Json = {
                "container_port": port.container_port,
                "protocol": protocol,
                "host_ip": port.host_ip,
            }
            host_port = request.host_port(port.container_port, protocol)
            if host_port is not None:
                mapping["host_port"] = host_port
            mappings.append(mapping)
        if mappings:
            body["portmappings"] = mappings
        limits: _Json = {}
        if resources.memory is not None:
            # swap = memory + swap in the OCI spec: equal means no swap, as Docker
            limits["memory"] = {"limit": resources.memory, "swap": resources.memory}
        if resources.cpu is not None:
            quota = round(resources.cpu * _CPU_PERIOD_MICROS)
            if quota < _CPU_MIN_QUOTA_MICROS:
                raise PermanentDriverError(
                    self.target,
                    f"{request.name}: resources.cpu {resources.cpu:g} is below what podman can "
                    f"enforce ({_CPU_MIN_QUOTA_MICROS / _CPU_PERIOD_MICROS:g} cores)",
                )
            limits["cpu"] = {"quota": quota, "period": _CPU_PERIOD_MICROS}
        if pids_limit(spec) is not None:
            limits["pids"] = {"limit": pids_limit(spec)}
        if limits:
            body["resource_limits"] = limits
        return body

    def _refuse_root(self, client: APIClient, request: ReplicaRequest) -> None:
        """runAsNonRoot: refuse before anything is created (as the kubelet does)."""
        spec_user = request.spec.security.user
        image_user = ""
        if not spec_user:
            image = request.spec.image
            try:
                with self._engine(f"inspect image {image}"):
                    info = _obj(self._get_json(client, f"/images/{quote(image, safe='/:@')}/json"))
            except ReplicaGoneError as exc:  # a 404 here is the image's
                raise ImageNotFoundError(
                    self.target, f"create {request.name}: image {image!r} is not on this engine"
                ) from exc
            image_user = _text(_obj(info.get("Config")).get("User"))
        refusal = non_root_refusal(spec_user, image_user)
        if refusal:
            raise PermanentDriverError(self.target, f"create {request.name}: {refusal}")

    def _adopt(self, request: ReplicaRequest) -> Handle:
        """Return the existing container named ``request.name`` if it is this replica."""
        with self._engine(f"inspect existing {request.name}"):
            info = _obj(self._get_json(self._client(), f"/containers/{quote(request.name)}/json"))
        existing = _labels(_obj(info.get("Config")).get("Labels"))
        wanted = request.labels(self.target)
        differ = sorted(k for k, v in wanted.items() if existing.get(k) != v)
        if differ:
            raise PermanentDriverError(
                self.target,
                f"a container named {request.name!r} already exists but is not this replica "
                f"(labels differ: {', '.join(differ)}); remove it or rename it",
            )
        return self._handle(_text(info.get("Id")), request.name)

    def _runtime(self, request: ReplicaRequest, extension: _Extension) -> str | None:
        """The runtime for the replica's isolation tier (None: the service's default)."""
        handlers = () if request.spec.isolation is Isolation.STANDARD else self._runtime_handlers()
        sandboxed = request.spec.isolation is Isolation.SANDBOXED
        if sandboxed and not any(h.tier == Isolation.SANDBOXED.value for h in handlers):
            raise PermanentDriverError(
                self.target,
                f"{request.name}: isolation 'sandboxed' needs a Podman service whose default "
                f"runtime is gVisor's runsc at {self._sandbox_socket} (the libpod API cannot "
                "choose a container's runtime), and none answers there; start it with "
                "scripts/engines-podman.sh or place the workload on another target",
            )
        try:
            return runtime_for(request.spec.isolation, extension.runtime, handlers, DRIVER_NAME)
        except TierRefused as exc:
            raise PermanentDriverError(self.target, f"{request.name}: {exc}") from None

    def _check_runtime(self, handle: Handle, wanted: str) -> None:
        """The service may create a container with another runtime than the one
        asked for (Podman 4.x ignores oci_runtime): refuse such a replica rather
        than run it outside the runtime its workload named."""
        with self._engine(f"inspect {handle.name}"):
            info = _obj(self._get_json(self._client(), f"/containers/{quote(handle.id)}/json"))
        got = _text(info.get("OCIRuntime"))
        if got == wanted:
            return
        self.destroy(handle)
        raise PermanentDriverError(
            self.target,
            f"{handle.name}: runtime {wanted!r} was not honoured: the Podman service created "
            f"the container with runtime {got!r} (its API ignores a container's runtime, "
            "Podman issue 28429); for a standard replica remove extensions.podman.runtime",
        )

    def check_extension(self, settings: Mapping[str, Any]) -> list[str]:
        try:
            self._extension(settings)
        except PermanentDriverError as exc:
            return [str(exc).removeprefix(f"target {exc.target!r}: ")]
        return []

    def check_tier_extension(self, settings: Mapping[str, Any], isolation: Isolation) -> list[str]:
        try:
            extension = self._extension(settings)
        except PermanentDriverError:
            return []  # check_extension says what is wrong with the block itself
        tier = Isolation(isolation)
        if extension.runtime is None or tier is Isolation.STANDARD:
            return []
        conflict = extension_conflict(
            tier, extension.runtime, self._runtime_handlers(), DRIVER_NAME
        )
        return [conflict] if conflict else []

    def _extension(self, raw: Mapping[str, Any]) -> _Extension:
        return parse_engine_extension(DRIVER_NAME, self.target, raw)

    def _volumes(
        self, client: APIClient, request: ReplicaRequest
    ) -> tuple[list[_Json], list[_Json]]:
        """(mounts, named volumes) of the SpecGenerator."""
        mounts: list[_Json] = []
        named: list[_Json] = []
        for volume in request.spec.volumes:
            access = "ro" if volume.read_only else "rw"
            if volume.type is VolumeType.TMPFS:
                options = [access, "mode=1777"]
                if volume.size_limit is not None:
                    options.append(f"size={volume.size_limit}")
                mounts.append(
                    {
                        "type": "tmpfs",
                        "source": "tmpfs",
                        "destination": volume.mount_path,
                        "options": options,
                    }
                )
            elif volume.type is VolumeType.NAMED:
                source = native_volume_name(
                    request.namespace, request.workload, volume, request.index
                )
                labels = replica_volume_labels(request, self.target, volume)
                self._ensure_volume(client, source, labels)
                named.append({"Name": source, "Dest": volume.mount_path, "Options": [access]})
            else:
                mounts.append(
                    {
                        "type": "bind",
                        "source": volume.source,
                        "destination": volume.mount_path,
                        "options": ["rbind", access],
                    }
                )
        return mounts, named

    def _secret_mounts(self, request: ReplicaRequest) -> list[_Json]:
        """Read-only binds of the replica's secret files (on this host's
        tmpfs; Podman's API is always a local socket here)."""
        placed = secret_files.materialize(
            secret_files.Scope(self.name, self.target), request.name, request.secret_files
        )
        return [
            {
                "type": "bind",
                "source": m.host_path,
                "destination": m.mount_path,
                "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
            }
            for m in placed
        ]

    def _ensure_volume(self, client: APIClient, name: str, labels: dict[str, str]) -> None:
        try:
            with self._engine(f"inspect volume {name}"):
                self._get_json(client, f"/volumes/{quote(name)}/json")
            return
        except ReplicaGoneError:  # 404: the volume does not exist yet
            pass
        try:
            with self._engine(f"create volume {name}"):
                self._post_json(
                    client, "/volumes/create", {"Name": name, "Driver": "local", "Label": labels}
                )
        except _ConflictError:
            return  # made by a concurrent create of another replica

    def start(self, handle: Handle) -> None:
        self._check(handle)
        with self._engine(f"start {handle.name}"):
            # 304 (already running) is not an error
            self._client().post(f"/containers/{quote(handle.id)}/start").raise_for_status()

    def inspect(self, handle: Handle) -> ReplicaStatus:
        self._check(handle)
        path = f"/containers/{quote(handle.id)}/json"
        with self._engine(f"inspect {handle.name}"):
            info = _retry_race(_PROCESS_RACE, lambda: self._get_json(self._client(), path))
        return self._status_from_inspect(_obj(info))

    def stop(self, handle: Handle, timeout: float) -> None:
        self._check(handle)
        seconds = max(0, math.ceil(timeout))
        try:
            with self._engine(f"stop {handle.name}"):
                # 304: already stopped (or never started)
                self._client().post(
                    f"/containers/{quote(handle.id)}/stop",
                    params={"timeout": seconds},
                    timeout=CLIENT_TIMEOUT_SECONDS + seconds,
                ).raise_for_status()
        except ReplicaGoneError:
            return

    def destroy(self, handle: Handle) -> None:
        self._check(handle)
        try:
            self._destroy(handle)
        finally:
            secret_files.remove(secret_files.Scope(self.name, self.target), handle.name)

    def _destroy(self, handle: Handle) -> None:
        client = self._client()
        try:
            # which namespace network to release afterwards
            with self._engine(f"inspect {handle.name}"):
                info = _obj(self._get_json(client, f"/containers/{quote(handle.id)}/json"))
        except ReplicaGoneError:
            return
        except TemporaryDriverError:
            info = {}  # raced its process's exit; the network may stay
        try:
            with self._engine(f"remove {handle.name}"):
                # force + timeout 0 kills a running replica at once (as Docker's
                # force remove); v removes anonymous volumes, named ones stay.
                client.delete(
                    f"/containers/{quote(handle.id)}",
                    params={"force": True, "v": True, "timeout": 0},
                ).raise_for_status()
        except ReplicaGoneError:
            return
        except PermanentDriverError as exc:
            if "has already been removed" not in str(exc) and "being removed" not in str(exc):
                raise
            return  # the removal under way releases the network
        self._release_networks(info)

    def security_facts(self, handle: Handle) -> SecurityFacts:
        self._check(handle)
        with self._engine(f"inspect {handle.name}"):
            info = self._get_json(self._client(), f"/containers/{quote(handle.id)}/json")
        return facts_from_inspect(_obj(info))

    def recover(self, handle: Handle) -> ReplicaStatus | None:
        try:
            return self.inspect(handle)
        except ReplicaGoneError:
            return None

    def list_owned(self, selector: Mapping[str, str]) -> list[ReplicaStatus]:
        # Podman ANDs several label filters (checked on 4.3).
        filters = {"label": [f"{LABEL_MANAGED}=true", *(f"{k}={v}" for k, v in selector.items())]}
        with self._engine("list containers"):
            rows = self._get_json(
                self._client(), "/containers/json", all="true", filters=json.dumps(filters)
            )
        if LABEL_WORKLOAD not in selector:  # a garbage-collection pass
            self._sweep_secret_files()
        return [self._status_from_list(_obj(row)) for row in rows or []]

    def _sweep_secret_files(self) -> None:
        """Forget secret files of containers that are gone."""
        if not secret_files.has_files(secret_files.Scope(self.name, self.target)):
            return
        with self._engine("list containers"):
            rows = self._get_json(self._client(), "/containers/json", all="true")
        names = {str(n).lstrip("/") for row in rows or [] for n in _obj(row).get("Names") or []}
        secret_files.sweep(secret_files.Scope(self.name, self.target), names)

    def image_present(self, image: str) -> bool:
        try:
            with self._engine(f"inspect image {image}"):
                self._client().get(f"/images/{quote(image, safe='/:@')}/exists").raise_for_status()
        except (ImageNotFoundError, ReplicaGoneError):
            return False
        return True

    # --- status mapping ------------------------------------------------------

    def _status_from_inspect(self, info: _Json) -> ReplicaStatus:
        state = _obj(info.get("State"))
        config = _obj(info.get("Config"))
        status = _STATES.get(_text(state.get("Status")), ReplicaState.UNKNOWN)
        error = _text(state.get("Error"))
        exit_code = _int(state.get("ExitCode"))
        if status is not ReplicaState.EXITED and not (status is ReplicaState.CREATED and error):
            exit_code = None
        return ReplicaStatus(
            handle=self._handle(_text(info.get("Id")), _text(info.get("Name")).lstrip("/")),
            labels=_labels(config.get("Labels")),
            state=status,
            exit_code=exit_code,
            oom_killed=state.get("OOMKilled") is True,
            error=error,
            created_at=parse_engine_time(_text(info.get("Created"))),
            started_at=parse_engine_time(_text(state.get("StartedAt"))),
            finished_at=parse_engine_time(_text(state.get("FinishedAt"))),
            ports=_ports_from_inspect(_obj(info.get("NetworkSettings")).get("Ports")),
            image=_text(info.get("ImageName")) or _text(config.get("Image")),
        )

    def _status_from_list(self, row: _Json) -> ReplicaStatus:
        status = _STATES.get(_text(row.get("State")), ReplicaState.UNKNOWN)
        names = row.get("Names")
        name = _text(names[0]).lstrip("/") if isinstance(names, list) and names else ""
        return ReplicaStatus(
            handle=self._handle(_text(row.get("Id")), name),
            labels=_labels(row.get("Labels")),
            state=status,
            exit_code=_int(row.get("ExitCode")) if status is ReplicaState.EXITED else None,
            created_at=_unix_time(row.get("Created")),
            ports=_ports_from_list(row.get("Ports")),
            image=_text(row.get("Image")),
        )

    # --- LogSource (engine_common.StreamedLogs) ----------------------------------

    def _log_decoder(self) -> _PodmanLogDecoder:
        return _PodmanLogDecoder()

    def _stream_shutdown(self, response: Any) -> Callable[[], None]:
        return _shutdown(response)

    def _open_logs(
        self,
        handle: Handle,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
    ) -> tuple[Any, str]:
        """The engine's log stream for ``handle`` (response, action)."""
        self._check(handle)
        client = self._client()
        params: dict[str, str] = {
            "stdout": "true",
            "stderr": "true",
            "timestamps": "true",
            "follow": "true" if follow else "false",
            "tail": "all" if tail is None else str(max(0, tail)),
        }
        if since is not None:
            moment = since if since.tzinfo else since.replace(tzinfo=UTC)
            params["since"] = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        action = f"logs of {handle.name}"
        with self._engine(action):
            # No read timeout when following: lines may be rare.
            response = client.get(
                f"/containers/{quote(handle.id)}/logs",
                params=params,
                headers=_STREAM_HEADERS,
                stream=True,
                timeout=(CLIENT_TIMEOUT_SECONDS, None) if follow else None,
            )
            try:
                response.raise_for_status()
            except BaseException:
                response.close()
                raise
        return response, action

    # --- Executor -------------------------------------------------------------

    def exec(self, handle: Handle, command: list[str], timeout: float = 30.0) -> ExecResult:
        """Run ``command`` in the replica. If it outlives ``timeout`` the result
        has exit code 124 and the output so far (the process may keep running:
        Podman cannot kill an exec session)."""
        self._check(handle)
        client = self._client()
        action = f"exec in {handle.name}"
        began = datetime.now(UTC)
        with self._engine(action):
            created = self._post_json(
                client,
                f"/containers/{quote(handle.id)}/exec",
                {"Cmd": command, "AttachStdout": True, "AttachStderr": True},
            )
            exec_id = _text(_obj(created).get("Id"))
            # The service hijacks the connection and streams frames until the
            # process ends, then closes it.
            response = client.post(
                f"/exec/{quote(exec_id)}/start",
                data=json.dumps({"Detach": False, "Tty": False}),
                headers={**_JSON_HEADERS, **_STREAM_HEADERS},
                stream=True,
                timeout=(CLIENT_TIMEOUT_SECONDS, None),
            )
            try:
                response.raise_for_status()
            except BaseException:
                response.close()
                raise
        shutdown = _shutdown(response)
        timed_out = threading.Event()
        finished = threading.Event()
        lock = threading.Lock()

        def expire() -> None:
            with lock:
                if finished.is_set():
                    return
                timed_out.set()
            shutdown()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        chunks: list[bytes] = []
        try:
            with self._engine(action):
                chunks.extend(payload for _, payload in _frames(response))
        except DriverError:
            if not timed_out.is_set():
                raise
        finally:
            with lock:
                finished.set()
            timer.cancel()
            response.close()
        output = b"".join(chunks)
        if timed_out.is_set():
            return ExecResult(EXEC_TIMEOUT_EXIT_CODE, output)
        deadline = time.monotonic() + min(timeout, 5.0)
        while True:
            try:
                with self._engine(action):
                    result = _obj(self._get_json(client, f"/exec/{quote(exec_id)}/json"))
            except (PermanentDriverError, ReplicaGoneError) as exc:
                if _EXEC_SESSION_GONE not in str(exc) or self._ran_throughout(handle, began):
                    raise
                # the container stopped meanwhile (the command killed its init,
                # say) and runs again: Podman dropped its exec sessions, and the
                # kernel SIGKILLs what is left in a pid namespace when its init dies
                return ExecResult(_KILLED_EXIT_CODE, output)
            code = _int(result.get("ExitCode"))
            if result.get("Running") is not True or time.monotonic() > deadline:
                break
            time.sleep(0.01)  # output ended a moment before the service saw the exit
        return ExecResult(EXEC_TIMEOUT_EXIT_CODE if code is None else code, output)

    def _ran_throughout(self, handle: Handle, since: datetime) -> bool:
        """Whether the container has been running, unrestarted, since ``since``."""
        try:
            status = self.inspect(handle)
        except ReplicaGoneError:
            return False
        started = status.started_at
        return status.state is ReplicaState.RUNNING and started is not None and started < since

    # --- StatsSource ----------------------------------------------------------

    def stats(self, handle: Handle) -> Stats:
        self._check(handle)
        action = f"stats of {handle.name}"
        rows = self._stats_rows([handle.id], action)
        if not rows:
            # the service answers 200 with no rows for a container it does not know
            raise ReplicaGoneError(self.target, f"{action}: no such container")
        return self._stats_of(rows[0])

    def stats_many(self, handles: list[Handle]) -> dict[str, Stats]:
        """One call for all: the service samples every container it is asked
        for. If one of them is gone the service refuses the whole batch, so
        then each is asked for alone."""
        for handle in handles:
            self._check(handle)
        if not handles:
            return {}
        try:
            rows = self._stats_rows([h.id for h in handles], f"stats of {len(handles)} replicas")
        except ReplicaGoneError:
            rows = []
            for handle in handles:
                with suppress(ReplicaGoneError):
                    rows += self._stats_rows([handle.id], f"stats of {handle.name}")
        # a container that stopped meanwhile answers with a row of zeros
        by_id = {str(row.get("ContainerID", "")): row for row in rows if _int(row.get("PIDs"))}
        found: dict[str, Stats] = {}
        for handle in handles:
            row = by_id.get(handle.id) or next(
                (r for i, r in by_id.items() if i.startswith(handle.id)), None
            )
            if row is not None:
                found[handle.id] = self._stats_of(row)
        return found

    def _stats_rows(self, ids: list[str], action: str) -> list[dict[str, Any]]:
        client = self._client()
        with self._engine(action):
            answer = _obj(
                self._get_json(client, "/containers/stats", containers=ids, stream="false")
            )
        if answer.get("Error") is not None:
            # one unknown container fails the batch with 200, an empty error
            # object and no rows (Podman 4.3)
            raise ReplicaGoneError(
                self.target, f"{action}: {answer['Error'] or 'no such container'}"
            )
        rows = answer.get("Stats")
        return [_obj(row) for row in rows] if isinstance(rows, list) else []

    def _stats_of(self, raw: Mapping[str, Any]) -> Stats:
        limit = _int(raw.get("MemLimit"))
        if limit and self._host_memory is None:
            client = self._client()
            with self._engine("engine info"):
                host = _obj(_obj(self._get_json(client, "/info")).get("host"))
            self._host_memory = _int(host.get("memTotal"))
        if not limit or (self._host_memory and limit >= self._host_memory):
            limit = None  # no limit: the service reports the host's memory instead
        return Stats(
            cpu_seconds=(_int(raw.get("CPUNano")) or 0) / 1e9,
            memory_bytes=_int(raw.get("MemUsage")) or 0,
            memory_limit_bytes=limit,
            pids=_int(raw.get("PIDs")),
            network_rx_bytes=_int(raw.get("NetInput")),
            network_tx_bytes=_int(raw.get("NetOutput")),
        )

    # --- EventSource ----------------------------------------------------------

    def events(self, stop: threading.Event) -> Iterator[DriverEvent]:
        """Container events of portway replicas until ``stop`` is set or the
        service goes away (then the iterator just ends). With Podman's file
        events logger the service tails a file: events arrive within ~0.3 s."""
        client = self._client()
        filters = {
            "type": ["container"],
            "label": [f"{LABEL_MANAGED}=true"],
            "event": list(_EVENT_ACTIONS),
        }
        with self._engine("watch events"):
            response = client.get(
                "/events",
                params={"stream": "true", "filters": json.dumps(filters)},
                headers=_STREAM_HEADERS,
                stream=True,
                timeout=(CLIENT_TIMEOUT_SECONDS, None),
            )
            try:
                response.raise_for_status()
            except BaseException:
                response.close()
                raise
        return self._event_stream(response, stop)

    def _event_stream(self, response: Any, stop: threading.Event) -> Iterator[DriverEvent]:
        watch = _StreamWatch(stop, _shutdown(response))
        buffer = b""
        try:
            # stream() hands over each chunk as the service flushes it
            chunks = response.raw.stream(64 * 1024, decode_content=True)
            while not watch.stopping:
                try:
                    with self._engine("watch events"):
                        chunk = next(chunks, None)
                except DriverError:
                    return  # cancelled, or the service went away: the caller reconnects
                except Exception:
                    if watch.stopping:  # a read tripped over the socket shut under it
                        return
                    raise
                if chunk is None:
                    return
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    event = self._event(line)
                    if event is not None and not watch.stopping:
                        yield event
        finally:
            watch.finish()
            response.close()

    @staticmethod
    def _event(line: bytes) -> DriverEvent | None:
        if not line.strip():
            return None
        try:
            event = _obj(json.loads(line))
        except ValueError:
            return None
        actor = _obj(event.get("Actor"))
        attributes = _labels(actor.get("Attributes"))
        return DriverEvent(
            labels={k: v for k, v in attributes.items() if k.startswith(LABEL_PREFIX)},
            action=_text(event.get("Action")) or _text(event.get("status")),
            handle_id=_text(actor.get("ID")) or _text(event.get("id")),
        )


# --- error helpers --------------------------------------------------------


def _cause(exc: podman.errors.APIError) -> str:
    """The service's short ``cause`` (podman-py keeps it as the message)."""
    return str(exc.args[0]).strip() if exc.args else ""


def _explanation(exc: podman.errors.APIError) -> str:
    explanation: Any = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", errors="replace")
    return str(explanation or _cause(exc) or exc).strip()
