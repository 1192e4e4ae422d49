"""Events: recent ones, by namespace and workload, type, reason, target and age."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

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


@dataclass(frozen=True)
class EventFilters:
    """The filters every events route takes besides namespace and workload."""

    event_type: str | None = None
    reason: str | None = None
    target: str | None = None
    newer_than: float | None = None

    def matches(self, event: Event, workload: str | None = None) -> bool:
        return (
            (workload is None or event.name == workload)
            and (self.event_type is None or event.type == self.event_type)
            and (self.reason is None or event.reason == self.reason)
            and (self.target is None or event.target == self.target)
            and (self.newer_than is None or event.ts >= self.newer_than)
        )

    def store_args(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "reason": self.reason,
            "target": self.target,
            "since": self.newer_than,
        }


def event_filters(
    event_type: Annotated[
        str | None,
        Query(alias="type", pattern="^(Normal|Warning)$", description="Normal or Warning."),
    ] = None,
    reason: Annotated[
        str | None, Query(max_length=64, description="Only this reason (e.g. OOMKilled).")
    ] = None,
    target: Annotated[
        str | None, Query(max_length=253, description="Only events on this target.")
    ] = None,
    newer_than: Annotated[
        float | None,
        Query(
            alias="newerThan",
            ge=0,
            le=1e11,
            description="Only events last seen at or after this time (epoch seconds).",
        ),
    ] = None,
) -> EventFilters:
    return EventFilters(event_type, reason, target, newer_than)


FiltersDep = Annotated[EventFilters, Depends(event_filters)]


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
        replica=event.replica,
        target=event.target,
        count=event.count,
        first_ts=event.first_ts,
    )


@router.get("/v1/events", response_model=EventList)
def list_events(
    access: AccessDep,
    request: Request,
    filters: FiltersDep,
    namespace: NamespaceQuery = None,
    workload: NameQuery = None,
    limit: LimitQuery = 50,
    since: SinceQuery = None,
) -> EventList:
    """Events of workloads and replicas in readable namespaces. Cluster events
    (targets) are shown to cluster-wide readers only."""
    readable = access.readable_in(Resource.EVENTS, namespace)
    found = context_of(request).app.store.events(
        namespace=namespace, name=workload, limit=limit, after_id=since, **filters.store_args()
    )
    return EventList(
        items=[event_out(e) for e in found if readable is None or e.namespace in readable]
    )


@router.get("/v1/namespaces/{namespace}/events", response_model=EventList)
def namespace_events(
    namespace: NamespacePath,
    access: AccessDep,
    request: Request,
    filters: FiltersDep,
    workload: NameQuery = None,
    limit: LimitQuery = 50,
    since: SinceQuery = None,
) -> EventList:
    access.check(Verb.LIST, Resource.EVENTS, namespace)
    found = context_of(request).app.store.events(
        namespace=namespace, name=workload, limit=limit, after_id=since, **filters.store_args()
    )
    return EventList(items=[event_out(e) for e in found])
