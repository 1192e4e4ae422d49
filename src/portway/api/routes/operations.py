"""Logs (an ndjson stream), exec and plan."""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from portway.access.rbac import Resource, Verb
from portway.api.context import context_of
from portway.api.models import ExecRequest, ExecResponse, PlanRequest, PlanResponse
from portway.api.names import NamePath, NamespacePath
from portway.api.security import AccessDep
from portway.drivers.base import LogLine
from portway.service import documents, operations
from portway.service.planning import WorkloadPlan, plan_workloads
from portway.service.workloads import replicas_of

router = APIRouter(tags=["operations"])

#: lines buffered per log request between the engine threads and the client;
#: a slow client makes the engine readers wait rather than grow memory
_LOG_BUFFER = 1000
_END = None


def _line_json(index: int, target: str, line: LogLine) -> bytes:
    return (
        json.dumps(
            {
                "replica": index,
                "target": target,
                "ts": line.timestamp.isoformat() if line.timestamp else None,
                "stream": line.stream,
                "line": line.text,
            }
        )
        + "\n"
    ).encode()


def _pump(
    index: int,
    target: str,
    stream: operations.LogStream,
    lines: queue.Queue[bytes | None],
    stop: threading.Event,
) -> None:
    """Copy one replica's lines into the shared queue until done or stopped."""
    try:
        for line in stream(stop):
            item = _line_json(index, target, line)
            while not stop.is_set():
                try:
                    lines.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
    except Exception as exc:  # an engine failure mid-stream ends this replica's stream
        message = {"replica": index, "target": target, "error": str(exc)}
        lines.put((json.dumps(message) + "\n").encode())
    finally:
        lines.put(_END)


async def _merged(
    streams: list[tuple[int, str, operations.LogStream]], request: Request
) -> AsyncIterator[bytes]:
    lines: queue.Queue[bytes | None] = queue.Queue(maxsize=_LOG_BUFFER)
    stop = threading.Event()
    for index, target, stream in streams:
        threading.Thread(
            target=_pump,
            args=(index, target, stream, lines, stop),
            daemon=True,
            name=f"portway-logs-{index}",
        ).start()
    remaining = len(streams)
    try:
        while remaining:
            try:
                item = lines.get_nowait()
            except queue.Empty:
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)
                continue
            if item is _END:
                remaining -= 1
                continue
            yield item
    finally:
        stop.set()  # the engine readers end at their next line or check


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
    follow: Annotated[bool, Query(description="Keep streaming new lines.")] = False,
    tail: Annotated[int | None, Query(ge=0, le=1_000_000, description="Last N lines.")] = None,
    since: Annotated[
        float | None, Query(ge=0, description="Only lines at or after this epoch second.")
    ] = None,
    replica: Annotated[int | None, Query(ge=0, le=10_000, description="One replica.")] = None,
) -> StreamingResponse:
    """``{replica, target, ts, stream, line}`` per line, as ``application/x-ndjson``."""
    access.check(Verb.LOGS, Resource.WORKLOADS, namespace, name)
    app = context_of(request).app

    def open_streams() -> list[tuple[int, str, operations.LogStream]]:
        views = {v.index: v.target for v in replicas_of(app, namespace, name)}
        found = operations.log_streams(app, namespace, name, replica, follow=follow, tail=tail)
        return [(index, views.get(index, ""), stream) for index, stream in found]

    streams = await run_in_threadpool(open_streams)
    body = _merged(streams, request)
    if since is not None:
        body = _since(body, since)
    return StreamingResponse(body, media_type="application/x-ndjson")


async def _since(body: AsyncIterator[bytes], since: float) -> AsyncIterator[bytes]:
    async for chunk in body:
        ts = json.loads(chunk).get("ts")
        if ts is None or datetime.fromisoformat(ts).timestamp() >= since:
            yield chunk


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
