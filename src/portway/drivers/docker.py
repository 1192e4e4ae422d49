"""Docker Engine driver, built on the Docker SDK's low-level ``APIClient``.

Every call is one HTTP request to the engine where the engine allows it; in
particular ``list_owned`` is a single ``GET /containers/json`` with label
filters, never one inspect per container. Docker's own restart policy is
never set: portway's controller owns restarts. Images are never pulled.

Every replica of a namespace joins that namespace's user-defined bridge
network (``pw<cluster6>-<namespace>``, made on first need and removed with the
namespace's last replica), with its ``ReplicaRequest.aliases``: Docker's
embedded DNS then resolves a service's name to its replicas on this engine
(``services.dns``). Published ports work on it as on the default bridge.

All engine and transport errors are translated in one place
(``DockerDriver._engine``) into the ``DriverError`` family, chained with
``raise ... from``; no ``docker``/``requests``/``urllib3`` exception leaves
this module.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, TypedDict
from urllib.parse import quote, urlparse

import docker
import docker.errors
import requests
import urllib3
from docker.types import CancellableStream, Mount, NetworkingConfig

from portway.capabilities.vocabulary import Feature
from portway.drivers import secret_files
from portway.drivers.base import (
    LABEL_CLUSTER,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
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
from portway.drivers.docker_volumes import DockerVolumes
from portway.drivers.engine_common import (
    CLIENT_TIMEOUT_SECONDS,
    EXEC_TIMEOUT_EXIT_CODE,
    LABEL_NETWORK,
    MAX_POOL_SIZE,
    ZERO_TIME_PREFIX,
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
    docker_security_options,
    facts_from_inspect,
    non_root_refusal,
)
from portway.drivers.runtime_handlers import (
    GVISOR_GAPS,
    TierRefused,
    docker_runtimes,
    extension_conflict,
    handlers_for,
    pids_limit,
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
)
from portway.spec.model import Isolation, VolumeType
from portway.spec.volumes import native_volume_name

__all__ = ["DockerDriver"]

DRIVER_NAME = "docker"
MIN_API_VERSION = (1, 41)

_STATES: dict[str, ReplicaState] = {
    "created": ReplicaState.CREATED,
    "running": ReplicaState.RUNNING,
    "paused": ReplicaState.PAUSED,
    "restarting": ReplicaState.RESTARTING,
    "exited": ReplicaState.EXITED,
    "dead": ReplicaState.EXITED,
    "removing": ReplicaState.REMOVING,
}
# Engine events that can change a replica's state; everything else (exec_*,
# health_status, attach, ...) is filtered out by the engine.
_EVENT_ACTIONS = (
    "create",
    "start",
    "restart",
    "die",
    "kill",
    "oom",
    "stop",
    "pause",
    "unpause",
    "destroy",
    "rename",
    "update",
)

_EXITED_RE = re.compile(r"^(?:Exited|Restarting) \((-?\d+)\)")
_PORT_IN_USE_RE = re.compile(
    r"(\[[0-9a-fA-F:.]*\]|[0-9a-fA-F.:]*?):(\d+)"
    r"(?:: bind: address already in use| failed: port is already allocated)"
)
# Docker's answer when its address pools hold no subnet for one more network
_NO_POOL = "could not find an available, non-overlapping"


# --- small typing helpers: the engine's JSON stays ``Any`` only in here ----


class _PortBinding(TypedDict):
    HostIp: str
    HostPort: str


class _CreateCall(TypedDict):
    """The arguments of one ``create_container`` call."""

    image: str
    name: str
    entrypoint: list[str] | None
    command: list[str] | None
    environment: dict[str, str] | None
    user: str | None
    labels: dict[str, str]
    ports: list[tuple[int, str]] | None
    host_config: dict[str, Any]
    networking_config: NetworkingConfig | None


def _sum_of(rows: list[dict[str, Any]] | None, key: str) -> int | None:
    """The total of ``key`` over ``rows`` (None when there are no rows)."""
    if rows is None:
        return None
    return sum(_int(row.get(key)) or 0 for row in rows)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def docker_base_url(address: str) -> str:
    """``docker:///var/run/docker.sock`` -> ``unix:///var/run/docker.sock``;
    ``docker+tcp://host:2375`` -> ``tcp://host:2375``. Raises ValueError."""
    parsed = urlparse(address)
    if parsed.scheme in ("docker", "docker+unix"):
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise ValueError(
                f"{address!r}: a docker socket address looks like docker:///var/run/docker.sock "
                "(for TCP use docker+tcp://HOST:PORT)"
            )
        return f"unix://{parsed.path}"
    if parsed.scheme == "docker+tcp":
        if not parsed.hostname or parsed.port is None:
            raise ValueError(f"{address!r}: expected docker+tcp://HOST:PORT")
        return f"tcp://{parsed.netloc}"
    raise ValueError(
        f"{address!r} is not a docker address; expected docker:///var/run/docker.sock "
        "or docker+tcp://HOST:PORT"
    )


def _host_port(text: Any) -> int | None:
    port = _int(text)
    return port if port else None


