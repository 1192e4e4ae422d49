"""``portway server``: the HTTP API on uvicorn, with the controller beside it.

The controller runs in a background thread of the server process and takes
the store's controller lease like ``portway controller`` does, so of several
servers on one store exactly one reconciles and the others stand by (taking
over when the holder's lease lapses). ``--no-controller`` serves the API only.
On the first start against a store with no tokens, a cluster-admin token for
user ``admin`` is written to ``$PORTWAY_HOME/admin.token`` (mode 0600); only
its path is logged.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from portway.errors import InputError

log = logging.getLogger("portway.server")

#: how long open streams (watches, followed logs) may keep a stopping server
SHUTDOWN_GRACE_SECONDS = 5
#: how long an idle connection stays open. Longer than clients keep idle
#: connections for reuse (httpx, portway's client: 5 s), so that the client,
#: not the server, closes them: when both wait the same time (uvicorn's own
#: default is 5 s) a request sent on a connection the server is closing at
#: that moment fails without an answer. 75 s is nginx's default.
KEEP_ALIVE_SECONDS = 75
#: event loops ``--loop`` accepts. asyncio is the default on purpose: under a
#: burst of new connections while the loop is busy, uvloop left hundreds of
#: them in the listen queue until their clients gave up (benchmark P7 at 1,000
#: clients), while asyncio's accept handler takes up to ``backlog`` of them at
#: each wake-up (bench/README.md, P7, has the figures)
LOOPS = ("asyncio", "uvloop")
#: environment that hands settings to worker processes (--workers > 1)
_MAX_BODY_ENV = "PORTWAY_SERVER_MAX_BODY"
_METRICS_ENV = "PORTWAY_SERVER_METRICS"  # "off", "open" or "token"


def register(app: typer.Typer) -> None:
    app.command(name="server")(server)


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8443,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate (chain); enables HTTPS.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")
    ] = None,
    no_controller: Annotated[
        bool, typer.Option("--no-controller", help="Serve the API only; reconcile elsewhere.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Server processes.", min=1, max=64)] = 1,
    max_body: Annotated[
        int, typer.Option("--max-body", help="Largest request body in bytes.", min=1024)
    ] = 1024 * 1024,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    metrics: Annotated[
        bool, typer.Option("--metrics/--no-metrics", help="Serve GET /metrics (Prometheus).")
    ] = True,
    metrics_auth: Annotated[
        bool, typer.Option("--metrics-auth", help="Make /metrics require a token (any role).")
    ] = False,
    stats_interval: Annotated[
        float,
        typer.Option(
            "--stats-interval", help="Seconds between replica stats passes for /metrics.", min=1.0
        ),
    ] = 15.0,
    loop: Annotated[
        str, typer.Option(help="Event loop: asyncio (default, fair accepts) or uvloop.")
    ] = "asyncio",
    keep_alive: Annotated[
        int,
        typer.Option("--keep-alive", help="Seconds an idle client connection stays open.", min=1),
    ] = KEEP_ALIVE_SECONDS,
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(
            "--otlp-endpoint",
            help="Send traces to this OTLP/HTTP receiver, e.g. http://127.0.0.1:4318 "
            "(default: OTEL_EXPORTER_OTLP_ENDPOINT; see docs/tracing.md).",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (see docs/server.md) until SIGTERM or Ctrl-C."""
    from portway.cli.main import _guard

    observe = MetricsOptions(metrics, metrics_auth, stats_interval)

    def go() -> None:
        _configure_tracing(otlp_endpoint, workers)
        _serve(
            host,
            port,
            tls_cert,
            tls_key,
            no_controller,
            workers,
            max_body,
            log_level,
            loop,
            observe,
            keep_alive,
        )

    _guard(go)


def _configure_tracing(endpoint: str | None, workers: int) -> None:
    from portway import tracing
    from portway.tracing.config import traces_url

    if tracing.configure(endpoint=endpoint) and endpoint is not None and workers > 1:
        # worker processes read the environment (worker_app), not our flags
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = traces_url(endpoint, "--otlp-endpoint")


@dataclass(frozen=True)
class MetricsOptions:
    enabled: bool = True
    require_token: bool = False
    stats_interval: float = 15.0  # seconds between replica stats passes


