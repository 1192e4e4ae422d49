"""`portway apply` on Docker, run as a subprocess with OpenTelemetry's
standard endpoint variable, sends its spans over OTLP/HTTP to a receiver in
this test (127.0.0.1), which decodes them with opentelemetry-proto."""

from __future__ import annotations

import contextlib
import gzip
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.e2e import Portway, remove_namespace, workload_yaml

pytestmark = pytest.mark.docker


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    span_id: bytes
    parent_id: bytes
    trace_id: bytes
    attributes: dict[str, Any]
    service: str


@dataclass
class Receiver:
    """The traces endpoint of an OTLP/HTTP collector, keeping what it gets."""

    port: int = 0
    spans: list[ReceivedSpan] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def keep(self, path: str, body: bytes) -> None:
        request = _decode(body)
        self.paths.append(path)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    self.spans.append(
                        ReceivedSpan(
                            span.name,
                            span.span_id,
                            span.parent_span_id,
                            span.trace_id,
                            attributes,
                            resource.get("service.name", ""),
                        )
                    )


def _decode(body: bytes) -> Any:
    # imported here, with protobuf's pure-Python implementation chosen first:
    # a test process that imported protobuf otherwise could no longer load
    # the containerd driver's stubs (drivers/containerd/__init__.py)
    os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    return ExportTraceServiceRequest.FromString(body)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    kept = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            kept.keep(self.path, body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    kept.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kept
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def namespace(docker_driver: Any) -> Iterator[str]:
    ns = f"trace-{uuid.uuid4().hex[:8]}"
    yield ns
    client = docker.from_env(timeout=60)
    with contextlib.closing(client):
        remove_namespace(client, ns)


def test_apply_on_docker_exports_one_trace_down_to_the_engine(
    tmp_path: Path, namespace: str, receiver: Receiver
) -> None:
    pw = Portway(tmp_path)
    pw.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver.port}"
    text = workload_yaml("web", namespace, replicas=1, readiness=False)
    applied = pw.apply(text)
    assert "workload/web ready" in applied.stdout

    # the CLI flushes its batch at exit: everything is here once it returned
    assert set(receiver.paths) == {"/v1/traces"}
    by_id = {s.span_id: s for s in receiver.spans}
    [root] = [s for s in receiver.spans if s.name == "portway.apply"]
    assert root.parent_id == b""
    assert root.service == "portway"
    assert root.attributes["portway.workloads"] == [f"{namespace}/web"]
    assert root.attributes["portway.namespaces"] == [namespace]

    def chain(span: ReceivedSpan) -> list[str]:
        names = [span.name]
        while span.parent_id:
            span = by_id[span.parent_id]
            names.append(span.name)
        return names

    [create] = [s for s in receiver.spans if s.name == "portway.driver.create"]
    assert chain(create) == ["portway.driver.create", "portway.reconcile", "portway.apply"]
    assert create.attributes["portway.driver"] == "docker"
    assert create.attributes["portway.workload"] == f"{namespace}/web"
    [start] = [s for s in receiver.spans if s.name == "portway.driver.start"]
    assert chain(start) == ["portway.driver.start", "portway.reconcile", "portway.apply"]
    names = {s.name for s in receiver.spans if s.trace_id == root.trace_id}
    assert {"portway.validate", "portway.write", "portway.schedule", "portway.plan"} <= names
    assert "portway.driver.list_owned" in names
