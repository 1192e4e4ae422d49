"""Settings of the HTTP API server, one place for their units and reasons."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    max_body_bytes: int = MIB
    """Largest request body accepted (bytes); more is refused with 413. A
    workload file is a few KiB; 1 MiB leaves room for big multi-document
    applies while keeping a flood of large bodies cheap to refuse."""
    heartbeat_seconds: float = 15.0
    """Seconds between SSE comment lines on an idle watch, so proxies and
    clients can tell a quiet stream from a dead one."""
    watch_poll_seconds: float = 0.5
    """How often a watch looks for new changes (seconds). Each look borrows a
    store connection for one query only; none is held while waiting."""
    max_wait_seconds: float = 600.0
    """Upper bound of ``?wait=true&timeout=`` on apply and delete (seconds), so
    one request cannot pin a server thread for ever."""
    default_wait_seconds: float = 300.0
    """``timeout`` of ``?wait=true`` when none is given, as the CLI's apply."""
    max_exec_seconds: float = 600.0
    """Upper bound of an exec's ``timeout`` (seconds)."""
    watch_batch: int = 500
    """Most changes sent per store query of a watch; a client far behind is
    caught up in several batches rather than one huge read."""
    metrics: bool = True
    """Serve ``GET /metrics`` (Prometheus) and time every request for it."""
    metrics_auth: bool = False
    """Whether ``/metrics`` needs a token. Off by default, as Prometheus
    targets usually are: the series name namespaces and workloads, nothing
    more (docs/metrics.md)."""
