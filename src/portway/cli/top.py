"""``portway top [WORKLOAD]``: CPU, memory, network and restarts of replicas,
the same normalized figures on every engine (docs/metrics.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from portway.cli.output import Format, dump, parse_format, table


def register(app: typer.Typer) -> None:
    app.command(name="top")(top)


def top(
    workload: Annotated[str | None, typer.Argument(help="Only this workload's replicas.")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace.")] = "default",
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Every namespace.")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="Seconds between the two samples CPU is measured over.")
    ] = 1.0,
    output_format: Annotated[
        str | None, typer.Option("--output", "-o", help="json or yaml.")
    ] = None,
) -> None:
    """Resource use of running replicas now (read from their engines)."""
    from portway.cli.main import _app, _guard

    scope = None if all_namespaces else namespace
    _guard(lambda: _top(_app(), workload, scope, interval, output_format))


def _top(
    app: Any, workload: str | None, namespace: str | None, interval: float, fmt_text: str | None
) -> None:
    from portway.service.usage import replica_usage

    fmt = parse_format(fmt_text)
    try:
        usages = [u for u in replica_usage(app, namespace, workload, interval) if u.sample.stats]
    finally:
        app.close()
    if fmt in (Format.JSON, Format.YAML):
        items = []
        for usage in usages:
            sample, stats = usage.sample, usage.sample.stats
            assert stats is not None
            items.append(
                {
                    "namespace": sample.namespace,
                    "workload": sample.workload,
                    "replica": sample.index,
                    "target": sample.target,
                    "engine": sample.engine,
                    "cpuPercent": usage.cpu_percent,
                    "cpuSeconds": stats.cpu_seconds,
                    "memoryBytes": stats.memory_bytes,
                    "memoryLimitBytes": stats.memory_limit_bytes,
                    "networkReceiveBytes": stats.network_rx_bytes,
                    "networkTransmitBytes": stats.network_tx_bytes,
                    "processes": stats.pids,
                    "restarts": sample.restarts,
                    "oomKills": sample.oom_kills,
                }
            )
        dump({"items": items}, fmt)
        return
    rows = []
    for usage in usages:
        sample, stats = usage.sample, usage.sample.stats
        assert stats is not None
        rows.append(
            [
                sample.namespace,
                f"{sample.workload}-{sample.index}",
                sample.target,
                "-" if usage.cpu_percent is None else f"{usage.cpu_percent:.1f}%",
                _bytes(stats.memory_bytes),
                _bytes(stats.memory_limit_bytes),
                f"{_bytes(stats.network_rx_bytes)} / {_bytes(stats.network_tx_bytes)}",
                "-" if stats.pids is None else stats.pids,
                sample.restarts,
                sample.oom_kills,
            ]
        )
    headers = ["NAMESPACE", "REPLICA", "TARGET", "CPU", "MEMORY", "LIMIT", "NET RX / TX"]
    table([*headers, "PIDS", "RESTARTS", "OOM KILLS"], rows)


def _bytes(value: int | None) -> str:
    """Binary units as `docker stats` prints them (1.5MiB); "-" for none."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}GiB"
