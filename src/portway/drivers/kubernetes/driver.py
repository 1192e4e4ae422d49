"""Kubernetes driver: one Pod per portway replica, applied server-side.

Why Pods and not Deployments: portway's controller already does what a
Deployment's controller would (replica count, rolling replacement one index
at a time, restarts with backoff, probes, placement across targets), and it
does it the same way on every backend. A Deployment would be a second
controller fighting the first (its own rollout, its own restarts, Pods with
random names that portway could not address by replica index). So the
cluster is a target like a Docker host: portway asks it for individual
replicas and watches them.

The driver protocol on Pods (docs/kubernetes-driver.md has the whole story):

- ``create``: server-side apply (``fieldManager=portway``, ``force``) of the
  Pod with a scheduling gate: admitted and validated, but not run; *created*.
- ``start``: apply the same manifest without the gate. Restarting an exited
  replica deletes its Pod and applies the manifest again under the same name
  (a Pod cannot run twice): same name and handle, fresh filesystem and logs.
- ``stop``: set ``activeDeadlineSeconds``; the kubelet stops the Pod with its
  grace period (``manifest.TERMINATION_GRACE_SECONDS``) and the Pod stays,
  *exited*, reason DeadlineExceeded, with the container's exit code.
- ``destroy``: delete the Pod at once (grace 0: ``stop`` was the graceful part).
- ``list_owned``, ``events``: a list+watch cache of the namespace's portway Pods.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream as k8s_stream

from portway.drivers.base import (
    LABEL_MANAGED,
    LABEL_PREFIX,
    DriverCapabilities,
    DriverEvent,
    ExecResult,
    Fingerprint,
    Handle,
    Health,
    LogLine,
    ReplicaRequest,
    ReplicaState,
    ReplicaStatus,
    RuntimeHandler,
)
from portway.drivers.engine_common import Json, obj, root_message, text
from portway.drivers.follow import until_stopped
from portway.drivers.kubernetes import manifest as pods
from portway.drivers.kubernetes.address import KubeAddress, parse_address
from portway.drivers.kubernetes.capabilities import capabilities_for
from portway.drivers.kubernetes.client import KubeApi, connect, shutdown_stream
from portway.drivers.kubernetes.fingerprint import (
    ClusterFacts,
    NodeImages,
    cluster_facts,
    node_images,
    normalize_image,
)
from portway.drivers.kubernetes.status import DRIVER_NAME, pod_view
from portway.drivers.kubernetes.streams import log_lines, run_exec
from portway.drivers.kubernetes.watch import PodCache, WatchEvent, label_selector, select
from portway.errors import (
    DriverError,
    ImageNotFoundError,
    InputError,
    PermanentDriverError,
    ReplicaGoneError,
    TargetUnavailableError,
    TemporaryDriverError,
)
from portway.spec.model import Isolation, VolumeType

__all__ = ["KubernetesDriver"]

log = logging.getLogger(__name__)

#: how old the nodes' image lists may be when ``create`` checks an image
IMAGES_MAX_AGE_SECONDS = 30.0
#: how long ``destroy`` and a restart wait for a deleted Pod to be gone
GONE_WAIT_SECONDS = 30.0
#: polling interval while waiting on the API server (seconds)
POLL_SECONDS = 0.2
#: how long a caller waits for the watch cache's first list before listing itself
SYNC_WAIT_SECONDS = 2.0


class KubernetesDriver:
    """Runs replicas as Pods in one namespace of one cluster (a kubeconfig context)."""

    name = DRIVER_NAME

    def __init__(
        self, target: str, address: str, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.target = target
        self.address = address
        try:
            self._address: KubeAddress = parse_address(address)
        except InputError as exc:
            raise PermanentDriverError(target, str(exc)) from None
        self._sleep = sleep
        self._lock = threading.Lock()
        self._api: KubeApi | None = None
        self._cache: PodCache | None = None
        self._facts: ClusterFacts | None = None
        self._images: tuple[NodeImages, ...] = ()
        self._images_at = 0.0

    def __repr__(self) -> str:
        return f"KubernetesDriver(target={self.target!r}, address={self.address!r})"

    # --- plumbing -------------------------------------------------------------

    def api(self) -> KubeApi:
        with self._lock:
            if self._api is None:
                self._api = KubeApi(connect(self._address, self.target), self.target)
            return self._api

    @property
    def namespace(self) -> str:
        return self.api().namespace

    def close(self) -> None:
        with self._lock:
            cache, self._cache = self._cache, None
            api, self._api = self._api, None
        if cache is not None:
            cache.close()
        if api is not None:
            api.close()

    def _pod_cache(self) -> PodCache:
        api = self.api()
        with self._lock:
            if self._cache is None:
                self._cache = PodCache(
                    _Source(api),
                    label_selector({LABEL_MANAGED: "true"}),
                    on_error=self._watch_failed,
                )
            cache = self._cache
        cache.start()
        return cache

    def _watch_failed(self, exc: BaseException) -> None:
        # the cache lists again after a pause; callers list directly meanwhile
        log.warning("target %s: watching Pods failed, listing again: %s", self.target, exc)

    def _handle(self, name: str) -> Handle:
        return Handle(driver=DRIVER_NAME, target=self.target, id=name, name=name)

    def _check(self, handle: Handle) -> None:
        if handle.driver != DRIVER_NAME:
            raise PermanentDriverError(
                self.target, f"handle {handle.name!r} belongs to driver {handle.driver!r}"
            )

    # --- fingerprint and capabilities -------------------------------------------

    def ping(self) -> None:
        self.api().version()

    def fingerprint(self) -> Fingerprint:
        try:
            facts = self._read_facts()
        except TargetUnavailableError as exc:
            return Fingerprint(Health.UNDETECTED, detail=str(exc))
        except DriverError as exc:
            return Fingerprint(Health.UNHEALTHY, detail=str(exc))
        return facts.fingerprint

    def _read_facts(self) -> ClusterFacts:
        api = self.api()
        version = api.version()
        nodes = api.nodes()
        try:
            classes = api.runtime_classes()
        except PermanentDriverError:  # forbidden, or node.k8s.io not served
            classes = []
        facts = cluster_facts(
            version,
            nodes,
            classes,
            api.namespace_object(),
            namespace_name=api.namespace,
            context=api.connection.context,
        )
        with self._lock:
            self._facts = facts
            self._images, self._images_at = facts.node_images, time.monotonic()
        return facts

    def capabilities(self) -> DriverCapabilities:
        facts = self._facts
        if facts is None:
            try:
                facts = self._read_facts()
            except DriverError:
                # nothing known yet: claim the standard tier and no host access
                return capabilities_for("", (RuntimeHandler(Isolation.STANDARD.value, ""),))
        return capabilities_for(facts.pod_security, facts.handlers)

    def _runtime_class(self, request: ReplicaRequest) -> str | None:
        tier = Isolation(request.spec.isolation)
        if tier is Isolation.STANDARD:
            return None
        handler = self.capabilities().handler_for(tier.value)
        if handler is None or not handler.handler:
            raise PermanentDriverError(
                self.target,
                f"create {request.name}: the cluster has no RuntimeClass for the {tier.value} "
                "tier (gVisor: a class whose handler is runsc; micro-VM: kata)",
            )
        return handler.handler

    # --- images -------------------------------------------------------------------

    def _node_images(self) -> tuple[NodeImages, ...]:
        with self._lock:
            fresh = time.monotonic() - self._images_at < IMAGES_MAX_AGE_SECONDS
            if fresh and self._images:
                return self._images
        images = node_images(self.api().nodes())
        with self._lock:
            self._images, self._images_at = images, time.monotonic()
        return images

    def image_present(self, image: str) -> bool:
        """Whether some node has the image. A node lists at most 50 images
        (the kubelet's nodeStatusMaxImages): when a node's list is full, an
        image missing from it may still be there, so the answer is True."""
        wanted = normalize_image(image)
        images = self._node_images()
        if any(wanted in node.names for node in images):
            return True
        return bool(images) and not all(node.complete for node in images)

    # --- lifecycle ------------------------------------------------------------------

    def create(self, request: ReplicaRequest) -> Handle:
        api = self.api()
        self._refuse_unoffered(request)
        runtime_class = self._runtime_class(request)
        try:
            existing = api.get_pod(request.name)
        except ReplicaGoneError:
            existing = None
        if existing is not None:
            return self._adopt(request, existing)
        if not self.image_present(request.spec.image):
            raise ImageNotFoundError(
                self.target,
                f"create {request.name}: no node of the cluster has image {request.spec.image!r}. "
                "portway never pulls images; load it onto the nodes first "
                "(kind load docker-image, ctr images import, ...)",
            )
        manifest = pods.pod_manifest(
            request, self.target, namespace=api.namespace, runtime_class=runtime_class
        )
        api.apply_pod(pods.gated(manifest))
        return self._handle(request.name)

    def _refuse_unoffered(self, request: ReplicaRequest) -> None:
        """What the driver does not claim, refused here too (the planner
        refuses it first): a Pod rendered with it would mean something else."""
        problems = []
        if request.secret_files:
            problems.append("secret files (secrets.files) are not offered by this driver")
        for volume in request.spec.volumes:
            if volume.type is VolumeType.NAMED:
                problems.append(
                    f"volume {volume.name!r}: named volumes (PersistentVolumeClaims) are not "
                    "offered by this driver"
                )
            elif volume.type is VolumeType.BIND:
                problems.append(
                    f"volume {volume.name!r}: a bind mount would be a hostPath on whichever "
                    "node runs the Pod, not this host"
                )
        if problems:
            raise PermanentDriverError(
                self.target, f"create {request.name}: " + "; ".join(problems)
            )

    def _adopt(self, request: ReplicaRequest, pod: Json) -> Handle:
        found = obj(obj(pod.get("metadata")).get("labels"))
        wanted = request.labels(self.target)
        differ = sorted(k for k, v in wanted.items() if found.get(k) != v)
        if differ:
            raise PermanentDriverError(
                self.target,
                f"a Pod named {request.name!r} already exists in namespace {self.namespace!r} "
                f"but is not this replica (labels differ: {', '.join(differ)}); remove it",
            )
        return self._handle(request.name)

    def start(self, handle: Handle) -> None:
        self._check(handle)
        api = self.api()
        pod = api.get_pod(handle.id)
        view = pod_view(pod)
        manifest = pods.started(pod)
        if manifest is None:
            raise PermanentDriverError(
                self.target, f"start {handle.name}: the Pod carries no portway manifest"
            )
        if view.state is ReplicaState.CREATED:
            api.apply_pod(manifest)
        elif view.state is ReplicaState.EXITED:
            # a Pod runs once: start it again as a new Pod of the same name
            api.delete_pod(handle.id, 0, uid=view.uid)
            self._wait_gone(handle.id)
            api.apply_pod(manifest)
        elif view.state is ReplicaState.REMOVING:
            raise TemporaryDriverError(
                self.target, f"start {handle.name}: the Pod is being deleted", delay=1.0
            )
        # running, or the cluster is still starting it: nothing to do

    def _wait_gone(self, name: str) -> None:
        api = self.api()
        deadline = time.monotonic() + GONE_WAIT_SECONDS
        while time.monotonic() < deadline:
            try:
                api.get_pod(name)
            except ReplicaGoneError:
                cache = self._cache
                if cache is None or not cache.synced or cache.get(name) is None:
                    return
            self._sleep(POLL_SECONDS)
        raise TemporaryDriverError(
            self.target, f"Pod {name} is still there {GONE_WAIT_SECONDS:g}s after its deletion"
        )

    def inspect(self, handle: Handle) -> ReplicaStatus:
        self._check(handle)
        return pod_view(self.api().get_pod(handle.id)).replica_status(self.target)

    def stop(self, handle: Handle, timeout: float) -> None:
        """End a running replica and keep its Pod (exited, DeadlineExceeded).
        The kubelet kills after the Pod's own grace period, set at create;
        ``timeout`` only bounds how long this call waits for the exit."""
        self._check(handle)
        api = self.api()
        try:
            view = pod_view(api.get_pod(handle.id))
            if view.state in (ReplicaState.EXITED, ReplicaState.CREATED, ReplicaState.REMOVING):
                return
            if not view.node:
                return  # not scheduled: nothing runs, and a deadline would wait for a start
            # 1 s after the Pod started: passed already, so the kubelet acts now
            # (the field may only shrink, and 1 is its minimum)
            api.set_deadline(handle.id, 1)
            wait = max(timeout, 0) + pods.TERMINATION_GRACE_SECONDS + 10
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                state = pod_view(api.get_pod(handle.id)).state
                if state in (ReplicaState.EXITED, ReplicaState.REMOVING):
                    return
                self._sleep(POLL_SECONDS)
        except ReplicaGoneError:
            return
        raise TemporaryDriverError(
            self.target, f"stop {handle.name}: the Pod did not stop within {wait:g}s"
        )

    def destroy(self, handle: Handle) -> None:
        self._check(handle)
        with contextlib.suppress(ReplicaGoneError):
            self.api().delete_pod(handle.id, 0)
        self._wait_gone(handle.id)

    def recover(self, handle: Handle) -> ReplicaStatus | None:
        try:
            return self.inspect(handle)
        except ReplicaGoneError:
            return None

    def list_owned(self, selector: Mapping[str, str]) -> list[ReplicaStatus]:
        wanted = {LABEL_MANAGED: "true", **selector}
        cache = self._pod_cache()
        if cache.synced or cache.wait_synced(SYNC_WAIT_SECONDS):
            found = select(cache.pods(), wanted)
        else:  # the watch cannot list now: ask directly (and say why if that fails too)
            found, _ = self.api().list_pods(label_selector(wanted))
        return [pod_view(p).replica_status(self.target) for p in found]

    # --- LogSource ---------------------------------------------------------------

    def logs(
        self,
        handle: Handle,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        self._check(handle)
        since_seconds = None
        moment = None
        if since is not None:
            moment = since if since.tzinfo else since.replace(tzinfo=UTC)
            since_seconds = max(1, math.ceil((datetime.now(UTC) - moment).total_seconds()) + 1)
        if tail == 0 and not follow:
            return iter(())
        response = self.api().pod_log(
            handle.id,
            follow=follow,
            tail=None if tail is None else max(0, tail),
            since_seconds=since_seconds,
        )
        if stop is not None:
            closer = threading.Thread(
                target=_close_when_set,
                args=(stop, response),
                daemon=True,
                name="portway-kubernetes-logs",
            )
            closer.start()
        return until_stopped(self._guarded(log_lines(response, stop, moment), handle, stop), stop)

    def _guarded(
        self, lines: Iterator[LogLine], handle: Handle, stop: threading.Event | None
    ) -> Iterator[LogLine]:
        try:
            with self.api().call(f"logs of {handle.name}"):
                yield from lines
        except DriverError:
            if stop is not None and stop.is_set():
                return  # the stream was closed under the reader on purpose
            raise

    # --- Executor ------------------------------------------------------------------

    def exec(self, handle: Handle, command: list[str], timeout: float = 30.0) -> ExecResult:
        self._check(handle)
        api = self.api()
        action = f"exec in {handle.name}"
        try:
            ws = k8s_stream(
                api.core.connect_get_namespaced_pod_exec,
                handle.id,
                api.namespace,
                command=command,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                binary=True,
                _preload_content=False,
            )
        except ApiException as exc:
            raise _exec_refused(self.target, action, exc) from exc
        with api.call(action):
            result, problem = run_exec(ws, timeout)
        if problem:
            raise PermanentDriverError(self.target, f"{action}: {problem}")
        return result

    # --- EventSource -----------------------------------------------------------------

    def events(self, stop: threading.Event) -> Iterator[DriverEvent]:
        cache = self._pod_cache()
        inbox: queue.Queue[WatchEvent] = queue.Queue()
        unsubscribe = cache.subscribe(inbox.put)
        try:
            while not stop.is_set():
                try:
                    event = inbox.get(timeout=0.5)
                except queue.Empty:
                    continue
                yield _driver_event(event)
        finally:
            unsubscribe()


class _Source:
    """The API calls the watch cache makes."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api

    def list_pods(self, label_selector: str) -> tuple[list[Json], str]:
        return self._api.list_pods(label_selector)

    def watch_pods(self, label_selector: str, resource_version: str, timeout_seconds: int) -> Any:
        return self._api.watch_pods(label_selector, resource_version, timeout_seconds)


def _close_when_set(stop: threading.Event, response: Any) -> None:
    stop.wait()
    shutdown_stream(response)  # the reader sees the end and closes the response


_ACTIONS = {
    ReplicaState.RUNNING: "start",
    ReplicaState.EXITED: "die",
    ReplicaState.CREATED: "create",
    ReplicaState.REMOVING: "destroy",
}


def _driver_event(event: WatchEvent) -> DriverEvent:
    view = pod_view(event.pod)
    if event.kind == "DELETED":
        action = "destroy"
    elif event.kind == "ADDED" and view.state is ReplicaState.CREATED:
        action = "create"
    else:
        action = _ACTIONS.get(view.state, "update")
    return DriverEvent(
        labels={k: v for k, v in view.labels.items() if k.startswith(LABEL_PREFIX)},
        action=action,
        handle_id=view.name,
    )


def _exec_refused(target: str, action: str, exc: ApiException) -> DriverError:
    """The websocket client reports a refused handshake as status 0 with the
    HTTP status in its reason (``Handshake status 404 Not Found ...``)."""
    reason = text(str(exc.reason or ""))
    if "Handshake status 404" in reason:
        return ReplicaGoneError(target, f"{action}: {reason}")
    if "Handshake status 4" in reason:
        return PermanentDriverError(target, f"{action}: the API server refused: {reason}")
    return TargetUnavailableError(target, f"{action}: {root_message(exc)}", delay=2.0)
