"""Tracing: the span tree of an apply on a fake engine, the API's request
spans, the driver wrapper, and the configuration rules (docs/tracing.md).

Spans go to the SDK's in-memory exporter through a synchronous processor,
so every span is there when the call returns.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.fakes import FakeDriver
from tests.unit.api_support import Api, api, workload_doc  # noqa: F401 (fixture)

from portway import tracing
from portway.controller.runner import Controller
from portway.drivers.base import Executor
from portway.drivers.traced import TRACED_CALLS, traced
from portway.errors import InputError
from portway.service import workloads as svc
from portway.spec.model import Workload
from portway.tracing.config import TracingConfig, from_env


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.uninstall()
    provider.shutdown()


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def _parent_name(span: ReadableSpan, exporter: InMemorySpanExporter) -> str | None:
    if span.parent is None:
        return None
    ids = {s.context.span_id: s.name for s in exporter.get_finished_spans()}
    return ids.get(span.parent.span_id, "<missing>")


def test_an_apply_on_a_fake_engine_is_one_trace_down_to_the_driver_calls(
    spans: InMemorySpanExporter,
    api: Api,  # noqa: F811
) -> None:
    workload = Workload.model_validate(workload_doc("web", replicas=2))
    [applied] = svc.apply(api.app, [svc.Sourced(workload, "web.yaml", 1)])
    assert applied.outcome is svc.Outcome.CREATED
    controller = Controller(api.app.store, targets=api.app.targets)
    try:
        controller.reconciler.reconcile("team-a/web")
    finally:
        controller.reconciler.close()

    found = _by_name(spans)
    [root] = found["portway.apply"]
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["portway.workloads"] == ("team-a/web",)
    assert root.attributes["portway.namespaces"] == ("team-a",)
    for child in ("portway.validate", "portway.write", "portway.reconcile"):
        assert [_parent_name(s, spans) for s in found[child]] == ["portway.apply"], child
    [reconcile] = found["portway.reconcile"]
    for child in ("portway.schedule", "portway.plan"):
        assert [_parent_name(s, spans) for s in found[child]] == ["portway.reconcile"], child
    # one create and one start per replica, each in the pass that decided it
    for call in ("portway.driver.create", "portway.driver.start"):
        assert len(found[call]) == 2, call
        assert {_parent_name(s, spans) for s in found[call]} == {"portway.reconcile"}
    create = found["portway.driver.create"][0]
    assert create.attributes is not None
    assert create.attributes["portway.workload"] == "team-a/web"
    assert create.attributes["portway.target"] == "fake-1"
    [schedule] = found["portway.schedule"]
    assert schedule.attributes is not None
    assert sorted(schedule.attributes["portway.placed"]) == ["0=fake-1", "1=fake-1"]
    # one trace from the apply down to the engine
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {root.context.trace_id}
    assert reconcile.attributes == {"portway.workload": "team-a/web"}


def test_a_converged_pass_is_a_trace_of_its_own(spans: InMemorySpanExporter, api: Api) -> None:  # noqa: F811
    workload = Workload.model_validate(workload_doc("web"))
    svc.apply(api.app, [svc.Sourced(workload, "web.yaml", 1)])
    controller = Controller(api.app.store, targets=api.app.targets)
    try:
        for _ in range(4):  # create+start, then passes that find nothing to do
            controller.reconciler.reconcile("team-a/web")
    finally:
        controller.reconciler.close()
    passes = _by_name(spans)["portway.reconcile"]
    assert _parent_name(passes[0], spans) == "portway.apply"
    assert passes[-1].parent is None  # the apply no longer adopts it


def test_api_requests_are_spans_named_by_their_route(
    spans: InMemorySpanExporter,
    api: Api,  # noqa: F811
) -> None:
    body = {"documents": [workload_doc("web")]}
    assert api.post("/v1/apply", json=body).status_code == 200
    assert api.get("/v1/namespaces/team-a/workloads/web").status_code == 200  # fast path
    assert api.get("/v1/namespaces/team-a/workloads").status_code == 200
    found = _by_name(spans)
    [post] = found["POST /v1/apply"]
    assert post.attributes is not None and post.attributes["http.route"] == "/v1/apply"
    assert _parent_name(found["portway.apply"][0], spans) == "POST /v1/apply"
    assert len(found["GET /v1/namespaces/{namespace}/workloads/{name}"]) == 1
    assert len(found["GET /v1/namespaces/{namespace}/workloads"]) == 1


def test_a_traced_driver_keeps_its_class_and_optional_protocols(
    spans: InMemorySpanExporter,
) -> None:
    driver = FakeDriver("t1")
    wrapped = traced(driver)
    assert wrapped is driver and isinstance(wrapped, FakeDriver)
    assert isinstance(wrapped, Executor)
    assert traced(wrapped) is wrapped  # wrapping twice adds no second span
    assert driver.image_present("portway/app:1")  # alone (a health check): no trace
    assert spans.get_finished_spans() == ()
    with tracing.span("portway.test"):
        assert driver.image_present("portway/app:1")
    [call, _] = spans.get_finished_spans()
    assert call.name == "portway.driver.image_present"
    assert {"create", "start", "stop", "destroy", "inspect", "exec"} <= set(TRACED_CALLS)
    assert not {"logs", "events", "capabilities"} & set(TRACED_CALLS)


def test_off_is_a_shared_no_op() -> None:
    assert not tracing.enabled()
    assert tracing.span("x") is tracing.span("y")

    def work() -> int:
        return 1

    assert tracing.bind(work) is work


def test_off_by_default_loads_no_sdk(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from portway import tracing\n"
        "assert not tracing.configure({})\n"
        "with tracing.span('x') as s: assert s is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(tracing.__file__).parents[2])},
    )
    assert result.stdout.strip() == "[]"


def test_on_the_containerd_driver_still_loads(tmp_path: Path) -> None:
    """The exporter imports protobuf; the containerd stubs need its
    pure-Python implementation chosen before that first import."""
    script = (
        "from portway import tracing\n"
        "assert tracing.configure({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:9'})\n"
        "from portway.drivers import registry\n"
        "registry._factory('containerd')\n"
        "tracing.uninstall()\n"
        "print('loaded')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(tracing.__file__).parents[2])},
    )
    assert result.stdout.strip() == "loaded", result.stderr


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, TracingConfig(None)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, TracingConfig(None)),
        ({"PORTWAY_TRACING": "otlp"}, TracingConfig(None)),
        ({"PORTWAY_TRACING": "otlp", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "PORTWAY_TRACING": "off"}, None),
        (
            {"PORTWAY_TRACING": "otlp", "OTEL_SERVICE_NAME": "edge-portway"},
            TracingConfig(None, service_name=None),
        ),
    ],
)
def test_configuration_follows_opentelemetry_env(
    environ: dict[str, str], expected: TracingConfig | None
) -> None:
    assert from_env(environ) == expected


def test_the_server_flag_is_a_base_url_like_the_env() -> None:
    config = from_env({}, "http://127.0.0.1:4318/")
    assert config == TracingConfig("http://127.0.0.1:4318/v1/traces")


@pytest.mark.parametrize(
    ("environ", "endpoint", "named"),
    [
        ({"PORTWAY_TRACING": "jaeger"}, None, "PORTWAY_TRACING='jaeger'"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, None, "OTEL_TRACES_EXPORTER='zipkin'"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, None, "OTLP protocol 'grpc'"),
        ({}, "collector:4318", "--otlp-endpoint 'collector:4318'"),
    ],
)
def test_bad_settings_are_named(environ: dict[str, str], endpoint: str | None, named: str) -> None:
    with pytest.raises(InputError, match=named):
        from_env(environ, endpoint)
