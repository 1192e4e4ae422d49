"""The thin API layer: kubeconfig + context -> the official client, every
call answered as plain JSON (``_preload_content=False``), every failure turned
into portway's ``DriverError`` family in one place (``KubeApi.call``).

Raw JSON rather than the client's models: status mapping and fingerprinting
are pure functions over the API's own shapes, tested with recorded answers,
and a watch of many Pods is not deserialized into objects twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from portway.drivers.engine_common import Json, obj, root_message, text
from portway.drivers.kubernetes.address import KubeAddress
from portway.errors import (
    DriverError,
    PermanentDriverError,
    PortwayError,
    ReplicaGoneError,
    TargetUnavailableError,
)

# the SDK leaves its kubeconfig loaders unannotated
_list_contexts: Callable[..., tuple[Any, Any]] = k8s_config.list_kube_config_contexts
_load_config: Callable[..., None] = k8s_config.load_kube_config

#: who owns the fields portway applies (server-side apply)
FIELD_MANAGER = "portway"
#: a separate manager for the stop deadline, so that an apply by ``portway``
#: (which never names activeDeadlineSeconds) does not try to remove it
STOP_FIELD_MANAGER = "portway-stop"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_PATCH_CONTENT_TYPE = "application/merge-patch+json"
REQUEST_TIMEOUT_SECONDS = 30.0


class ConflictError(PermanentDriverError):
    """HTTP 409 (an object of that name exists, or an apply conflict)."""


class GoneError(DriverError):
    """HTTP 410: the resourceVersion a watch asked for is too old: list again."""


def kubeconfig_path(address: KubeAddress) -> str:
    """The kubeconfig file(s) the address means: its own, ``$KUBECONFIG``
    (which may list several, ``:``-separated), else ``~/.kube/config``."""
    return address.kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")


@dataclass(frozen=True)
class Connection:
    api_client: k8s.ApiClient
    context: str
    namespace: str
    server: str


def connect(address: KubeAddress, target: str) -> Connection:
    """Load the kubeconfig and context (no request is made yet)."""
    path = kubeconfig_path(address)
    try:
        contexts, current = _list_contexts(config_file=path)
        names = [text(obj(c).get("name")) for c in contexts or []]
        name = address.context or text(obj(current).get("name"))
        if name not in names:
            raise PermanentDriverError(
                target,
                f"kubeconfig {path} has no context {name!r}; it has: {', '.join(names) or 'none'}"
                " (portway target add NAME --driver kubernetes --context CTX)",
            )
        chosen = next(obj(c) for c in contexts if obj(c).get("name") == name)
        configuration = k8s.Configuration()
        _load_config(
            config_file=path,
            context=name,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        raise PermanentDriverError(
            target,
            f"cannot load kubeconfig {path} (context {address.context or 'current'}): "
            f"{root_message(exc)}",
        ) from exc
    namespace = address.namespace or text(obj(chosen.get("context")).get("namespace")) or "default"
    return Connection(k8s.ApiClient(configuration), name, namespace, str(configuration.host))


def _status_message(exc: ApiException) -> str:
    """The API's ``Status.message`` (e.g. ``pods "x" not found``), else the HTTP reason."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    try:
        message = text(obj(json.loads(body or "{}")).get("message"))
    except ValueError:
        message = str(body or "").strip()
    return message or str(exc.reason or "")


def read_json(response: Any) -> Json:
    """The body of a raw (not preloaded) response as a JSON object."""
    try:
        return obj(json.loads(response.data or b"{}"))
    finally:
        response.release_conn()


