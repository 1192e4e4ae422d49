"""Remote mode: the commands' work done by a portway server (cli/contexts.py
says which), printed exactly as local mode prints it.

Reads come back as the objects local mode renders (``RemoteReads``); the
flows (apply, delete, logs, exec, target changes) are here, one function per
command, each printing the lines its local twin prints.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portway.cli import output
from portway.cli.backend import EventQuery
from portway.cli.logs import (
    LogPrinter,
    LogStyle,
    decorated,
    entries_from_json,
    silence_stdout,
)
from portway.controller.records import (
    KIND_WORKLOAD,
    ReplicaView,
    TargetView,
    TierHandler,
    workload_of,
)
from portway.errors import InputError, NotFoundError, PortwayError
from portway.spec.model import Workload
from portway.store import Event, Record

if TYPE_CHECKING:  # httpx loads only when a context is in use
    from portway.client.http import JSON, PortwayClient

# --- JSON -> the objects local mode renders -------------------------------------


def _epoch(value: Any) -> float:
    """Seconds since the epoch from a number or an ISO-8601 string."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def _workload_document(data: Mapping[str, Any]) -> dict[str, Any]:
    """The workload document inside a server answer, whichever way it nests it:
    ``spec`` as the stored envelope ``{workload, templateGeneration, ...}``,
    the document itself at the top (``apiVersion``), or ``spec`` as the
    workload's spec with name and namespace beside it."""
    if data.get("apiVersion"):
        return {k: data[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in data}
    # keys sorted as the store keeps them, so -o yaml prints in the same order
    metadata = {
        "labels": dict(data.get("labels") or {}),
        "name": data.get("name"),
        "namespace": data.get("namespace", "default"),
    }
    return {
        "apiVersion": "portway.dev/v1",
        "kind": "Workload",
        "metadata": metadata,
        "spec": data.get("spec", {}),
    }


def workload_record(data: Mapping[str, Any]) -> Record:
    spec = data.get("spec")
    if isinstance(spec, Mapping) and "workload" in spec:
        envelope = dict(spec)
    elif isinstance(data.get("record"), Mapping):
        envelope = dict(data["record"])
    else:
        envelope = {"workload": _workload_document(data)}
        for key in ("templateGeneration", "templateHash", "degradations", "excludedTargets"):
            if key in data:
                envelope[key] = data[key]
    metadata = envelope["workload"].get("metadata", {})
    return Record(
        kind=KIND_WORKLOAD,
        namespace=str(data.get("namespace") or metadata.get("namespace") or "default"),
        name=str(data.get("name") or metadata.get("name")),
        version=int(data.get("version", 0) or 0),
        generation=int(data.get("generation", 0) or 0),
        spec=envelope,
        status=dict(data.get("status") or {}),
        deleting=bool(data.get("deleting", False)),
        created_at=_epoch(data.get("createdAt")),
        updated_at=_epoch(data.get("updatedAt")),
    )


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def replica_pair(data: Mapping[str, Any]) -> tuple[str, ReplicaView]:
    """The API spells fields in camelCase (``containerId``); the view in snake_case."""
    fields = {_snake(k): v for k, v in data.items()}
    return str(data.get("namespace", "default")), ReplicaView.from_status(fields)


def target_view(data: Mapping[str, Any]) -> TargetView:
    given: dict[str, float] = {}
    for key, figure in dict(data.get("capacity") or {}).items():
        if isinstance(figure, int | float):
            given[str(key)] = float(figure)
        elif isinstance(figure, Mapping) and figure.get("source") == "given":
            given[str(key)] = float(figure.get("value", 0))
    return TargetView(
        name=str(data["name"]),
        driver=str(data.get("driver", "")),
        address=str(data.get("address", "")),
        labels=dict(data.get("labels") or {}),
        health=str(data.get("health", "undetected")),
        detail=str(data.get("detail", "")),
        version=str(data.get("version", "")),
        runtime_handlers=tuple(data.get("runtimeHandlers") or ()),
        attributes={str(k): str(v) for k, v in dict(data.get("attributes") or {}).items()},
        cordoned=bool(data.get("cordoned", False)),
        checked_at=_epoch(data.get("checkedAt")),
        tiers={
            str(tier): TierHandler.from_status(value)
            for tier, value in dict(data.get("tiers") or {}).items()
            if isinstance(value, Mapping)
        },
        draining=bool(data.get("draining", False)),
        capacity=given,
        taints=tuple(
            {str(k): str(v) for k, v in t.items()}
            for t in data.get("taints") or ()
            if isinstance(t, Mapping)
        ),
        health_since=_epoch(data.get("healthSince")),
    )


def event_of(data: Mapping[str, Any]) -> Event:
    return Event(
        id=int(data.get("id", 0) or 0),
        ts=_epoch(data.get("ts")),
        kind=str(data.get("kind", "")),
        namespace=str(data.get("namespace", "")),
        name=str(data.get("name", "")),
        type=str(data.get("type", "")),
        reason=str(data.get("reason", "")),
        message=str(data.get("message", "")),
        replica=None if data.get("replica") is None else int(data["replica"]),
        target=str(data.get("target", "")),
        count=int(data.get("count", 1) or 1),
        first_ts=_epoch(data.get("firstTs")),
    )


class RemoteReads:
    """``cli.backend.Reads`` over a server."""

    def __init__(self, client: PortwayClient) -> None:
        self.client = client

    def list_workloads(self, namespace: str | None) -> list[Record]:
        records = [workload_record(item) for item in self.client.list_workloads(namespace)]
        return sorted(records, key=lambda r: (r.namespace, r.name))

    def resolve_workload(self, namespace: str, name: str) -> tuple[Record, Workload]:
        try:
            record = workload_record(self.client.get_workload(namespace, name))
        except NotFoundError:
            raise NotFoundError(
                f"workload {namespace}/{name} not found (see `portway get workloads -A`)"
            ) from None
        return record, workload_of(record)

    def replicas_of(self, namespace: str, name: str) -> list[ReplicaView]:
        views = [replica_pair(item)[1] for item in self.client.replicas(namespace, name)]
        return sorted(views, key=lambda v: v.index)

    def all_replicas(self, namespace: str | None) -> list[tuple[str, ReplicaView]]:
        pairs = [replica_pair(item) for item in self.client.replicas(namespace)]
        return sorted(pairs, key=lambda p: (p[0], p[1].workload, p[1].index))

    def target_views(self, *, check: bool = False) -> list[TargetView]:
        # the server decides how fresh health is; it probes targets itself
        return sorted((target_view(t) for t in self.client.targets()), key=lambda v: v.name)

    def events(
        self,
        *,
        kind: str | None,
        namespace: str | None,
        name: str | None,
        limit: int,
        query: EventQuery | None = None,
    ) -> list[Event]:
        params = query.api_params() if query is not None else None
        found = [event_of(e) for e in self.client.events(namespace, name, limit, params)]
        found = [e for e in found if kind is None or e.kind == kind]
        return sorted(found, key=lambda e: e.id)

    def follow_events(
        self,
        *,
        namespace: str | None,
        name: str | None,
        query: EventQuery,
        after_id: int,
        stop: threading.Event,
    ) -> Iterator[Event]:
        """The server's event watch (server-sent events), filtered there."""
        stream = self.client.watch_events(namespace, name, after_id, query.api_params())
        for message in stream:
            if stop.is_set():
                return
            if message.event == "EVENT":
                yield event_of(message.json())


# --- apply / plan / delete ------------------------------------------------------


def documents_of(file: Path) -> list[dict[str, Any]]:
    """FILE's documents, validated here first so mistakes are reported with
    file and line as locally; the server validates again and decides."""
    from portway.spec.loader import load_objects

    return [
        item.object.model_dump(mode="json", by_alias=True, exclude_none=True)
        for item in load_objects(file)
    ]


def _say(text: str) -> None:
    output.out.print(text, markup=False)


def apply(client: PortwayClient, file: Path, no_wait: bool, timeout: float) -> int:
    """``portway apply -f FILE`` against a server; the exit code."""
    keys = submit(client, documents_of(file), str(file))
    if no_wait:
        return 0
    return report_wait(client, wait_for(client, keys, timeout))


def submit(
    client: PortwayClient, documents: Sequence[Mapping[str, Any]], source: str
) -> list[tuple[str, str, int]]:
    """Send documents to the server's apply and print what it did, as local
    mode prints it; (namespace, name, generation) of each workload applied."""
    answer = client.apply(documents, source)
    for item in answer.get("namespaces") or []:
        _say(f"namespace/{item.get('name')} {item.get('outcome')}")
        violators = item.get("violators") or []
        if violators:
            output.err.print(
                f"warning: existing workloads violate the policy of namespace {item.get('name')} "
                "(they keep running; new replicas will be refused):",
                markup=False,
            )
            for line in violators:
                output.err.print(f"  {line}", markup=False)
    applied = [item for item in answer.get("workloads") or [] if isinstance(item, Mapping)]
    for item in applied:
        _say(f"workload/{item['name']} {item['outcome']}")
    return [(str(i["namespace"]), str(i["name"]), int(i.get("generation", 0))) for i in applied]


def wait_for(
    client: PortwayClient,
    keys: Sequence[tuple[str, str, int]],
    timeout: float,
    *,
    deleting: bool = False,
    poll: float = 0.25,
) -> dict[str, str]:
    """Poll the server until each (namespace, name, generation) settles, by
    the rule local mode uses (``service.workloads.workload_settled``)."""
    from portway.service.workloads import WaitResult, workload_settled

    deadline = time.monotonic() + timeout
    results: dict[str, str] = {}
    final: set[str] = set()
    while True:
        for namespace, name, generation in keys:
            key = f"{namespace}/{name}"
            if key in final:
                continue
            try:
                record: Record | None = workload_record(client.get_workload(namespace, name))
            except NotFoundError:
                record = None
            settled = workload_settled(record, generation)
            if deleting:
                settled = WaitResult.DELETED if record is None else None
            if settled in (WaitResult.READY, WaitResult.DELETED):
                results[key] = settled.value
                final.add(key)
            elif settled is WaitResult.DEGRADED and record is not None:
                results[key] = settled.value
                if "restarting" not in str(record.status.get("message", "")):
                    final.add(key)  # failed for good: no restart will come
            else:
                results.pop(key, None)
        if len(final) == len(keys):
            return results
        if time.monotonic() >= deadline:
            for namespace, name, _ in keys:
                results.setdefault(f"{namespace}/{name}", WaitResult.TIMEOUT.value)
            return results
        time.sleep(poll)


def report_wait(client: PortwayClient, results: Mapping[str, str]) -> int:
    reads = RemoteReads(client)
    failed = False
    for key, result in results.items():
        namespace, _, name = key.partition("/")
        if result == "ready":
            endpoints = [
                e.split(" -> ")[1]
                for r in reads.replicas_of(namespace, name)
                for e in r.endpoints
                if e.startswith("tcp ")
            ]
            where = f" at {' '.join(endpoints)}" if endpoints else ""
            _say(f"workload/{name} ready{where}")
        else:
            failed = True
            try:
                message = str(
                    client.get_workload(namespace, name).get("status", {}).get("message", "")
                )
            except NotFoundError:
                message = ""
            output.err.print(
                f"error: workload/{name} {result}" + (f": {message}" if message else ""),
                markup=False,
            )
    return 1 if failed else 0


def plan_items(client: PortwayClient, file: Path, targets: Sequence[str]) -> list[JSON]:
    """``portway plan -f FILE`` from the server: the ``-o json`` items."""
    answer = client.plan(documents_of(file), str(file), targets)
    return [item for item in answer.get("items") or [] if isinstance(item, dict)]


def delete(
    client: PortwayClient, keys: Sequence[tuple[str, str]], no_wait: bool, timeout: float
) -> int:
    if len(keys) > 1:
        # as in local mode, no workload of a file is deleted while another is
        # refused (not allowed, being migrated): the server checks each first.
        # A missing one is told in the deletes below, again as local mode does.
        for namespace, name in keys:
            with contextlib.suppress(NotFoundError):
                client.delete_workload(namespace, name, dry_run=True)
    for namespace, name in keys:
        client.delete_workload(namespace, name)
        _say(f"workload/{name} deleted")
    if no_wait:
        return 0
    results = wait_for(client, [(ns, n, 0) for ns, n in keys], timeout, deleting=True)
    gone = [k for k, r in results.items() if r != "deleted"]
    if gone:
        output.err.print(f"error: timed out waiting for removal of {', '.join(gone)}", markup=False)
        return 1
    return 0


# --- logs / exec ------------------------------------------------------------------


def logs(
    client: PortwayClient,
    name: str,
    namespace: str,
    follow: bool,
    replica: int | None,
    tail: int | None,
    style: LogStyle,
    *,
    since: str | None = None,
    target: str | None = None,
) -> int:
    """Prints the lines as local mode does (the server merges); the exit code."""
    running = [v for v in RemoteReads(client).replicas_of(namespace, name) if v.container_id]
    printer = LogPrinter(decorated(style, len({v.index for v in running}), replica))
    failed = False
    items = client.logs(
        namespace, name, follow=follow, tail=tail, replica=replica, since=since, target=target
    )
    try:
        batch: list[Any] = []
        for item in items:
            if "error" in item:  # that replica's stream ended with an engine failure
                failed = True
                output.err.print(
                    f"error: replica {item.get('replica')} on {item.get('target')}: "
                    f"{item['error']}",
                    markup=False,
                )
                continue
            batch.extend(entries_from_json([item], name))
            # a follow shows each line as it comes; a plain read writes in blocks
            if follow or len(batch) >= 512:
                printer.write(batch)
                batch = []
        if batch:
            printer.write(batch)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        silence_stdout()
        return 0
    return 1 if failed else 0


def exec_in(
    client: PortwayClient,
    name: str,
    namespace: str,
    replica: int,
    command: list[str],
    timeout: float,
) -> int:
    if not command:
        raise InputError("no command given; usage: portway exec NAME -- CMD [ARGS...]")
    answer = client.exec(namespace, name, replica, command, timeout)
    if "output" in answer:  # bytes as base64, interleaved as the engine gave them
        import base64

        sys.stdout.buffer.write(base64.b64decode(str(answer["output"])))
    else:
        sys.stdout.write(str(answer.get("stdout", "")) + str(answer.get("stderr", "")))
    sys.stdout.flush()
    return int(answer.get("exitCode", 0))


# --- whoami -------------------------------------------------------------------------


def whoami(client: PortwayClient, fmt: output.Format) -> None:
    answer = client.whoami()
    if fmt in (output.Format.JSON, output.Format.YAML):
        output.dump(answer, fmt)
        return
    _say(f"user:  {answer.get('user', '')}")
    _say(f"token: {answer.get('tokenName', '')}")
    bindings = [b for b in answer.get("bindings") or [] if isinstance(b, Mapping)]
    output.table(
        ["ROLE", "NAMESPACE"],
        [[b.get("role", ""), b.get("namespace", "")] for b in bindings],
    )


def refuse_local_only(command: str, context: str) -> PortwayError:
    return InputError(
        f"`{command}` runs against the local engines only; current context is {context} "
        "(`portway context use --local`, or --context local, to use the embedded store)"
    )