def _ports_from_inspect(network_ports: Any) -> tuple[PublishedPort, ...]:
    out: list[PublishedPort] = []
    for key, bindings in _obj(network_ports).items():
        number, _, protocol = str(key).partition("/")
        if not isinstance(bindings, list) or not number.isdigit():
            continue
        for binding in bindings:
            host_port = _host_port(_obj(binding).get("HostPort"))
            if host_port is None:
                continue
            port = PublishedPort(
                int(number), protocol or "tcp", _text(_obj(binding).get("HostIp")), host_port
            )
            if port not in out:
                out.append(port)
    return tuple(sorted(out, key=lambda p: (p.container_port, p.protocol, p.host_ip)))


def _ports_from_list(rows: Any) -> tuple[PublishedPort, ...]:
    out: list[PublishedPort] = []
    for row in rows if isinstance(rows, list) else []:
        entry = _obj(row)
        private, public = _int(entry.get("PrivatePort")), _int(entry.get("PublicPort"))
        if private is None or not public:
            continue
        port = PublishedPort(
            private, _text(entry.get("Type")) or "tcp", _text(entry.get("IP")), public
        )
        if port not in out:
            out.append(port)
    return tuple(sorted(out, key=lambda p: (p.container_port, p.protocol, p.host_ip)))


def _log_line(stream: str, raw_line: bytes) -> LogLine:
    text = raw_line.decode("utf-8", errors="replace")
    if text[-1:] == "\r":
        text = text[:-1]
    stamp, _, rest = text.partition(" ")
    if stamp[-1:] == "Z" and stamp[:10] != ZERO_TIME_PREFIX:
        try:  # Docker's usual RFC 3339 with nanoseconds; 3.11 reads it directly
            return LogLine(datetime.fromisoformat(stamp), stream, rest)
        except ValueError:
            pass
    timestamp = parse_engine_time(stamp)
    if timestamp is None:
        return LogLine(None, stream, text)
    return LogLine(timestamp, stream, rest)


class _DockerLogDecoder:
    """Docker frames whatever the container wrote, each line "<RFC 3339> text":
    usually one whole line a frame, but a long line spans frames and a frame
    may hold several."""

    def __init__(self) -> None:
        self._pending: dict[str, bytes] = {}

    def decode(self, batch: list[tuple[int, bytes]]) -> list[LogLine]:
        # a whole socket read at a time: per-line work stays minimal
        pending = self._pending
        out: list[LogLine] = []
        for stream_id, payload in batch:
            stream = _STREAMS.get(stream_id, "stdout")
            if not pending and payload.find(b"\n") == len(payload) - 1:
                # the usual frame: exactly one whole line
                out.append(_log_line(stream, payload[:-1]))
                continue
            head = pending.pop(stream, None)
            *lines, rest = (head + payload if head else payload).split(b"\n")
            if rest:
                pending[stream] = rest
            out.extend([_log_line(stream, line) for line in lines])
        return out

    def flush(self) -> list[LogLine]:
        rest = [_log_line(stream, text) for stream, text in self._pending.items()]
        self._pending.clear()
        return rest


_Extension = EngineExtension

# What does not hold for a sandboxed replica on Docker: gVisor's common gaps
# (runtime_handlers.GVISOR_GAPS) and flaky OOM reporting.
_SANDBOX_GAPS: Mapping[str, Mapping[Feature, str]] = {
    "sandboxed": {
        **GVISOR_GAPS,
        Feature.OOM_REPORTED: (
            "the host's OOM killer kills a process of the gVisor sandbox (the Sentry holds "
            "the workload's memory), and Docker reported OOMKilled for only 4 of 6 such "
            "kills in our runs (the exit code is 137 every time)"
        ),
    }
}


class _ConflictError(PermanentDriverError):
    """HTTP 409 from the engine; callers that expect it handle it."""


def _api_url(client: docker.APIClient, path: str) -> str:
    return f"{client.base_url}/v{client.api_version}{path}"


def _raise_for_status(response: requests.Response) -> None:
    """Raise the SDK's APIError (NotFound, ...) for an error answer, as its own calls do."""
    try:
        response.raise_for_status()
    except requests.HTTPError as exc:
        response.close()
        docker.errors.create_api_error_from_http_exception(exc)


def _shutdown(response: requests.Response) -> Callable[[], None]:
    """A function that shuts the response's socket down, safe to call from any
    thread: a reader blocked on it sees end-of-stream. (The SDK knows where the
    socket lives.) The reading thread still closes the response itself."""
    cancellable: CancellableStream[bytes] = CancellableStream(iter(()), response)

    def shutdown() -> None:
        with suppress(Exception):
            cancellable.close()

    return shutdown


#: measured with plain docker (two networks, a server and a client, and a loop
#: making and removing networks), see docs/services.md
NETWORK_RULES_REWRITTEN = (
    "Docker keeps its networks apart with iptables rules that it deletes and inserts again "
    "whenever any network on the engine is created or removed; a connection opened in that "
    "instant crosses (measured on Docker 20.10: 39 of 539 attempts while networks came and "
    "went 3 times a second, 0 of 300 without), so do not rely on it as a security boundary"
)