class KubeApi:
    """The handful of REST calls the driver makes, namespaced to one namespace."""

    def __init__(self, connection: Connection, target: str) -> None:
        self.connection = connection
        self.namespace = connection.namespace
        self.target = target
        api = connection.api_client
        self.core = k8s.CoreV1Api(api)
        self.node = k8s.NodeV1Api(api)
        self.version_api = k8s.VersionApi(api)

    def close(self) -> None:
        close: Callable[[], None] = self.connection.api_client.close  # unannotated in the SDK
        close()

    # --- errors -----------------------------------------------------------

    @contextmanager
    def call(self, action: str) -> Iterator[None]:
        """Translate every client/transport failure inside into a DriverError."""
        try:
            yield
        except PortwayError:
            raise
        except ApiException as exc:
            raise self.translate(exc, action) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TargetUnavailableError(
                self.target,
                f"{action}: the API server at {self.connection.server} is not reachable "
                f"({root_message(exc)})",
                delay=2.0,
            ) from exc

    def translate(self, exc: ApiException, action: str) -> DriverError:
        message = _status_message(exc)
        status = exc.status or 0
        where = f"{action}: {message}" if message else action
        if status == 0:
            return TargetUnavailableError(
                self.target,
                f"{action}: the API server at {self.connection.server} is not reachable "
                f"({exc.reason})",
                delay=2.0,
            )
        if status == 404:
            return ReplicaGoneError(self.target, where)
        if status == 409:
            return ConflictError(self.target, where)
        if status == 410:
            return GoneError(self.target, where)
        if status in (401, 403):
            return PermanentDriverError(
                self.target,
                f"{where} (HTTP {status}: the kubeconfig's user for context "
                f"{self.connection.context!r} may not do this in namespace {self.namespace!r})",
            )
        if status == 429 or status >= 500:
            return TargetUnavailableError(self.target, f"{where} (HTTP {status})", delay=2.0)
        return PermanentDriverError(self.target, f"{where} (HTTP {status})")

    def _json(self, action: str, request: Callable[[], Any]) -> Json:
        with self.call(action):
            return read_json(request())

    # --- cluster ------------------------------------------------------------

    def version(self) -> Json:
        return self._json(
            "read server version",
            lambda: self.version_api.get_code(
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS
            ),
        )

    def nodes(self) -> list[Json]:
        answer = self._json(
            "list nodes",
            lambda: self.core.list_node(
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS
            ),
        )
        return [obj(item) for item in answer.get("items") or []]

    def runtime_classes(self) -> list[Json]:
        answer = self._json(
            "list runtime classes",
            lambda: self.node.list_runtime_class(
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS
            ),
        )
        return [obj(item) for item in answer.get("items") or []]

    def namespace_object(self) -> Json | None:
        """The target namespace, or None when the user may not read it."""
        try:
            return self._json(
                f"read namespace {self.namespace}",
                lambda: self.core.read_namespace(
                    self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS
                ),
            )
        except PermanentDriverError as exc:
            if "HTTP 403" in str(exc):
                return None
            raise

    # --- pods -----------------------------------------------------------------

    def get_pod(self, name: str) -> Json:
        return self._json(
            f"read pod {name}",
            lambda: self.core.read_namespaced_pod(
                name,
                self.namespace,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            ),
        )

    def list_pods(self, label_selector: str) -> tuple[list[Json], str]:
        """The Pods and the list's resourceVersion (where a watch starts)."""
        answer = self._json(
            "list pods",
            lambda: self.core.list_namespaced_pod(
                self.namespace,
                label_selector=label_selector,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            ),
        )
        items = [obj(item) for item in answer.get("items") or []]
        return items, text(obj(answer.get("metadata")).get("resourceVersion"))

    def watch_pods(self, label_selector: str, resource_version: str, timeout_seconds: int) -> Any:
        """A streamed watch response (one JSON event per line); the caller
        reads and closes it. The server ends it after ``timeout_seconds``."""
        with self.call("watch pods"):
            return self.core.list_namespaced_pod(
                self.namespace,
                label_selector=label_selector,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=(REQUEST_TIMEOUT_SECONDS, timeout_seconds + 30),
            )

    def apply_pod(self, manifest: Json, *, dry_run: bool = False) -> Json:
        """Server-side apply as ``portway`` (force: portway's fields are
        portway's, whoever touched them since)."""
        name = text(obj(manifest.get("metadata")).get("name"))
        return self._json(
            f"apply pod {name}" + (" (dry run)" if dry_run else ""),
            lambda: self.core.patch_namespaced_pod(
                name,
                self.namespace,
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                dry_run="All" if dry_run else None,
                _content_type=APPLY_CONTENT_TYPE,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            ),
        )

    def set_deadline(self, name: str, seconds: int) -> Json:
        """Set ``spec.activeDeadlineSeconds``: the kubelet then stops the Pod
        (phase Failed, reason DeadlineExceeded) and the object stays."""
        return self._json(
            f"stop pod {name}",
            lambda: self.core.patch_namespaced_pod(
                name,
                self.namespace,
                {"spec": {"activeDeadlineSeconds": seconds}},
                field_manager=STOP_FIELD_MANAGER,
                _content_type=MERGE_PATCH_CONTENT_TYPE,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            ),
        )

    def delete_pod(self, name: str, grace_seconds: int, uid: str = "") -> None:
        """Delete (``uid``: only that incarnation of the name)."""
        body = k8s.V1DeleteOptions(
            grace_period_seconds=grace_seconds,
            preconditions=k8s.V1Preconditions(uid=uid) if uid else None,
        )
        self._json(
            f"delete pod {name}",
            lambda: self.core.delete_namespaced_pod(
                name,
                self.namespace,
                body=body,
                grace_period_seconds=grace_seconds,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            ),
        )

    def pod_log(
        self,
        name: str,
        *,
        follow: bool,
        tail: int | None,
        since_seconds: int | None,
    ) -> Any:
        """The streamed log response (RFC 3339 timestamps on every line)."""
        with self.call(f"logs of {name}"):
            return self.core.read_namespaced_pod_log(
                name,
                self.namespace,
                follow=follow,
                timestamps=True,
                tail_lines=tail,
                since_seconds=since_seconds,
                _preload_content=False,
                _request_timeout=None if follow else REQUEST_TIMEOUT_SECONDS,
            )


def shutdown_stream(response: Any) -> None:
    """Shut a streamed response's socket down, safe from any thread: a reader
    blocked on it sees end-of-stream and closes the response itself.
    (``close()`` from another thread would wait for the reader's lock.)"""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is None:  # urllib3 let go of the connection: reach the socket through http.client
        raw = getattr(getattr(getattr(response, "_fp", None), "fp", None), "raw", None)
        sock = getattr(raw, "_sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
