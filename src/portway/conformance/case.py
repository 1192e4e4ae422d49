"""Conformance cases and what they run with.

A ``Case`` is one behaviour, checked against a real engine through one
driver: it names the features it proves (in the shared vocabulary) and
raises ``CaseFailed`` when the engine behaves wrongly. Cases are grouped the
way cri-tools' critest and the Kubernetes node conformance tests are
(lifecycle, command, ports, volumes, probes, restart, security, resources,
logs, exec, stats) and registered in that order with the ``case`` decorator.

A ``Context`` is what one case runs with: the driver, a namespace of its own
(every replica it makes carries it as the owner label, which is how
``cleanup`` finds them), helpers that talk to replicas through ports
published on 127.0.0.1 only, and ``controller`` for features portway's
controller provides (restart policies, probes).
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.client
import importlib
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, urlparse

from portway.capabilities.vocabulary import FEATURES, ISOLATION_FEATURES, TIER_FEATURES, Feature
from portway.drivers.base import (
    LABEL_NAMESPACE,
    Driver,
    DriverCapabilities,
    Executor,
    Handle,
    LogSource,
    ReplicaRequest,
    ReplicaState,
    ReplicaStatus,
    StatsSource,
)
from portway.errors import InputError, PortwayError
from portway.spec.model import VolumeType, Workload, WorkloadSpec
from portway.spec.services import service_aliases
from portway.spec.volumes import native_volume_name

from .failures import CaseFailed, expect
from .harness import ControllerHarness

__all__ = [
    "CONTAINER_TIERS",
    "DEFAULT_IMAGE",
    "GROUPS",
    "Case",
    "CaseFailed",
    "Context",
    "Finished",
    "all_cases",
    "case",
    "expect",
    "select_cases",
]

#: built by scripts/build-images.sh: busybox, CMD httpd -f -p 8080 -h /www
DEFAULT_IMAGE = "portway/busybox:latest"
#: what the image's httpd serves at /
DEFAULT_IMAGE_TEXT = "hello from portway"
#: the port the image's httpd listens on
HTTP_PORT = 8080
#: the only address the suite ever sends traffic to
LOOPBACK = "127.0.0.1"
#: the image's PATH (set by build-images.sh); engines must keep it when env is set
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: groups in the order they run; each lives in ``cases_<module>.py``
GROUPS: tuple[str, ...] = (
    "lifecycle",
    "command",
    "ports",
    "services",
    "networks",
    "volumes",
    "secrets",
    "probes",
    "restart",
    "security",
    "resources",
    "logs",
    "exec",
    "stats",
)
_MODULES = (
    "cases_lifecycle",
    "cases_command",
    "cases_ports",
    "cases_services",  # services.dns: a service's name in its namespace
    "cases_networks",  # networks.named: replicas sharing no network do not meet
    "cases_volumes",
    "cases_secrets",  # secrets.files: values as read-only tmpfs files
    "cases_probes",
    "cases_restart",
    "cases_security",
    "cases_host",  # privileged, host namespaces, seccomp, sysctls, runAsNonRoot
    "cases_resources",
    "cases_observe",  # logs, exec, stats
    "cases_wasm",  # the wasm tier's own cases (WASI modules, not busybox)
)


# --- cases -----------------------------------------------------------------


#: the tiers that run container images; a case runs in these unless it says otherwise
CONTAINER_TIERS: frozenset[str] = frozenset({"standard", "sandboxed", "microvm"})


def in_tier(features: Iterable[Feature], tier: str) -> tuple[Feature, ...]:
    """A case's features as seen in ``tier``: a case written for the standard
    tier proves, when its replicas run in another tier, that tier's isolation
    feature instead (the lifecycle cases prove that a tier runs replicas)."""
    own = TIER_FEATURES.get(tier, Feature.ISOLATION_STANDARD)
    return tuple(own if f is Feature.ISOLATION_STANDARD else f for f in features)


def declared_in_tier(capabilities: DriverCapabilities, tier: str) -> frozenset[Feature]:
    """What a driver claims for replicas run in ``tier``: the tier's features,
    with the isolation feature of that tier only (a column is one runtime)."""
    own = TIER_FEATURES.get(tier)
    isolation = ISOLATION_FEATURES
    return frozenset(f for f in capabilities.features_for(tier) if f not in isolation or f is own)


@dataclass(frozen=True)
class Case:
    id: str  # "<group>.<name>", e.g. "lifecycle.create_start"
    group: str
    title: str
    #: features this case proves: they are "pass" only if it (and every other
    #: case covering them) passes
    features: tuple[Feature, ...]
    run: Callable[[Context], None]
    #: features the case uses as instruments without proving them
    requires: tuple[Feature, ...] = ()
    #: isolation tiers the case runs in (a tier's column has only these cases)
    tiers: frozenset[str] = CONTAINER_TIERS

    def required_features(self, tier: str = "standard") -> frozenset[Feature]:
        """Everything a driver must declare for the case to run in ``tier``:
        the features proved, the instruments, and what controller features
        rely on."""
        needed = set(self.features) | set(self.requires)
        for feature in self.features:
            needed.update(FEATURES[feature].needs)
        return frozenset(in_tier(needed, tier))

    def features_in(self, tier: str) -> tuple[Feature, ...]:
        return in_tier(self.features, tier)


_REGISTRY: dict[str, Case] = {}


def case(
    case_id: str,
    title: str,
    *,
    features: Iterable[Feature] = (),
    requires: Iterable[Feature] = (),
    tiers: Iterable[str] = CONTAINER_TIERS,
) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    """Register the decorated function as a case, in definition order."""
    group, dot, name = case_id.partition(".")
    if group not in GROUPS or not dot or not name:
        raise ValueError(f"case id {case_id!r} must be '<group>.<name>' with a group of {GROUPS}")

    def register(run: Callable[[Context], None]) -> Callable[[Context], None]:
        if case_id in _REGISTRY:
            raise ValueError(f"case {case_id!r} is registered twice")
        _REGISTRY[case_id] = Case(
            case_id, group, title, tuple(features), run, tuple(requires), frozenset(tiers)
        )
        return run

    return register


def all_cases(tier: str = "standard") -> tuple[Case, ...]:
    """Every case written for isolation tier ``tier`` (default: the container
    cases), group by group in ``GROUPS`` order, then in definition order."""
    for module in _MODULES:
        importlib.import_module(f"{__package__}.{module}")
    order = {group: i for i, group in enumerate(GROUPS)}
    cases = [c for c in _REGISTRY.values() if tier in c.tiers]
    return tuple(sorted(cases, key=lambda c: order[c.group]))


def select_cases(only: Iterable[str] | None = None, tier: str = "standard") -> tuple[Case, ...]:
    """The cases ``only`` names, in suite order: each entry is a case id, a
    group name or a glob over case ids (``probes.*``, ``*tmpfs*``)."""
    cases = all_cases(tier)
    if only is None:
        return cases
    patterns = [p.strip() for p in only if p.strip()]
    chosen: set[str] = set()
    unknown: list[str] = []
    for pattern in patterns:
        hits = {c.id for c in cases if c.group == pattern or fnmatch.fnmatchcase(c.id, pattern)}
        if not hits:
            unknown.append(pattern)
        chosen |= hits
    if unknown:
        raise InputError(
            f"no conformance case matches {', '.join(map(repr, unknown))}; groups: "
            f"{', '.join(GROUPS)} (or a case id, or a glob such as 'probes.*')"
        )
    return tuple(c for c in cases if c.id in chosen)


# --- context ---------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A replica that ran to its end, and what it printed (if the driver can tell)."""

    status: ReplicaStatus
    output: str


