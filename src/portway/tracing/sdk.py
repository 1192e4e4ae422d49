"""Build the OpenTelemetry SDK pieces. Imported only when tracing is on, so
a portway without tracing never loads the SDK or the exporter.

The OTLP exporter imports protobuf. The containerd driver's stubs load only
with protobuf's pure-Python implementation, which must be chosen before
protobuf's first import in the process (drivers/containerd/__init__.py); a
CLI or server that traces opens its drivers after this import, so it makes
the same choice here (span batches are small: the slower encoding costs
the exporter's thread milliseconds, not the traced calls).
"""

from __future__ import annotations

import os

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from portway import __version__
from portway.tracing.config import TracingConfig


def otlp_provider(config: TracingConfig) -> TracerProvider:
    """A provider that batches spans to an OTLP/HTTP receiver. Its exit
    hook flushes what is queued, so a short CLI command's spans are sent."""
    attributes: dict[str, str] = {"service.version": __version__}
    if config.service_name is not None:
        attributes["service.name"] = config.service_name
    provider = TracerProvider(resource=Resource.create(attributes))
    # no endpoint: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT,
    # headers, timeout and compression from the environment itself
    exporter = OTLPSpanExporter(endpoint=config.endpoint) if config.endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
