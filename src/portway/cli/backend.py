"""What the read commands (``get``, ``describe``) need, from wherever it is.

``LocalReads`` reads the embedded store through the service layer;
``cli.remote.RemoteReads`` asks a server and rebuilds the same objects from
its JSON. The commands render those objects once, so a table or ``-o json``
looks the same in both modes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from portway.controller.records import ReplicaView, TargetView
from portway.spec.model import Workload
from portway.store import Event, Record

if TYPE_CHECKING:  # the service layer loads drivers: only local mode needs it
    from portway.service.app import App


#: how often a local ``events --watch`` looks for new events in the store
FOLLOW_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class EventQuery:
    """Filters of ``portway events`` besides namespace and workload."""

    event_type: str | None = None  # Normal | Warning
    reason: str | None = None
    target: str | None = None
    since: float | None = None  # epoch seconds: last seen at or after

    def api_params(self) -> dict[str, str | float | None]:
        return {
            "type": self.event_type,
            "reason": self.reason,
            "target": self.target,
            "newerThan": self.since,
        }


class Reads(Protocol):
    def list_workloads(self, namespace: str | None) -> list[Record]: ...

    def resolve_workload(self, namespace: str, name: str) -> tuple[Record, Workload]: ...

    def replicas_of(self, namespace: str, name: str) -> list[ReplicaView]: ...

    def all_replicas(self, namespace: str | None) -> list[tuple[str, ReplicaView]]: ...

    def target_views(self, *, check: bool = False) -> list[TargetView]:
        """Every target; ``check``: health probed now, not as last recorded."""
        ...

    def events(
        self,
        *,
        kind: str | None,
        namespace: str | None,
        name: str | None,
        limit: int,
        query: EventQuery | None = None,
    ) -> list[Event]: ...

    def follow_events(
        self,
        *,
        namespace: str | None,
        name: str | None,
        query: EventQuery,
        after_id: int,
        stop: threading.Event,
    ) -> Iterator[Event]:
        """Events recorded after ``after_id``, as they come, until ``stop``."""
        ...


class LocalReads:
    def __init__(self, app: App) -> None:
        self.app = app

    def list_workloads(self, namespace: str | None) -> list[Record]:
        from portway.service import workloads

        return workloads.list_workloads(self.app, namespace)

    def resolve_workload(self, namespace: str, name: str) -> tuple[Record, Workload]:
        from portway.service import workloads

        return workloads.resolve_workload(self.app, namespace, name)

    def replicas_of(self, namespace: str, name: str) -> list[ReplicaView]:
        from portway.service import workloads

        return workloads.replicas_of(self.app, namespace, name)

    def all_replicas(self, namespace: str | None) -> list[tuple[str, ReplicaView]]:
        from portway.service import workloads

        return workloads.all_replicas(self.app, namespace)

    def target_views(self, *, check: bool = False) -> list[TargetView]:
        if check:
            for view in self.app.target_views():
                self.app.targets.check(view)  # fresh health, recorded if it changed
        return self.app.target_views()

    def events(
        self,
        *,
        kind: str | None,
        namespace: str | None,
        name: str | None,
        limit: int,
        query: EventQuery | None = None,
    ) -> list[Event]:
        query = query or EventQuery()
        return self.app.store.events(
            kind=kind,
            namespace=namespace,
            name=name,
            limit=limit,
            event_type=query.event_type,
            reason=query.reason,
            target=query.target,
            since=query.since,
        )

    def follow_events(
        self,
        *,
        namespace: str | None,
        name: str | None,
        query: EventQuery,
        after_id: int,
        stop: threading.Event,
    ) -> Iterator[Event]:
        # The store's event ids only grow (a repeat gets a new one), so
        # "after the newest id seen" misses nothing; unfiltered reads move
        # the cursor past events the filters skip.
        while not stop.is_set():
            found = self.app.store.events(namespace=namespace, after_id=after_id, limit=500)
            for event in found:
                if matches(event, name, query):
                    yield event
            if found:
                after_id = found[-1].id
            if len(found) < 500:
                stop.wait(FOLLOW_POLL_SECONDS)


def matches(event: Event, name: str | None, query: EventQuery) -> bool:
    return (
        (name is None or event.name == name)
        and (query.event_type is None or event.type == query.event_type)
        and (query.reason is None or event.reason == query.reason)
        and (query.target is None or event.target == query.target)
        and (query.since is None or event.ts >= query.since)
    )