#: said where a memory limit is honored on Docker
OOM_MISSED_AT_START = (
    "dockerd learns of an OOM kill from the runc shim, which watches the container's memory "
    "cgroup only once the start has returned: a replica killed for memory in its first "
    "moments may exit 137 without being reported OOMKilled (measured on Docker 20.10 under "
    "load, 8Mi limit: 2 of 110 replicas whose shell piped dd into tail at once; 0 of 80 "
    "running tail /dev/zero; 0 of 40 that waited a second first)"
)


class DockerDriver(DockerVolumes, StreamedLogs):
    """Runs replicas as containers on one Docker Engine."""

    name = DRIVER_NAME

    def __init__(self, target: str, address: str) -> None:
        self.target = target
        self.address = address
        try:
            self._base_url = docker_base_url(address)
        except ValueError as exc:
            raise PermanentDriverError(target, str(exc)) from None
        self._lock = threading.Lock()
        self._api: docker.APIClient | None = None
        self._host_memory: int | None = None  # engine host's RAM, from info()
        # the isolation tiers' runtimes, from the last info(); None: not asked yet
        self._handlers: tuple[RuntimeHandler, ...] | None = None

    def __repr__(self) -> str:
        return f"DockerDriver(target={self.target!r}, address={self.address!r})"

    # --- plumbing -----------------------------------------------------------

    def _client(self) -> docker.APIClient:
        """The shared client, made on first use (``version="auto"`` asks the engine)."""
        with self._lock:
            if self._api is None:
                with self._engine("connect"):
                    self._probe()
                    self._api = docker.APIClient(
                        base_url=self._base_url,
                        version="auto",
                        timeout=CLIENT_TIMEOUT_SECONDS,
                        max_pool_size=MAX_POOL_SIZE,
                    )
            return self._api

    def _probe(self) -> None:
        """Connect to a unix socket once ourselves before the SDK does: its
        adapter leaks the socket of a failed connect (a ResourceWarning)."""
        if self._base_url.startswith("unix://"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(CLIENT_TIMEOUT_SECONDS)
                sock.connect(self._base_url.removeprefix("unix://"))

    def close(self) -> None:
        """Close pooled connections; the driver reconnects on next use."""
        with self._lock:
            api, self._api = self._api, None
        if api is not None:
            api.close()

    @contextmanager
    def _engine(self, action: str) -> Iterator[None]:
        """Translate every engine/transport failure inside into a DriverError."""
        try:
            yield
        except PortwayError:
            raise
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
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
        return TargetUnavailableError(
            self.target,
            f"{action}: the engine at {self.address} {why} ({_root_message(exc)}); "
            "is dockerd running?",
            delay=2.0,
        )

    def _translate(self, exc: BaseException, action: str) -> DriverError:
        if isinstance(exc, docker.errors.ImageNotFound):
            return ImageNotFoundError(
                self.target,
                f"{action}: {_explanation(exc)}. portway never pulls images; "
                "build or load it on this engine first (test images: scripts/build-images.sh)",
            )
        if isinstance(exc, docker.errors.NotFound):
            return ReplicaGoneError(self.target, f"{action}: {_explanation(exc)}")
        if isinstance(exc, docker.errors.APIError):
            explanation = _explanation(exc)
            if exc.status_code == 409:
                return _ConflictError(self.target, f"{action}: {explanation}")
            if _NO_POOL in explanation:
                return PermanentDriverError(
                    self.target,
                    f"{action}: the engine has no free subnet for another network (each "
                    "namespace with replicas on this engine has one); remove unused networks "
                    "or give dockerd more default-address-pools "
                    f"(engine said: {explanation})",
                )
            if (
                "address already in use" in explanation
                or "port is already allocated" in explanation
            ):
                match = _PORT_IN_USE_RE.search(explanation)
                where = f"{match.group(1) or '*'}:{match.group(2)}" if match else "a host port"
                return PortInUseError(
                    self.target,
                    f"{action}: host port {where} is already in use on the engine's host; "
                    f"free it or choose another hostPort (engine said: {explanation})",
                )
            return PermanentDriverError(
                self.target, f"{action}: the engine refused (HTTP {exc.status_code}): {explanation}"
            )
        if isinstance(exc, docker.errors.DockerException) and not _caused_by(
            exc, (requests.RequestException, OSError, urllib3.exceptions.HTTPError)
        ):
            # raised by the SDK itself, e.g. an API version it does not support
            return PermanentDriverError(self.target, f"{action}: {exc}")
        return self._unreachable(action, exc)

    def _handle(self, container_id: str, name: str) -> Handle:
        return Handle(driver=DRIVER_NAME, target=self.target, id=container_id, name=name)

    def _check(self, handle: Handle) -> None:
        if handle.driver != DRIVER_NAME:
            raise PermanentDriverError(
                self.target, f"handle {handle.name!r} belongs to driver {handle.driver!r}"
            )

    # --- Driver ---------------------------------------------------------------

    def ping(self) -> None:
        client = self._client()
        with self._engine("ping"):
            if not client.ping():
                raise TargetUnavailableError(self.target, "the engine did not answer OK to a ping")

    def fingerprint(self) -> Fingerprint:
        try:
            client = self._client()
            with self._engine("fingerprint"):
                answered = client.ping()
                version = client.version()
                info = client.info()
        except TargetUnavailableError as exc:
            return Fingerprint(Health.UNDETECTED, detail=str(exc))
        except DriverError as exc:
            return Fingerprint(Health.UNHEALTHY, detail=str(exc))
        engine_version = _text(version.get("Version"))
        api_version = _text(version.get("ApiVersion"))
        os_name = _text(version.get("Os")) or _text(info.get("OSType"))
        attributes = {
            "os": os_name,
            "arch": _text(version.get("Arch")) or _text(info.get("Architecture")),
            "cpus": str(_int(info.get("NCPU")) or 0),
            "memory": str(_int(info.get("MemTotal")) or 0),
            "cgroup_version": _text(info.get("CgroupVersion")),
            "cgroup_driver": _text(info.get("CgroupDriver")),
            "kernel": _text(info.get("KernelVersion")),
            "storage_driver": _text(info.get("Driver")),
            "api_version": api_version,
        }
        self._host_memory = _int(info.get("MemTotal"))
        runtimes = tuple(sorted(_obj(info.get("Runtimes"))))
        self._handlers = handlers_for(*docker_runtimes(info))
        problem = ""
        if not answered:
            problem = "the engine did not answer OK to a ping"
        elif _parse_version(api_version) < MIN_API_VERSION:
            problem = (
                f"engine API {api_version} is too old; portway needs "
                f"{'.'.join(map(str, MIN_API_VERSION))} or newer (Docker 20.10+)"
            )
        elif os_name != "linux":
            problem = (
                f"the engine runs {os_name or 'an unknown OS'} containers; portway needs linux"
            )
        health = Health.UNHEALTHY if problem else Health.HEALTHY
        detail = problem or f"Docker Engine {engine_version} (API {api_version})"
        return Fingerprint(
            health=health,
            detail=detail,
            version=engine_version,
            runtime_handlers=runtimes,
            attributes=attributes,
        )

    def capabilities(self) -> DriverCapabilities:
        # Every feature but privileged; of the isolation tiers, standard and
        # (where the engine has a runsc runtime) sandboxed. Privileged is
        # passed through (engine_security) but not claimed: Docker 20.10 asks
        # runc for every capability it knows, not the ones its own bounding set
        # holds, so on a host that lacks one (a VM or nested container, like our
        # CI) every privileged start fails ("unable to apply caps"), and the API
        # cannot tell us the daemon's bounding set.
        # A named volume's size: the local volume driver limits only tmpfs,
        # or xfs with project quotas under /var/lib/docker (not a given).
        unproven = {Feature.SECURITY_PRIVILEGED, Feature.VOLUMES_SIZE_LIMIT}
        if not self._base_url.startswith("unix://"):
            # secret files live on this host's tmpfs: a remote engine cannot mount them
            unproven.add(Feature.SECRETS_FILES)
        handlers = self._runtime_handlers()
        return DriverCapabilities(
            without_tiers(Feature) - unproven | tier_features(handlers),
            handlers=handlers,
            tier_gaps=_SANDBOX_GAPS,
            caveats={
                Feature.NETWORKS_NAMED: NETWORK_RULES_REWRITTEN,
                Feature.RESOURCES_MEMORY: OOM_MISSED_AT_START,
            },
        )

    def _runtime_handlers(self) -> tuple[RuntimeHandler, ...]:
        """The handlers the last fingerprint found, or asked for now. An engine
        that cannot be asked offers no named handler (so no sandboxed tier);
        that answer is not kept, the next call asks again."""
        if self._handlers is None:
            try:
                client = self._client()
                with self._engine("engine info"):
                    info = _obj(client.info())
            except DriverError:
                return ()
            self._handlers = handlers_for(*docker_runtimes(info))
        return self._handlers

    def create(self, request: ReplicaRequest) -> Handle:
        spec = request.spec
        extension = self._extension(spec.extensions.get(DRIVER_NAME, {}))
        runtime = self._runtime(request, extension)
        labels = {**(extension.labels or {}), **request.labels(self.target)}
        client = self._client()
        if spec.security.run_as_non_root:
            self._refuse_root(client, request)
        mounts, tmpfs = self._volumes(client, request)
        mounts += self._secret_mounts(request)
        networks = replica_networks(request)
        network_options: dict[str, Any] = {}
        networking_config: NetworkingConfig | None = None
        if networks:
            # created on the first; _create_on connects the others (this
            # engine's API takes one network at create)
            first = networks[0].name
            network_options["network_mode"] = first
            endpoint = client.create_endpoint_config(aliases=list(request.aliases) or None)
            # the SDK's type stubs take one EndpointConfig; the engine wants network -> config
            networking_config = NetworkingConfig()
            networking_config["EndpointsConfig"] = {first: endpoint}

        exposed: list[tuple[int, str]] = []
        bindings: dict[int | str, list[_PortBinding]] = {}
        for port in spec.ports:
            protocol = str(port.protocol)
            host_port = request.host_port(port.container_port, protocol)
            exposed.append((port.container_port, protocol))
            bindings[f"{port.container_port}/{protocol}"] = [
                {"HostIp": port.host_ip, "HostPort": "" if host_port is None else str(host_port)}
            ]
        resources = spec.resources
        security = spec.security
        host_config = client.create_host_config(
            port_bindings=bindings or None,
            cap_add=security.capabilities.add or None,
            cap_drop=security.capabilities.drop or None,
            read_only=security.read_only_root_filesystem or None,
            mem_limit=resources.memory,
            memswap_limit=resources.memory,
            nano_cpus=None if resources.cpu is None else round(resources.cpu * 1e9),
            pids_limit=pids_limit(spec),
            tmpfs=tmpfs or None,
            mounts=mounts or None,
            init=extension.init,
            runtime=runtime,
            shm_size=extension.shm_size,
            **docker_security_options(security),
            **network_options,
        )
        create = _CreateCall(
            image=spec.image,
            name=request.name,
            entrypoint=spec.command,
            command=spec.args,
            environment=dict(spec.env) or None,
            user=security.user,
            labels=labels,
            ports=exposed or None,
            host_config=host_config,
            networking_config=networking_config,
        )
        try:
            return self._create_on(client, networks, request, create)
        except DriverError:
            secret_files.remove(secret_files.Scope(self.name, self.target), request.name)
            for network in networks:  # leave no network that no replica uses
                with suppress(DriverError):
                    self._remove_network(network, wait=True)
            raise

    def _create_on(
        self,
        client: docker.APIClient,
        networks: list[EngineNetwork],
        request: ReplicaRequest,
        create: _CreateCall,
    ) -> Handle:
        """Create the container on its networks (made if needed), or adopt the
        one already made for this replica."""
        for _attempt in range(2):
            with networks_held(self._base_url, networks):
                for network in networks:
                    self._ensure_network(client, network)
                try:
                    with self._engine(f"create {request.name}"):
                        created = client.create_container(
                            **create, detach=True, use_config_proxy=False
                        )
                    handle = self._handle(_text(_obj(created).get("Id")), request.name)
                except _ConflictError:
                    try:
                        handle = self._adopt(request)
                    except ReplicaGoneError:
                        continue  # removed between our create and inspect: try again
                except ReplicaGoneError as exc:
                    if not _network_missing(exc):
                        raise
                    # removed by another process between our check and the
                    # create: the next attempt makes it again
                    continue
                self._join_networks(client, handle, networks[1:], request.aliases)
                return handle
        raise PermanentDriverError(
            self.target, f"create {request.name}: the name keeps conflicting; try again"
        )

    # --- namespace networks (services.dns, networks.named) --------------------

    def _join_networks(
        self,
        client: docker.APIClient,
        handle: Handle,
        networks: list[EngineNetwork],
        aliases: tuple[str, ...],
    ) -> None:
        """Connect a created replica to its further named networks (already
        made, under their locks), with its aliases on each."""
        for network in networks:
            try:
                with self._engine(f"connect {handle.name} to network {network.name}"):
                    client.connect_container_to_network(
                        handle.id, network.name, aliases=list(aliases) or None
                    )
            except PermanentDriverError as exc:
                if "already exists" not in str(exc):  # an adopted replica is on it
                    raise

    def _ensure_network(self, client: docker.APIClient, network: EngineNetwork) -> None:
        """Make the network unless it exists (idempotent); refuse a network of
        that name that portway did not make for this namespace."""
        name = network.name
        try:
            with self._engine(f"inspect network {name}"):
                info = _obj(client.inspect_network(name))
        except ReplicaGoneError:  # 404: not made yet
            try:
                try:
                    self._create_network(client, network)
                except PermanentDriverError as exc:
                    # every subnet taken: networks left empty (replicas removed
                    # behind portway's back, a killed controller) hold some
                    if _NO_POOL not in str(exc) or not self._prune_networks(client, name):
                        raise
                    self._create_network(client, network)
                return
            except _ConflictError:  # made meanwhile by another process
                with self._engine(f"inspect network {name}"):
                    info = _obj(client.inspect_network(name))
        problem = network.foreign(_labels(info.get("Labels")))
        if problem:
            raise PermanentDriverError(self.target, problem)

    def _create_network(self, client: docker.APIClient, network: EngineNetwork) -> None:
        with self._engine(f"create network {network.name}"):
            client.create_network(
                network.name,
                driver="bridge",
                labels=network.labels(),
                check_duplicate=True,
            )

    def _prune_networks(self, client: docker.APIClient, keep: str) -> int:
        """Remove every portway network (of any installation) that no container
        uses, except ``keep``; how many went."""
        with self._engine("list networks"):
            found = client.networks(filters={"label": [f"{LABEL_MANAGED}=true"]})
        removed = 0
        for item in found or []:
            info = _obj(item)
            labels = _labels(info.get("Labels"))
            namespace = labels.get(LABEL_NAMESPACE)
            network = EngineNetwork(
                labels.get(LABEL_CLUSTER, ""), namespace or "", labels.get(LABEL_NETWORK, "")
            )
            if not namespace or network.name == keep or _text(info.get("Name")) != network.name:
                continue
            with suppress(DriverError):
                # never wait for a network's lock here: its holder may be
                # pruning too, waiting for ours (and it is in use anyway)
                removed += self._remove_network(network, wait=False)
        return removed

    def remove_namespace_network(self, namespace: str, cluster: str = "") -> bool:
        """Remove the namespace's network if it is portway's and no container
        (running or not) uses it; True when it is gone (or never existed).
        ``destroy`` calls it for the namespace's last replica; cleanup tools
        may call it too."""
        return self._remove_network(EngineNetwork(cluster, namespace), wait=True)

    def _remove_network(self, network: EngineNetwork, *, wait: bool) -> bool:
        name = network.name
        client = self._client()
        lock = network_lock(self._base_url, name)
        if not lock.acquire(blocking=wait):
            return False
        try:
            try:
                with self._engine(f"inspect network {name}"):
                    info = _obj(client.inspect_network(name))
            except ReplicaGoneError:
                return True
            if network.foreign(_labels(info.get("Labels"))):
                return False  # not ours to remove
            # Docker removes a network that a created, never started container
            # names (its start then fails): only an empty list is proof
            with self._engine(f"list containers on network {name}"):
                users = client.containers(all=True, quiet=True, filters={"network": [name]})
            if users:
                return False
            try:
                with self._engine(f"remove network {name}"):
                    client.remove_network(name)
            except ReplicaGoneError:
                return True
            except PermanentDriverError:  # e.g. a container joined it behind our back
                return False
            return True
        finally:
            lock.release()

    def _release_networks(self, info: _Json) -> None:
        """After a replica's removal: remove each of its networks it was the
        last container on. Best effort: a network left behind is empty and
        harmless, and the namespace's next replica uses it again."""
        for network in released_networks(info):
            with suppress(DriverError):
                self._remove_network(network, wait=True)

    def _refuse_root(self, client: docker.APIClient, request: ReplicaRequest) -> None:
        """runAsNonRoot: refuse before anything is created (as the kubelet does)."""
        spec_user = request.spec.security.user
        image_user = ""
        if not spec_user:
            # the SDK leaves inspect_image unannotated
            inspect_image: Callable[[str], object] = client.inspect_image
            with self._engine(f"inspect image {request.spec.image}"):
                image = _obj(inspect_image(request.spec.image))
            image_user = _text(_obj(image.get("Config")).get("User"))
        refusal = non_root_refusal(spec_user, image_user)
        if refusal:
            raise PermanentDriverError(self.target, f"create {request.name}: {refusal}")

    def _adopt(self, request: ReplicaRequest) -> Handle:
        """Return the existing container named ``request.name`` if it is this replica."""
        with self._engine(f"inspect existing {request.name}"):
            info = self._client().inspect_container(request.name)
        existing = _labels(_obj(_obj(info).get("Config")).get("Labels"))
        wanted = request.labels(self.target)
        differ = sorted(k for k, v in wanted.items() if existing.get(k) != v)
        if differ:
            raise PermanentDriverError(
                self.target,
                f"a container named {request.name!r} already exists but is not this replica "
                f"(labels differ: {', '.join(differ)}); remove it or rename it",
            )
        return self._handle(_text(_obj(info).get("Id")), request.name)

    def _runtime(self, request: ReplicaRequest, extension: _Extension) -> str | None:
        """The runtime for the replica's isolation tier (None: the engine's default)."""
        handlers = () if request.spec.isolation is Isolation.STANDARD else self._runtime_handlers()
        try:
            return runtime_for(request.spec.isolation, extension.runtime, handlers, DRIVER_NAME)
        except TierRefused as exc:
            raise PermanentDriverError(self.target, f"{request.name}: {exc}") from None

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
        self, client: docker.APIClient, request: ReplicaRequest
    ) -> tuple[list[Mount], dict[str, str]]:
        mounts: list[Mount] = []
        tmpfs: dict[str, str] = {}
        for volume in request.spec.volumes:
            if volume.type is VolumeType.TMPFS:
                options = ["ro" if volume.read_only else "rw", "mode=1777"]
                if volume.size_limit is not None:
                    options.append(f"size={volume.size_limit}")
                tmpfs[volume.mount_path] = ",".join(options)
            elif volume.type is VolumeType.NAMED:
                source = native_volume_name(
                    request.namespace, request.workload, volume, request.index
                )
                self._ensure_volume(
                    client, source, replica_volume_labels(request, self.target, volume)
                )
                mounts.append(
                    Mount(volume.mount_path, source, type="volume", read_only=volume.read_only)
                )
            else:
                mounts.append(
                    Mount(volume.mount_path, volume.source, type="bind", read_only=volume.read_only)
                )
        return mounts, tmpfs

    def _secret_mounts(self, request: ReplicaRequest) -> list[Mount]:
        """Read-only binds of the replica's secret files (written on this
        host's tmpfs); only the host path reaches the engine."""
        if not request.secret_files:
            return []
        if not self._base_url.startswith("unix://"):
            raise PermanentDriverError(
                self.target,
                f"create {request.name}: secret files need an engine on this host "
                f"(this target is {self.address}); secrets.files is not offered here",
            )
        placed = secret_files.materialize(
            secret_files.Scope(self.name, self.target), request.name, request.secret_files
        )
        return [Mount(m.mount_path, m.host_path, type="bind", read_only=True) for m in placed]

    def _ensure_volume(self, client: docker.APIClient, name: str, labels: dict[str, str]) -> None:
        try:
            with self._engine(f"inspect volume {name}"):
                client.inspect_volume(name)
            return
        except ReplicaGoneError:  # 404: the volume does not exist yet
            pass
        with self._engine(f"create volume {name}"):
            client.create_volume(name, driver="local", labels=labels)

    def start(self, handle: Handle) -> None:
        self._check(handle)
        try:
            with self._engine(f"start {handle.name}"):
                self._client().start(handle.id)  # 304 (already running) is not an error
        except ReplicaGoneError as exc:
            if not _network_missing(exc):
                raise
            self._start_on_new_network(handle, exc)

    def _start_on_new_network(self, handle: Handle, missing: ReplicaGoneError) -> None:
        """The replica's namespace network was removed after its create (by
        another process whose replica was the last one): make the network
        again and start. Docker resolves the network by name at start, so the
        replica joins the new one with its aliases."""
        client = self._client()
        with self._engine(f"inspect {handle.name}"):
            info = _obj(client.inspect_container(handle.id))
        networks = released_networks(info)  # the portway networks it names
        mode = _text(_obj(info.get("HostConfig")).get("NetworkMode"))
        if mode not in {n.name for n in networks}:
            raise missing  # a network portway does not make again
        with networks_held(self._base_url, networks):
            for network in networks:
                self._ensure_network(client, network)
            with self._engine(f"start {handle.name}"):
                client.start(handle.id)

    def inspect(self, handle: Handle) -> ReplicaStatus:
        self._check(handle)
        with self._engine(f"inspect {handle.name}"):
            info = self._client().inspect_container(handle.id)
        return self._status_from_inspect(_obj(info))

    def stop(self, handle: Handle, timeout: float) -> None:
        self._check(handle)
        try:
            with self._engine(f"stop {handle.name}"):
                self._client().stop(handle.id, timeout=max(0, math.ceil(timeout)))
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
                info = _obj(client.inspect_container(handle.id))
            with self._engine(f"remove {handle.name}"):
                # v=True removes anonymous volumes only; named volumes stay.
                client.remove_container(handle.id, v=True, force=True)
        except ReplicaGoneError:
            return
        except _ConflictError as exc:
            if "already in progress" not in str(exc):
                raise
            return  # the removal under way releases the network
        self._release_networks(info)

    def security_facts(self, handle: Handle) -> SecurityFacts:
        self._check(handle)
        with self._engine(f"inspect {handle.name}"):
            info = self._client().inspect_container(handle.id)
        return facts_from_inspect(_obj(info))

    def recover(self, handle: Handle) -> ReplicaStatus | None:
        try:
            return self.inspect(handle)
        except ReplicaGoneError:
            return None

    def list_owned(self, selector: Mapping[str, str]) -> list[ReplicaStatus]:
        filters = {"label": [f"{LABEL_MANAGED}=true", *(f"{k}={v}" for k, v in selector.items())]}
        with self._engine("list containers"):
            rows = self._client().containers(all=True, filters=filters)
        if LABEL_WORKLOAD not in selector:  # a garbage-collection pass
            self._sweep_secret_files()
        return [self._status_from_list(_obj(row)) for row in rows or []]

    def _sweep_secret_files(self) -> None:
        """Forget secret files of containers that are gone (removed by hand,
        or by an engine restart that lost them)."""
        if not secret_files.has_files(secret_files.Scope(self.name, self.target)):
            return
        with self._engine("list containers"):
            rows = self._client().containers(all=True)
        names = {str(n).lstrip("/") for row in rows or [] for n in _obj(row).get("Names") or []}
        secret_files.sweep(secret_files.Scope(self.name, self.target), names)

    def image_present(self, image: str) -> bool:
        # the SDK leaves inspect_image unannotated
        inspect_image: Callable[[str], object] = self._client().inspect_image
        try:
            with self._engine(f"inspect image {image}"):
                inspect_image(image)
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
            image=_text(config.get("Image")),
        )

    def _status_from_list(self, row: _Json) -> ReplicaStatus:
        status = _STATES.get(_text(row.get("State")), ReplicaState.UNKNOWN)
        match = _EXITED_RE.match(_text(row.get("Status")))
        created = _int(row.get("Created"))
        names = row.get("Names")
        name = _text(names[0]).lstrip("/") if isinstance(names, list) and names else ""
        return ReplicaStatus(
            handle=self._handle(_text(row.get("Id")), name),
            labels=_labels(row.get("Labels")),
            state=status,
            exit_code=int(match.group(1)) if match and status is ReplicaState.EXITED else None,
            created_at=None if created is None else datetime.fromtimestamp(created, UTC),
            ports=_ports_from_list(row.get("Ports")),
            image=_text(row.get("Image")),
        )

    # --- LogSource (engine_common.StreamedLogs) ----------------------------------

    def _log_decoder(self) -> _DockerLogDecoder:
        return _DockerLogDecoder()

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
            "stdout": "1",
            "stderr": "1",
            "timestamps": "1",
            "follow": "1" if follow else "0",
            "tail": "all" if tail is None else str(max(0, tail)),
        }
        if since is not None:
            moment = since if since.tzinfo else since.replace(tzinfo=UTC)
            params["since"] = f"{moment.timestamp():.9f}"
        url = _api_url(client, f"/containers/{quote(handle.id)}/logs")
        action = f"logs of {handle.name}"
        with self._engine(action):
            # Session.get, not the SDK's logs(): it cannot keep stdout and
            # stderr apart. No read timeout when following: lines may be rare.
            response = client.get(
                url, params=params, stream=True, timeout=None if follow else client.timeout
            )
            _raise_for_status(response)
        return response, action

    # --- Executor -------------------------------------------------------------

    def exec(self, handle: Handle, command: list[str], timeout: float = 30.0) -> ExecResult:
        """Run ``command`` in the replica. If it outlives ``timeout`` the result
        has exit code 124 and the output so far (the process may keep running:
        Docker cannot kill an exec)."""
        self._check(handle)
        client = self._client()
        action = f"exec in {handle.name}"
        with self._engine(action):
            exec_id = _text(_obj(client.exec_create(handle.id, command)).get("Id"))
            # Not the SDK's exec_start: without an Upgrade header the engine
            # answers 200 and streams until the process ends, so the frames can
            # be read (and the connection closed) like any streamed response.
            response = client.post(
                _api_url(client, f"/exec/{quote(exec_id)}/start"),
                json={"Detach": False, "Tty": False},
                stream=True,
                timeout=None,
            )
            _raise_for_status(response)
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
            with self._engine(action):
                result = _obj(client.exec_inspect(exec_id))
            code = _int(result.get("ExitCode"))
            if (result.get("Running") is not True and code is not None) or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(0.01)  # output ended a moment before the engine saw the exit
        return ExecResult(EXEC_TIMEOUT_EXIT_CODE if code is None else code, output)

    # --- StatsSource ----------------------------------------------------------

    def stats(self, handle: Handle) -> Stats:
        self._check(handle)
        with self._engine(f"stats of {handle.name}"):
            raw = _obj(self._client().stats(handle.id, stream=False, one_shot=True))
        cpu = _obj(_obj(raw.get("cpu_stats")).get("cpu_usage"))
        memory = _obj(raw.get("memory_stats"))
        detail = _obj(memory.get("stats"))
        usage = _int(memory.get("usage")) or 0
        # Working set, as `docker stats` shows it: page cache that can be
        # dropped does not count (cgroup v1: total_inactive_file, v2: inactive_file).
        inactive = _int(detail.get("total_inactive_file", detail.get("inactive_file"))) or 0
        if 0 < inactive < usage:
            usage -= inactive
        limit = _int(memory.get("limit"))
        if limit is not None and self._host_memory is None:
            with self._engine("engine info"):
                self._host_memory = _int(self._client().info().get("MemTotal"))
        if not limit or (self._host_memory and limit >= self._host_memory):
            limit = None  # no limit: the engine reports the host's memory instead
        networks = raw.get("networks")  # absent on a host-network container
        interfaces = [_obj(n) for n in networks.values()] if isinstance(networks, dict) else None
        return Stats(
            cpu_seconds=(_int(cpu.get("total_usage")) or 0) / 1e9,
            memory_bytes=usage,
            memory_limit_bytes=limit,
            pids=_int(_obj(raw.get("pids_stats")).get("current")),
            network_rx_bytes=_sum_of(interfaces, "rx_bytes"),
            network_tx_bytes=_sum_of(interfaces, "tx_bytes"),
        )

    # --- EventSource ----------------------------------------------------------

    def events(self, stop: threading.Event) -> Iterator[DriverEvent]:
        """Container events of portway replicas until ``stop`` is set or the
        engine goes away (then the iterator just ends)."""
        client = self._client()
        filters = {
            "type": ["container"],
            "label": [f"{LABEL_MANAGED}=true"],
            "event": list(_EVENT_ACTIONS),
        }
        with self._engine("watch events"):
            stream = client.events(filters=filters, decode=True)
        return self._event_stream(stream, stop)

    def _event_stream(
        self, stream: CancellableStream[dict[str, Any]], stop: threading.Event
    ) -> Iterator[DriverEvent]:
        watch = _StreamWatch(stop, stream.close)
        try:
            while not watch.stopping:
                try:
                    with self._engine("watch events"):
                        event = next(stream, None)
                except DriverError:
                    return  # cancelled, or the engine went away: the caller reconnects
                except Exception:
                    if watch.stopping:  # the SDK tripped over the socket closed under it
                        return
                    raise
                if event is None:
                    return
                actor = _obj(_obj(event).get("Actor"))
                attributes = _labels(actor.get("Attributes"))
                yield DriverEvent(
                    labels={k: v for k, v in attributes.items() if k.startswith(LABEL_PREFIX)},
                    action=_text(_obj(event).get("Action")),
                    handle_id=_text(actor.get("ID")),
                )
        finally:
            watch.finish()
            stream.close()


# --- error helpers --------------------------------------------------------


def _network_missing(exc: DriverError) -> bool:
    """A 404 about a network (``network pw…-ns not found``), not about the replica."""
    text = str(exc)
    return "network" in text and "not found" in text


def _explanation(exc: docker.errors.APIError) -> str:
    explanation: Any = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", errors="replace")
    return str(explanation or exc).strip()
