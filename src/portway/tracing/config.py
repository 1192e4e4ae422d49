"""Whether and where to export traces, from OpenTelemetry's standard
environment variables plus portway's switch. Pure: imports no SDK, so
deciding "off" costs a few dictionary look-ups.

On when any of these says so (OpenTelemetry's own conventions, so a
collector set up for other services works unchanged):

* ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``
  is set (the exporter reads them, and the OTLP headers/timeout, itself);
* ``PORTWAY_TRACING=otlp`` (without an endpoint: OTLP/HTTP's default,
  http://localhost:4318);
* ``portway server --otlp-endpoint URL`` (a base URL like the env variable).

Off, whatever else is set, with ``OTEL_SDK_DISABLED=true``,
``OTEL_TRACES_EXPORTER=none`` or ``PORTWAY_TRACING=off``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from portway.errors import InputError

SWITCH_ENV = "PORTWAY_TRACING"
#: OTLP/HTTP appends this to a base endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)
TRACES_PATH = "/v1/traces"
_SWITCH_VALUES = ("otlp", "off")
_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass(frozen=True)
class TracingConfig:
    #: the full traces URL to send to; None: let the exporter read the env
    endpoint: str | None = None
    #: resource attribute service.name; None when OTEL_SERVICE_NAME or
    #: OTEL_RESOURCE_ATTRIBUTES names it (the user's choice wins)
    service_name: str | None = "portway"


def traces_url(base: str, flag: str) -> str:
    """``http://collector:4318`` -> ``http://collector:4318/v1/traces``, as
    the exporter does for OTEL_EXPORTER_OTLP_ENDPOINT."""
    if not base.startswith(("http://", "https://")):
        raise InputError(
            f"{flag} {base!r}: expected an http:// or https:// URL of an OTLP/HTTP "
            "receiver, e.g. http://127.0.0.1:4318"
        )
    return base.rstrip("/") + TRACES_PATH


def from_env(environ: Mapping[str, str], endpoint: str | None = None) -> TracingConfig | None:
    """The tracing configuration, or None when tracing is off. ``endpoint``
    is ``--otlp-endpoint`` (it wins over the environment)."""
    switch = environ.get(SWITCH_ENV, "").strip().lower()
    if switch and switch not in _SWITCH_VALUES:
        raise InputError(
            f"{SWITCH_ENV}={environ[SWITCH_ENV]!r}: expected one of {', '.join(_SWITCH_VALUES)}"
        )
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter and exporter not in ("otlp", "none"):
        raise InputError(
            f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']!r}: portway exports "
            "traces with OTLP only; expected otlp or none"
        )
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if protocol and protocol != "http/protobuf":
        raise InputError(
            f"OTLP protocol {protocol!r}: portway exports OTLP over HTTP only; "
            "expected http/protobuf (use the collector's port 4318)"
        )
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    if disabled or exporter == "none" or switch == "off":
        return None
    named = "OTEL_SERVICE_NAME" in environ or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    service_name = None if named else "portway"
    if endpoint is not None:
        return TracingConfig(traces_url(endpoint, "--otlp-endpoint"), service_name)
    if any(environ.get(name) for name in _ENDPOINT_ENVS) or switch == "otlp":
        return TracingConfig(None, service_name)
    return None
