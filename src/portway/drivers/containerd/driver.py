"""containerd driver: replicas as containerd containers + runc tasks.

One replica is: a container record (owner labels, OCI runtime spec, image),
an overlayfs snapshot keyed by the container id, a task (runc, created at
``create`` so a bad spec fails early), a network namespace wired by the CNI
plugins, and files under ``/var/lib/portway/containerd/<namespace>/<id>/``:
``output.log`` (the replica's output, written by ``_logger`` which the runc
shim runs as the task's binary logger: one JSON record per line, with stream
and time), ``state.json`` (when the driver last started the task:
containerd's Tasks API keeps no start time) and, while an exec runs, the two
fifos its output comes through (``_exec_output``).

All containerd (gRPC), CNI and file-system errors are translated in one place
(``ContainerdDriver._engine``) into the ``DriverError`` family. Images are
never pulled. The namespace ``moby`` (Docker's) is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlparse

from portway.capabilities.vocabulary import Feature
from portway.drivers import secret_files
from portway.drivers.base import (
    LABEL_CLUSTER,
    LABEL_MANAGED,
    LABEL_PREFIX,
    LABEL_WORKLOAD,
    DriverCapabilities,
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
from portway.drivers.containerd import _exec_output, _logger, _net, _oci, _sandbox
from portway.drivers.containerd._volumes import LABEL_MOUNTS, ContainerdVolumes
from portway.drivers.engine_security import non_root_refusal
from portway.drivers.follow import until_stopped
from portway.drivers.runtime_handlers import GVISOR_GAPS
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
from portway.spec.model import Isolation, Protocol, WorkloadSpec

# What one shared CNI bridge cannot do is declared missing rather than faked:
# containerd has no DNS of its own, the CNI chain (_net) runs no DNS server,
# and every replica joins the same bridge.
_BRIDGE_GAPS: Mapping[Feature, str] = {
    Feature.SERVICES_DNS: (
        "containerd has no DNS for its replicas: they share portway's CNI bridge (portway0), "
        "where no DNS server runs and no resolv.conf is written, so a service name resolves "
        "to nothing; reach a service here through its published port or the ingress"
    ),
    Feature.NETWORKS_NAMED: (
        "every containerd replica joins portway's one CNI bridge (portway0): there are no "
        "separate networks to join, so replicas of a namespace all reach each other"
    ),
}

try:
    from portway.drivers.containerd import _api
except TypeError as exc:  # protobuf was imported earlier with its C implementation
    raise ImportError(
        "the containerd stubs need PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python set before "
        f"protobuf is first imported in this process ({exc})"
    ) from exc

__all__ = ["ContainerdDriver"]

DRIVER_NAME = "containerd"
DEFAULT_NAMESPACE = "portway"
SNAPSHOTTER = "overlayfs"
RUNTIME = _sandbox.RUNC_SHIM  # for both tiers: runsc is a binary the runc shim runs
STATE_DIR = Path(os.environ.get("PORTWAY_CONTAINERD_STATE", "/var/lib/portway/containerd"))
CGROUP_PARENT = "/portway"
CGROUP_ROOT = Path("/sys/fs/cgroup")
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/docker-init")
LABEL_PORTS = LABEL_PREFIX + "containerd.ports"
LABEL_IMAGE = LABEL_PREFIX + "containerd.image"
#: set in every ReplicaStatus's labels (not on the container): the handler its
#: runtime options select, "runc" or "runsc", read back from the container record
LABEL_RUNTIME = LABEL_PREFIX + "containerd.runtime"
EXEC_TIMEOUT_EXIT_CODE = 124
_KILL_WAIT_SECONDS = 10.0
_FOLLOW_POLL_SECONDS = 0.1
_EXEC_OUTPUT_WAIT_SECONDS = 2.0
_TASK_CHECK_SECONDS = 0.5
# after the task exited, how long logs() waits for its logger to drain the pipes
_LOG_COMPLETE_WAIT_SECONDS = 2.0
LOGGER_NAME = "portway-containerd-logger"
_ID_RE = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
_EXTENSION_KEYS = ("init",)
_FORBIDDEN_NAMESPACES = ("moby", "k8s.io")

# containerd's task status enum (containerd.v1.types.Status)
_STATES = {
    0: ReplicaState.UNKNOWN,
    1: ReplicaState.CREATED,
    2: ReplicaState.RUNNING,
    3: ReplicaState.EXITED,
    4: ReplicaState.PAUSED,
    5: ReplicaState.PAUSED,
}
_CREATED, _RUNNING, _STOPPED, _PAUSED = 1, 2, 3, 4
# a task whose process may still write output (5: pausing)
_LIVE = (_CREATED, _RUNNING, _PAUSED, 5)


def parse_address(address: str) -> tuple[str, str]:
    """``containerd:///run/containerd/containerd.sock[?namespace=NS]`` ->
    (socket path, namespace). Raises ValueError."""
    parsed = urlparse(address)
    if parsed.scheme not in ("containerd", "containerd+unix") or parsed.netloc not in (
        "",
        "localhost",
    ):
        raise ValueError(
            f"{address!r} is not a containerd address; expected "
            "containerd:///run/containerd/containerd.sock"
        )
    if not parsed.path.startswith("/"):
        raise ValueError(f"{address!r}: the socket path must be absolute")
    namespace = parse_qs(parsed.query).get("namespace", [DEFAULT_NAMESPACE])[0]
    if namespace in _FORBIDDEN_NAMESPACES:
        raise ValueError(f"{address!r}: namespace {namespace!r} belongs to another engine")
    return parsed.path, namespace


def _timestamp(value: Any) -> datetime | None:
    seconds = getattr(value, "seconds", 0)
    if not seconds or seconds < 0:
        return None
    return datetime.fromtimestamp(seconds + getattr(value, "nanos", 0) / 1e9, UTC)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def _port_free(host_ip: str, port: int, protocol: str) -> bool:
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host_ip or "0.0.0.0", port))  # noqa: S104 - a probe, closed at once
        except OSError:
            return False
    return True


def _ephemeral_port(host_ip: str, protocol: str, taken: set[tuple[str, int]]) -> int:
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind((host_ip or "0.0.0.0", 0))  # noqa: S104 - a probe, closed at once
            port = int(sock.getsockname()[1])
        if (protocol, port) not in taken:
            return port
    raise OSError("no free ephemeral port found")


def _on_host_network(container: Any | None) -> bool:
    """Whether a stored container shares the host's network (no CNI network)."""
    if container is None:
        return False
    try:
        runtime_spec = json.loads(container.spec.value)
    except ValueError:
        return False
    return isinstance(runtime_spec, dict) and _oci.shares_host_network(runtime_spec)


