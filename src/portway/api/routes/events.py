"""Events: recent ones, by namespace and workload."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from portway.access.rbac import Resource, Verb
from portway.api.context import context_of
from portway.api.models import EventList, EventOut
from portway.api.names import NameQuery, NamespacePath, NamespaceQuery
from portway.api.security import AccessDep
from portway.store import Event

router = APIRouter(tags=["events"])

LimitQuery = Annotated[int, Query(ge=1, le=10_000, description="Newest N events.")]
SinceQuery = Annotated[
    int | None, Query(ge=0, le=2**62, description="Only events after this event id, oldest first.")
]


def event_out(event: Event) -> EventOut:
    return EventOut(
        id=event.id,
        ts=event.ts,
        kind=event.kind,
        namespace=event.namespace,
        name=event.name,
        type=event.type,
        reason=event.reason,
        message=event.message,
    )


@router.get("/v1/events", response_model=EventList)
def list_events(
    access: AccessDep,
    request: Request,
    namespace: NamespaceQuery = None,
    workload: NameQuery = None,
    limit: LimitQuery = 50,
    since: SinceQuery = None,
) -> EventList:
    """Events of workloads and replicas in readable namespaces. Cluster events
    (targets) are shown to cluster-wide readers only."""
    readable = access.readable_in(Resource.EVENTS, namespace)
    found = context_of(request).app.store.events(
        namespace=namespace, name=workload, limit=limit, after_id=since
    )
    return EventList(
        items=[event_out(e) for e in found if readable is None or e.namespace in readable]
    )


@router.get("/v1/namespaces/{namespace}/events", response_model=EventList)
def namespace_events(
    namespace: NamespacePath,
    access: AccessDep,
    request: Request,
    workload: NameQuery = None,
    limit: LimitQuery = 50,
    since: SinceQuery = None,
) -> EventList:
    access.check(Verb.LIST, Resource.EVENTS, namespace)
    found = context_of(request).app.store.events(
        namespace=namespace, name=workload, limit=limit, after_id=since
    )
    return EventList(items=[event_out(e) for e in found])
