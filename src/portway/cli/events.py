"""``portway events``: what the controller decided and why, filterable, and
followed with ``-w`` (the store locally, the server's event watch remotely).

``portway get events`` stays as it was; this is the fuller form. See
docs/events.md for the reasons and the retention of events.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from typing import Annotated

import typer

from portway.cli.backend import EventQuery, Reads
from portway.cli.output import Format, age, dump, parse_format, table
from portway.errors import InputError
from portway.store import Event

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, flag: str = "--since") -> float:
    """``90s``, ``10m``, ``1h30m``, ``2d`` -> seconds."""
    compact = text.strip().lower()
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise InputError(f"{flag} {text!r}: expected a duration such as 30s, 10m, 1h30m or 2d")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def event_object(event: Event) -> str:
    """``workload/web``, or ``replica/web-0`` when the event is about one replica."""
    if event.replica is not None:
        return f"replica/{event.name}-{event.replica}"
    return f"{event.kind.lower()}/{event.name}"


def event_dict(event: Event) -> dict[str, object]:
    return dict(event.__dict__)


def _row(event: Event, all_namespaces: bool, now: float) -> list[str]:
    row = [
        age(event.ts, now),
        event.type,
        event.reason,
        event_object(event),
        event.target or "-",
        str(event.count),
        event.message,
    ]
    return [event.namespace, *row] if all_namespaces else row


def _headers(all_namespaces: bool) -> list[str]:
    headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "TARGET", "COUNT", "MESSAGE"]
    return ["NAMESPACE", *headers] if all_namespaces else headers


def show_events(
    reads: Reads,
    *,
    namespace: str | None,
    workload: str | None,
    query: EventQuery,
    limit: int,
    fmt_text: str | None,
    watch: bool,
) -> None:
    fmt = parse_format(fmt_text)
    if watch and fmt is Format.YAML:
        raise InputError("-o yaml: with --watch, use -o json (one event per line) or a table")
    found = reads.events(kind=None, namespace=namespace, name=workload, limit=limit, query=query)
    all_namespaces = namespace is None
    if not watch:
        if fmt in (Format.JSON, Format.YAML):
            dump({"items": [event_dict(e) for e in found]}, fmt)
        else:
            now = time.time()
            table(_headers(all_namespaces), [_row(e, all_namespaces, now) for e in found])
        return
    _follow(reads, namespace, workload, query, found, fmt is Format.JSON)


def _follow(
    reads: Reads,
    namespace: str | None,
    workload: str | None,
    query: EventQuery,
    shown: list[Event],
    as_json: bool,
) -> None:
    """Print what exists, then each new event as one line, until interrupted."""

    def emit(event: Event) -> None:
        if as_json:
            sys.stdout.write(json.dumps(event_dict(event), sort_keys=True) + "\n")
        else:
            cells = _row(event, namespace is None, time.time())
            sys.stdout.write("  ".join(cells) + "\n")
        sys.stdout.flush()

    if not as_json:
        sys.stdout.write("  ".join(_headers(namespace is None)) + "\n")
        sys.stdout.flush()
    for event in shown:
        emit(event)
    # Follow from the newest event of all (not only the shown ones), so that
    # nothing older than what was listed comes out as new.
    newest = reads.events(kind=None, namespace=namespace, name=None, limit=1)
    after = max([e.id for e in shown] + [e.id for e in newest], default=0)
    stop = threading.Event()
    try:
        for event in reads.follow_events(
            namespace=namespace, name=workload, query=query, after_id=after, stop=stop
        ):
            emit(event)
    finally:
        stop.set()


def register(app: typer.Typer) -> None:
    @app.command("events")
    def events(
        watch: Annotated[
            bool, typer.Option("--watch", "-w", help="Keep printing new events as they come.")
        ] = False,
        namespace: Annotated[
            str, typer.Option("--namespace", "-n", help="Namespace of the events.")
        ] = "default",
        all_namespaces: Annotated[
            bool,
            typer.Option("--all-namespaces", "-A", help="Events of every namespace and target."),
        ] = False,
        workload: Annotated[
            str | None, typer.Option("--workload", help="Only events of this workload.")
        ] = None,
        event_type: Annotated[
            str | None, typer.Option("--type", help="Only Normal or only Warning events.")
        ] = None,
        reason: Annotated[
            str | None, typer.Option("--reason", help="Only this reason (e.g. OOMKilled).")
        ] = None,
        target: Annotated[
            str | None, typer.Option("--target", help="Only events on this target.")
        ] = None,
        since: Annotated[
            str | None,
            typer.Option("--since", help="Only events seen in this long (30s, 10m, 1h)."),
        ] = None,
        limit: Annotated[int, typer.Option("--limit", help="Newest N events.")] = 100,
        output_format: Annotated[
            str | None, typer.Option("--output", "-o", help="json or yaml.")
        ] = None,
    ) -> None:
        """Events: each decision of the controller (scheduled, started, probe
        failed, restarted, OOM killed, moved, refused by policy, ...) with its
        reason; repeats are counted on one line."""
        from portway.cli.main import _guard, _reads

        def go() -> None:
            query = _query(event_type, reason, target, since)
            if limit < 1:
                raise InputError(f"--limit {limit}: expected 1 or more")
            show_events(
                _reads(),
                namespace=None if all_namespaces else namespace,
                workload=workload,
                query=query,
                limit=limit,
                fmt_text=output_format,
                watch=watch,
            )

        _guard(go)


def _query(
    event_type: str | None, reason: str | None, target: str | None, since: str | None
) -> EventQuery:
    if event_type is not None:
        if event_type.capitalize() not in ("Normal", "Warning"):
            raise InputError(f"--type {event_type!r}: expected Normal or Warning")
        event_type = event_type.capitalize()
    return EventQuery(
        event_type=event_type,
        reason=reason,
        target=target,
        since=None if since is None else time.time() - parse_duration(since),
    )


__all__ = ["event_object", "parse_duration", "register", "show_events"]
