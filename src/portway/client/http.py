"""A typed client of the portway server's REST API (``/v1``, JSON).

Thin on purpose: each method is one request and returns the decoded JSON
(the shapes are documented in docs/server.md); the CLI's remote mode turns
them into the objects its tables print. Failures become portway errors
(``client.errors``), so exit codes match local mode.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import httpx

from portway.client.errors import UnreachableError, error_from_response
from portway.client.streams import ServerSentEvent, iter_ndjson, iter_sse
from portway.errors import InputError

JSON = dict[str, Any]
Params = Mapping[str, str | int | float | bool | None]

#: seconds to connect; reads wait longer (apply plans on the server)
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 120.0


def _segment(value: str) -> str:
    # names are validated by the server; quoting keeps "a/b" one segment so
    # it is refused there as a bad name rather than routed somewhere else
    return quote(value, safe="")


def _why(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "connection refused" in lowered or "errno 111" in lowered:
        return "connection refused"
    if "certificate" in lowered:
        return f"TLS: {text} (give the server's CA with --ca-file)"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return text


class PortwayClient:
    """One server, one bearer token."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        ca_file: Path | None = None,
        insecure: bool = False,
        transport: httpx.BaseTransport | None = None,
        timeout: float = READ_TIMEOUT,
        per_request_headers: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        """``per_request_headers`` adds headers computed at each request (the
        CLI's trace context: the client itself knows nothing of tracing)."""
        self.server = server.rstrip("/")
        self._per_request_headers = per_request_headers
        verify: ssl.SSLContext | bool = True
        if insecure:
            verify = False
        elif ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise InputError(f"--ca-file {ca_file}: cannot load it as a CA: {exc}") from None
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PortwayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------

    def _unreachable(self, exc: httpx.TransportError) -> UnreachableError:
        return UnreachableError(
            f"cannot reach {self.server}: {_why(exc)}; "
            "`portway context use --local` for the embedded store"
        )

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        merged = dict(self._per_request_headers()) if self._per_request_headers else {}
        merged.update(headers or {})
        return merged

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One request; the decoded JSON answer (None for an empty one)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
        merged = self._headers(headers)
        if merged:
            extra["headers"] = merged
        try:
            response = self._http.request(method, path, params=cast(Any, query), json=body, **extra)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.is_error:
            raise error_from_response(response)
        if not response.content:
            return None
        return response.json()

    @contextlib.contextmanager
    def _stream(
        self, path: str, params: Params, headers: Mapping[str, str]
    ) -> Iterator[httpx.Response]:
        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self._http.stream(
                "GET",
                path,
                params=cast(Any, query),
                headers=self._headers(headers),
                timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),  # a follow may idle long
            ) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _get(self, path: str, **params: str | int | float | bool | None) -> Any:
        return self.request("GET", path, params=params)

    @staticmethod
    def _items(answer: Any) -> list[JSON]:
        items = answer.get("items", []) if isinstance(answer, dict) else answer
        return [item for item in items or [] if isinstance(item, dict)]

    # --- cluster ----------------------------------------------------------------

    def healthz(self) -> Any:
        return self._get("/healthz")

    def whoami(self) -> JSON:
        return cast(JSON, self._get("/v1/whoami"))

    # --- workloads --------------------------------------------------------------

    def list_workloads(self, namespace: str | None) -> list[JSON]:
        if namespace is None:
            return self._items(self._get("/v1/workloads"))
        return self._items(self._get(f"/v1/namespaces/{_segment(namespace)}/workloads"))

    def get_workload(self, namespace: str, name: str) -> JSON:
        return cast(
            JSON, self._get(f"/v1/namespaces/{_segment(namespace)}/workloads/{_segment(name)}")
        )

    def apply(self, documents: Sequence[Any], file: str, *, dry_run: bool = False) -> JSON:
        body = {"documents": list(documents), "file": file, "dryRun": dry_run}
        return cast(JSON, self.request("POST", "/v1/apply", body=body))

    def plan(self, documents: Sequence[Any], file: str, targets: Sequence[str]) -> JSON:
        body = {"documents": list(documents), "file": file, "targets": list(targets)}
        return cast(JSON, self.request("POST", "/v1/plan", body=body))

    def delete_workload(self, namespace: str, name: str, *, dry_run: bool = False) -> Any:
        """``dry_run``: the server checks the delete and changes nothing."""
        return self.request(
            "DELETE",
            f"/v1/namespaces/{_segment(namespace)}/workloads/{_segment(name)}",
            params={"dryRun": "true"} if dry_run else None,
        )

    def replicas(self, namespace: str | None, workload: str | None = None) -> list[JSON]:
        if namespace is not None and workload is not None:
            path = f"/v1/namespaces/{_segment(namespace)}/workloads/{_segment(workload)}/replicas"
            return self._items(self._get(path))
        return self._items(self._get("/v1/replicas", namespace=namespace))

    def events(
        self,
        namespace: str | None = None,
        workload: str | None = None,
        limit: int = 50,
        filters: Mapping[str, str | float | None] | None = None,
    ) -> list[JSON]:
        """``filters``: the events routes' ``type``, ``reason``, ``target``, ``newerThan``."""
        return self._items(
            self._get(
                "/v1/events", namespace=namespace, workload=workload, limit=limit, **(filters or {})
            )
        )

    def watch_events(
        self,
        namespace: str | None = None,
        workload: str | None = None,
        since: int | None = None,
        filters: Mapping[str, str | float | None] | None = None,
    ) -> Iterator[ServerSentEvent]:
        """New events as they are recorded (after event id ``since`` if given)."""
        params: Params = {
            "namespace": namespace,
            "workload": workload,
            "since": since,
            **(filters or {}),
        }
        with self._stream("/v1/watch/events", params, {"Accept": "text/event-stream"}) as r:
            yield from iter_sse(r.iter_lines())

    def logs(
        self,
        namespace: str,
        name: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        replica: int | None = None,
        since: str | None = None,
        target: str | None = None,
    ) -> Iterator[JSON]:
        """Log lines ``{time, workload, replica, target, stream, line}`` merged
        in time order by the server; ``since`` a duration (10m) or RFC 3339 time."""
        path = f"/v1/namespaces/{_segment(namespace)}/workloads/{_segment(name)}/logs"
        params: Params = {
            "follow": follow,
            "tail": tail,
            "replica": replica,
            "since": since,
            "target": target,
        }
        with self._stream(path, params, {"Accept": "application/x-ndjson"}) as response:
            try:
                yield from iter_ndjson(response.iter_lines())
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from exc

    def exec(
        self, namespace: str, name: str, replica: int, command: Sequence[str], timeout: float
    ) -> JSON:
        path = f"/v1/namespaces/{_segment(namespace)}/workloads/{_segment(name)}/exec"
        body = {"replica": replica, "command": list(command), "timeout": timeout}
        return cast(JSON, self.request("POST", path, body=body, timeout=timeout + 30))

    def watch_workloads(
        self, namespace: str | None = None, since: int | str | None = None
    ) -> Iterator[ServerSentEvent]:
        params: Params = {"namespace": namespace, "since": since}
        with self._stream("/v1/watch/workloads", params, {"Accept": "text/event-stream"}) as r:
            yield from iter_sse(r.iter_lines())

    # --- targets ----------------------------------------------------------------

    def targets(self) -> list[JSON]:
        return self._items(self._get("/v1/targets"))

    def add_target(self, body: JSON) -> JSON:
        return cast(JSON, self.request("POST", "/v1/targets", body=body))

    def set_target(self, name: str, body: JSON) -> JSON:
        return cast(JSON, self.request("PATCH", f"/v1/targets/{_segment(name)}", body=body))

    def target_action(self, name: str, action: str) -> JSON:
        answer = self.request("POST", f"/v1/targets/{_segment(name)}/{action}")
        return cast(JSON, answer or {})

    def remove_target(self, name: str, *, force: bool) -> JSON:
        answer = self.request("DELETE", f"/v1/targets/{_segment(name)}", params={"force": force})
        return cast(JSON, answer or {})

    # --- secrets ----------------------------------------------------------------

    def secrets(self, namespace: str | None) -> list[JSON]:
        """Names, keys, sizes and versions (the server never sends values)."""
        if namespace is None:
            return self._items(self._get("/v1/secrets"))
        return self._items(self._get(f"/v1/namespaces/{_segment(namespace)}/secrets"))

    def put_secret(
        self, namespace: str, name: str, data: Mapping[str, bytes], *, create_only: bool
    ) -> JSON:
        """Create the secret or replace all its values; ``create_only``
        refuses (409) a name that exists, as ``secret create`` without --update."""
        path = f"/v1/namespaces/{_segment(namespace)}/secrets/{_segment(name)}"
        body = {"data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items()}}
        headers = {"If-None-Match": "*"} if create_only else None
        return cast(JSON, self.request("PUT", path, body=body, headers=headers))

    def delete_secret(self, namespace: str, name: str) -> JSON:
        path = f"/v1/namespaces/{_segment(namespace)}/secrets/{_segment(name)}"
        return cast(JSON, self.request("DELETE", path))

    # --- access -----------------------------------------------------------------

    def tokens(self) -> list[JSON]:
        return self._items(self._get("/v1/tokens"))

    def create_token(self, body: JSON) -> JSON:
        return cast(JSON, self.request("POST", "/v1/tokens", body=body))

    def revoke_token(self, token_id: str) -> Any:
        return self.request("DELETE", f"/v1/tokens/{_segment(token_id)}")

    def audit(
        self, *, user: str | None = None, namespace: str | None = None, limit: int = 100
    ) -> list[JSON]:
        return self._items(self._get("/v1/audit", user=user, namespace=namespace, limit=limit))