def _check_tls(cert: Path | None, key: Path | None) -> None:
    if (cert is None) != (key is None):
        raise InputError("--tls-cert and --tls-key go together: give both, or neither for HTTP")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not path.is_file():
            raise InputError(f"{flag} {path}: no such file")


def _serve(
    host: str,
    port: int,
    cert: Path | None,
    key: Path | None,
    no_controller: bool,
    workers: int,
    max_body: int,
    log_level: str,
    loop: str = "asyncio",
    observe: MetricsOptions | None = None,
    keep_alive: int = KEEP_ALIVE_SECONDS,
) -> None:
    import uvicorn

    from portway.api import ServerConfig, create_app
    from portway.controller.metrics import ControllerMetrics
    from portway.controller.runner import Controller
    from portway.controller.sampling import SamplerSettings
    from portway.service import access
    from portway.service.app import App

    if log_level not in ("debug", "info", "warning", "error"):
        raise InputError(f"--log-level {log_level}: expected debug, info, warning or error")
    if loop not in LOOPS:
        raise InputError(f"--loop {loop}: expected {' or '.join(LOOPS)}")
    _check_tls(cert, key)
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    service = App()
    written = access.bootstrap_admin(service, service.settings.home)
    if written is not None:
        log.info("created a cluster-admin token for user admin in %s", written)
    stop = threading.Event()
    observe = observe or MetricsOptions()
    controller: Controller | None = None
    runner: threading.Thread | None = None
    registry = ControllerMetrics() if observe.enabled and not no_controller else None
    if not no_controller:
        controller = Controller(
            service.store,
            targets=service.targets,
            ingress_home=service.settings.home,
            metrics=registry,
            sampler_settings=SamplerSettings(period_seconds=observe.stats_interval),
        )
        runner = threading.Thread(
            target=controller.run_forever, args=(stop,), name="portway-controller", daemon=True
        )
        runner.start()
        log.info("controller %s started (reconciles while it holds the lease)", controller.holder)
    scheme = "https" if cert else "http"
    log.info("serving the portway API on %s://%s:%d", scheme, host, port)
    app_or_factory: Any
    if workers == 1:
        config = ServerConfig(
            max_body_bytes=max_body, metrics=observe.enabled, metrics_auth=observe.require_token
        )
        app_or_factory = create_app(
            service,
            config,
            controller=controller,
            metrics=registry.registry if registry is not None else None,
        )
    else:
        # each worker process builds its own app; the controller stays here
        os.environ[_MAX_BODY_ENV] = str(max_body)
        mode = "token" if observe.require_token else "open"
        os.environ[_METRICS_ENV] = mode if observe.enabled else "off"
        app_or_factory = "portway.cli.server:worker_app"
    # uvicorn handles SIGINT/SIGTERM itself (a graceful shutdown) and then
    # raises the signal again for the handler it found installed: make that
    # one a no-op, so the controller below is stopped and its lease released
    # rather than the process dying on the re-raised signal
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    # everything loaded so far lives as long as the process: keep it out of
    # the collector's full passes, which otherwise walk it all and stall the
    # event loop for tens of milliseconds under load
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(
            app_or_factory,
            factory=workers > 1,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level,
            access_log=log_level == "debug",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            timeout_keep_alive=keep_alive,
            backlog=2048,  # P7 opens 1,000 connections at once
            loop=loop,
            ssl_certfile=str(cert) if cert else None,
            ssl_keyfile=str(key) if key else None,
        )
    finally:
        stop.set()
        if runner is not None:
            runner.join(timeout=40)
        service.close()
        log.info("server stopped")


def worker_app() -> object:
    """The ASGI app of one worker process (``--workers`` > 1)."""
    from portway import tracing
    from portway.api import ServerConfig, create_app
    from portway.service.app import App

    tracing.configure()
    max_body = int(os.environ.get(_MAX_BODY_ENV, str(1024 * 1024)))
    mode = os.environ.get(_METRICS_ENV, "open")
    # a worker has no controller: its /metrics shows its own API requests only
    config = ServerConfig(
        max_body_bytes=max_body, metrics=mode != "off", metrics_auth=mode == "token"
    )
    return create_app(App(), config)