def _logger_pids(log_path: Path) -> list[int]:
    """Processes running ``_logger`` (or its wrapper) on ``log_path``."""
    wanted = os.fsencode(str(log_path))
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        is_logger = any(
            arg.endswith(b"/_logger.py") or f"/{LOGGER_NAME}-".encode() in arg for arg in argv[:3]
        )
        if is_logger and any(
            key == b"path" and value == wanted for key, value in itertools.pairwise(argv)
        ):
            found.append(int(entry.name))
    return found


class _AlreadyExists(PermanentDriverError):
    """gRPC ALREADY_EXISTS; callers that expect it handle it."""


class _NotFound(ReplicaGoneError):
    """gRPC NOT_FOUND."""


class ContainerdDriver(ContainerdVolumes):
    """Runs replicas as containerd tasks (runc) on one containerd."""

    name = DRIVER_NAME

    def __init__(self, target: str, address: str) -> None:
        self.target = target
        self.address = address
        try:
            self._socket, self._namespace = parse_address(address)
        except ValueError as exc:
            raise PermanentDriverError(target, str(exc)) from None
        self._lock = threading.Lock()
        self._ports_lock = threading.Lock()
        self._logger_lock = threading.Lock()
        self._logger_path: Path | None = None
        self._api: _api.Api | None = None

    def __repr__(self) -> str:
        return f"ContainerdDriver(target={self.target!r}, address={self.address!r})"

    # --- plumbing -----------------------------------------------------------

    def _client(self) -> _api.Api:
        with self._lock:
            if self._api is None:
                self._api = _api.Api(self._socket, self._namespace)
            return self._api

    def close(self) -> None:
        with self._lock:
            api, self._api = self._api, None
        if api is not None:
            api.close()

    @contextmanager
    def _engine(self, action: str) -> Iterator[None]:
        """Translate every gRPC/CNI/OS failure inside into a DriverError."""
        try:
            yield
        except PortwayError:
            raise
        except _api.RpcError as exc:
            raise self._translate(exc, action) from exc
        except _net.NetworkError as exc:
            raise PermanentDriverError(self.target, f"{action}: {exc}") from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise PermanentDriverError(self.target, f"{action}: {exc}") from exc

    def _translate(self, exc: BaseException, action: str) -> DriverError:
        code = _api.code_of(exc)
        details = _api.details_of(exc)
        codes = _api.StatusCode
        if code == codes.NOT_FOUND:
            return _NotFound(self.target, f"{action}: {details}")
        if code == codes.ALREADY_EXISTS:
            return _AlreadyExists(self.target, f"{action}: {details}")
        if code == codes.UNAVAILABLE:
            return TargetUnavailableError(
                self.target,
                f"{action}: containerd at {self._socket} is not reachable ({details}); "
                "is containerd running? (scripts/engines-containerd.sh)",
                delay=2.0,
            )
        # containerd reports its own end of a call's deadline as UNKNOWN when it
        # notices first (e.g. a Wait with a timeout): a timeout all the same
        timed_out = code == codes.UNKNOWN and "context deadline exceeded" in details
        if timed_out or code in (codes.DEADLINE_EXCEEDED, codes.RESOURCE_EXHAUSTED, codes.ABORTED):
            return TemporaryDriverError(self.target, f"{action}: {details}", delay=2.0)
        return PermanentDriverError(self.target, f"{action}: containerd refused: {details}")

    def _handle(self, container_id: str) -> Handle:
        return Handle(driver=DRIVER_NAME, target=self.target, id=container_id, name=container_id)

    def _check(self, handle: Handle) -> None:
        if handle.driver != DRIVER_NAME:
            raise PermanentDriverError(
                self.target, f"handle {handle.name!r} belongs to driver {handle.driver!r}"
            )

    def _state_dir(self, container_id: str) -> Path:
        return STATE_DIR / self._namespace / container_id

    def _log_path(self, container_id: str) -> Path:
        return self._state_dir(container_id) / "output.log"

    def _state_file(self, container_id: str) -> Path:
        return self._state_dir(container_id) / "state.json"

    def _cgroup(self, container_id: str) -> str:
        return f"{CGROUP_PARENT}/{self._namespace}-{container_id}"

    # --- Pinger / fingerprint ---------------------------------------------------

    def ping(self) -> None:
        api = self._client()
        with self._engine("ping"):
            api.call(api.version.Version, _api.empty(), timeout=10)

    def fingerprint(self) -> Fingerprint:
        try:
            api = self._client()
            with self._engine("fingerprint"):
                version = api.call(api.version.Version, _api.empty(), timeout=10)
        except TargetUnavailableError as exc:
            return Fingerprint(Health.UNDETECTED, detail=str(exc))
        except DriverError as exc:
            return Fingerprint(Health.UNHEALTHY, detail=str(exc))
        problems: list[str] = []
        missing = _net.missing_plugins()
        if missing:
            problems.append(
                f"CNI plugins missing: {', '.join(missing)} (install containernetworking-plugins)"
            )
        if shutil.which("runc") is None:
            problems.append("runc is not installed")
        if not _net.ip_available():
            problems.append("ip (iproute2) or iptables is not installed")
        if _read_int(Path("/proc/sys/net/ipv4/conf/all/route_localnet")) != 1:
            problems.append(
                "net.ipv4.conf.all.route_localnet is not 1: ports published on 127.0.0.1 "
                "would not answer (scripts/engines-containerd.sh sets it)"
            )
        handlers = tuple(h.handler for h in self._handlers())
        detail = "; ".join(problems) or (
            f"containerd {version.version} (namespace {self._namespace}, runtime {RUNTIME} "
            f"with {', '.join(handlers)})"
        )
        return Fingerprint(
            health=Health.UNHEALTHY if problems else Health.HEALTHY,
            detail=detail,
            version=str(version.version),
            runtime_handlers=handlers,
            attributes={
                "os": "linux",
                "revision": str(version.revision),
                "namespace": self._namespace,
                "snapshotter": SNAPSHOTTER,
                "cgroup_version": "1" if (CGROUP_ROOT / "memory").is_dir() else "2",
                # containerd reports no host resources; its socket is local
                # (the driver runs CNI and reads cgroups here), so ours are its
                "cpus": str(os.cpu_count() or 0),
                "memory": str(_host_memory()),
            },
        )

    def _handlers(self) -> tuple[RuntimeHandler, ...]:
        """runc for the standard tier; runsc (through its wrapper) for the
        sandboxed tier when the wrapper is installed (scripts/gvisor.sh)."""
        found = [RuntimeHandler("standard", _sandbox.STANDARD_HANDLER)]
        if _sandbox.find_wrapper() is not None:
            found.append(
                RuntimeHandler(
                    "sandboxed",
                    _sandbox.SANDBOXED_HANDLER,
                    overhead_memory=_sandbox.OVERHEAD_MEMORY,
                    overhead_cpu=_sandbox.OVERHEAD_CPU,
                )
            )
        return tuple(found)

    def capabilities(self) -> DriverCapabilities:
        handlers = self._handlers()
        unsupported = {
            Feature.ISOLATION_MICROVM,
            Feature.ISOLATION_WASM,
            Feature.SERVICES_DNS,  # see _BRIDGE_GAPS
            Feature.NETWORKS_NAMED,  # see _BRIDGE_GAPS
            # volumes are plain directories: nothing bounds their size
            Feature.VOLUMES_SIZE_LIMIT,
        }
        if not (CGROUP_ROOT / "memory").is_dir():
            # stats and OOM detection read cgroup v1 files
            unsupported |= {Feature.STATS, Feature.OOM_REPORTED}
        sandboxed = any(h.tier == "sandboxed" for h in handlers)
        if not sandboxed:
            unsupported.add(Feature.ISOLATION_SANDBOXED)
        return DriverCapabilities(
            frozenset(Feature) - unsupported,
            handlers=handlers,
            # one list for gVisor on every engine (runsc 20221219 with host networking)
            # why services.dns is not declared: the standard tier's gap holds
            # for every tier (the matrix records it in each column)
            tier_gaps={
                "standard": _BRIDGE_GAPS,
                **({"sandboxed": dict(GVISOR_GAPS)} if sandboxed else {}),
            },
        )

    # --- images ---------------------------------------------------------------

    def image_present(self, image: str) -> bool:
        api = self._client()
        try:
            with self._engine(f"inspect image {image}"):
                api.call(
                    api.images.Get,
                    _api.images.GetImageRequest(name=_oci.normalize_reference(image)),
                )
        except _NotFound:
            return False
        return True

    def _image_config(self, image: str) -> _oci.ImageConfig:
        api = self._client()
        ref = _oci.normalize_reference(image)
        try:
            with self._engine(f"image {image}"):
                found = api.call(api.images.Get, _api.images.GetImageRequest(name=ref))
        except _NotFound:
            raise ImageNotFoundError(
                self.target,
                f"image {image!r} ({ref}) is not in containerd namespace {self._namespace!r}. "
                "portway never pulls images; import it first "
                "(test images: scripts/engines-containerd.sh)",
            ) from None
        with self._engine(f"read image {ref}"):
            media, digest = found.image.target.media_type, found.image.target.digest
            for _ in range(3):
                if media in _oci.MEDIA_INDEX:
                    entry = _oci.pick_manifest(json.loads(api.read_blob(digest)))
                    if entry is None:
                        break
                    media, digest = str(entry.get("mediaType", "")), str(entry.get("digest", ""))
                    continue
                if media in _oci.MEDIA_MANIFEST:
                    manifest = json.loads(api.read_blob(digest))
                    config = _oci.ImageConfig.parse(api.read_blob(manifest["config"]["digest"]))
                    if not config.diff_ids:
                        break
                    return config
                break
        raise PermanentDriverError(
            self.target, f"image {ref}: unsupported or empty image (media type {media})"
        )

    # --- create -----------------------------------------------------------------

    def create(self, request: ReplicaRequest) -> Handle:
        spec = request.spec
        container_id = request.name
        runtime = self._runtime(container_id, spec.isolation)
        if not _ID_RE.match(container_id) or len(container_id) > 76:
            raise PermanentDriverError(
                self.target, f"{container_id!r} is not a valid containerd container id"
            )
        init = self._extension(spec.extensions.get(DRIVER_NAME, {}))
        host_pid = spec.security.host_pid
        existing = self._get_container(container_id)
        if existing is not None:
            return self._adopt(request, existing)
        image = self._image_config(spec.image)
        if spec.security.run_as_non_root:
            refusal = non_root_refusal(spec.security.user, image.user)
            if refusal:
                raise PermanentDriverError(self.target, f"create {container_id}: {refusal}")
        parent = _oci.chain_ids(image.diff_ids)[-1]
        # named volumes become binds of portway's directories (made here)
        mounted_spec, mounted = self.mountable_spec(request)
        api = self._client()
        created: list[str] = []
        ports: list[_net.PortMapping] = []
        try:
            with self._ports_lock:
                ports = self._choose_ports(request)
                labels = {
                    **request.labels(self.target),
                    LABEL_PORTS: _net.encode_ports(ports),
                    LABEL_IMAGE: spec.image,
                    **({LABEL_MOUNTS: mounted} if mounted else {}),
                }
                inp = _oci.SpecInput(
                    container_id=container_id,
                    spec=mounted_spec,
                    image=image,
                    user=_oci.User(0, 0),
                    netns_path=_net.netns_path(container_id),
                    cgroups_path=self._cgroup(container_id),
                    # outside a private PID namespace the command is not PID 1
                    init_binary=self._init_binary() if init and not host_pid else None,
                    **self._privileges(spec),
                )
                try:
                    runtime_spec = _oci.runtime_spec(inp)
                except ValueError as exc:
                    raise PermanentDriverError(self.target, f"{container_id}: {exc}") from None
                runtime_spec["mounts"] += self._secret_mounts(request)
                if spec.isolation is Isolation.SANDBOXED:
                    _sandbox.adapt_runtime_spec(runtime_spec)
                container = _api.containers.Container(
                    id=container_id,
                    labels=_api.map_field(_api.containers.Container, "labels", labels),
                    image=_oci.normalize_reference(spec.image),
                    runtime=runtime,
                    spec=_api.json_any(_api.SPEC_TYPE_URL, runtime_spec),
                    snapshotter=SNAPSHOTTER,
                    snapshot_key=container_id,
                )
                try:
                    with self._engine(f"create {container_id}"):
                        api.call(
                            api.containers.Create,
                            _api.containers.CreateContainerRequest(container=container),
                        )
                except _AlreadyExists:  # a concurrent create won
                    found = self._get_container(container_id)
                    if found is None:
                        raise
                    return self._adopt(request, found)
                created.append("container")
                # the container references its snapshot key, so containerd's
                # garbage collector keeps the snapshot from here on
                mounts = self._prepare_snapshot(container_id, parent)
                created.append("snapshot")
                user_text = spec.security.user or image.user
                if user_text:
                    self._set_user(container, runtime_spec, user_text, mounts, inp)
                if not spec.security.host_network:
                    with self._engine(f"network for {container_id}"):
                        created.append("network")
                        _net.setup(container_id, ports)
            held = [] if spec.security.host_network else ports
            self._create_task(container_id, runtime, held, mounts)
        except BaseException:
            self._rollback(container_id, created, ports)
            secret_files.remove(secret_files.Scope(self.name, self.target), container_id)
            raise
        return self._handle(container_id)

    def _secret_mounts(self, request: ReplicaRequest) -> list[dict[str, Any]]:
        """Read-only binds of the replica's secret files (on this host's tmpfs)."""
        placed = secret_files.materialize(
            secret_files.Scope(self.name, self.target), request.name, request.secret_files
        )
        return [
            {
                "destination": m.mount_path,
                "type": "bind",
                "source": m.host_path,
                "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
            }
            for m in placed
        ]

    def _runtime(self, container_id: str, isolation: Isolation) -> Any:
        """The container's runtime: always the runc shim; for the sandboxed tier
        with options that make the shim run runsc (through its wrapper) instead
        of runc."""
        if isolation is Isolation.STANDARD:
            return _api.containers.Container.Runtime(name=RUNTIME)
        offered = "'standard' and 'sandboxed' (gVisor)"
        if isolation is Isolation.SANDBOXED:
            wrapper = _sandbox.find_wrapper()
            if wrapper is not None:
                return _api.containers.Container.Runtime(
                    name=RUNTIME,
                    options=_api.any_message(
                        _sandbox.RUNC_OPTIONS_TYPE_URL, _sandbox.encode_runc_options(str(wrapper))
                    ),
                )
            offered = "only 'standard' here"
            reason = (
                f"the runsc wrapper {_sandbox.wrapper_path()} is missing or not executable "
                "(install runsc, then run scripts/gvisor.sh)"
            )
        elif isolation is Isolation.MICROVM:
            reason = "no micro-VM runtime (Firecracker or Kata) is installed for containerd"
        else:
            reason = "WebAssembly modules run on the wasm driver, not in containerd"
        raise PermanentDriverError(
            self.target,
            f"{container_id}: isolation {isolation.value!r} is not offered by the containerd "
            f"driver ({offered}): {reason}; place the workload on a target that offers it",
        )

    def check_extension(self, settings: Mapping[str, Any]) -> list[str]:
        try:
            self._extension(settings)
        except PermanentDriverError as exc:
            return [str(exc).removeprefix(f"target {exc.target!r}: ")]
        return []

    def _extension(self, raw: Mapping[str, Any]) -> bool:
        unknown = sorted(set(raw) - set(_EXTENSION_KEYS))
        if unknown:
            raise PermanentDriverError(
                self.target,
                f"extensions.containerd.{unknown[0]} is not supported by the containerd driver "
                f"(supported keys: {', '.join(_EXTENSION_KEYS)})",
            )
        init = raw.get("init", True)
        if not isinstance(init, bool):
            raise PermanentDriverError(
                self.target, "extensions.containerd.init must be true or false"
            )
        return init

    @staticmethod
    def _privileges(spec: WorkloadSpec) -> dict[str, Any]:
        """What a privileged replica gets from this host: the capabilities in
        our bounding set (runc cannot grant more; containerd runs beside us),
        and the host's devices."""
        if not spec.security.privileged:
            return {}
        status = Path("/proc/self/status").read_text()
        return {
            "privileged_capabilities": _oci.bounding_capabilities(status),
            "host_devices": _oci.host_devices(),
        }

    def _init_binary(self) -> str | None:
        """A static init (tini) as PID 1 forwards SIGTERM and reaps zombies;
        without one, busybox httpd as PID 1 ignores SIGTERM."""
        for path in INIT_BINARIES:
            if Path(path).is_file():
                return str(Path(path).resolve())
        return None

    def _get_container(self, container_id: str) -> Any | None:
        api = self._client()
        try:
            with self._engine(f"inspect {container_id}"):
                return api.call(
                    api.containers.Get, _api.containers.GetContainerRequest(id=container_id)
                ).container
        except _NotFound:
            return None

    def _adopt(self, request: ReplicaRequest, container: Any) -> Handle:
        existing = _api.map_value(container.labels)
        wanted = request.labels(self.target)
        # containerd drops labels whose value is empty: missing == ""
        differ = sorted(k for k, v in wanted.items() if existing.get(k, "") != v)
        if differ:
            raise PermanentDriverError(
                self.target,
                f"a container named {request.name!r} already exists in containerd namespace "
                f"{self._namespace!r} but is not this replica (labels differ: "
                f"{', '.join(differ)}); remove it or rename it",
            )
        return self._handle(str(container.id))

    def _choose_ports(self, request: ReplicaRequest) -> list[_net.PortMapping]:
        if not request.spec.ports:
            return []
        api = self._client()
        with self._engine("list containers for ports"):
            listed = api.call(
                api.containers.List,
                _api.containers.ListContainersRequest(filters=[f'labels."{LABEL_MANAGED}"==true']),
            )
        taken: set[tuple[str, int]] = set()
        for container in listed.containers:
            for used in _net.decode_ports(_api.map_value(container.labels).get(LABEL_PORTS, "")):
                taken.add((used.protocol, used.host_port))
        chosen: list[_net.PortMapping] = []
        for port in request.spec.ports:
            protocol = str(port.protocol)
            if port.protocol not in (Protocol.TCP, Protocol.UDP):
                raise PermanentDriverError(self.target, f"protocol {protocol} is not supported")
            host_port = request.host_port(port.container_port, protocol)
            if host_port is None:
                try:
                    host_port = _ephemeral_port(port.host_ip, protocol, taken)
                except OSError as exc:
                    raise TemporaryDriverError(self.target, f"ports: {exc}") from exc
            elif (protocol, host_port) in taken or not _port_free(
                port.host_ip, host_port, protocol
            ):
                raise PortInUseError(
                    self.target,
                    f"create {request.name}: host port {port.host_ip}:{host_port}/{protocol} is "
                    "already in use on the engine's host; free it or choose another hostPort",
                )
            taken.add((protocol, host_port))
            chosen.append(_net.PortMapping(port.container_port, protocol, port.host_ip, host_port))
        return chosen

    def _prepare_snapshot(self, container_id: str, parent: str) -> list[Any]:
        api = self._client()
        request = _api.snapshots.PrepareSnapshotRequest(
            snapshotter=SNAPSHOTTER, key=container_id, parent=parent
        )
        action = f"prepare snapshot for {container_id}"
        try:
            with self._engine(action):
                return list(api.call(api.snapshots.Prepare, request).mounts)
        except _AlreadyExists:
            # left over by a create that died half-way: its container is ours now
            self._remove_snapshot(container_id)
        except _NotFound as exc:
            raise ImageNotFoundError(
                self.target,
                f"{action}: the image's layers are not unpacked for {SNAPSHOTTER} ({exc}); "
                "import the image again (scripts/engines-containerd.sh)",
            ) from exc
        with self._engine(action):
            return list(api.call(api.snapshots.Prepare, request).mounts)

    def _set_user(
        self,
        container: Any,
        runtime_spec: dict[str, Any],
        user_text: str,
        mounts: list[Any],
        inp: _oci.SpecInput,
    ) -> None:
        try:
            user = _oci.resolve_user(user_text, _oci.overlay_read_file(mounts))
        except ValueError as exc:
            raise PermanentDriverError(self.target, f"{container.id}: {exc}") from None
        if user == inp.user:
            return
        runtime_spec["process"]["user"] = {"uid": user.uid, "gid": user.gid}
        container.spec.CopyFrom(_api.json_any(_api.SPEC_TYPE_URL, runtime_spec))
        api = self._client()
        with self._engine(f"set user of {container.id}"):
            api.call(
                api.containers.Update,
                _api.containers.UpdateContainerRequest(
                    container=container, update_mask=_api.field_mask("spec")
                ),
            )

    def _create_task(
        self,
        container_id: str,
        runtime: Any,
        ports: list[_net.PortMapping],
        mounts: list[Any] | None = None,
    ) -> None:
        """``runtime`` is the container record's: its options (runsc for a
        sandboxed replica) go to the shim with every new task, so a restart
        after a controller restart runs in the same tier. The task's logger
        keeps the published host ``ports`` bound while the task exists."""
        api = self._client()
        if mounts is None:
            with self._engine(f"mounts of {container_id}"):
                mounts = list(
                    api.call(
                        api.snapshots.Mounts,
                        _api.snapshots.MountsRequest(snapshotter=SNAPSHOTTER, key=container_id),
                    ).mounts
                )
        log = self._log_path(container_id)
        with self._engine(f"create task {container_id}"):
            log.parent.mkdir(parents=True, exist_ok=True)
            # binary:// makes the runc shim start our logger with the task's
            # stdout and stderr pipes: no copier in this process, output
            # survives us, and the streams stay apart. The shim takes the URI
            # from stdout (both are set alike); its query arrives as arguments.
            query = {"path": str(log), **({"hold": _net.held_ports(ports)} if ports else {})}
            uri = f"binary://{quote(str(self._logger_binary()))}?{urlencode(query)}"
            api.call(
                api.tasks.Create,
                _api.tasks.CreateTaskRequest(
                    container_id=container_id,
                    rootfs=mounts,
                    stdout=uri,
                    stderr=uri,
                    options=runtime.options if runtime.HasField("options") else None,
                ),
            )

    def _logger_binary(self) -> Path:
        """The executable the shims start as the tasks' logger: a wrapper that runs
        this Python on ``_logger.py``. Its name carries a hash of its content, so
        portway installations sharing the host (another checkout, CI's clone)
        never overwrite each other's; it is written atomically if missing."""
        with self._logger_lock:
            if self._logger_path is not None and self._logger_path.is_file():
                return self._logger_path
            python = sys.executable
            if not python or not Path(python).is_absolute():
                raise PermanentDriverError(
                    self.target, f"no absolute path to this Python ({python!r}) for the logger"
                )
            script = _logger.wrapper_script(python, str(Path(_logger.__file__).resolve()))
            digest = hashlib.sha256(script.encode()).hexdigest()[:12]
            path = STATE_DIR / "bin" / f"{LOGGER_NAME}-{digest}"
            if not (path.is_file() and os.access(path, os.X_OK)):
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
                try:
                    temporary.write_text(script)
                    temporary.chmod(0o755)
                    temporary.replace(path)
                finally:
                    temporary.unlink(missing_ok=True)
            self._logger_path = path
            return path

    def _rollback(self, container_id: str, created: list[str], ports: list[Any]) -> None:
        with contextlib.suppress(DriverError):
            self._delete_task(container_id)
        if "network" in created:
            _net.teardown(container_id, ports)
        if "snapshot" in created:
            with contextlib.suppress(DriverError):
                self._remove_snapshot(container_id)
        if "container" in created:
            with contextlib.suppress(DriverError):
                self._delete_container(container_id)
            shutil.rmtree(self._state_dir(container_id), ignore_errors=True)

    # --- lifecycle ------------------------------------------------------------------

    def _task(self, container_id: str) -> Any | None:
        api = self._client()
        try:
            with self._engine(f"task of {container_id}"):
                return api.call(
                    api.tasks.Get, _api.tasks.GetRequest(container_id=container_id)
                ).process
        except _NotFound:
            return None

    def start(self, handle: Handle) -> None:
        self._check(handle)
        container = self._get_container(handle.id)
        if container is None:
            raise ReplicaGoneError(self.target, f"start {handle.name}: no such container")
        task = self._task(handle.id)
        if task is not None and task.status in (_RUNNING, _PAUSED, 5):
            return
        if task is not None and task.status != _CREATED:
            self._delete_task(handle.id)  # exited: a new task restarts it
            task = None
        if task is None:
            ports: list[_net.PortMapping] = []
            if not _on_host_network(container):
                ports = _net.decode_ports(_api.map_value(container.labels).get(LABEL_PORTS, ""))
                if not Path(_net.netns_path(handle.id)).exists():
                    with self._engine(f"network for {handle.id}"):
                        _net.setup(handle.id, ports)
            self._create_task(handle.id, container.runtime, ports)
        api = self._client()
        # taken before the start, so that started_at <= finished_at always
        begun = datetime.now(UTC)
        with self._engine(f"start {handle.name}"):
            api.call(api.tasks.Start, _api.tasks.StartRequest(container_id=handle.id))
            self._record_start(handle.id, begun)

    def _record_start(self, container_id: str, when: datetime) -> None:
        path = self._state_file(container_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".state.{uuid.uuid4().hex}")
        try:
            temporary.write_text(json.dumps({"started_at": when.isoformat()}))
            temporary.replace(path)
        finally:
            temporary.unlink(missing_ok=True)

    def _started_at(self, container_id: str) -> datetime | None:
        """When the driver last started the replica's task, if it did."""
        try:
            recorded = json.loads(self._state_file(container_id).read_text())
            return datetime.fromisoformat(recorded["started_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def stop(self, handle: Handle, timeout: float) -> None:
        self._check(handle)
        task = self._task(handle.id)
        if task is None or task.status not in (_RUNNING, _PAUSED, 5):
            return
        if not self._kill_and_wait(handle.id, signal.SIGTERM, max(0.0, timeout), all_=False):
            self._kill_and_wait(handle.id, signal.SIGKILL, _KILL_WAIT_SECONDS, all_=True)

    def _kill_and_wait(
        self, container_id: str, sig: int, timeout: float, *, all_: bool, exec_id: str = ""
    ) -> bool:
        """Signal the task (or exec), then wait up to ``timeout``; True if it exited."""
        api = self._client()
        try:
            with self._engine(f"signal {container_id}"):
                api.call(
                    api.tasks.Kill,
                    _api.tasks.KillRequest(
                        container_id=container_id, exec_id=exec_id, signal=int(sig), all=all_
                    ),
                )
        except _NotFound:
            return True
        except PermanentDriverError as exc:
            if "not running" not in str(exc) and "process already finished" not in str(exc):
                raise
        return self._wait(container_id, timeout, exec_id) is not None

    def _wait(self, container_id: str, timeout: float, exec_id: str = "") -> int | None:
        """Exit status, or None if still running after ``timeout``."""
        api = self._client()
        try:
            with self._engine(f"wait for {container_id}"):
                answer = api.call(
                    api.tasks.Wait,
                    _api.tasks.WaitRequest(container_id=container_id, exec_id=exec_id),
                    timeout=max(timeout, 0.05),
                )
        except TemporaryDriverError:
            return None
        except _NotFound:
            return -1
        return int(answer.exit_status)

    def _delete_task(self, container_id: str) -> None:
        api = self._client()
        try:
            with self._engine(f"delete task {container_id}"):
                api.call(api.tasks.Delete, _api.tasks.DeleteTaskRequest(container_id=container_id))
        except _NotFound:
            return

    def _remove_snapshot(self, container_id: str) -> None:
        api = self._client()
        try:
            with self._engine(f"remove snapshot {container_id}"):
                api.call(
                    api.snapshots.Remove,
                    _api.snapshots.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=container_id),
                )
        except _NotFound:
            return

    def _delete_container(self, container_id: str) -> None:
        api = self._client()
        try:
            with self._engine(f"delete container {container_id}"):
                api.call(
                    api.containers.Delete, _api.containers.DeleteContainerRequest(id=container_id)
                )
        except _NotFound:
            return

    def destroy(self, handle: Handle) -> None:
        """Remove everything of the replica; idempotent, and complete even when
        some of it is already gone."""
        self._check(handle)
        try:
            self._destroy(handle)
        finally:
            secret_files.remove(secret_files.Scope(self.name, self.target), handle.name)

    def _destroy(self, handle: Handle) -> None:
        container = self._get_container(handle.id)
        ports = (
            _net.decode_ports(_api.map_value(container.labels).get(LABEL_PORTS, ""))
            if container is not None
            else []
        )
        task = self._task(handle.id)
        runsc = self._runsc_binary(container) if container is not None else None
        if task is not None and task.status == _CREATED and runsc is not None:
            self._end_created_sandbox(runsc, handle.id)
        elif task is not None and task.status != _STOPPED:
            self._kill_and_wait(handle.id, signal.SIGKILL, _KILL_WAIT_SECONDS, all_=True)
        self._delete_task(handle.id)  # the shim stops the task's logger and waits for it
        if runsc is not None:
            # runsc's gofer exits a few ms after its sandbox: gone before we return
            _sandbox.wait_gone(handle.id, _LOG_COMPLETE_WAIT_SECONDS)
        self._stop_loggers(handle.id)
        problems = [] if _on_host_network(container) else _net.teardown(handle.id, ports)
        self._delete_container(handle.id)
        self._remove_snapshot(handle.id)
        shutil.rmtree(self._state_dir(handle.id), ignore_errors=True)
        if problems:
            raise PermanentDriverError(
                self.target, f"destroy {handle.name}: network cleanup: {'; '.join(problems)}"
            )

    def _end_created_sandbox(self, runsc: str, container_id: str) -> None:
        """runsc cannot signal a container that was created but never started
        (runc can), and containerd deletes only a stopped task; so runsc itself
        tears the sandbox down, which the shim then reports as an exit."""
        with self._engine(f"end the sandbox of {container_id}: runsc delete"):
            _sandbox.force_delete(runsc, self._namespace, container_id)
        self._wait(container_id, _KILL_WAIT_SECONDS)

    def _stop_loggers(self, container_id: str) -> None:
        """End loggers still writing the replica's log once its task is gone (one
        can outlive a shim that died); normally there are none."""
        pids = _logger_pids(self._log_path(container_id))
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _LOG_COMPLETE_WAIT_SECONDS
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def recover(self, handle: Handle) -> ReplicaStatus | None:
        try:
            return self.inspect(handle)
        except ReplicaGoneError:
            return None

    # --- status ------------------------------------------------------------------

    def security_facts(self, handle: Handle) -> SecurityFacts:
        """From the OCI spec stored with the container: containerd keeps no
        other record of what the replica runs with."""
        self._check(handle)
        container = self._get_container(handle.id)
        if container is None:
            raise ReplicaGoneError(
                self.target, f"security facts of {handle.name}: no such container"
            )
        try:
            runtime_spec = json.loads(container.spec.value)
        except ValueError as exc:
            raise PermanentDriverError(
                self.target, f"security facts of {handle.name}: its stored spec is not JSON ({exc})"
            ) from None
        published = [
            (p.host_ip, p.host_port, p.container_port, p.protocol)
            for p in _net.decode_ports(_api.map_value(container.labels).get(LABEL_PORTS, ""))
        ]
        return _oci.facts_from_runtime_spec(runtime_spec, str(container.runtime.name), published)

    def inspect(self, handle: Handle) -> ReplicaStatus:
        self._check(handle)
        container = self._get_container(handle.id)
        if container is None:
            raise ReplicaGoneError(self.target, f"inspect {handle.name}: no such container")
        return self._status(container, self._task(handle.id))

    def list_owned(self, selector: Mapping[str, str]) -> list[ReplicaStatus]:
        api = self._client()
        terms = [f'labels."{LABEL_MANAGED}"==true']
        # containerd drops labels whose value is empty, so ``k == ""`` means
        # "absent or empty" and is checked here, not by containerd
        terms += [f'labels."{k}"=={json.dumps(v)}' for k, v in selector.items() if v]
        empty = [k for k, v in selector.items() if not v]
        with self._engine("list containers"):
            listed = api.call(
                api.containers.List,
                _api.containers.ListContainersRequest(filters=[",".join(terms)]),
            )
            tasks = api.call(api.tasks.List, _api.tasks.ListTasksRequest())
        by_id = {str(t.id or t.container_id): t for t in tasks.tasks}
        if LABEL_WORKLOAD not in selector:  # a garbage-collection pass
            self._sweep_secret_files()
        statuses = [self._status(c, by_id.get(str(c.id))) for c in listed.containers]
        return [s for s in statuses if all(not s.labels.get(k) for k in empty)]

    def _sweep_secret_files(self) -> None:
        """Forget secret files of containers that are gone."""
        if not secret_files.has_files(secret_files.Scope(self.name, self.target)):
            return
        api = self._client()
        with self._engine("list containers"):
            every = api.call(api.containers.List, _api.containers.ListContainersRequest())
        secret_files.sweep(
            secret_files.Scope(self.name, self.target), {str(c.id) for c in every.containers}
        )

    def _status(self, container: Any, task: Any | None) -> ReplicaStatus:
        labels = _api.map_value(container.labels)
        labels.setdefault(LABEL_CLUSTER, "")  # containerd does not keep empty labels
        options = container.runtime.options
        labels[LABEL_RUNTIME] = _sandbox.handler_of(str(options.type_url), bytes(options.value))
        cid = str(container.id)
        ports = tuple(
            PublishedPort(p.container_port, p.protocol, p.host_ip, p.host_port)
            for p in _net.decode_ports(labels.get(LABEL_PORTS, ""))
        )
        created_at = _timestamp(container.created_at)
        image = labels.get(LABEL_IMAGE, str(container.image))
        if task is None:
            return ReplicaStatus(
                handle=self._handle(cid),
                labels=labels,
                state=ReplicaState.EXITED,
                error="the container has no task (its process is gone)",
                created_at=created_at,
                started_at=self._started_at(cid),
                ports=ports,
                image=image,
            )
        state = _STATES.get(int(task.status), ReplicaState.UNKNOWN)
        exited = state is ReplicaState.EXITED
        # a created task has not run: a recorded time is of an earlier task
        started = state in (ReplicaState.RUNNING, ReplicaState.PAUSED, ReplicaState.EXITED)
        return ReplicaStatus(
            handle=self._handle(cid),
            labels=labels,
            state=state,
            exit_code=int(task.exit_status) if exited else None,
            oom_killed=exited and self._oom_killed(cid),
            created_at=created_at,
            started_at=self._started_at(cid) if started else None,
            finished_at=_timestamp(task.exited_at) if exited else None,
            ports=ports,
            image=image,
        )

    def _oom_killed(self, container_id: str) -> bool:
        """cgroup v1: the kernel's OOM-kill counter of the replica's memory cgroup
        (it lives until the task is deleted)."""
        path = (
            CGROUP_ROOT / "memory" / self._cgroup(container_id).lstrip("/") / "memory.oom_control"
        )
        try:
            text = path.read_text()
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
        return False

    # --- LogSource ----------------------------------------------------------------

    def logs(
        self,
        handle: Handle,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        """Lines of the replica's output, each with its stream and the time the
        logger read it (``_logger`` writes them). ``tail`` keeps the last lines,
        ``since`` the lines read at or after it (a naive time is UTC). Once the
        task has exited, reading waits (up to 2s) until the logger has drained
        the pipes, so no last line is missed. ``follow`` goes on until ``stop``
        is set, or the task has exited and the file is drained. A line longer
        than 64 KiB comes in pieces."""
        self._check(handle)
        if self._get_container(handle.id) is None:
            raise ReplicaGoneError(self.target, f"logs of {handle.name}: no such container")
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return until_stopped(self._log_lines(handle, follow, tail, since, stop), stop)

    def _task_live(self, container_id: str) -> bool:
        task = self._task(container_id)
        return task is not None and int(task.status) in _LIVE

    def _log_lines(
        self,
        handle: Handle,
        follow: bool,
        tail: int | None,
        since: datetime | None,
        stop: threading.Event | None,
    ) -> Iterator[LogLine]:
        path = self._log_path(handle.id)
        # decided before reading: once the task has ended and its logger has
        # drained the pipes, the file holds all the output there will be
        complete = (
            not follow
            and not self._task_live(handle.id)
            and _logger.wait_complete(path, _LOG_COMPLETE_WAIT_SECONDS)
        )
        try:
            stream = path.open("rb")
        except FileNotFoundError:
            return
        pending = b""

        def lines(data: bytes, final: bool) -> Iterator[LogLine]:
            nonlocal pending
            records, pending = _logger.read_records(pending + data)
            if final and pending:  # no more will come: an unfinished line is all there is
                records.append(_logger.decode(pending))
                pending = b""
            for record in records:
                if since is None or record.timestamp is None or record.timestamp >= since:
                    yield LogLine(record.timestamp, record.stream, record.text)

        with stream:
            if tail is not None:
                size = os.fstat(stream.fileno()).st_size
                stream.seek(_logger.tail_offset(stream.fileno(), size, tail))
            yield from lines(stream.read(), complete)
            if not follow:
                return
            last_check = 0.0
            while not (stop is not None and stop.is_set()):
                chunk = stream.read()
                if chunk:
                    yield from lines(chunk, False)
                    continue
                now = time.monotonic()
                if now - last_check >= _TASK_CHECK_SECONDS:
                    last_check = now
                    if not self._task_live(handle.id):
                        final = _logger.wait_complete(path, _LOG_COMPLETE_WAIT_SECONDS)
                        yield from lines(stream.read(), final)
                        return
                if stop is not None:
                    stop.wait(_FOLLOW_POLL_SECONDS)
                else:
                    time.sleep(_FOLLOW_POLL_SECONDS)

    # --- Executor -------------------------------------------------------------------

    def exec(self, handle: Handle, command: list[str], timeout: float = 30.0) -> ExecResult:
        """Run ``command`` in the replica with the replica's user, env and
        capabilities. Past ``timeout`` it is killed and the result has exit code
        124 and the output so far."""
        self._check(handle)
        container = self._get_container(handle.id)
        if container is None:
            raise ReplicaGoneError(self.target, f"exec in {handle.name}: no such container")
        process = json.loads(bytes(container.spec.value))["process"]
        process["args"] = list(command)
        process["terminal"] = False
        exec_id = f"pwexec-{uuid.uuid4().hex[:12]}"
        api = self._client()
        action = f"exec in {handle.name}"
        runsc = self._runsc_binary(container)
        # in a sandbox: the newest pid before and after the start, which
        # bracket the exec's own (see _sandbox); None: not known
        after = self._newest_in_sandbox(runsc, handle.id) if runsc else None
        upto: int | None = None
        with contextlib.ExitStack() as stack:
            with self._engine(action):
                directory = self._state_dir(handle.id)
                directory.mkdir(parents=True, exist_ok=True)
                output = stack.enter_context(_exec_output.ExecOutput(directory, exec_id))
            with self._engine(action):
                api.call(
                    api.tasks.Exec,
                    _api.tasks.ExecProcessRequest(
                        container_id=handle.id,
                        exec_id=exec_id,
                        stdout=output.stdout,
                        stderr=output.stderr,
                        spec=_api.json_any(_api.PROCESS_TYPE_URL, process),
                    ),
                )
            try:
                with self._engine(action):
                    api.call(
                        api.tasks.Start,
                        _api.tasks.StartRequest(container_id=handle.id, exec_id=exec_id),
                    )
                output.start()
                if runsc is not None and after is not None:
                    upto = self._newest_in_sandbox(runsc, handle.id)
                code = self._wait(handle.id, timeout, exec_id)
                if code is None:
                    if runsc is not None and after is not None and upto is not None:
                        self._kill_in_sandbox(runsc, handle.id, after, upto)
                    self._kill_and_wait(
                        handle.id, signal.SIGKILL, _KILL_WAIT_SECONDS, all_=False, exec_id=exec_id
                    )
                    code = EXEC_TIMEOUT_EXIT_CODE
            finally:
                # deleting the process waits (up to 2s) for the shim's copiers,
                # then closes its ends of the fifos
                with contextlib.suppress(DriverError), self._engine(action):
                    api.call(
                        api.tasks.DeleteProcess,
                        _api.tasks.DeleteProcessRequest(container_id=handle.id, exec_id=exec_id),
                    )
            return ExecResult(code, output.result(_EXEC_OUTPUT_WAIT_SECONDS))

    def _runsc_binary(self, container: Any) -> str | None:
        """The runsc (wrapper) a sandboxed container's shim runs; None under runc."""
        options = container.runtime.options
        handler = _sandbox.handler_of(str(options.type_url), bytes(options.value))
        if handler != _sandbox.SANDBOXED_HANDLER:
            return None
        return _sandbox.decode_binary_name(bytes(options.value))

    def _newest_in_sandbox(self, runsc: str, container_id: str) -> int | None:
        """None when runsc cannot list the sandbox (e.g. the task is not
        running): the exec then fails or runs as it would, only a timeout
        cannot reach inside."""
        try:
            found = _sandbox.processes(runsc, self._namespace, container_id)
        except (OSError, subprocess.SubprocessError):
            return None
        return _sandbox.newest_pid(found)

    def _kill_in_sandbox(self, runsc: str, container_id: str, after: int, upto: int) -> None:
        """SIGKILL a timed-out exec inside its sandbox: the shim's own kill only
        reaches runsc's host-side proxy (see _sandbox). Best effort: the exec
        still ends with 124 if runsc cannot do it (the sandbox went away)."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = _sandbox.processes(runsc, self._namespace, container_id)
            _sandbox.kill(
                runsc, self._namespace, container_id, _sandbox.exec_tree(found, after, upto)
            )

    # --- StatsSource -----------------------------------------------------------------

    def stats(self, handle: Handle) -> Stats:
        """From the replica's cgroup v1 files (containerd runs on this host). A
        sandboxed replica's cgroup is its sandbox's: memory and CPU include
        gVisor's Sentry and gofer, which runsc places there too."""
        self._check(handle)
        relative = self._cgroup(handle.id).lstrip("/")
        memory = CGROUP_ROOT / "memory" / relative
        usage = _read_int(memory / "memory.usage_in_bytes")
        if usage is None:
            raise ReplicaGoneError(
                self.target, f"stats of {handle.name}: no cgroup (is the replica running?)"
            )
        inactive = 0
        with contextlib.suppress(OSError):
            for line in (memory / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "total_inactive_file" and value.isdigit():
                    inactive = int(value)
        if 0 < inactive < usage:
            usage -= inactive
        limit = _read_int(memory / "memory.limit_in_bytes")
        if limit is not None and limit >= 1 << 60:
            limit = None
        cpu = _read_int(CGROUP_ROOT / "cpuacct" / relative / "cpuacct.usage") or 0
        received, sent = self._network_counters(handle.id, relative)
        return Stats(
            cpu_seconds=cpu / 1e9,
            memory_bytes=usage,
            memory_limit_bytes=limit,
            pids=self._process_count(handle, relative),
            network_rx_bytes=received,
            network_tx_bytes=sent,
        )

    def _network_counters(self, container_id: str, cgroup: str) -> tuple[int | None, int | None]:
        """Bytes received and sent on the replica's own network namespace (a
        process of the replica sees it as its /proc/PID/net/dev). None for a
        replica on the host's network: it has no interfaces of its own."""
        if not Path(_net.netns_path(container_id)).exists():
            return None, None
        try:
            procs = (CGROUP_ROOT / "pids" / cgroup / "cgroup.procs").read_text().split()
        except OSError:
            return None, None
        for pid in procs:
            try:
                return _interface_totals((Path("/proc") / pid / "net" / "dev").read_text())
            except OSError:
                continue  # that process just ended: try the next one
        return None, None

    def _process_count(self, handle: Handle, cgroup: str) -> int | None:
        """The replica's processes. Under runsc the host cgroup holds the
        sandbox's own threads, not the workload's processes (and its usage
        figures include the Sentry and gofer): runsc ps counts those."""
        container = self._get_container(handle.id)
        runsc = self._runsc_binary(container) if container is not None else None
        if runsc is None:
            return _read_int(CGROUP_ROOT / "pids" / cgroup / "pids.current")
        try:
            return len(_sandbox.processes(runsc, self._namespace, handle.id)) or None
        except (OSError, subprocess.SubprocessError):
            return None


def _interface_totals(net_dev: str) -> tuple[int, int]:
    """Received and transmitted bytes over every interface but loopback, from
    the text of /proc/net/dev (two header lines, then ``name: rx_bytes ...``
    with transmitted bytes the ninth number)."""
    received = sent = 0
    for line in net_dev.splitlines()[2:]:
        name, _, numbers = line.partition(":")
        fields = numbers.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        received += int(fields[0])
        sent += int(fields[8])
    return received, sent


def _host_memory() -> int:
    """MemTotal of this host in bytes (0 if unreadable)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:  # noqa: PTH123
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0
