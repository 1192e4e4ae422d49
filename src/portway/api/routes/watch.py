"""Watches as server-sent events, resumable from a revision or event id.

``/v1/watch/workloads``: without ``since`` a snapshot (ADDED for every
workload, each with the revision the snapshot was taken at), then every
change after it. ``id:`` is the store's global revision; a client resumes
with ``since=`` or ``Last-Event-ID:``. A revision older than the change log
keeps is refused with 410 Gone (list afresh, then watch from the new
revision), as Kubernetes refuses a too-old resourceVersion.
Several changes of one workload found in one look are sent once, as the
newest (with its revision): a watcher sees every workload's latest state,
not every intermediate one.
``/v1/watch/events``: events after ``since`` (an event id), or new ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from portway.access.rbac import Resource
from portway.api.context import context_of
from portway.api.errors import GoneError
from portway.api.names import NameQuery, NamespaceQuery
from portway.api.routes.events import FiltersDep, event_out
from portway.api.routes.workloads import workload_out
from portway.api.security import AccessDep
from portway.api.sse import MEDIA_TYPE, SseEvent, follow, resume_point
from portway.controller.records import KIND_WORKLOAD
from portway.service.app import App
from portway.store import Change

router = APIRouter(tags=["watch"])

SinceQuery = Annotated[
    int | None,
    Query(ge=0, le=2**62, description="Resume after this id (else the Last-Event-ID header)."),
]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)]

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {MEDIA_TYPE: {}}, "description": "A stream of server-sent events."}
}


def _readable(namespaces: set[str] | None, namespace: str) -> bool:
    return namespaces is None or namespace in namespaces


def _workload_events(
    app: App, found: Sequence[Change], readable: set[str] | None
) -> list[SseEvent]:
    """One event per workload changed in ``found`` (its newest change), with
    the workload as it is now; DELETED carries namespace and name only."""
    newest: dict[str, Change] = {}
    for change in found:
        if _readable(readable, change.namespace):
            newest[f"{change.namespace}/{change.name}"] = change
    out: list[SseEvent] = []
    for change in sorted(newest.values(), key=lambda c: c.revision):
        if change.type == "DELETED":
            data = {"namespace": change.namespace, "name": change.name}
            out.append(SseEvent(change.revision, "DELETED", data))
            continue
        record = app.store.get(KIND_WORKLOAD, change.namespace, change.name)
        if record is None:
            continue  # deleted since: its DELETED change follows
        body = workload_out(record).model_dump(mode="json", by_alias=True)
        out.append(SseEvent(change.revision, change.type, body))
    return out


@router.get("/v1/watch/workloads", response_class=StreamingResponse, responses=_STREAM_DOC)
async def watch_workloads(
    access: AccessDep,
    request: Request,
    namespace: NamespaceQuery = None,
    since: SinceQuery = None,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    ctx = context_of(request)
    readable = access.readable_in(Resource.WORKLOADS, namespace)
    store = ctx.app.store
    asked = resume_point(since, last_event_id)

    def begin() -> tuple[int, list[SseEvent]]:
        if asked is not None:
            oldest = store.oldest_revision()
            if asked < oldest - 1:
                raise GoneError(
                    f"revision {asked} is older than the change log keeps (oldest {oldest}): "
                    "list the workloads again and watch from the revision of that list"
                )
            return asked, []
        start = store.revision()
        snapshot = [
            SseEvent(start, "ADDED", workload_out(r).model_dump(mode="json", by_alias=True))
            for r in store.list(KIND_WORKLOAD, namespace)
            if _readable(readable, r.namespace)
        ]
        return start, snapshot

    start, first = await run_in_threadpool(begin)
    batch = ctx.config.watch_batch

    def fetch(after: int) -> tuple[list[SseEvent], int]:
        found = store.changes(after, kinds={KIND_WORKLOAD}, namespace=namespace, limit=batch)
        if not found:
            return [], after
        return _workload_events(ctx.app, found, readable), found[-1].revision

    return StreamingResponse(
        follow(request, ctx.config, fetch, start, first),
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/v1/watch/events", response_class=StreamingResponse, responses=_STREAM_DOC)
async def watch_events(
    access: AccessDep,
    request: Request,
    filters: FiltersDep,
    namespace: NamespaceQuery = None,
    workload: NameQuery = None,
    since: SinceQuery = None,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    ctx = context_of(request)
    readable = access.readable_in(Resource.EVENTS, namespace)
    store = ctx.app.store
    asked = resume_point(since, last_event_id)

    def begin() -> int:
        if asked is None:
            newest = store.events(limit=1)
            return newest[-1].id if newest else 0
        oldest = store.events(limit=1, after_id=0)
        if oldest and asked < oldest[0].id - 1:
            raise GoneError(
                f"event {asked} is older than the events the store keeps (oldest "
                f"{oldest[0].id}): list the events again and watch from the newest id"
            )
        return asked

    start = await run_in_threadpool(begin)
    batch = ctx.config.watch_batch

    def fetch(after: int) -> tuple[list[SseEvent], int]:
        # filtered here, not in the store: the cursor must move past the
        # events the filters skip, or a quiet filter would re-read them forever
        found = store.events(namespace=namespace, limit=batch, after_id=after)
        if not found:
            return [], after
        events = [
            SseEvent(e.id, "EVENT", event_out(e).model_dump(mode="json", by_alias=True))
            for e in found
            if filters.matches(e, workload) and _readable(readable, e.namespace)
        ]
        return events, found[-1].id

    return StreamingResponse(
        follow(request, ctx.config, fetch, start, ()),
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
