"""Logs (an ndjson stream), exec and plan."""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from portway.access.rbac import Resource, Verb
from portway.api.context import context_of
from portway.api.models import ExecRequest, ExecResponse, PlanRequest, PlanResponse
from portway.api.names import NamePath, NamespacePath
from portway.api.security import AccessDep
from portway.service import documents, operations
from portway.service.logmerge import Entry, entry_json, parse_since
from portway.service.logview import LogQuery, LogView, SourceError
from portway.service.planning import WorkloadPlan, plan_workloads

router = APIRouter(tags=["operations"])

#: batches buffered per log request between the view's thread and the client;
#: a slow client makes the engine readers wait rather than grow memory
_LOG_BUFFER = 64


def _batch_bytes(batch: list[Entry]) -> bytes:
    return "".join(json.dumps(entry_json(entry)) + "\n" for entry in batch).encode()


def _error_bytes(problem: SourceError) -> bytes:
    source = problem.source
    message = {"replica": source.replica, "target": source.target, "error": problem.message}
    return (json.dumps(message) + "\n").encode()


async def _streamed(view: LogView, request: Request) -> AsyncIterator[bytes]:
    """The view's batches as ndjson; the view runs in its own thread."""
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=_LOG_BUFFER)

    def put(item: bytes | None) -> bool:
        while True:
            try:
                chunks.put(item, timeout=0.5)
                return True
            except queue.Full:
                if item is not None and request_gone.is_set():
                    return False

    def pump() -> None:
        try:
            for batch in view:
                if not put(_batch_bytes(batch)):
                    return
            for problem in view.errors:
                put(_error_bytes(problem))
        except Exception as exc:  # reported in the stream, not lost
            put((json.dumps({"error": str(exc)}) + "\n").encode())
        finally:
            view.close()
            put(None)

    request_gone = threading.Event()
    threading.Thread(target=pump, name="portway-logs-view", daemon=True).start()
    try:
        while True:
            try:
                item = chunks.get_nowait()
            except queue.Empty:
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.02)
                continue
            if item is None:
                return
            yield item
    finally:
        request_gone.set()
        view.close()  # the engine readers end at their next line or check


def _since_of(since: str | None) -> datetime | None:
    if since is None or since == "":
        return None
    try:  # an epoch second, as earlier clients sent
        return datetime.fromtimestamp(float(since), UTC)
    except ValueError:
        return parse_since(since, datetime.now(UTC), flag="since")


@router.get(
    "/v1/namespaces/{namespace}/workloads/{name}/logs",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "One JSON per line."}},
)
async def logs(
    namespace: NamespacePath,
    name: NamePath,
    access: AccessDep,
    request: Request,
    follow: Annotated[bool, Query(description="Keep streaming, across replacements.")] = False,
    tail: Annotated[
        int | None, Query(ge=0, le=1_000_000, description="Last N lines per replica.")
    ] = None,
    since: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Only newer lines: a duration (10m, 1h), an RFC 3339 time or an "
            "epoch second.",
        ),
    ] = None,
    replica: Annotated[int | None, Query(ge=0, le=10_000, description="One replica.")] = None,
    target: Annotated[
        str | None, Query(max_length=253, description="Only replicas on this target.")
    ] = None,
) -> StreamingResponse:
    """All replicas on all targets merged in time order:
    ``{time, workload, replica, target, stream, line}`` per line
    (``application/x-ndjson``); an engine failure of one replica is a line
    ``{replica, target, error}``."""
    access.check(Verb.LOGS, Resource.WORKLOADS, namespace, name)
    app = context_of(request).app
    query = LogQuery(
        namespace,
        name,
        follow=follow,
        tail=tail,
        since=_since_of(since),
        replica=replica,
        target=target,
    )

    def open_view() -> LogView:
        view = LogView(app, query)
        view.start()
        return view

    view = await run_in_threadpool(open_view)
    return StreamingResponse(_streamed(view, request), media_type="application/x-ndjson")


@router.post("/v1/namespaces/{namespace}/workloads/{name}/exec", response_model=ExecResponse)
def exec_command(
    namespace: NamespacePath, name: NamePath, body: ExecRequest, access: AccessDep, request: Request
) -> ExecResponse:
    """Run a command in one replica and return what it printed."""
    ctx = context_of(request)
    access.check(Verb.EXEC, Resource.WORKLOADS, namespace, name)
    timeout = min(body.timeout, ctx.config.max_exec_seconds)
    result = operations.exec_in(ctx.app, namespace, name, body.replica, body.command, timeout)
    return ExecResponse(
        exit_code=result.exit_code,
        stdout=result.output.decode("utf-8", errors="replace"),
        stderr="",
        output=base64.b64encode(result.output).decode(),
    )


def plan_json(plan: WorkloadPlan) -> dict[str, Any]:
    """The same item ``portway plan -o json`` prints."""
    return {
        "workload": plan.workload.key,
        "file": plan.file,
        "document": plan.document,
        "isolation": plan.workload.spec.isolation.value,
        "portability": plan.workload.spec.portability.value,
        "policy": [{"path": v.path, "rule": v.rule, "message": v.message} for v in plan.policy],
        "targets": [
            {**t.to_json(), "extensionProblems": plan.extension_problems.get(t.target, [])}
            for t in plan.targets
        ],
    }


@router.post("/v1/plan", response_model=PlanResponse)
def plan(body: PlanRequest, access: AccessDep, request: Request) -> PlanResponse:
    """The drift report: per field and target, honored, emulated, dropped or rejected."""
    workloads, namespaces = documents.from_documents(body.documents, body.file)
    for item in workloads:
        access.check(Verb.CREATE, Resource.PLANS, item.workload.metadata.namespace)
    items = [(s.workload, s.file, s.document) for s in workloads]
    plans = plan_workloads(context_of(request).app, items, body.targets, namespaces)
    return PlanResponse(items=[plan_json(p) for p in plans])
