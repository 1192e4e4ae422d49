"""OpenTelemetry spans for apply → validate → reconcile → schedule/plan →
driver calls, off unless configured (see docs/tracing.md).

Every function here is safe to call when tracing is off and then costs one
module-level check: no SDK is imported, ``span`` returns a shared no-op
context manager, ``bind`` returns its argument. ``configure`` (from the CLI
and the server) turns tracing on from the environment; tests ``install`` a
provider of their own.

The module sits low in the layers (just above ``errors``) because the
service, the controller and the driver pool all open spans.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from portway.tracing.config import TracingConfig, from_env

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "Attributes",
    "TracingConfig",
    "annotate",
    "bind",
    "configure",
    "enabled",
    "forget",
    "install",
    "propagation_headers",
    "provider",
    "remember",
    "route",
    "shutdown",
    "span",
    "uninstall",
]

T = TypeVar("T")
#: span attribute values OpenTelemetry accepts
Attributes = Mapping[str, str | bool | int | float | list[str]]

#: how long an apply's trace adopts the reconcile passes it caused, at most
#: (a pass that finds nothing to do ends the adoption sooner)
HANDOFF_SECONDS = 300.0
INSTRUMENTATION = "portway"

_NOOP: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
#: workload key -> (context of the apply that changed it, when)
_handoff: dict[str, tuple[Context, float]] = {}
_handoff_lock = threading.Lock()


def enabled() -> bool:
    return _tracer is not None


def configure(environ: Mapping[str, str] | None = None, *, endpoint: str | None = None) -> bool:
    """Turn tracing on if the environment (or ``--otlp-endpoint``) asks for
    it; returns whether it is on. Raises ``InputError`` for a setting
    portway cannot honour. Calling it again once on changes nothing."""
    if _tracer is not None:
        return True
    config = from_env(os.environ if environ is None else environ, endpoint)
    if config is None:
        return False
    from portway.tracing.sdk import otlp_provider

    install(otlp_provider(config))
    return True


def install(provider: TracerProvider) -> None:
    """Trace into ``provider`` from now on (tests: an in-memory exporter)."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer(INSTRUMENTATION)


def uninstall() -> None:
    """Back to off (tests); the provider is not shut down."""
    global _tracer, _provider
    _tracer = None
    _provider = None
    with _handoff_lock:
        _handoff.clear()


def provider() -> TracerProvider | None:
    """The provider in use (the API hands it to FastAPI's request spans)."""
    return _provider


def shutdown() -> None:
    """Flush queued spans and stop exporting."""
    if _provider is not None:
        _provider.shutdown()
    uninstall()


def span(
    name: str,
    attributes: Attributes | None = None,
    *,
    caused_by: str | None = None,
    child_only: bool = False,
) -> contextlib.AbstractContextManager[Span | None]:
    """A span around the block, child of the current one; with
    ``caused_by`` (a workload key) a child of the apply that last changed
    that workload, if this process remembers one (``remember``). With
    ``child_only`` no span at all outside another one: a health check's
    engine call every few seconds is not a trace worth keeping."""
    if _tracer is None:
        return _NOOP
    if child_only:
        from opentelemetry import trace

        if not trace.get_current_span().get_span_context().is_valid:
            return _NOOP
    parent = _adopted(caused_by) if caused_by is not None else None
    return _tracer.start_as_current_span(name, context=parent, attributes=attributes)


def annotate(attributes: Attributes) -> None:
    """Add attributes to the current span (learned after it started)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(attributes)


def route(method: str, template: str) -> None:
    """Name the current HTTP server span after its route template, for a
    request answered before routing (the API's fast path)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    current.set_attribute("http.route", template)
    current.update_name(f"{method} {template}")


def propagation_headers() -> dict[str, str]:
    """W3C trace-context headers (``traceparent``) naming the current span,
    for a request to a portway server: the server's request span then joins
    the caller's trace. Empty when tracing is off or no span is open."""
    if _tracer is None:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def bind(function: Callable[..., T]) -> Callable[..., T]:
    """``function`` to run in another thread (a pool) as a child of the
    current span: thread pools do not carry OpenTelemetry's context."""
    if _tracer is None:
        return function
    from opentelemetry import context as otel_context

    captured = otel_context.get_current()

    def in_context(*args: Any) -> T:
        token = otel_context.attach(captured)
        try:
            return function(*args)
        finally:
            otel_context.detach(token)

    return in_context


def remember(key: str) -> None:
    """The current span (an apply) caused changes to workload ``key``: the
    controller of this process parents its reconcile passes of ``key`` to it
    (``span(caused_by=key)``), so one trace shows an apply down to its engine
    calls. Another process's controller starts traces of its own."""
    if _tracer is None:
        return
    from opentelemetry import context as otel_context

    with _handoff_lock:
        _handoff[key] = (otel_context.get_current(), time.monotonic())


def forget(key: str) -> None:
    """Workload ``key`` converged: later passes are traces of their own."""
    if _tracer is None:
        return
    with _handoff_lock:
        _handoff.pop(key, None)


def _adopted(key: str) -> Context | None:
    now = time.monotonic()
    with _handoff_lock:
        entry = _handoff.get(key)
        if entry is None:
            return None
        if now - entry[1] > HANDOFF_SECONDS:
            del _handoff[key]
            return None
        return entry[0]