@runtime_checkable
class VolumeRemover(Protocol):
    """Optional driver method: remove one named volume (missing: not an error)."""

    def remove_volume(self, name: str) -> None: ...


@runtime_checkable
class NetworkRemover(Protocol):
    """Optional driver method: remove a namespace's network (services.dns) if
    no container uses it; True when it is gone."""

    def remove_namespace_network(self, namespace: str, cluster: str = "") -> bool: ...


def new_namespace() -> str:
    return f"cf-{uuid.uuid4().hex[:8]}"


def new_cluster() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Context:
    """What one case runs with, on one target. ``cleanup`` removes everything
    the case made: replicas (by the namespace label), named volumes, temporary
    directories and controller stores."""

    driver: Driver
    cluster: str = field(default_factory=new_cluster)
    namespace: str = field(default_factory=new_namespace)
    image: str = DEFAULT_IMAGE
    #: the isolation tier every replica of the case runs in (unless its spec says)
    tier: str = "standard"
    #: graceful-stop timeout the case and its controller use
    stop_timeout: float = 2.0
    notes: list[str] = field(default_factory=list)
    #: what the driver declares for ``tier`` (see ``declared_in_tier``)
    declared: frozenset[Feature] = field(init=False)
    _volumes: list[str] = field(default_factory=list)
    _dirs: list[Path] = field(default_factory=list)
    _harnesses: list[ControllerHarness] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.declared = declared_in_tier(self.driver.capabilities(), self.tier)

    # --- requests and replicas ----------------------------------------------

    def spec(self, spec: Mapping[str, Any] | None = None) -> WorkloadSpec:
        """A spec from camelCase fields; ``image`` defaults to the test image
        and ``isolation`` to the tier under test."""
        return WorkloadSpec.model_validate(
            {"image": self.image, "isolation": self.tier, **(spec or {})}
        )

    def request(
        self,
        spec: Mapping[str, Any] | None = None,
        index: int = 0,
        generation: int = 1,
        *,
        workload: str = "w",
    ) -> ReplicaRequest:
        """What the controller would ask the driver for, cluster label and (for
        a service) the replica's names on the namespace network included."""
        model = self.spec(spec)
        self._track_volumes(model, workload, index)
        return ReplicaRequest(
            namespace=self.namespace,
            workload=workload,
            index=index,
            generation=generation,
            template_hash=model.template_hash(),
            spec=model,
            cluster=self.cluster,
            aliases=service_aliases(workload, self.namespace, model),
        )

    def track_volume(self, name: str) -> None:
        """Remove engine volume ``name`` at cleanup (one a case made itself)."""
        if name not in self._volumes:
            self._volumes.append(name)

    def _track_volumes(self, spec: WorkloadSpec, workload: str, index: int) -> None:
        for volume in spec.volumes:
            if volume.type is VolumeType.NAMED:
                # the documented naming rule (spec.volumes)
                name = native_volume_name(self.namespace, workload, volume, index)
                if name not in self._volumes:
                    self._volumes.append(name)

    def create(self, spec: Mapping[str, Any] | None = None, **kwargs: Any) -> Handle:
        return self.driver.create(self.request(spec, **kwargs))

    def run(self, spec: Mapping[str, Any] | None = None, **kwargs: Any) -> Handle:
        """Create and start one replica."""
        handle = self.create(spec, **kwargs)
        self.driver.start(handle)
        return handle

    def inspect(self, handle: Handle) -> ReplicaStatus:
        return self.driver.inspect(handle)

    # --- waiting ------------------------------------------------------------

    def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        what: str = "the condition held",
        *,
        detail: Callable[[], str] | None = None,
        interval: float = 0.05,
    ) -> float:
        """Poll until ``predicate()``; returns the seconds it took. After
        ``timeout``: ``CaseFailed`` saying what was awaited (and ``detail()``)."""
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started > timeout:
                extra = ""
                if detail is not None:
                    with contextlib.suppress(Exception):
                        extra = f"; {detail()}"
                raise CaseFailed(f"timed out after {timeout:g}s waiting until {what}{extra}")
            time.sleep(interval)
        return time.monotonic() - started

    def wait_status(
        self,
        handle: Handle,
        accept: Callable[[ReplicaStatus], bool],
        timeout: float,
        what: str,
    ) -> ReplicaStatus:
        """Inspect until ``accept(status)``; returns that status."""
        seen: list[ReplicaStatus] = []

        def check() -> bool:
            seen.append(self.driver.inspect(handle))
            return accept(seen[-1])

        self.wait_for(check, timeout, what, detail=lambda: describe(seen[-1]))
        return seen[-1]

    def wait_running(self, handle: Handle, timeout: float = 10.0) -> ReplicaStatus:
        return self.wait_status(
            handle, lambda s: s.state is ReplicaState.RUNNING, timeout, f"{handle.name} runs"
        )

    def wait_exited(self, handle: Handle, timeout: float = 15.0) -> ReplicaStatus:
        return self.wait_status(
            handle, lambda s: s.state is ReplicaState.EXITED, timeout, f"{handle.name} exits"
        )

    def finish(
        self, spec: Mapping[str, Any] | None = None, *, timeout: float = 15.0, **kwargs: Any
    ) -> Finished:
        """Run a replica to its end; its output is there for failure messages."""
        handle = self.run(spec, **kwargs)
        status = self.wait_exited(handle, timeout)
        return Finished(status, self.output(handle))

    def expect_exit(
        self,
        spec: Mapping[str, Any] | None,
        code: int,
        what: str,
        *,
        timeout: float = 15.0,
        **kwargs: Any,
    ) -> Finished:
        """Run a replica to its end and require exit code ``code``: scripts in
        cases exit 0 only when what they check inside the replica holds."""
        done = self.finish(spec, timeout=timeout, **kwargs)
        expect(
            done.status.exit_code == code,
            f"{what}: expected exit code {code}, got {done.status.exit_code}"
            f"{self.quote_output(done.output)}",
        )
        return done

    # --- diagnostics ----------------------------------------------------------

    def output(self, handle: Handle, lines: int = 20) -> str:
        """The replica's last lines if the driver declares and offers logs, else ""."""
        if Feature.LOGS not in self.declared or not isinstance(self.driver, LogSource):
            return ""
        try:
            found = list(self.driver.logs(handle, tail=lines))
        except PortwayError as exc:
            return f"(logs unavailable: {exc})"
        return "\n".join(f"{line.stream}: {line.text}" for line in found)

    @staticmethod
    def quote_output(output: str) -> str:
        if not output.strip():
            return ""
        text = output.strip().replace("\n", " | ")
        return f"; the replica printed: {text[:600]}"

    # --- optional driver protocols ----------------------------------------------

    def executor(self) -> Executor:
        if not isinstance(self.driver, Executor):
            raise CaseFailed(f"the {self.driver.name} driver declares exec but has no exec()")
        return self.driver

    def log_source(self) -> LogSource:
        if not isinstance(self.driver, LogSource):
            raise CaseFailed(f"the {self.driver.name} driver declares logs but has no logs()")
        return self.driver

    def stats_source(self) -> StatsSource:
        if not isinstance(self.driver, StatsSource):
            raise CaseFailed(f"the {self.driver.name} driver declares stats but has no stats()")
        return self.driver

    # --- the network: 127.0.0.1 only -----------------------------------------

    def published_port(
        self, status: ReplicaStatus, container_port: int, protocol: str = "tcp"
    ) -> int:
        """The host port ``container_port`` is published on; it must be on 127.0.0.1."""
        published = status.host_port_for(container_port, protocol)
        expect(
            published is not None,
            f"{protocol} port {container_port} is not reported as published "
            f"(reported: {describe_ports(status)})",
        )
        assert published is not None
        expect(
            published.host_ip == LOOPBACK,
            f"{protocol} port {container_port} is published on {published.host_ip!r}, "
            f"not on {LOOPBACK} as the spec asked",
        )
        expect(published.host_port > 0, f"{protocol} port {container_port} has host port 0")
        return published.host_port

    def http_get(self, port: int, path: str = "/", timeout: float = 5.0) -> str:
        """GET http://127.0.0.1:PORT/PATH, retrying connection failures while the
        server starts; returns the body of a 2xx answer."""
        status, body = self.http_request(port, path, timeout=timeout)
        expect(
            200 <= status < 300,
            f"GET http://{LOOPBACK}:{port}{path} answered {status}: {body[:200]!r}",
        )
        return body

    def http_request(self, port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
        """(status, body) of GET http://127.0.0.1:PORT/PATH; retries until an answer."""
        deadline = time.monotonic() + timeout
        while True:
            # http.client, not urllib: no proxy settings can send this elsewhere
            conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
            try:
                conn.request("GET", path, headers={"User-Agent": "portway-conformance"})
                response = conn.getresponse()
                return response.status, response.read().decode("utf-8", errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                if time.monotonic() > deadline:
                    raise CaseFailed(
                        f"GET http://{LOOPBACK}:{port}{path} got no answer within "
                        f"{timeout:g}s (last error: {exc!r})"
                    ) from None
                time.sleep(0.1)
            finally:
                conn.close()

    @staticmethod
    def free_port(count: int = 1, kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
        """A port P on 127.0.0.1 with P .. P+count-1 all free right now."""
        for _ in range(200):
            with socket.socket(socket.AF_INET, kind) as probe:
                probe.bind((LOOPBACK, 0))
                first = int(probe.getsockname()[1])
            if first + count - 1 > 65535:
                continue
            if all(_bindable(first + i, kind) for i in range(1, count)):
                return first
        raise CaseFailed(f"found no {count} consecutive free ports on {LOOPBACK}")

    # --- host resources -------------------------------------------------------

    def bind_dir(self) -> Path:
        """A fresh host directory for bind mounts, removed by ``cleanup``. The
        suite binds only directories it made (the engine must share this
        host's filesystem)."""
        path = Path(tempfile.mkdtemp(prefix=f"portway-{self.namespace}-"))
        path.chmod(0o777)  # replicas may run as another user
        self._dirs.append(path)
        return path

    # --- the controller -------------------------------------------------------

    def controller(self, workload: Mapping[str, Any], *, name: str = "w") -> ControllerHarness:
        """portway's controller over this driver, with ``workload`` applied.

        ``workload`` is a Workload document (``apiVersion``/``kind`` may be
        omitted; the namespace is always this context's), or just its spec.
        """
        document = dict(workload) if "spec" in workload else {"spec": dict(workload)}
        metadata = {"name": name, **dict(document.get("metadata", {}))}
        metadata["namespace"] = self.namespace
        spec = {"image": self.image, "isolation": self.tier, **dict(document["spec"])}
        model = Workload.model_validate(
            {"apiVersion": "portway.dev/v1", "kind": "Workload", **document}
            | {"metadata": metadata, "spec": spec}
        )
        for index in range(model.spec.replicas):
            self._track_volumes(model.spec, model.metadata.name, index)
        workdir = Path(tempfile.mkdtemp(prefix=f"portway-{self.namespace}-store-"))
        self._dirs.append(workdir)
        harness = ControllerHarness(
            self.driver,
            model,
            cluster=self.cluster,
            workdir=workdir,
            stop_timeout=self.stop_timeout,
        )
        self._harnesses.append(harness)
        return harness

    # --- cleanup --------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Remove everything the case made; returns problems (empty: all gone)."""
        problems: list[str] = []
        for harness in self._harnesses:
            try:
                harness.close()
            except Exception as exc:  # cleanup goes on; the problem is reported
                problems.append(f"closing the controller: {exc!r}")
        self._harnesses.clear()
        selector = {LABEL_NAMESPACE: self.namespace}
        for attempt in range(3):
            try:
                left = self.driver.list_owned(selector)
            except PortwayError as exc:
                problems.append(f"listing replicas to remove: {exc}")
                break
            if not left:
                break
            if attempt == 2:
                names = ", ".join(s.handle.name for s in left)
                problems.append(f"replicas still listed after destroy: {names}")
                break
            for status in left:
                try:
                    self.driver.destroy(status.handle)
                except PortwayError as exc:
                    problems.append(f"destroying {status.handle.name}: {exc}")
        for volume in self._volumes:
            problem = remove_volume(self.driver, volume)
            if problem:
                self.notes.append(problem)
        self._volumes.clear()
        problem = self._remove_network()
        if problem:
            problems.append(problem)
        for path in self._dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._dirs.clear()
        return problems

    def _remove_network(self) -> str:
        """The driver removes a namespace network with the namespace's last
        replica; make sure, since every network left takes a subnet from the
        engine's pool. Returns a problem ("" when none is left)."""
        if not isinstance(self.driver, NetworkRemover):
            return ""
        try:
            gone = self.driver.remove_namespace_network(self.namespace, self.cluster)
        except PortwayError as exc:
            return f"removing the namespace network: {exc}"
        return "" if gone else "the namespace network is still in use after cleanup"


# --- helpers ----------------------------------------------------------------


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def describe(status: ReplicaStatus) -> str:
    """A status in one line, for failure messages."""
    parts = [f"{status.handle.name}: state={status.state.value}"]
    if status.exit_code is not None:
        parts.append(f"exit_code={status.exit_code}")
    if status.oom_killed:
        parts.append("oom_killed")
    if status.error:
        parts.append(f"error={status.error!r}")
    return " ".join(parts)


def describe_ports(status: ReplicaStatus) -> str:
    return (
        ", ".join(
            f"{p.container_port}/{p.protocol} -> {p.host_ip}:{p.host_port}" for p in status.ports
        )
        or "none"
    )


def remove_volume(driver: Driver, name: str) -> str | None:
    """Remove a named volume a case made; returns a note if it may be left behind.

    The driver contract has no volume removal yet, so this uses the driver's
    ``remove_volume`` if it has one, else the Docker-compatible HTTP API of a
    Docker or Podman engine on a local unix socket.
    """
    if isinstance(driver, VolumeRemover):
        try:
            driver.remove_volume(name)
        except PortwayError as exc:
            return f"named volume {name!r} may be left behind: {exc}"
        return None
    address = str(getattr(driver, "address", ""))
    parsed = urlparse(address)
    scheme = parsed.scheme.partition("+")[0]
    if scheme not in ("docker", "podman") or parsed.scheme.endswith("+tcp") or not parsed.path:
        return (
            f"named volume {name!r} is left behind: the {driver.name} driver cannot remove "
            "volumes (no remove_volume) and its engine has no local Docker-compatible socket"
        )
    try:
        status = _unix_http(parsed.path, "DELETE", f"/volumes/{quote(name, safe='')}?force=true")
    except OSError as exc:
        return f"named volume {name!r} may be left behind: {exc}"
    if status not in (204, 404):
        return f"named volume {name!r} may be left behind: the engine answered HTTP {status}"
    return None


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _unix_http(path: str, method: str, url: str, timeout: float = 30.0) -> int:
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request(method, url)
        response = conn.getresponse()
        response.read()
        return response.status
    except http.client.HTTPException as exc:
        raise OSError(f"{method} {url} on {path}: {exc!r}") from exc
    finally:
        conn.close()
